"""One HTTP/1.1 connection of :class:`~trio_dspy.http.transport.H11Transport`.

A :class:`Connection` is a trio stream and its h11 state machine: it sends
one request (:meth:`Connection.send_request`) and reads the response's h11
events (:meth:`Connection.next_event`), each wait bounded by a trio deadline
that raises the matching httpx timeout. Headers are checked here, once per
distinct value, rather than by h11 on every request: the same dozen header
lines go out with every call of a model, and h11's checks (a regular
expression per name and value) cost more than the rest of sending them.
"""

from __future__ import annotations

import math
import re
import select
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeGuard

import h11
import httpx
import trio

if TYPE_CHECKING:
    from .phases import AttemptScope

__all__ = [
    "Connection",
    "RawResponse",
    "ResponseTooLarge",
    "StaleConnection",
    "StreamedResponse",
    "check_length",
    "header_pairs",
    "valid_headers",
]

CHUNK = 65536
# Field names (tokens) and values (no NUL, no white space but single runs of
# spaces and tabs inside) exactly as h11 checks them: no CR or LF gets in.
_NAME = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
_VALUE = re.compile(rb"(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?")
# Header lines already checked (the ones every request of a pool sends).
_checked: set[tuple[bytes, bytes]] = set()
_CHECKED_MAX = 256


class ResponseTooLarge(Exception):
    """A response body is longer than the transport's ``max_response_bytes``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"the response body is larger than max_response_bytes={limit}")


class StaleConnection(Exception):
    """A reused connection died before any response byte: the server had closed it."""


def valid_headers(headers: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` as a list (the list itself when given one, not a copy), each
    name and value checked as h11 would check it.

    Raises:
        httpx.LocalProtocolError: a name or value is not allowed (a line break in a
            value, say); the message does not quote it (it may be a key).
    """
    # One set difference in C: what is left is usually the Content-Length line.
    for pair in set(headers).difference(_checked):
        name, value = pair
        if name == b"content-length" and value.isdigit():
            continue  # the line that differs per request, and all digits: no regex needed
        if _NAME.fullmatch(name) is None or _VALUE.fullmatch(value) is None:
            raise httpx.LocalProtocolError("invalid request header")
        if len(_checked) < _CHECKED_MAX and name != b"content-length":
            _checked.add(pair)
    return headers if isinstance(headers, list) else list(headers)


def header_pairs(head: h11.Response) -> list[tuple[bytes, bytes]]:
    """The head's header lines as (lower-case name, value) pairs. Raises nothing.

    Read from h11's own store of them: iterating ``h11.Headers`` goes through
    the sequence protocol, a Python-level index lookup per line.
    """
    full = getattr(head.headers, "_full_items", None)
    if full is None:  # an h11 that stores them otherwise
        return list(head.headers)
    return [(name, value) for _, name, value in full]


def check_length(headers: list[tuple[bytes, bytes]], limit: int | None) -> None:
    """Refuse at once a response whose ``Content-Length`` (in ``headers``, from
    :func:`header_pairs`) is over ``limit``."""
    if limit is None:
        return
    for name, value in headers:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise ResponseTooLarge(limit)


class Connection:
    """One HTTP/1.1 connection: a trio stream and its h11 state machine."""

    __slots__ = ("_poll", "h11", "idle_since", "stream")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT)
        self.idle_since = 0.0
        # The socket registered once for looks_alive's check (made at the first).
        self._poll: Any = None

    def socket(self) -> Any:
        """The socket under the stream (under TLS too), or ``None``."""
        stream: Any = self.stream
        while isinstance(stream, trio.SSLStream):
            stream = stream.transport_stream
        return getattr(stream, "socket", None)

    def looks_alive(self, now: float, expiry: float) -> bool:
        """Idle, not expired, and the server has not closed it (nothing to read)."""
        if now - self.idle_since > expiry:
            return False
        poll = self._poll
        if poll is None:
            sock = self.socket()
            if sock is None:
                return True
            if not hasattr(select, "poll"):  # Windows: trio's check, by select()
                return not sock.is_readable()
            # trio's is_readable makes and registers a poll object per check:
            # the same check, the object made once for the connection's life.
            poll = self._poll = select.poll()
            poll.register(sock.fileno(), select.POLLIN)
        return not poll.poll(0)

    def close_now(self) -> None:
        """Close a dead idle connection without awaiting (its socket is done anyway)."""
        sock = self.socket()
        if sock is not None:
            sock.close()

    async def aclose(self) -> None:
        """Close the connection, even inside a cancelled scope."""
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(self.stream)

    async def send_request(
        self,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        write_timeout: float | None,
        reused: bool,
        attempt: AttemptScope | None = None,
    ) -> None:
        """Send the request whole (``headers`` from :func:`valid_headers`).

        With ``attempt``, the write timeout moves its deadline instead of
        opening a scope of its own: when it fires, the attempt's scope is
        cancelled and :meth:`AttemptScope.timeout` is the ``WriteTimeout``.

        Raises:
            StaleConnection: ``reused`` and the server had closed the connection.
            httpx.WriteTimeout, httpx.WriteError: sending failed.
        """
        conn = self.h11
        # The headers were checked by valid_headers: h11 need not check them again.
        head = h11.Request(method=method, target=target, headers=headers, _parsed=True)
        data = conn.send(head) or b""
        if body:
            data += conn.send(h11.Data(data=body)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
        try:
            # A scope opened at the write's deadline (``attempt.writing``) is used
            # as it is, even where an enclosing deadline comes first.
            if (
                attempt is not None
                and write_timeout is not None
                and (attempt.writing or _may_fire_first(write_timeout))
            ):
                attempt.start(write_timeout, httpx.WriteTimeout)
                try:
                    await self.stream.send_all(data)
                finally:
                    attempt.end()
            elif not _may_fire_first(write_timeout):
                if attempt is not None:
                    attempt.end()  # no write timeout: nothing to keep open (moves nothing)
                await self.stream.send_all(data)
            else:
                with trio.move_on_after(write_timeout) as scope:
                    await self.stream.send_all(data)
                if scope.cancelled_caught:
                    raise httpx.WriteTimeout(f"timed out after {write_timeout:g}s")
        except (trio.BrokenResourceError, OSError) as exc:
            if reused:
                raise StaleConnection from exc
            raise httpx.WriteError(f"cannot send the request: {exc}") from exc

    def buffered_event(self) -> Any:
        """The response's next h11 event when it has arrived already (``None``
        when h11 needs more data): most of a body is read without waiting, and
        so without a coroutine per event. The head has arrived (``started``).

        Raises:
            httpx.RemoteProtocolError: as :meth:`next_event`.
        """
        try:
            event = self.h11.next_event()
        except h11.RemoteProtocolError as exc:
            raise httpx.RemoteProtocolError(f"invalid HTTP response: {exc}") from exc
        if event is h11.NEED_DATA:
            return None
        if type(event) is h11.ConnectionClosed:
            raise httpx.RemoteProtocolError("server closed the connection mid-response")
        return event

    async def next_event(
        self,
        first_wait: float | None,
        read_timeout: float | None,
        *,
        reused: bool,
        started: bool,
        attempt: AttemptScope | None = None,
    ) -> Any:
        """The next h11 event of the response, receiving as needed.

        ``first_wait`` bounds the first wait, ``read_timeout`` the later ones.
        ``started``: the response head has arrived. A reused connection that
        dies before that was most likely closed by the server as idle (some
        servers close after every response without saying so): that raises
        :class:`StaleConnection`, and the request is sent once more on a fresh
        connection. Anything later is an error for the caller's retry policy.
        With ``attempt``, a wait's timeout moves its deadline (as in
        :meth:`send_request`) instead of opening a scope.

        Raises:
            httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError: as httpx's.
            StaleConnection: see above.
        """
        conn = self.h11
        closed = False
        wait = first_wait
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                if closed:
                    raise httpx.RemoteProtocolError(
                        "server closed the connection mid-response"
                    ) from exc
                raise httpx.RemoteProtocolError(f"invalid HTTP response: {exc}") from exc
            if event is not h11.NEED_DATA:
                if type(event) is h11.ConnectionClosed:
                    where = "mid-response" if started else "without answering"
                    raise httpx.RemoteProtocolError(f"server closed the connection {where}")
                return event
            # The receive is written out here, not in a method of its own: a
            # request in flight waits in it, one frame fewer to resume and to walk.
            try:
                if not _may_fire_first(wait):
                    received = await self.stream.receive_some(CHUNK)
                elif attempt is not None:
                    attempt.start(wait, httpx.ReadTimeout)
                    try:
                        received = await self.stream.receive_some(CHUNK)
                    finally:
                        attempt.end()
                else:
                    with trio.move_on_after(wait) as scope:
                        received = await self.stream.receive_some(CHUNK)
                    if scope.cancelled_caught:
                        raise httpx.ReadTimeout(f"timed out after {wait:g}s")
            except (trio.BrokenResourceError, OSError) as exc:
                if reused and not started:
                    raise StaleConnection from exc
                raise httpx.ReadError(f"connection lost: {exc}") from exc
            if not received and not started:
                if reused:
                    raise StaleConnection
                raise httpx.RemoteProtocolError("server closed the connection without answering")
            wait = read_timeout
            closed = not received
            conn.receive_data(bytes(received))


def _may_fire_first(seconds: float | None) -> TypeGuard[float]:
    """Whether a timeout of ``seconds`` from now ends before the enclosing deadline.

    A scope that cannot fire before the one around it (the call's attempt
    timeout, say) would only cost its setting up: no scope is opened then.
    """
    if seconds is None or seconds == math.inf:
        return False
    return trio.current_time() + seconds < trio.current_effective_deadline()


class RawResponse:
    """A whole response as the transport read it: status, raw headers, body.

    A plain class with slots: one is made per call, and a frozen attrs
    class's ``object.__setattr__`` per field costs a microsecond of it.
    """

    __slots__ = ("content", "headers", "reason", "status")

    def __init__(
        self,
        status: int,
        headers: list[tuple[bytes, bytes]],
        content: bytes,
        reason: bytes = b"",
    ) -> None:
        self.status = status
        self.headers = headers
        self.content = content
        self.reason = reason

    def __repr__(self) -> str:
        return f"RawResponse(status={self.status!r}, {len(self.content)} bytes)"


class StreamedResponse:
    """A response whose body is read as it arrives (from ``H11Transport.stream``).

    ``status``, ``headers`` (raw pairs) and ``reason`` are known at once;
    :meth:`receive` returns the body piece by piece.
    """

    def __init__(
        self,
        conn: Connection,
        head: h11.Response,
        headers: list[tuple[bytes, bytes]],
        read_timeout: float | None,
        limit: int | None,
    ) -> None:
        self.status = head.status_code
        self.headers = headers  # the head's lines, as header_pairs(head) read them
        self.reason = head.reason
        self._limit = limit
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
            event = await self._conn.next_event(timeout, timeout, reused=False, started=True)
            if type(event) is h11.Data and event.data:
                self._size += len(event.data)
                if self._limit is not None and self._size > self._limit:
                    raise ResponseTooLarge(self._limit)
                return bytes(event.data)
            self.complete = type(event) is h11.EndOfMessage
        return b""
