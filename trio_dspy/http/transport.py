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
* responses are read whole before they are returned (no streaming);
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
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import attrs
import h11
import httpx
import trio

__all__ = ["H11Transport", "RawResponse", "ResponseTooLarge"]

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
        if self._closed:
            raise RuntimeError("the transport is closed")
        timeouts = timeouts or {}
        scheme = url.scheme
        origin: Origin = (scheme, url.host, url.port or (443 if scheme == "https" else 80))
        head = h11.Request(method=method, target=url.raw_path, headers=list(headers))
        if self._slots is None:
            return await self._with_slot(origin, head, body, timeouts)
        with _deadline(timeouts.get("pool"), httpx.PoolTimeout):
            await self._slots.acquire()
        try:
            return await self._with_slot(origin, head, body, timeouts)
        finally:
            self._slots.release()

    async def _with_slot(
        self, origin: Origin, head: h11.Request, body: bytes, timeouts: Mapping[str, Any]
    ) -> RawResponse:
        conn = self._checkout(origin)
        if conn is not None:
            try:
                return await self._exchange(origin, conn, head, body, timeouts, reused=True)
            except _StaleConnection:
                pass  # the server dropped the idle connection: try once on a fresh one
        conn = await self._connect(origin, timeouts.get("connect"))
        try:
            return await self._exchange(origin, conn, head, body, timeouts, reused=False)
        except _StaleConnection as exc:
            raise httpx.RemoteProtocolError(
                "server closed the connection without answering"
            ) from exc

    async def _exchange(
        self,
        origin: Origin,
        conn: _Connection,
        head: h11.Request,
        body: bytes,
        timeouts: Mapping[str, Any],
        *,
        reused: bool,
    ) -> RawResponse:
        try:
            response, content = await self._round_trip(conn, head, body, timeouts, reused)
        except BaseException:
            # Cancelled or failed mid-request: the connection is in an unknown
            # state, so it is closed, never pooled.
            await conn.aclose()
            raise
        if conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE:
            conn.h11.start_next_cycle()
            self._checkin(origin, conn)
        else:
            await conn.aclose()
        return RawResponse(response.status_code, list(response.headers), content, response.reason)

    async def _round_trip(
        self,
        conn: _Connection,
        head: h11.Request,
        body: bytes,
        timeouts: Mapping[str, Any],
        reused: bool,
    ) -> tuple[h11.Response, bytes]:
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

        try:
            return await self._read_response(conn, timeouts, reused)
        except h11.RemoteProtocolError as exc:
            raise httpx.RemoteProtocolError(f"invalid HTTP response: {exc}") from exc

    async def _read_response(
        self, conn: _Connection, timeouts: Mapping[str, Any], reused: bool
    ) -> tuple[h11.Response, bytes]:
        # A reused connection that dies before a single response byte arrives
        # was most likely closed by the server as idle (some servers close
        # after every response without saying so): it is sent once more on a
        # fresh connection. Anything later is an error for the caller's
        # retry policy.
        # Until the first byte the wait is the server's thinking time
        # (``first_byte``); after it, ``read`` bounds each silence.
        read_timeout = timeouts.get("read")
        timeout = timeouts.get("first_byte", read_timeout)
        limit = self.max_response_bytes
        response: h11.Response | None = None
        chunks: list[bytes] = []
        size = 0
        closed = False
        while True:
            try:
                event = conn.h11.next_event()
            except h11.RemoteProtocolError as exc:
                if closed:
                    raise httpx.RemoteProtocolError(
                        "server closed the connection mid-response"
                    ) from exc
                raise
            if event is h11.NEED_DATA:
                try:
                    with _deadline(timeout, httpx.ReadTimeout):
                        received = await conn.stream.receive_some(_CHUNK)
                except (trio.BrokenResourceError, OSError) as exc:
                    if reused and response is None:
                        raise _StaleConnection from exc
                    raise httpx.ReadError(f"connection lost: {exc}") from exc
                if not received and response is None:
                    if reused:
                        raise _StaleConnection
                    raise httpx.RemoteProtocolError(
                        "server closed the connection without answering"
                    )
                timeout = read_timeout
                closed = not received
                conn.h11.receive_data(bytes(received))
                continue
            if isinstance(event, h11.Response):
                response = event
                _check_length(event, limit)
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if limit is not None and size > limit:
                    raise ResponseTooLarge(limit)
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                assert response is not None
                return response, b"".join(chunks)
            elif isinstance(event, h11.ConnectionClosed):
                where = "without answering" if response is None else "mid-response"
                raise httpx.RemoteProtocolError(f"server closed the connection {where}")
            # h11.InformationalResponse (1xx): keep reading.

    async def aclose(self) -> None:
        """Close every idle connection; later requests raise."""
        self._closed = True
        idle, self._idle = self._idle, {}
        for stack in idle.values():
            for conn in stack:
                await conn.aclose()


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
