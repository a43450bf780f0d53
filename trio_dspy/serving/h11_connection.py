"""One HTTP/1.1 connection of the lean server (:mod:`.h11_server`): h11 parses, trio moves bytes.

Requests on a connection are answered one after another (pipelined ones
wait in h11's buffer). One task per connection reads the socket into h11
while fewer than ``BUFFER`` bytes wait unparsed (so an app that refuses a
body with 413 never has it read whole, and a slow reader slows the client
down), and wakes whoever waits for bytes. For each request the ASGI app gets
an ``http`` scope, a ``receive`` that gives the body as it arrives and then
``http.disconnect`` when the client hangs up or the answer has been sent,
and a ``send`` that writes each body message at once (a server-sent event is
never held back). Waiting for the hang-up is waiting for that reader, so a
request costs no cancelled read of its own.

An app that would rather be told than wait finds ``scope["extensions"]
[HANG_UP]``: a function it gives a callback (no arguments) that the server
calls, once, when the client hangs up before the answer is complete (its
connection closed or broken, a write to it failed); at once if it already
has. It holds for the current request only. The serving app cancels the
request's scope with it, instead of running a task per request that waits
for ``http.disconnect``.

Limits: the request head must fit in ``max_header_bytes`` (else 431) and
arrive within ``header_timeout`` seconds (else 408); a keep-alive connection
idle for ``keep_alive_timeout`` seconds is closed. A body that stops arriving
for ``header_timeout`` seconds while the app waits for it is answered 408, a
malformed one (bad chunk framing) 400, if the app has not begun its answer
(one cut short by the client's close gets nothing: nobody would read it).
The app is told ``http.disconnect`` (the request is over), what it sends
after is dropped, and the connection closes.
"""

from __future__ import annotations

import http
import math
from collections.abc import Callable
from typing import Any

import h11
import trio

from ..logs import get_logger
from .asgi import HANG_UP, Message, Scope
from .h11_heads import address as _address
from .h11_heads import date_header as _date_header
from .h11_heads import head_size as _head_size
from .h11_heads import path as _path
from .h11_limits import Limits, Shared

__all__ = ["HANG_UP", "Limits", "Shared", "serve_connection"]

log = get_logger(__name__)

#: Bytes asked of the socket per read.
READ_SIZE = 65536
#: Seconds a closing connection keeps reading (and dropping) what the client
#: still sends, so that the kernel does not answer it with a reset that could
#: destroy the response before the client has read it.
LINGER = 1.0
#: Bytes read ahead of what h11 has been asked to parse (a body the app has
#: not read yet, a next pipelined request); past it the socket is left
#: unread, and a hang-up unseen, until they are parsed.
BUFFER = 65536

_ASGI = {"version": "3.0", "spec_version": "2.3"}

_VERSIONS = {b"1.1": "1.1", b"1.0": "1.0"}
_METHODS = {m.encode(): m for m in ("GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH")}
_REASONS = {s.value: s.phrase.encode("latin-1") for s in http.HTTPStatus}
_END = h11.EndOfMessage()
_CONTINUE = h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
_CLOSE = (b"connection", b"close")
_LENGTH = b"content-length"
_CLOSED = (trio.BrokenResourceError, trio.ClosedResourceError)


async def serve_connection(shared: Shared, stream: trio.SocketStream) -> None:
    """Answer the requests of one accepted connection until it closes; never raises
    for what the client does (a broken connection just ends it)."""
    try:
        connection = _Connection(shared, stream)
    except OSError:  # reset before it could be served: nothing to answer
        await stream.aclose()
        return
    try:
        await connection.run()
    except Exception as exc:
        # One connection's failure must not stop the server and its others.
        log.error("serving.connection_failed", error=type(exc).__name__, exc_info=exc)


class _Connection:
    """One connection's requests, answered in turn; one request's state at a time."""

    def __init__(self, shared: Shared, stream: trio.SocketStream) -> None:
        self.shared = shared
        self.stream = stream
        self.conn = h11.Connection(
            h11.SERVER, max_incomplete_event_size=shared.limits.max_header_bytes
        )
        sock = stream.socket
        self.client = _address(sock.getpeername())
        self.server = _address(sock.getsockname())
        self.receive, self.send = self._receive, self._send  # bound once, not per request
        self.linger = False  # the client may still be sending: drain before closing
        self.idle_scope = trio.CancelScope()
        self.arrived = trio.lowlevel.ParkingLot()  # who waits for bytes, the end, the answer
        self.paused = trio.lowlevel.ParkingLot()  # the reader, while BUFFER bytes wait
        self.fed = 0  # bytes given to h11 since a reader last found it short
        self.head_fed = 0  # bytes given to h11 since the last request head was parsed
        self.eof = False  # the client closed (or broke) the connection
        self._new_request()

    def _new_request(self) -> None:
        self.head_request = False
        self.body_done = False
        self.pending: Any = None  # a body event read ahead of the app
        self.started = False
        self.done = False
        self.gone = False
        self.hung_up: Callable[[], object] | None = None  # the app's HANG_UP callback
        self.refusal: int | None = None  # the status for a body that could not be read (gone too)
        self.head: bytes | None = None  # the response head, held for the first body part

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read_socket)
                try:
                    # Cancelled only while the connection is idle: by its idle
                    # deadline or a stop. One scope for the connection's life,
                    # its deadline moved, not a new one for every request.
                    with self.idle_scope:
                        await self._requests()
                except _CLOSED:
                    pass
                nursery.cancel_scope.cancel()
        finally:
            await self._close()

    async def _requests(self) -> None:
        first = True
        while True:
            request = await self._next_request(first)
            if request is None:
                return
            first = False
            await self._answer(request)
            if not self._reusable():
                return
            self.conn.start_next_cycle()
            self._new_request()

    async def _read_socket(self) -> None:
        """Feed h11 what the client sends until it closes, waking whoever waits."""
        conn, stream, arrived = self.conn, self.stream, self.arrived
        try:
            while True:
                while self.fed > BUFFER:
                    await self.paused.park()
                data = await stream.receive_some(READ_SIZE)
                conn.receive_data(data)  # b"": the end, which h11 reports in turn
                self.fed += len(data)
                self.head_fed += len(data)
                arrived.unpark_all()
                if not data:
                    break
        except _CLOSED:
            conn.receive_data(b"")  # reset by the peer: the end all the same
        self.eof = True
        arrived.unpark_all()
        self._hang_up()

    async def _more(self) -> None:
        """Wait for the client's next bytes (or its end), h11 having parsed all it has."""
        if self.eof:
            return
        self.fed = 0
        self.paused.unpark_all()
        await self.arrived.park()

    # ----------------------------------------------------------- request heads
    async def _next_request(self, first: bool) -> h11.Request | None:
        """The next request's head; ``None`` (after any error answer) when the
        connection is to close instead."""
        limits = self.shared.limits
        deadline: float | None = None
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                await self._refuse(exc.error_status_hint)
                return None
            if type(event) is h11.Request:
                # h11 measures only a head still incomplete: one completed by
                # a read after more than a head's worth of bytes (in one read
                # or several) is measured here.
                # What h11 holds past this head counts towards the next one.
                fed, self.head_fed = self.head_fed, len(self.conn.trailing_data[0])
                if fed > limits.max_header_bytes and (_head_size(event) > limits.max_header_bytes):
                    await self._refuse(431)
                    return None
                return event
            if event is not h11.NEED_DATA or self.eof:
                return None  # the client closed the connection
            if deadline is None:
                # Idle between requests: no byte of the next one yet.
                if not await self._idle_wait(
                    limits.header_timeout if first else limits.keep_alive_timeout
                ):
                    return None
                deadline = trio.current_time() + limits.header_timeout
            else:
                with trio.move_on_at(deadline) as waited:
                    await self._more()
                if waited.cancelled_caught:  # a slow client: the head is late
                    await self._refuse(408)
                    return None

    async def _idle_wait(self, seconds: float) -> bool:
        """Wait for the first bytes of the next request; ``False`` when the server
        stops first (the connection is closed at once)."""
        shared = self.shared
        if shared.stopping:
            return False
        scope = self.idle_scope
        scope.deadline = trio.current_time() + seconds
        shared.idle.add(scope)
        try:
            await self._more()  # raises Cancelled past the deadline or at a stop
        finally:
            shared.idle.discard(scope)
            scope.deadline = math.inf
        # Bytes that arrived as the deadline passed (or the stop came) are
        # dropped: the scope is cancelled for good and would cut the answer.
        return not scope.cancel_called

    async def _refuse(self, status: int) -> None:
        """Answer a request that could not be read with ``status``, closing the connection."""
        self.linger = True
        if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        headers = [(b"date", _date_header()), (_LENGTH, b"0"), _CLOSE]
        response = h11.Response(
            status_code=status, headers=headers, reason=_REASONS.get(status, b"")
        )
        await self.stream.send_all(self.conn.send(response) + self.conn.send(_END))

    # ----------------------------------------------------------- one request
    def _scope(self, request: h11.Request) -> Scope:
        target = request.target
        raw_path, _, query = target.partition(b"?")
        method = _METHODS.get(request.method) or request.method.decode("latin-1")
        self.head_request = method == "HEAD"
        scope: Scope = {
            "type": "http",
            "asgi": _ASGI,
            "http_version": _VERSIONS.get(request.http_version, "1.1"),
            "method": method,
            "scheme": "http",
            "path": _path(raw_path),
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": list(request.headers),
            "client": self.client,
            "server": self.server,
            "extensions": {HANG_UP: self._on_hang_up},  # the request's own: an app may write to it
        }
        state = self.shared.state
        if state is not None:
            scope["state"] = state.copy()
        return scope

    async def _answer(self, request: h11.Request) -> None:
        try:
            await self.shared.app(self._scope(request), self.receive, self.send)
        except Exception as exc:
            log.error("serving.app_failed", error=type(exc).__name__, exc_info=exc)
        if self.refusal is not None:
            if not self.started:  # else the cut answer tells it, by the close
                await self._refuse(self.refusal)  # the close after it lingers
        elif not self.started:
            await self._fail()
        elif not self.done:
            self.gone = True  # a half-sent answer: only closing tells the client it is cut

    async def _fail(self) -> None:
        """500 for an app that failed (or returned) before it started an answer."""
        headers = [(b"date", _date_header()), (_LENGTH, b"0"), _CLOSE]
        self.started = self.done = True
        if self.gone:
            return
        response = h11.Response(status_code=500, headers=headers, reason=_REASONS[500])
        await self.stream.send_all(self.conn.send(response) + self.conn.send(_END))

    def _reusable(self) -> bool:
        """Whether the connection can carry another request: everything of this one
        read and sent, no side asked to close, the server not stopping."""
        conn = self.conn
        if self.gone:
            return False
        while conn.their_state is h11.SEND_BODY:
            # A body the app did not read: what is buffered already can be
            # skipped; waiting for the rest is not worth keeping the connection,
            # which closes after a linger so that the answer is not reset away.
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError:
                return False
            if event is h11.NEED_DATA:
                self.linger = True
                return False
        return (
            conn.our_state is h11.DONE and conn.their_state is h11.DONE and not self.shared.stopping
        )

    # ----------------------------------------------------------- receive
    async def _receive(self) -> Message:
        """ASGI ``receive``: the next part of the body, then ``http.disconnect``."""
        if self.gone or self.body_done:
            return await self._disconnect()
        event = self.pending
        self.pending = None
        if event is None:
            event = await self._body_event()
            if event is None:
                self.gone = True
                self._hang_up()
                return {"type": "http.disconnect"}
        if type(event) is h11.Data:
            # Whether this part is the last is known at once if h11 has the end buffered.
            after = self._buffered_event()
            if type(after) is h11.EndOfMessage:
                self.body_done = True
                return {"type": "http.request", "body": bytes(event.data), "more_body": False}
            self.pending = after
            return {"type": "http.request", "body": bytes(event.data), "more_body": True}
        self.body_done = True  # EndOfMessage
        return {"type": "http.request", "body": b"", "more_body": False}

    def _buffered_event(self) -> Any:
        """The next body event if h11 has it without reading the socket, else ``None``."""
        try:
            event = self.conn.next_event()
        except h11.RemoteProtocolError:
            return None  # said again, and handled, when the app reads on
        return None if event is h11.NEED_DATA else event

    async def _body_event(self) -> Any:
        """The next body event (``Data`` or ``EndOfMessage``); ``None`` when the client
        is gone (closed, broken) or its body cannot be read: malformed, or silent
        for ``header_timeout`` seconds (``refusal`` then says the status)."""
        conn = self.conn
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                if not self.eof:  # a body cut short by a close: nobody to tell
                    self.refusal = exc.error_status_hint
                return None
            if event is not h11.NEED_DATA:
                return event
            if self.eof:
                return None
            if conn.they_are_waiting_for_100_continue and not self.started:
                try:
                    await self.stream.send_all(conn.send(_CONTINUE))
                except _CLOSED:
                    return None
                # The body may have arrived while the 100 was written (a
                # client need not wait for it): the reader's wake-up found
                # nobody waiting, so ask h11 again before waiting for more.
                continue
            with trio.move_on_after(self.shared.limits.header_timeout) as waited:
                await self._more()
            if waited.cancelled_caught:
                self.refusal = 408
                return None

    async def _disconnect(self) -> Message:
        """``http.disconnect`` once the client hangs up or the answer has been sent."""
        while not (self.gone or self.done):
            if self.eof:
                self.gone = True
                break
            await self.arrived.park()  # the reader's next bytes, its end, or the answer's
        return {"type": "http.disconnect"}

    # ----------------------------------------------------------- send
    async def _send(self, message: Message) -> None:
        """ASGI ``send``: the response head, then its body parts, each written at once.

        Raises:
            RuntimeError: the messages are out of order (an app's mistake).
        """
        if self.gone:
            # ASGI: what is sent once the client left (or a write was cut, or
            # its body could not be read) is dropped, even a second start (a
            # 500 tried after a cut 200).
            return
        kind = message["type"]
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            if self._start(message):
                head, self.head = self.head, None
                await self._write([head], final=False)
            return
        if kind != "http.response.body":
            raise RuntimeError(f"unknown ASGI message {kind!r}")
        if not self.started or self.done:
            raise RuntimeError("http.response.body without a response under way")
        conn = self.conn
        parts = []
        if self.head is not None:
            parts.append(self.head)
            self.head = None
        body = message.get("body", b"")
        if body and not self.head_request:  # a HEAD answer has the headers only
            parts += conn.send_with_data_passthrough(h11.Data(data=body)) or ()
        more = message.get("more_body", False)
        if not more:
            parts += conn.send_with_data_passthrough(_END) or ()
        await self._write(parts, final=not more)
        if not more:
            self.done = True
            self.arrived.unpark_all()  # a task waiting for http.disconnect gets it now

    def _start(self, message: Message) -> bool:
        """Prepare the response head; whether to write it now rather than with the body."""
        status = message["status"]
        headers = [*message.get("headers", ()), (b"date", _date_header())]
        if self.shared.stopping:
            headers.append(_CLOSE)
        response = h11.Response(
            status_code=status, headers=headers, reason=_REASONS.get(status, b"")
        )
        self.head = self.conn.send(response)
        self.started = True
        # A streamed answer (no length) shows its headers at once; a whole one
        # goes out with its body in one write. (The app's list, not h11's
        # Headers, whose items are built one by one in Python.)
        return all(name.lower() != _LENGTH for name, _ in headers)

    async def _write(self, parts: list[Any], *, final: bool) -> None:
        if self.gone or not parts:
            return  # ASGI: sending to a client that left is no error
        try:
            await self.stream.send_all(parts[0] if len(parts) == 1 else b"".join(parts))
        except _CLOSED:
            self.gone = True
            self.arrived.unpark_all()
            if not final:  # the last part failing is no hang-up: the answer was given
                self._hang_up()
        except BaseException:
            # Cut mid-write (a deadline, a cancellation): part of the bytes may
            # be on the wire, so the framing is lost. Nothing more is sent and
            # the connection is not reused; the client sees it close.
            self.gone = True
            self.arrived.unpark_all()
            raise

    # ----------------------------------------------------------- hang-ups
    def _on_hang_up(self, callback: Callable[[], object]) -> None:
        """The :data:`HANG_UP` extension: call ``callback`` when the client hangs up
        before this request's answer is complete (at once if it already has)."""
        self.hung_up = callback
        if self.eof or self.gone:
            self._hang_up()

    def _hang_up(self) -> None:
        callback = self.hung_up
        if callback is not None and not self.done:
            self.hung_up = None
            callback()

    # ----------------------------------------------------------- closing
    async def _close(self) -> None:
        stream = self.stream
        try:
            # linger: an answer went out while the client may still be
            # sending (a refusal, a body left unread); one that closed is
            # not waited for.
            if self.linger and not self.eof:
                with trio.move_on_after(LINGER):
                    try:
                        await stream.send_eof()
                        while await stream.receive_some(READ_SIZE):
                            pass
                    except (*_CLOSED, trio.BusyResourceError):
                        pass
        finally:
            # Closed even when a stop cancels the linger.
            await stream.aclose()
