"""Listening sockets for ``trio-dspy serve``: bound here, or inherited from a parent process."""

from __future__ import annotations

import socket

__all__ = ["listen", "url"]


def listen(host: str, port: int, backlog: int) -> socket.socket:
    """A TCP socket listening on ``host:port`` (``port`` 0: a free one).

    Raises:
        OSError: the address cannot be bound.
    """
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def url(sock: socket.socket) -> str:
    """The ``http://host:port`` a listening socket serves."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if sock.family == socket.AF_INET6 else f"http://{host}:{port}"
