"""An HTTP/1.1 transport for httpx on trio + h11, with a pool that scales.

Why not httpcore's pool: to place a request it scans every connection for
every queued request, so its cost grows with the square of the concurrency
(a burst of 1,024 concurrent calls spends seconds of CPU there alone), and
it has known issues where cancelled requests leave pool slots behind. LM
traffic is many concurrent, small JSON request/response pairs; this
transport serves exactly that:

* one TCP (or TLS) connection per in-flight request, reused through a LIFO
  stack of idle connections per origin: O(1) to check out and in;
* ``max_connections`` bounds the connections of the whole pool;
* responses are read whole before they are returned, or (:meth:`H11Transport.stream`)
  piece by piece as they arrive, for server-sent events;
* any exception or cancellation during a request closes its connection and
  frees its slot before it propagates: nothing is left half-used;
* an idle connection the server has closed is noticed before reuse; a
  request on a reused connection that dies before any response byte arrives
  is sent once more on a fresh connection (the server most likely closed it
  as idle; this resend does not count against the caller's retries). Any
  later loss is an error for the caller's retry policy.

httpx timeouts (``connect``, ``read``, ``write``, ``pool``) are honoured as
trio deadlines and raised as the matching httpx exceptions; the fast path
also takes ``first_byte`` (the wait for the response to begin, which for a
language model is the whole generation) apart from ``read`` (the longest
silence once the response has begun). ``max_response_bytes`` bounds each
response body as it is read: a longer one raises :class:`ResponseTooLarge`
without reading further.
"""

from __future__ import annotations

import math
import ssl
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import attrs
import h11
import httpx
import trio

__all__ = ["H11Transport", "RawResponse", "ResponseTooLarge", "StreamedResponse"]

Origin = tuple[str, str, int]
_CHUNK = 65536


class _Connection:
    """One HTTP/1.1 connection: a trio stream and its h11 state machine."""

    __slots__ = ("h11", "idle_since", "stream")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT)
        self.idle_since = 0.0

    def socket(self) -> Any:
        stream: Any = self.stream
        while isinstance(stream, trio.SSLStream):
            stream = stream.transport_stream
        return getattr(stream, "socket", None)

    def looks_alive(self, now: float, expiry: float) -> bool:
        """Idle, not expired, and the server has not closed it (nothing to read)."""
        if now - self.idle_since > expiry:
            return False
        sock = self.socket()
        return sock is None or not sock.is_readable()

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(self.stream)


@attrs.frozen
class RawResponse:
    """A whole response as the transport read it: status, raw headers, body."""

    status: int
    headers: list[tuple[bytes, bytes]]
    content: bytes
    reason: bytes = b""


class StreamedResponse:
    """A response whose body is read as it arrives (from :meth:`H11Transport.stream`).

    ``status``, ``headers`` (raw pairs) and ``reason`` are known at once;
    :meth:`receive` returns the body piece by piece.
    """

    def __init__(
        self,
        transport: H11Transport,
        conn: _Connection,
        head: h11.Response,
        read_timeout: float | None,
    ) -> None:
        self.status = head.status_code
        self.headers: list[tuple[bytes, bytes]] = list(head.headers)
        self.reason = head.reason
        self._limit = transport.max_response_bytes
        self._conn = conn
        self._read_timeout = read_timeout
        self._size = 0
        self.complete = False

    async def receive(self) -> bytes:
        """The next piece of the body (never empty), or ``b""`` once it has ended.

        Raises:
            httpx.ReadTimeout: silence longer than the ``read`` timeout.
            httpx.ReadError, httpx.RemoteProtocolError: the connection failed.
            ResponseTooLarge: the body passed ``max_response_bytes``.
        """
        timeout = self._read_timeout
        while not self.complete:
            event = await _next_event(self._conn, timeout, timeout, reused=False, started=True)
            if isinstance(event, h11.Data) and event.data:
                self._size += len(event.data)
                if self._limit is not None and self._size > self._limit:
                    raise ResponseTooLarge(self._limit)
                return bytes(event.data)
            self.complete = isinstance(event, h11.EndOfMessage)
        return b""


class ResponseTooLarge(Exception):
    """A response body is longer than the transport's ``max_response_bytes``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"the response body is larger than max_response_bytes={limit}")


class _StaleConnection(Exception):
    """A reused connection died before any response byte: the server had closed it."""


class H11Transport(httpx.AsyncBaseTransport):
    """httpx transport: HTTP/1.1 over trio and h11 with a scalable connection pool.

    Args:
        max_connections: the most open connections (``None``: unbounded).
        keepalive_expiry: seconds an idle connection is kept for reuse.
        ssl_context: for ``https`` (default: ``ssl.create_default_context()``).
        max_response_bytes: the longest response body read (``None``: no bound);
            a longer one raises :class:`ResponseTooLarge` and closes its connection.

    Create it inside the trio run that uses it; :meth:`aclose` closes the
    idle connections.
    """

    def __init__(
        self,
        *,
        max_connections: int | None = None,
        keepalive_expiry: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
        max_response_bytes: int | None = None,
    ) -> None:
        if max_connections is not None and max_connections < 1:
            raise ValueError(f"max_connections must be >= 1 or None, got {max_connections!r}")
        self.max_connections = max_connections
        self.keepalive_expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self.max_response_bytes = max_response_bytes
        self._idle: dict[Origin, list[_Connection]] = {}
        self._slots = trio.Semaphore(max_connections) if max_connections is not None else None
        self._closed = False

    # ------------------------------------------------------------------ pool
    @property
    def idle_connections(self) -> int:
        """How many connections wait in the pool for reuse."""
        return sum(len(stack) for stack in self._idle.values())

    @property
    def connections_in_use(self) -> int:
        """How many pool slots are taken right now (0 when unbounded)."""
        if self._slots is None or self.max_connections is None:
            return 0
        return self.max_connections - self._slots.value

    async def _connect(self, origin: Origin, connect_timeout: float | None) -> _Connection:
        scheme, host, port = origin
        try:
            with _deadline(connect_timeout, httpx.ConnectTimeout):
                if scheme == "https":
                    context = self._ssl_context or ssl.create_default_context()
                    stream: trio.abc.Stream = await trio.open_ssl_over_tcp_stream(
                        host, port, ssl_context=context, https_compatible=True
                    )
                else:
                    stream = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc}") from exc
        return _Connection(stream)

    def _checkout(self, origin: Origin) -> _Connection | None:
        stack = self._idle.get(origin)
        now = time.monotonic()
        while stack:
            conn = stack.pop()
            if conn.looks_alive(now, self.keepalive_expiry):
                return conn
            _close_now(conn)
        return None

    def _checkin(self, origin: Origin, conn: _Connection) -> None:
        if self._closed:
            _close_now(conn)
            return
        conn.idle_since = time.monotonic()
        self._idle.setdefault(origin, []).append(conn)

    # --------------------------------------------------------------- requests
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and return the whole response (the httpx transport API).

        Raises:
            httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout,
            httpx.WriteTimeout, httpx.PoolTimeout, httpx.ReadError,
            httpx.WriteError, httpx.RemoteProtocolError: as httpx's own transport.
        """
        body = await request.aread()
        raw = await self.request(
            request.method.encode("ascii"),
            request.url,
            request.headers.raw,
            body,
            request.extensions.get("timeout", {}),
        )
        return httpx.Response(
            status_code=raw.status,
            headers=raw.headers,
            content=raw.content,
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": raw.reason},
        )

    async def request(
        self,
        method: bytes,
        url: httpx.URL,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
        timeouts: Mapping[str, float | None] | None = None,
    ) -> RawResponse:
        """Send one request and read the whole response, without httpx's models.

        This is the fast path the LM clients use. ``headers`` must include
        ``Host`` and, with a body, ``Content-Length``. ``timeouts`` has the keys
        of ``httpx.Timeout`` (``connect``, ``read``, ``write``, ``pool``) and
        ``first_byte``: the wait for the response to begin (``read`` when
        absent, ``None`` for no limit); ``read`` then bounds each silence.

        Raises:
            RuntimeError: the transport is closed.
            httpx.TransportError: as :meth:`handle_async_request`.
            ResponseTooLarge: the body is longer than ``max_response_bytes``.
        """
        origin, head = self._prepare(method, url, headers)
        timeouts = timeouts or {}
        async with self._slot(timeouts):
            conn, response = await self._start(origin, head, body, timeouts)
            try:
                content = await self._read_body(conn, timeouts.get("read"))
            except BaseException:
                await conn.aclose()  # mid-response: never pooled
                raise
            await self._finish(origin, conn)
            return RawResponse(
                response.status_code, list(response.headers), content, response.reason
            )

    @asynccontextmanager
    async def stream(
        self,
        method: bytes,
        url: httpx.URL,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
        timeouts: Mapping[str, float | None] | None = None,
    ) -> AsyncIterator[StreamedResponse]:
        """Send one request and yield its response once the head has arrived.

        The body is read piece by piece with :meth:`StreamedResponse.receive`
        inside the ``async with``; ``read`` bounds each silence and
        ``max_response_bytes`` the whole body. Leaving the block before the
        body ends (or with an exception, or cancelled) closes the connection
        instead of pooling it; the pool slot is freed either way. Arguments
        and exceptions are those of :meth:`request`.
        """
        origin, head = self._prepare(method, url, headers)
        timeouts = timeouts or {}
        async with self._slot(timeouts):
            conn, response = await self._start(origin, head, body, timeouts)
            streamed = StreamedResponse(self, conn, response, timeouts.get("read"))
            try:
                yield streamed
            except BaseException:
                await conn.aclose()
                raise
            if streamed.complete:
                await self._finish(origin, conn)
            else:
                await conn.aclose()  # left early: the rest of the body is not wanted

    def _prepare(
        self, method: bytes, url: httpx.URL, headers: Sequence[tuple[bytes, bytes]]
    ) -> tuple[Origin, h11.Request]:
        if self._closed:
            raise RuntimeError("the transport is closed")
        scheme = url.scheme
        origin: Origin = (scheme, url.host, url.port or (443 if scheme == "https" else 80))
        return origin, h11.Request(method=method, target=url.raw_path, headers=list(headers))

    @asynccontextmanager
    async def _slot(self, timeouts: Mapping[str, Any]) -> AsyncIterator[None]:
        if self._slots is None:
            yield
            return
        with _deadline(timeouts.get("pool"), httpx.PoolTimeout):
            await self._slots.acquire()
        try:
            yield
        finally:
            self._slots.release()

    async def _start(
        self, origin: Origin, head: h11.Request, body: bytes, timeouts: Mapping[str, Any]
    ) -> tuple[_Connection, h11.Response]:
        """Send the request and read the response head: the connection and the head."""
        conn = self._checkout(origin)
        if conn is not None:
            try:
                return conn, await self._begin(conn, head, body, timeouts, reused=True)
            except _StaleConnection:
                pass  # the server dropped the idle connection: try once on a fresh one
        conn = await self._connect(origin, timeouts.get("connect"))
        try:
            return conn, await self._begin(conn, head, body, timeouts, reused=False)
        except _StaleConnection as exc:
            raise httpx.RemoteProtocolError(
                "server closed the connection without answering"
            ) from exc

    async def _begin(
        self,
        conn: _Connection,
        head: h11.Request,
        body: bytes,
        timeouts: Mapping[str, Any],
        *,
        reused: bool,
    ) -> h11.Response:
        try:
            await self._send_request(conn, head, body, timeouts, reused)
            return await self._read_head(conn, timeouts, reused)
        except BaseException:
            # Cancelled or failed mid-request: the connection is in an unknown
            # state, so it is closed, never pooled.
            await conn.aclose()
            raise

    async def _finish(self, origin: Origin, conn: _Connection) -> None:
        """Pool a connection whose exchange is complete; close any other."""
        if conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE:
            conn.h11.start_next_cycle()
            self._checkin(origin, conn)
        else:
            await conn.aclose()

    async def _send_request(
        self,
        conn: _Connection,
        head: h11.Request,
        body: bytes,
        timeouts: Mapping[str, Any],
        reused: bool,
    ) -> None:
        try:
            parts = [conn.h11.send(head)]
        except h11.LocalProtocolError:
            # h11's message quotes the offending header value (maybe a key).
            raise httpx.LocalProtocolError("invalid request header") from None
        if body:
            parts.append(conn.h11.send(h11.Data(data=body)))
        parts.append(conn.h11.send(h11.EndOfMessage()))
        data = b"".join(p for p in parts if p)
        try:
            with _deadline(timeouts.get("write"), httpx.WriteTimeout):
                await conn.stream.send_all(data)
        except (trio.BrokenResourceError, OSError) as exc:
            if reused:
                raise _StaleConnection from exc
            raise httpx.WriteError(f"cannot send the request: {exc}") from exc

    async def _read_head(
        self, conn: _Connection, timeouts: Mapping[str, Any], reused: bool
    ) -> h11.Response:
        # Until the first byte the wait is the server's thinking time
        # (``first_byte``); after it, ``read`` bounds each silence.
        read_timeout = timeouts.get("read")
        timeout = timeouts.get("first_byte", read_timeout)
        while True:
            event = await _next_event(conn, timeout, read_timeout, reused=reused, started=False)
            timeout = read_timeout
            if isinstance(event, h11.Response):
                _check_length(event, self.max_response_bytes)
                return event
            # h11.InformationalResponse (1xx): keep reading.

    async def _read_body(self, conn: _Connection, read_timeout: float | None) -> bytes:
        limit = self.max_response_bytes
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await _next_event(conn, read_timeout, read_timeout, reused=False, started=True)
            if isinstance(event, h11.Data):
                size += len(event.data)
                if limit is not None and size > limit:
                    raise ResponseTooLarge(limit)
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)

    async def aclose(self) -> None:
        """Close every idle connection; later requests raise."""
        self._closed = True
        idle, self._idle = self._idle, {}
        for stack in idle.values():
            for conn in stack:
                await conn.aclose()


async def _next_event(
    conn: _Connection,
    first_wait: float | None,
    read_timeout: float | None,
    *,
    reused: bool,
    started: bool,
) -> Any:
    """The next h11 event of the response, receiving as needed.

    ``first_wait`` bounds the first wait, ``read_timeout`` the later ones.
    ``started``: the response head has arrived. A reused connection that
    dies before that was most likely closed by the server as idle (some
    servers close after every response without saying so): that raises
    :class:`_StaleConnection`, and the request is sent once more on a fresh
    connection. Anything later is an error for the caller's retry policy.
    """
    closed = False
    wait = first_wait
    while True:
        try:
            event = conn.h11.next_event()
        except h11.RemoteProtocolError as exc:
            if closed:
                raise httpx.RemoteProtocolError(
                    "server closed the connection mid-response"
                ) from exc
            raise httpx.RemoteProtocolError(f"invalid HTTP response: {exc}") from exc
        if event is not h11.NEED_DATA:
            if isinstance(event, h11.ConnectionClosed):
                where = "mid-response" if started else "without answering"
                raise httpx.RemoteProtocolError(f"server closed the connection {where}")
            return event
        try:
            with _deadline(wait, httpx.ReadTimeout):
                received = await conn.stream.receive_some(_CHUNK)
        except (trio.BrokenResourceError, OSError) as exc:
            if reused and not started:
                raise _StaleConnection from exc
            raise httpx.ReadError(f"connection lost: {exc}") from exc
        if not received and not started:
            if reused:
                raise _StaleConnection
            raise httpx.RemoteProtocolError("server closed the connection without answering")
        wait = read_timeout
        closed = not received
        conn.h11.receive_data(bytes(received))


def _check_length(response: h11.Response, limit: int | None) -> None:
    """Refuse at once a response whose ``Content-Length`` is over ``limit``."""
    if limit is None:
        return
    for name, value in response.headers:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise ResponseTooLarge(limit)


def _close_now(conn: _Connection) -> None:
    """Close a dead idle connection without awaiting (its socket is done anyway)."""
    sock = conn.socket()
    if sock is not None:
        sock.close()


@contextmanager
def _deadline(seconds: float | None, error: type[httpx.TimeoutException]) -> Iterator[None]:
    if seconds is None or seconds == math.inf:
        yield
        return
    try:
        with trio.fail_after(seconds):
            yield
    except trio.TooSlowError:
        raise error(f"timed out after {seconds:g}s") from None
