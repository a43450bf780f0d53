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
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

import h11
import httpx
import trio

from .connection import (
    Connection,
    RawResponse,
    ResponseTooLarge,
    StaleConnection,
    StreamedResponse,
    check_length,
    header_pairs,
    valid_headers,
)

if TYPE_CHECKING:
    from .phases import AttemptScope

__all__ = ["H11Transport", "RawResponse", "ResponseTooLarge", "StreamedResponse"]

Origin = tuple[str, str, int]


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
        self._idle: dict[Origin, list[Connection]] = {}
        self._slots = trio.Semaphore(max_connections) if max_connections is not None else None
        self._closed = False
        # The last URL's origin and target: an LM posts to one URL, and reading
        # them from an httpx.URL costs a property call each.
        self._last: tuple[httpx.URL | None, Origin, bytes] = (None, ("", "", 0), b"")

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

    async def _connect(self, origin: Origin, connect_timeout: float | None) -> Connection:
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
        return Connection(stream)

    def _checkout(self, origin: Origin) -> Connection | None:
        stack = self._idle.get(origin)
        if not stack:
            return None
        now = time.monotonic()
        while stack:
            conn = stack.pop()
            if conn.looks_alive(now, self.keepalive_expiry):
                return conn
            conn.close_now()
        return None

    def _checkin(self, origin: Origin, conn: Connection) -> None:
        if self._closed:
            conn.close_now()
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

    def request(
        self,
        method: bytes,
        url: httpx.URL,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
        timeouts: Mapping[str, float | None] | None = None,
        attempt: AttemptScope | None = None,
    ) -> Coroutine[Any, Any, RawResponse]:
        """Send one request and read the whole response, without httpx's models (to await).

        This is the fast path the LM clients use. ``headers`` must include
        ``Host`` and, with a body, ``Content-Length``. ``timeouts`` has the keys
        of ``httpx.Timeout`` (``connect``, ``read``, ``write``, ``pool``) and
        ``first_byte``: the wait for the response to begin (``read`` when
        absent, ``None`` for no limit); ``read`` then bounds each silence.
        ``attempt``: the caller's deadline scope, whose deadline the ``write``
        and ``read`` timeouts move rather than open scopes of their own
        (:mod:`.phases`); when one of them fires, that scope is cancelled.

        Raises:
            RuntimeError: the transport is closed.
            httpx.TransportError: as :meth:`handle_async_request`.
            ResponseTooLarge: the body is longer than ``max_response_bytes``.
        """
        origin, target, checked = self._prepare(method, url, headers)
        timeouts = timeouts or {}
        if self._slots is None:  # no slot to hold: a request in flight is one frame
            return self._exchange(origin, method, target, checked, body, timeouts, attempt, True)
        return self._in_slot(origin, method, target, checked, body, timeouts, attempt)

    async def _in_slot(
        self,
        origin: Origin,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        timeouts: Mapping[str, Any],
        attempt: AttemptScope | None,
    ) -> RawResponse:
        """:meth:`request` holding a pool slot (``max_connections``) throughout."""
        assert self._slots is not None
        if attempt is not None:
            attempt.end()  # waiting for a slot is no part of sending
        await self._acquire(timeouts)
        try:
            raw: RawResponse = await self._exchange(
                origin, method, target, headers, body, timeouts, attempt, True
            )
            return raw
        finally:
            self._slots.release()

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
        origin, target, checked = self._prepare(method, url, headers)
        timeouts = timeouts or {}
        if self._slots is not None:
            await self._acquire(timeouts)
        try:
            conn, response, pairs = await self._exchange(
                origin, method, target, checked, body, timeouts, None, False
            )
            read_timeout = timeouts.get("read")
            streamed = StreamedResponse(
                conn, response, pairs, read_timeout, self.max_response_bytes
            )
            try:
                yield streamed
            except BaseException:
                await conn.aclose()
                raise
            if streamed.complete:
                await self._finish(origin, conn)
            else:
                await conn.aclose()  # left early: the rest of the body is not wanted
        finally:
            if self._slots is not None:
                self._slots.release()

    def _prepare(
        self, method: bytes, url: httpx.URL, headers: Sequence[tuple[bytes, bytes]]
    ) -> tuple[Origin, bytes, list[tuple[bytes, bytes]]]:
        """The request's origin, target and checked headers.

        Raises:
            RuntimeError: the transport is closed.
            httpx.LocalProtocolError: a header is not allowed.
        """
        if self._closed:
            raise RuntimeError("the transport is closed")
        last_url, origin, target = self._last
        if url is not last_url:  # httpx.URL is immutable: the same object, the same parts
            scheme = url.scheme
            origin = (scheme, url.host, url.port or (443 if scheme == "https" else 80))
            target = url.raw_path
            self._last = (url, origin, target)
        return origin, target, valid_headers(headers)

    async def _acquire(self, timeouts: Mapping[str, Any]) -> None:
        """Take a pool slot, waiting at most the ``pool`` timeout."""
        assert self._slots is not None
        with _deadline(timeouts.get("pool"), httpx.PoolTimeout):
            await self._slots.acquire()

    async def _exchange(
        self,
        origin: Origin,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        timeouts: Mapping[str, Any],
        attempt: AttemptScope | None,
        whole: bool,
    ) -> Any:
        """Send the request and read the response head; then, when ``whole``, the
        body too, the connection pooled (or closed), and return the
        :class:`RawResponse`; else the connection, the head and its header lines
        (:func:`header_pairs`), for :meth:`stream` to read the body from.

        One coroutine for sending, the head and the body, on a pooled connection
        and (when the server had dropped it) once more on a fresh one: a request
        in flight holds one frame for the scheduler to resume and the garbage
        collector to walk.
        """
        conn = self._checkout(origin)
        reused = conn is not None
        read_timeout = timeouts.get("read")
        while True:
            if conn is None:
                if attempt is not None:
                    attempt.end()  # connecting is no part of sending
                conn = await self._connect(origin, timeouts.get("connect"))
            try:
                await conn.send_request(
                    method, target, headers, body, timeouts.get("write"), reused, attempt
                )
                # Until the first byte the wait is the server's thinking time
                # (``first_byte``); after it, ``read`` bounds each silence.
                wait = timeouts.get("first_byte", read_timeout)
                while True:
                    event = await conn.next_event(
                        wait, read_timeout, reused=reused, started=False, attempt=attempt
                    )
                    wait = read_timeout
                    if type(event) is h11.Response:
                        pairs = header_pairs(event)
                        check_length(pairs, self.max_response_bytes)
                        if not whole:
                            return conn, event, pairs
                        # Failing mid-response (below), the connection is closed.
                        content = await self._read_body(conn, read_timeout, attempt)
                        if not self._pooled(origin, conn):
                            await conn.aclose()
                        return RawResponse(event.status_code, pairs, content, event.reason)
                    # h11.InformationalResponse (1xx): keep reading.
            except StaleConnection as exc:
                await conn.aclose()
                if not reused:
                    raise httpx.RemoteProtocolError(
                        "server closed the connection without answering"
                    ) from exc
                conn, reused = (
                    None,
                    False,
                )  # the server dropped the idle connection: try once on a fresh one
            except BaseException:
                # Cancelled or failed mid-request: the connection is in an unknown
                # state, so it is closed, never pooled.
                await conn.aclose()
                raise

    async def _finish(self, origin: Origin, conn: Connection) -> None:
        """Pool a connection whose exchange is complete; close any other."""
        if not self._pooled(origin, conn):
            await conn.aclose()

    def _pooled(self, origin: Origin, conn: Connection) -> bool:
        """Pool ``conn`` if its exchange is complete (then ``True``), without a
        coroutine: what every request does last. Raises nothing."""
        state = conn.h11
        if state.our_state is h11.DONE and state.their_state is h11.DONE:
            state.start_next_cycle()
            self._checkin(origin, conn)
            return True
        return False

    async def _read_body(
        self, conn: Connection, read_timeout: float | None, attempt: AttemptScope | None = None
    ) -> bytes:
        limit = self.max_response_bytes
        chunks: list[bytes] = []
        size = 0
        while True:
            event = conn.buffered_event()
            if event is None:
                event = await conn.next_event(
                    read_timeout, read_timeout, reused=False, started=True, attempt=attempt
                )
            kind = type(event)
            if kind is h11.Data:
                size += len(event.data)
                if limit is not None and size > limit:
                    raise ResponseTooLarge(limit)
                chunks.append(bytes(event.data))
            elif kind is h11.EndOfMessage:
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def aclose(self) -> None:
        """Close every idle connection; later requests raise."""
        self._closed = True
        idle, self._idle = self._idle, {}
        for stack in idle.values():
            for conn in stack:
                await conn.aclose()


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
