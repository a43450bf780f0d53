"""An HTTP/1.1 transport for httpx on trio + h11, with an O(1) keep-alive pool.

httpcore's pool rescans every connection on each request and release
(quadratic in the number of connections, plus a ``poll`` system call per
idle connection), which turns a burst of a thousand concurrent requests into
a minute of CPU. :class:`PoolTransport` keeps idle connections on a stack
per origin and bounds busy ones with a semaphore, so taking and returning a
connection costs the same whether 2 or 2,000 are open.

Each response is read completely before it is handed to httpx (model
responses are small), so a connection goes back to the pool — or is closed —
before ``handle_async_request`` returns. Cancellation at any point closes
the connection in use and frees its slot: nothing is shielded, nothing
leaks. Timeouts are the caller's trio deadlines.
"""

from __future__ import annotations

import collections
import ssl

import h11
import httpx
import trio

__all__ = ["PoolTransport"]

_READ_SIZE = 65536
Origin = tuple[str, str, int]


class _Connection:
    """One HTTP/1.1 connection: a trio stream plus its h11 state machine."""

    __slots__ = ("h11", "idle_since", "received", "socket", "stream")

    def __init__(self, stream: trio.abc.Stream, socket: trio.socket.SocketType) -> None:
        self.stream = stream
        self.socket = socket
        self.h11 = h11.Connection(h11.CLIENT)
        self.idle_since = 0.0
        self.received = False  # any byte of the current response yet?

    def stale(self) -> bool:
        """Whether an idle connection was closed (or sent garbage) by the server."""
        try:
            return self.socket.is_readable()
        except OSError:
            return True

    async def roundtrip(
        self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> tuple[h11.Response, bytes]:
        conn = self.h11
        self.received = False
        data = conn.send(h11.Request(method=method, target=target, headers=headers)) or b""
        if body:
            data += conn.send(h11.Data(data=body)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
        await self.stream.send_all(data)
        response: h11.Response | None = None
        chunks: list[bytes] = []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                chunk = bytes(await self.stream.receive_some(_READ_SIZE))
                self.received = self.received or bool(chunk)
                conn.receive_data(chunk)
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise h11.RemoteProtocolError("server closed the connection mid-response")
            # InformationalResponse (100 Continue): keep reading
        assert response is not None
        return response, b"".join(chunks)

    def reusable(self) -> bool:
        """After a complete exchange: can the next request use this connection?"""
        conn = self.h11
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            return True
        return False


class PoolTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over trio with a keep-alive pool whose cost does not grow with its size.

    Args:
        max_connections: connections in use at once (further requests wait,
            cancellably); ``None`` means unbounded.
        max_idle: idle connections kept per origin for reuse.
        keepalive_expiry: seconds an idle connection may be reused.
        ssl_context: for ``https``; default: httpx's (honours ``SSL_CERT_FILE``).

    Bound to the trio run that first uses it. Raises httpx's exceptions
    (``ConnectError``, ``ReadError``, ``WriteError``, ``RemoteProtocolError``).
    """

    def __init__(
        self,
        *,
        max_connections: int | None = None,
        max_idle: int = 1024,
        keepalive_expiry: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._slots = trio.Semaphore(max_connections) if max_connections else None
        self._max_idle = max_idle
        self._expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._idle: dict[Origin, collections.deque[_Connection]] = {}
        self._closed = False

    # ------------------------------------------------------------ connections
    def _checkout(self, origin: Origin) -> tuple[_Connection | None, list[_Connection]]:
        """An idle connection for ``origin`` (newest first) and the stale ones to close."""
        stack = self._idle.get(origin)
        dead: list[_Connection] = []
        if not stack:
            return None, dead
        oldest_allowed = trio.current_time() - self._expiry
        while stack:
            conn = stack.pop()
            if conn.idle_since >= oldest_allowed and not conn.stale():
                return conn, dead
            dead.append(conn)
        return None, dead

    def _checkin(self, origin: Origin, conn: _Connection) -> _Connection | None:
        """Return ``conn`` to the pool; give back a connection to close, if any."""
        if self._closed:
            return conn
        conn.idle_since = trio.current_time()
        stack = self._idle.get(origin)
        if stack is None:
            stack = self._idle[origin] = collections.deque()
        stack.append(conn)
        # Drop the oldest idle connection when over the cap or expired
        # (one per checkin keeps this O(1) and still drains old ones).
        if len(stack) > self._max_idle or stack[0].idle_since < conn.idle_since - self._expiry:
            return stack.popleft()
        return None

    async def _connect(self, origin: Origin) -> _Connection:
        scheme, host, port = origin
        try:
            tcp = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            raise httpx.ConnectError(_connect_failure(exc)) from exc
        stream: trio.abc.Stream = tcp
        if scheme == "https":
            if self._ssl_context is None:
                self._ssl_context = httpx.create_ssl_context()
            tls = trio.SSLStream(
                tcp, self._ssl_context, server_hostname=host, https_compatible=True
            )
            try:
                await tls.do_handshake()
            except BaseException as exc:
                await trio.aclose_forcefully(tcp)
                if isinstance(exc, trio.BrokenResourceError | OSError):
                    raise httpx.ConnectError(f"TLS handshake with {host} failed: {exc}") from exc
                raise
            stream = tls
        return _Connection(stream, tcp.socket)

    # ------------------------------------------------------------ httpx interface
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and return the complete response.

        Raises:
            httpx.ConnectError: the connection could not be opened.
            httpx.ReadError, httpx.WriteError: the connection broke.
            httpx.RemoteProtocolError: the server broke HTTP/1.1 or hung up.
            RuntimeError: the transport was closed.
        """
        if self._closed:
            raise RuntimeError("this transport is closed")
        url = request.url
        scheme = url.scheme
        origin = (scheme, url.host, url.port or (443 if scheme == "https" else 80))
        body = await request.aread()
        method = request.method.encode()
        target = url.raw_path
        headers = request.headers.raw
        if self._slots is not None:
            await self._slots.acquire()
        try:
            while True:
                conn, dead = self._checkout(origin)
                for old in dead:
                    await trio.aclose_forcefully(old.stream)
                reused = conn is not None
                if conn is None:
                    conn = await self._connect(origin)
                try:
                    response, content = await conn.roundtrip(method, target, headers, body)
                except BaseException as exc:
                    await trio.aclose_forcefully(conn.stream)
                    if reused and not conn.received and _connection_lost(exc):
                        continue  # the server dropped an idle connection: use a fresh one
                    mapped = _as_httpx(exc)
                    if mapped is exc:
                        raise
                    raise mapped from exc
                break
            if conn.reusable():
                to_close = self._checkin(origin, conn)
                if to_close is not None:
                    await trio.aclose_forcefully(to_close.stream)
            else:
                await trio.aclose_forcefully(conn.stream)
        finally:
            if self._slots is not None:
                self._slots.release()
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            content=content,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": response.reason},
        )

    async def aclose(self) -> None:
        """Close every idle connection; requests after this raise ``RuntimeError``."""
        self._closed = True
        idle = [conn for stack in self._idle.values() for conn in stack]
        self._idle.clear()
        for conn in idle:
            await trio.aclose_forcefully(conn.stream)


def _connect_failure(exc: OSError) -> str:
    """``exc``'s message plus the first underlying reason (trio groups them)."""
    cause = exc.__cause__
    if isinstance(cause, BaseExceptionGroup) and cause.exceptions:
        return f"{exc} ({cause.exceptions[0]})"
    return str(exc)


def _connection_lost(exc: BaseException) -> bool:
    return isinstance(
        exc, trio.BrokenResourceError | trio.ClosedResourceError | OSError | h11.RemoteProtocolError
    )


def _as_httpx(exc: BaseException) -> BaseException:
    if isinstance(exc, h11.RemoteProtocolError):
        return httpx.RemoteProtocolError(str(exc) or "the server broke the HTTP/1.1 protocol")
    if isinstance(exc, h11.LocalProtocolError):
        return httpx.LocalProtocolError(str(exc))
    if isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError | OSError):
        cause = exc.__cause__ or exc
        return httpx.ReadError(f"connection lost: {cause!r}")
    return exc
