"""The small pieces of an HTTP/1.1 head the lean server (:mod:`.h11_connection`) reads or writes:
the ``Date`` value, the peer's address, a request head's size and its decoded path."""

from __future__ import annotations

import time
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote_to_bytes

import h11

__all__ = ["address", "date_header", "head_size", "path"]

_date_second = -1
_date = b""


def date_header() -> bytes:
    """The ``Date`` value of this second (formatted once a second, not once a response)."""
    global _date_second, _date
    now = int(time.time())
    if now != _date_second:
        _date_second, _date = now, formatdate(now, usegmt=True).encode("ascii")
    return _date


def address(address: Any) -> tuple[str, int] | None:
    """``(host, port)`` of an IP socket's address; ``None`` for another kind (a Unix socket)."""
    return (address[0], address[1]) if isinstance(address, tuple) else None


def head_size(request: h11.Request) -> int:
    """About the bytes of ``request``'s head as sent (name, ``: ``, value, CRLF per header)."""
    return len(request.target) + sum(len(name) + len(value) + 4 for name, value in request.headers)


def path(raw: bytes) -> str:
    """The ASGI ``path`` of a request target's path: percent-decoded UTF-8."""
    if b"%" not in raw and raw.isascii():
        return raw.decode("ascii")
    # Invalid UTF-8 becomes U+FFFD, as everywhere text enters the project.
    return unquote_to_bytes(raw).decode("utf-8", "replace")
