"""A small HTTP/1.1 server on trio + h11, for tests, examples and benchmarks.

:func:`serve_http` listens on loopback and hands every request to an async
``handler(request) -> response``. Each connection is one task in the server's
nursery; connections are kept alive between requests unless the client (or
the response) says ``Connection: close``. Leaving the ``async with`` closes
the listeners and cancels every connection, including handlers that are
still sleeping (a "stalled" response is simply a handler awaiting
``trio.sleep``).

Clients that disconnect mid-request, send garbage or hang up early never
crash the server: such connections are dropped and logged at debug level.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

import attrs
import h11
import trio

from ..groups import raise_single
from ..logs import get_logger

__all__ = ["ClientGone", "ConnectionReset", "HttpServer", "Request", "Response", "serve_http"]

log = get_logger(__name__)

_READ_SIZE = 65536
# One encoder for every JSON response: json.dumps with options builds one per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"))
_MAX_BODY = 64 * 1024 * 1024


@attrs.frozen
class Request:
    """One HTTP request as the handler sees it.

    ``headers`` are ``(name, value)`` pairs with lower-case names, in the
    order received; ``body`` is the complete (de-chunked) body.
    """

    method: str
    target: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    @property
    def path(self) -> str:
        """The target without its query string (``/v1/chat/completions``)."""
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> dict[str, str]:
        """The query-string parameters (last value wins)."""
        _, _, qs = self.target.partition("?")
        return dict(parse_qsl(qs))

    def header(self, name: str, default: str | None = None) -> str | None:
        """Return the first value of header ``name`` (case-insensitive), or ``default``."""
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return default

    def json(self) -> Any:
        """Decode the body as JSON.

        Raises:
            ValueError: the body is not valid UTF-8 JSON.
        """
        return json.loads(self.body)


def _norm_headers(
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
) -> tuple[tuple[str, str], ...]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    return tuple((str(k), str(v)) for k, v in items)


class ConnectionReset(Exception):
    """Raised by a streamed body to abort its connection (the client sees a reset)."""


class ClientGone(Exception):
    """Thrown into a streamed body when the client has gone away before its end."""


@attrs.frozen
class Response:
    """What the handler answers.

    ``content-length`` is added automatically. ``reset_connection=True``
    means: send nothing and abort the connection (the client sees a reset).
    ``stream``, when set, is the body instead of ``body``: sent piece by
    piece as the generator yields (chunked transfer encoding). It may raise
    :class:`ConnectionReset` to abort the connection; when the client goes
    away, :class:`ClientGone` is thrown into it at its ``yield``.
    """

    status: int = 200
    headers: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_norm_headers)
    body: bytes = b""
    reset_connection: bool = False
    stream: AsyncGenerator[bytes, None] | None = attrs.field(default=None, eq=False)

    @classmethod
    def from_json(
        cls,
        value: Any,
        status: int = 200,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    ) -> Response:
        """A response whose body is ``value`` encoded as JSON.

        Raises:
            TypeError: ``value`` is not JSON-serialisable.
        """
        body = _ENCODER.encode(value).encode()
        extra = _norm_headers(headers)
        return cls(status, (("content-type", "application/json"), *extra), body)

    @classmethod
    def from_text(
        cls,
        text: str,
        status: int = 200,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        content_type: str = "text/plain; charset=utf-8",
    ) -> Response:
        """A response whose body is ``text`` (UTF-8) with the given content type."""
        extra = _norm_headers(headers)
        return cls(status, (("content-type", content_type), *extra), text.encode())

    @classmethod
    def connection_reset(cls) -> Response:
        """A "response" that aborts the connection without answering."""
        return cls(reset_connection=True)


Handler = Callable[[Request], Awaitable[Response]]


@attrs.define(eq=False)
class HttpServer:
    """A running server: where it listens and what it has seen.

    ``connections_accepted`` counts TCP connections (so tests can check
    keep-alive reuse); ``open_connections`` is how many are open now;
    ``requests_abandoned`` counts requests whose client closed the connection
    before the handler had answered (the handler is cancelled then).
    """

    host: str
    port: int
    connections_accepted: int = 0
    open_connections: int = 0
    requests_abandoned: int = 0

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` (no trailing slash)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


@asynccontextmanager
async def serve_http(
    handler: Handler, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[HttpServer]:
    """Serve ``handler`` over HTTP/1.1 on ``host:port`` for the body of the ``async with``.

    ``port=0`` picks a free port; read it from the yielded
    :class:`HttpServer`. On exit the listeners close and every in-flight
    connection (and handler) is cancelled.

    Raises:
        OSError: the address cannot be bound (port in use, bad host).
    """
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound_port = listeners[0].socket.getsockname()[1]
    server = HttpServer(host=host, port=bound_port)
    try:
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(_accept_loop, listener, handler, server, nursery)
            try:
                yield server
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # the block's own error comes out as itself
        raise_single(group)


async def _accept_loop(
    listener: trio.SocketListener,
    handler: Handler,
    server: HttpServer,
    nursery: trio.Nursery,
) -> None:
    async with listener:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:  # e.g. EMFILE: back off briefly, keep serving
                log.debug("http_server.accept_failed", error=str(exc))
                await trio.sleep(0.01)
                continue
            server.connections_accepted += 1
            nursery.start_soon(_serve_connection, stream, handler, server)


#: Bytes read ahead of what h11 has been asked to parse (a pipelined request
#: read while a handler runs); past it the socket waits, and so does a hang-up.
_READ_AHEAD = 4 * 1024 * 1024
_CLOSED = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class _Wire:
    """One connection's socket, read by one task into h11 for its whole life.

    Whoever needs the client's next bytes parks until they arrive; a handler
    runs in a cancel scope the reader cancels when the client hangs up. So a
    request costs no task, and no cancelled read, of its own.
    """

    def __init__(self, stream: trio.SocketStream, server: HttpServer) -> None:
        self.stream = stream
        self.server = server
        self.conn = h11.Connection(h11.SERVER)
        self.arrived = trio.lowlevel.ParkingLot()
        self.paused = trio.lowlevel.ParkingLot()
        self.fed = 0  # bytes given to h11 since someone last waited for more
        self.eof = False
        self.handling: tuple[trio.CancelScope, Request] | None = None

    async def read(self) -> None:
        """Feed h11 what the client sends until it closes (or breaks) the connection."""
        try:
            while True:
                while self.fed > _READ_AHEAD:
                    await self.paused.park()
                data = await self.stream.receive_some(_READ_SIZE)
                if not data:
                    break
                self.conn.receive_data(data)
                self.fed += len(data)
                self.arrived.unpark_all()
        except _CLOSED:
            pass
        # End of file, or reset: the client is gone either way.
        self.eof = True
        self.conn.receive_data(b"")  # h11 turns it into ConnectionClosed or an error
        self.arrived.unpark_all()
        self._abandon()

    def _abandon(self) -> None:
        """Cancel the handler running now, if any: its client has gone."""
        if self.handling is None:
            return
        scope, request = self.handling
        self.handling = None
        self.server.requests_abandoned += 1
        log.debug("http_server.request_abandoned", path=request.path)
        scope.cancel()

    async def more(self) -> None:
        """Wait for the client's next bytes, h11 having parsed all it has.

        Raises:
            trio.BrokenResourceError: the client has gone.
        """
        if self.eof:
            raise trio.BrokenResourceError("the client closed the connection")
        self.fed = 0
        self.paused.unpark_all()
        await self.arrived.park()


async def _serve_connection(
    stream: trio.SocketStream, handler: Handler, server: HttpServer
) -> None:
    server.open_connections += 1
    wire = _Wire(stream, server)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wire.read)
            try:
                await _serve_requests(wire, handler)
            except _CLOSED as exc:
                log.debug("http_server.client_gone", error=repr(exc))
            except h11.ProtocolError as exc:
                log.debug("http_server.protocol_error", error=repr(exc))
                await _try_send_error(stream, wire.conn, exc)
            nursery.cancel_scope.cancel()
    finally:
        server.open_connections -= 1
        await trio.aclose_forcefully(stream)


async def _serve_requests(wire: _Wire, handler: Handler) -> None:
    stream, conn = wire.stream, wire.conn
    while True:
        request = await _read_request(wire)
        if request is None:
            return
        response = await _answer_while_connected(wire, handler, request)
        if response is None:  # the client left first
            return
        if response.reset_connection:
            _abort(stream)
            return
        if response.stream is not None:
            if not await _send_streamed(stream, conn, response, response.stream):
                return
        else:
            await _send_response(stream, conn, response)
        if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
            return
        conn.start_next_cycle()


async def _answer_while_connected(
    wire: _Wire, handler: Handler, request: Request
) -> Response | None:
    """The handler's response, or ``None`` when the client hung up before it was ready.

    A client that gives up on a request (cancelled, timed out) closes its
    connection; a real server notices and stops working on it. So while the
    handler runs, the connection's reader watches: end of file cancels the
    handler. Bytes that arrive meanwhile (a pipelined request) are kept for
    the next cycle.
    """
    response: Response | None = None
    with trio.CancelScope() as scope:
        wire.handling = (scope, request)
        if wire.eof:
            wire._abandon()
        try:
            response = await handler(request)
        except Exception as exc:  # a broken handler must not kill the server
            log.warning("http_server.handler_failed", path=request.path, error=repr(exc))
            response = Response.from_text("internal error in handler\n", status=500)
        finally:
            wire.handling = None
    return response


async def _next_event(wire: _Wire) -> Any:
    conn = wire.conn
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        if conn.they_are_waiting_for_100_continue:
            await wire.stream.send_all(
                conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b""
            )
            # The body may have arrived while the 100 was written (a client
            # need not wait for it): the reader's wake-up found nobody
            # waiting, so ask h11 again before waiting for more.
            continue
        await wire.more()


async def _read_request(wire: _Wire) -> Request | None:
    event = await _next_event(wire)
    if isinstance(event, h11.ConnectionClosed):
        return None
    if not isinstance(event, h11.Request):
        raise h11.RemoteProtocolError(f"expected a request, got {type(event).__name__}")
    chunks: list[bytes] = []
    size = 0
    while True:
        part = await _next_event(wire)
        if isinstance(part, h11.Data):
            size += len(part.data)
            if size > _MAX_BODY:
                raise h11.RemoteProtocolError("request body too large", error_status_hint=413)
            chunks.append(bytes(part.data))
        elif isinstance(part, h11.EndOfMessage):
            break
        elif isinstance(part, h11.ConnectionClosed):
            raise trio.BrokenResourceError("client closed the connection mid-request")
    headers = tuple((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in event.headers)
    return Request(
        method=event.method.decode("ascii"),
        target=event.target.decode("latin-1"),
        headers=headers,
        body=b"".join(chunks),
    )


async def _send_response(
    stream: trio.SocketStream, conn: h11.Connection, response: Response
) -> None:
    headers = [(k, v) for k, v in response.headers if k.lower() != "content-length"]
    headers.append(("content-length", str(len(response.body))))
    data = conn.send(h11.Response(status_code=response.status, headers=headers)) or b""
    if response.body:
        data += conn.send(h11.Data(data=response.body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    await stream.send_all(data)


async def _send_streamed(
    stream: trio.SocketStream,
    conn: h11.Connection,
    response: Response,
    pieces: AsyncGenerator[bytes, None],
) -> bool:
    """Send a streamed response; ``False`` when the connection is done for (reset, gone)."""
    headers = [(k, v) for k, v in response.headers if k.lower() != "content-length"]
    try:
        await stream.send_all(
            conn.send(h11.Response(status_code=response.status, headers=headers)) or b""
        )
        async for piece in pieces:
            try:
                await stream.send_all(conn.send(h11.Data(data=piece)) or b"")
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                with contextlib.suppress(ClientGone, StopAsyncIteration):
                    await pieces.athrow(ClientGone())
                log.debug("http_server.client_gone_mid_stream")
                return False
        await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
    except ConnectionReset:
        _abort(stream)
        return False
    finally:
        await pieces.aclose()
    return True


async def _try_send_error(
    stream: trio.SocketStream, conn: h11.Connection, exc: h11.ProtocolError
) -> None:
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    status = getattr(exc, "error_status_hint", 400)
    try:
        body = f"bad request: {exc}\n".encode()
        headers = [("content-type", "text/plain"), ("content-length", str(len(body)))]
        headers.append(("connection", "close"))
        data = conn.send(h11.Response(status_code=status, headers=headers)) or b""
        data += conn.send(h11.Data(data=body)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
        await stream.send_all(data)
    except (h11.ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass


def _abort(stream: trio.SocketStream) -> None:
    """Make the upcoming close send a TCP reset instead of a graceful FIN."""
    with contextlib.suppress(OSError):  # without SO_LINGER a plain close will do
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
