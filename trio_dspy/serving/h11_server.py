"""``trio-dspy serve --server h11``: a lean HTTP/1.1 server for the ASGI app, on trio and h11.

It does less than hypercorn, on purpose: HTTP/1.1 only (no HTTP/2, no TLS,
no websockets, no access log), meant behind a reverse proxy that terminates
TLS and speaks HTTP/2 to clients. In return each request costs markedly
less CPU. What it does (each connection: :mod:`.h11_connection`):

* keep-alive and pipelined requests, answered in turn; idle connections are
  closed after ``keep_alive_timeout`` seconds (longer than a proxy's own
  upstream idle timeout, so the proxy is the one that closes);
* a request head over ``max_header_bytes`` is answered 431, one not whole
  within ``header_timeout`` seconds 408, a malformed one 400, and the
  connection closed;
* the app's lifespan runs, if it takes part, around the serving;
* a stop (``shutdown()`` returning) stops accepting at once, closes idle
  connections at once, lets requests under way finish for
  ``graceful_timeout`` seconds, then cancels what is left.
"""

from __future__ import annotations

import functools
import math
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ..errors import ConfigurationError
from ..logs import get_logger
from .h11_connection import serve_connection
from .h11_limits import Limits, Shared
from .sockets import listen, url

__all__ = ["Limits", "serve"]

log = get_logger(__name__)

#: Seconds the app's lifespan startup may take (as hypercorn's default).
STARTUP_TIMEOUT = 60.0


async def serve(
    app: Callable[..., Any],
    host: str,
    port: int,
    *,
    graceful_timeout: float = 5.0,
    backlog: int = 1024,
    shutdown: Callable[[], Awaitable[Any]] | None = None,
    fd: int | None = None,
    limits: Limits | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the ASGI ``app`` over HTTP/1.1 until ``shutdown()`` returns, then stop gracefully.

    ``nursery.start`` returns the URLs it listens on. ``fd``, when given, is
    a listening socket inherited from the parent process, served (and closed
    at the end) instead of binding ``host:port``.

    Raises:
        OSError: the address cannot be bound.
        ConfigurationError: the app's lifespan startup failed.
    """
    sock = socket.socket(fileno=fd) if fd is not None else listen(host, port, backlog)
    if fd is not None:
        sock.listen(backlog)
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
    shared = Shared(app, limits or Limits())
    async with listener, trio.open_nursery() as lifespan_nursery:
        lifespan = _Lifespan(app)
        shared.state = await lifespan.startup(lifespan_nursery)
        async with trio.open_nursery() as connections:
            handler = functools.partial(serve_connection, shared)
            async with trio.open_nursery() as accepting:
                await accepting.start(
                    functools.partial(
                        trio.serve_listeners, handler, [listener], handler_nursery=connections
                    )
                )
                task_status.started([url(sock)])
                await (shutdown or trio.sleep_forever)()
                accepting.cancel_scope.cancel()
            # New connections are refused from here on (the socket is closed).
            await listener.aclose()
            shared.stop()
            connections.cancel_scope.deadline = trio.current_time() + graceful_timeout
        await lifespan.shutdown(graceful_timeout)
        lifespan_nursery.cancel_scope.cancel()


class _Lifespan:
    """The ASGI lifespan protocol with an app that may or may not take part in it."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.state: dict[str, Any] = {}
        self.to_app, self.app_inbox = trio.open_memory_channel[dict[str, Any]](math.inf)
        self.app_outbox, self.from_app = trio.open_memory_channel[dict[str, Any]](math.inf)
        self.supported = False

    async def startup(self, nursery: trio.Nursery) -> dict[str, Any] | None:
        """Run the app's startup; the state each request's scope copies, or ``None``
        when the app does not take part in the lifespan.

        Raises:
            ConfigurationError: the app said its startup failed, or did not
                finish it within ``STARTUP_TIMEOUT`` seconds.
        """
        nursery.start_soon(self._run)
        await self.to_app.send({"type": "lifespan.startup"})
        with trio.move_on_after(STARTUP_TIMEOUT) as waited:
            reply = await self.from_app.receive()
        if waited.cancelled_caught:
            raise ConfigurationError(
                f"the app's lifespan startup did not finish in {STARTUP_TIMEOUT:g} s: "
                "make it answer lifespan.startup.complete (or fail) sooner"
            )
        if reply["type"] == "lifespan.startup.failed":
            raise ConfigurationError(
                f"the app's lifespan startup failed: {reply.get('message', '')}"
            )
        if reply["type"] != "lifespan.startup.complete":
            return None  # it returned or raised: no lifespan
        self.supported = True
        return self.state

    async def shutdown(self, seconds: float) -> None:
        """Tell the app the server stops and wait ``seconds`` at most for its answer."""
        if not self.supported:
            return
        await self.to_app.send({"type": "lifespan.shutdown"})
        with trio.move_on_after(seconds):
            reply = await self.from_app.receive()
            if reply["type"] == "lifespan.shutdown.failed":
                log.error("serving.lifespan_shutdown_failed", message=reply.get("message", ""))

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        scope["state"] = self.state
        try:
            await self.app(scope, self.app_inbox.receive, self.app_outbox.send)
        except Exception as exc:
            # As hypercorn does: an app that raises on the lifespan scope
            # does not take part in it; it is still served.
            log.debug("serving.no_lifespan", error=type(exc).__name__)
        await self.app_outbox.send({"type": "lifespan.done"})
