"""Streamed calls of the HTTP :class:`~trio_dspy.lm.LM`: server-sent events to text deltas.

:meth:`LM.stream <trio_dspy.lm.LM.stream>` opens :func:`open_stream`: a
producer task runs the usual call path (timeout, response-format step-down,
retries, limits) with :func:`stream_exchange` as its HTTP step, and hands
each text delta to the reader through a small bounded channel, so the
connection is read only as fast as the reader reads. Each provider supplies
a :class:`StreamDecoder` for its events.

Where a streamed attempt differs from a whole one:

* ``attempt_timeout`` bounds the wait for the response head and the first
  event; after it only ``read_timeout`` (the longest silence) applies.
* A failure is retryable only while :attr:`Sink.delivered` is false (no
  text has reached the reader); after that it is final.
* A server that answers ``stream: true`` with a whole JSON body (some
  compatible servers ignore the flag) is read as a whole answer: one delta.
* Tool calls' argument pieces go through the same channel as
  :class:`~trio_dspy.messages.ToolCallDelta` values (``LMStream.events()``
  shows them; plain iteration skips them), and count as delivered too.
"""

from __future__ import annotations

import abc
import collections
import contextlib
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import attrs
import trio

from ..errors import LMError, LMServerError
from ..groups import raise_single
from ..http import Reply, StreamReply, TransportFailure
from ..http.sse import SSEDecoder, SSEEvent
from ..messages import LMResponse, ToolCallDelta
from ..unicode import clean_json
from .base import Call, LMStream, whole_events
from .cache import Cache, as_cached, cache_lookup, cache_store
from .errors import ErrorBody, after_retries, error_for_status, is_retryable_status
from .exchange import Exchange
from .params import MALFORMED, BadField
from .retry import Retryable

__all__ = [
    "Sink",
    "StreamDecoder",
    "StreamErrorEvent",
    "open_stream",
    "stream_exchange",
]

#: Deltas the channel holds before the producer waits for the reader.
BUFFER = 8


class StreamErrorEvent(Exception):
    """The server reported an error inside the stream (an ``error`` event)."""

    def __init__(self, status: int, body: ErrorBody) -> None:
        self.status = status
        self.body = body
        super().__init__(body.message)


class StreamDecoder(abc.ABC):
    """Reads one provider's stream, event by event, into text deltas and a response.

    :attr:`finished` turns true at the provider's end marker; :attr:`complete`
    says whether what arrived is a whole answer (the end marker, or at least
    a finish reason). The pieces of tool calls' arguments an event brings
    wait in :attr:`tool_deltas` until the reader takes them
    (:meth:`take_tool_deltas`).
    """

    finished: bool = False

    def __init__(self) -> None:
        self.tool_deltas: list[ToolCallDelta] = []

    def take_tool_deltas(self) -> list[ToolCallDelta]:
        """The tool-call argument pieces since the last call, in arrival order."""
        deltas, self.tool_deltas = self.tool_deltas, []
        return deltas

    @abc.abstractmethod
    def feed(self, event: SSEEvent) -> str:
        """The text delta in ``event`` (``""`` when it carries none).

        Raises:
            StreamErrorEvent: the event reports an error.
            BadField: a number in the event is not what its field holds.
            Exception: one of :data:`~trio_dspy.lm.params.MALFORMED`: the event is garbled.
        """

    @property
    @abc.abstractmethod
    def complete(self) -> bool:
        """Whether the events so far make a whole answer."""

    @abc.abstractmethod
    def response(self) -> LMResponse:
        """The whole answer: text, tool calls assembled, usage, finish reason."""


def load_event(event: SSEEvent) -> dict[str, Any]:
    """The JSON object in an event's data, lone surrogates (from ``\\ud800``-style
    escapes) as U+FFFD.

    Raises:
        ValueError: the data is not a JSON object.
        RecursionError: it is nested too deeply to decode.
    """
    data = json.loads(event.data)
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {event.data[:100]!r}")
    # The data came through a UTF-8 decoder that replaces what is invalid, so
    # an escape is the only way a lone surrogate can be in it.
    return clean_json(data) if "\\u" in event.data else data


@attrs.define(eq=False)
class Sink:
    """Where one streamed call puts its deltas, and what it has given so far."""

    send: trio.MemorySendChannel[str | ToolCallDelta]
    call: Call
    delivered: bool = False  # a delta reached the reader: failures are final from now

    async def put(self, delta: str | ToolCallDelta) -> None:
        """Hand ``delta`` (non-empty) to the reader, waiting while its buffer is full."""
        self.delivered = True
        await self.send.send(delta)


@contextlib.asynccontextmanager
async def open_stream(
    call: Call,
    produce: Callable[[Sink], Awaitable[LMResponse]],
    cache: Cache | None = None,
    key: str | None = None,
) -> AsyncIterator[LMStream]:
    """The stream of one call: from ``cache`` whole (at ``key``), else from a producer task.

    ``produce(sink)`` runs the call (timeout, step-down, retries, limits) with
    :func:`stream_exchange` as its HTTP step and returns the whole response,
    which is stored in ``cache``. The producer belongs to the block: leaving
    it early cancels the call. An error raised in the block or by the
    producer comes out as itself.
    """
    if cache is not None and key is not None:
        hit = await cache_lookup(cache, key)
        if hit is not None:
            yield LMStream.whole(as_cached(hit))
            return
    else:
        cache = key = None
    send, receive = trio.open_memory_channel[str | ToolCallDelta](BUFFER)
    stream = LMStream(receive)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_produce, produce, cache, key, Sink(send, call), stream)
            yield stream
            nursery.cancel_scope.cancel()  # read to the end, or left early
    except BaseExceptionGroup as group:
        raise_single(group)


async def _produce(
    produce: Callable[[Sink], Awaitable[LMResponse]],
    cache: Cache | None,
    key: str | None,
    sink: Sink,
    stream: LMStream,
) -> None:
    async with sink.send:
        try:
            response = await produce(sink)
        except LMError as error:
            stream.fail(error)  # raised to the reader where it reads
            return
        if cache is not None and key is not None:
            await cache_store(cache, key, response)
        stream.finish(response)


class _Events:
    """The server-sent events of a streamed reply, one at a time."""

    def __init__(self, reply: StreamReply) -> None:
        self._reply = reply
        self._decoder = SSEDecoder()
        self._ready: collections.deque[SSEEvent] = collections.deque()

    async def next(self) -> SSEEvent | None:
        """The next event, or ``None`` once the body has ended."""
        while not self._ready:
            piece = await self._reply.receive()
            if not piece:
                return None
            self._ready.extend(self._decoder.feed(piece))
        return self._ready.popleft()


def _is_event_stream(reply: StreamReply) -> bool:
    kind = str(reply.headers.get("content-type", ""))
    return kind.split(";")[0].strip().lower() == "text/event-stream"


async def stream_exchange(
    wire: Exchange,
    decoder: Callable[[], StreamDecoder],
    sink: Sink,
    content: bytes,
    level: str | None,
    tools: bool,
    retries: int,
) -> LMResponse:
    """One streamed POST: its events (read by a new ``decoder()``) to ``sink``, and
    the whole response at the end.

    Raises:
        Retryable: a transient failure before any text reached the reader.
        FormatRefused: the server refused the ``response_format`` of ``level``.
        LMError: a final failure.
    """
    async with contextlib.AsyncExitStack() as stack:
        try:
            first: SSEEvent | None = None
            whole: LMResponse | None = None
            limit = math.inf if wire.attempt_timeout is None else wire.attempt_timeout
            with trio.move_on_after(limit) as waiting:
                reply = await stack.enter_async_context(wire.stream(content))
                if 200 <= reply.status < 300 and _is_event_stream(reply):
                    events = _Events(reply)
                    first = await events.next()
                else:  # an error status, or a server that answers whole
                    body = Reply(reply.status, reply.headers, await reply.read())
                    whole = await wire.handle(body, level, tools, retries)
            if waiting.cancelled_caught:
                raise wire.attempt_timed_out(retries)
            if whole is not None:
                for piece in whole_events(whole):
                    await sink.put(piece)
                return whole
            sink.call.first_chunk()
            return await _read_events(wire, decoder(), sink, events, first, tools, retries)
        except TransportFailure as failure:
            error, cause = wire.transport_error(failure, retries, final=sink.delivered)
            raise error from cause


async def _read_events(
    lm: Exchange,
    decoder: StreamDecoder,
    sink: Sink,
    events: _Events,
    event: SSEEvent | None,
    tools: bool,
    retries: int,
) -> LMResponse:
    while event is not None:
        if not decoder.finished:  # events after the end marker are ignored
            try:
                delta = decoder.feed(event)
            except StreamErrorEvent as exc:
                raise _reported(lm, sink, exc, tools, retries) from None
            except MALFORMED as exc:
                raise _garbled(lm, sink, _not_in_format(lm, exc)) from None
            if delta:
                await sink.put(delta)
            for piece in decoder.take_tool_deltas():
                await sink.put(piece)
        event = await events.next()  # to the end of the body, so the connection is reused
    if not decoder.complete:
        message = "the server ended the stream before the answer was complete"
        raise _garbled(lm, sink, message + after_retries(retries))
    try:
        return decoder.response()
    except MALFORMED as exc:  # a tool's start input that cannot be written back as JSON
        raise _garbled(lm, sink, _not_in_format(lm, exc)) from None


def _not_in_format(lm: Exchange, exc: Exception) -> str:
    return (
        f"the server sent an event that is not in the {lm.provider} format "
        f"({_described(exc)}): check base_url and the provider prefix of the model"
    )


def _described(exc: Exception) -> str:
    # The message of a BadField names the field; others say what broke.
    return str(exc) if isinstance(exc, BadField) else repr(exc)[:300]


def _reported(
    lm: Exchange, sink: Sink, exc: StreamErrorEvent, tools: bool, retries: int
) -> Exception:
    """The typed error for an error event, retryable while the reader has seen nothing."""
    body = attrs.evolve(exc.body, message=lm.api_key.scrub(exc.body.message))
    error = error_for_status(
        exc.status,
        body,
        sent_tools=tools,
        retries=retries,
        provider=lm.provider,
        model=lm.model_name,
        auth_hint=f"check api_key= or ${lm.api_key_env}",
    )
    if is_retryable_status(exc.status) and not sink.delivered:
        return Retryable(error)
    return error


def _garbled(lm: Exchange, sink: Sink, message: str) -> Exception:
    """An unreadable or cut stream: retryable while the reader has seen nothing."""
    error = LMServerError(message, provider=lm.provider, model=lm.model_name)
    return error if sink.delivered else Retryable(error)
