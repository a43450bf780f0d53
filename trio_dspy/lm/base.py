"""The interface every language model implements.

Two methods, two audiences:

* :meth:`BaseLM.send` is the extension point: what a provider implements
  (subclass :class:`BaseLM` and write ``async def send(request) -> LMResponse``).
  It performs one call and nothing else.
* :meth:`BaseLM.request` is what callers use (``Predict``, agents, your code):
  it wraps ``send`` with what every model shares: default parameters, usage
  accounting, bounded history and telemetry. Providers do not override it.

The values exchanged (:class:`~trio_dspy.messages.LMRequest`,
:class:`~trio_dspy.messages.LMResponse`, ...) live in :mod:`trio_dspy.messages`;
they are re-exported here and from :mod:`trio_dspy.lm`.
"""

from __future__ import annotations

import abc
import collections
import contextlib
import json
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Self, TextIO

import attrs
import trio

from ..checkpoint import entering, yielded_since
from ..journal.active import ACTIVE_RUN
from ..messages import (
    LMRequest,
    LMResponse,
    Message,
    ResponseFormat,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    loggable,
)
from ..telemetry import semconv as sc
from ..telemetry.span import AttributeValue
from ..usage_limits import Reservation, active, needs_cost, reserve
from .history import inspect_history
from .history_entry import HistoryEntry
from .observed import Call
from .params import completion_estimate
from .prices import cost_wanted, estimate_cost, load_prices, response_cost

__all__ = [
    "BaseLM",
    "Call",
    "HistoryEntry",
    "LMRequest",
    "LMResponse",
    "LMStream",
    "Message",
    "ResponseFormat",
    "ToolCall",
    "ToolCallDelta",
    "ToolSpec",
    "whole_events",
]


def whole_events(response: LMResponse) -> list[str | ToolCallDelta]:
    """What a stream of an already complete ``response`` gives: its text, then each tool call."""
    events: list[str | ToolCallDelta] = [response.text] if response.text else []
    events.extend(
        ToolCallDelta(i, call.id, call.name, call.arguments)
        for i, call in enumerate(response.tool_calls)
        if call.arguments
    )
    return events


class LMStream:
    """The text of one completion as it arrives, from :meth:`BaseLM.stream`.

    ``async for delta in stream`` gives the completion's text in pieces
    (``str``, never empty) in order; their concatenation is
    ``stream.response.text``. :meth:`events` gives the same pieces with the
    tool calls' argument pieces (:class:`~trio_dspy.messages.ToolCallDelta`)
    among them, in the order they arrived. Once the iteration has ended,
    :attr:`response` is the whole :class:`~trio_dspy.messages.LMResponse`
    (tool calls assembled, usage, finish reason).

    The producer feeds ``deltas`` (a bounded channel, so a slow reader slows
    the producer rather than growing a buffer), calls :meth:`finish` with the
    final response and then closes its end.
    """

    def __init__(self, deltas: trio.abc.ReceiveChannel[str | ToolCallDelta]) -> None:
        self._deltas = deltas
        self._response: LMResponse | None = None
        self._error: BaseException | None = None

    @classmethod
    def whole(cls, response: LMResponse) -> LMStream:
        """A stream of an already complete ``response``.

        Its text comes as one piece, then each tool call as one
        :class:`~trio_dspy.messages.ToolCallDelta`.
        """
        events = whole_events(response)
        send, receive = trio.open_memory_channel[str | ToolCallDelta](max(1, len(events)))
        for event in events:
            send.send_nowait(event)
        send.close()
        stream = cls(receive)
        stream.finish(response)
        return stream

    def finish(self, response: LMResponse) -> None:
        """Set the final response (the producer's side; call before closing)."""
        self._response = response

    def fail(self, error: BaseException) -> None:
        """End the stream with ``error`` (the producer's side; call before closing).

        The reader's ``async for`` raises ``error`` once it has read the
        deltas that came before it.
        """
        self._error = error

    def __aiter__(self) -> LMStream:
        return self

    async def __anext__(self) -> str:
        while True:
            event = await self._next_event()
            if isinstance(event, str):
                return event

    def events(self) -> AsyncIterator[str | ToolCallDelta]:
        """Text pieces and tool-call argument pieces, in the order they arrived.

        ``async for event in stream.events()``: a ``str`` is text, a
        :class:`~trio_dspy.messages.ToolCallDelta` a piece of a call's
        arguments. Read either this or the plain iteration, not both: each
        piece is given once. The iteration raises the call's
        :class:`~trio_dspy.errors.LMError` after the pieces before the failure.
        """
        return _Events(self)

    async def _next_event(self) -> str | ToolCallDelta:
        try:
            return await self._deltas.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            if self._error is not None:
                raise self._error from self._error.__cause__
            raise StopAsyncIteration from None

    @property
    def finished(self) -> bool:
        """Whether the final response has arrived."""
        return self._response is not None

    @property
    def response(self) -> LMResponse:
        """The whole response, once the stream has been read to its end.

        Raises:
            RuntimeError: the stream has not finished yet.
        """
        if self._response is None:
            raise RuntimeError("the stream has not finished: read it to the end first")
        return self._response


class _Events:
    """An :class:`LMStream`'s pieces, tool-call pieces included."""

    def __init__(self, stream: LMStream) -> None:
        self._stream = stream

    def __aiter__(self) -> _Events:
        return self

    async def __anext__(self) -> str | ToolCallDelta:
        return await self._stream._next_event()


class BaseLM(abc.ABC):
    """Base class of language models.

    Subclasses implement :meth:`send`. ``provider`` and ``model`` name the
    model for errors and telemetry; ``defaults`` are sampling parameters
    applied to every request that does not set them; ``history`` keeps the
    last ``history_size`` calls.
    """

    provider: str = "custom"
    supports_tools: bool = False
    """Whether the model takes native tool definitions (agents pick their mode by it)."""
    supports_n: bool = False
    """Whether one request with ``n`` in its params returns ``n`` completions
    (``Predict`` makes ``n`` separate calls, at once, for a model without it)."""

    def __init__(self, model: str, *, history_size: int = 100, **defaults: Any) -> None:
        self.model = model
        prefix = f"{self.provider}/"
        # The name the provider knows the model by (without the ``provider/`` prefix).
        self.model_name = model[len(prefix) :] if model.startswith(prefix) else model
        self.defaults: dict[str, Any] = defaults
        self.history: collections.deque[HistoryEntry] = collections.deque(maxlen=history_size)

    @abc.abstractmethod
    async def send(self, request: LMRequest) -> LMResponse:
        """Perform one call: the method a provider implements.

        ``request`` arrives with :attr:`defaults` already applied. Callers use
        :meth:`request` instead, which adds usage, history and telemetry.

        Raises:
            trio_dspy.errors.LMError: implementations raise its subclasses.
        """

    async def request(self, request: LMRequest, *, trace_content: bool = False) -> LMResponse:
        """Call the model with ``request`` and return its response: what callers use.

        Applies :attr:`defaults`, calls :meth:`send` inside a ``chat {model}``
        span, records the usage into every active :func:`~trio_dspy.track_usage`
        block and appends to :attr:`history`. ``trace_content`` records the
        messages and the completion in the span (``Settings.trace_content``;
        the caller that reads the settings passes it).

        The call is a checkpoint even when ``send`` never waits (a cache hit,
        a scripted model): it checks for cancellation first, and yields.

        Raises:
            trio_dspy.errors.LMError: the call failed (subclass says how).
            RuntimeError: not running under ``trio.run``.
        """
        run = ACTIVE_RUN.get()  # a durable run replays or records the call (trio_dspy.journal)
        if run is not None and not run.inside_step():
            return await run.lm_request(self, request, trace_content)
        mark = await entering()
        # request_nested's steps, written out: a call in flight holds a frame fewer.
        request = self._with_defaults(request)
        if cost_wanted():
            await load_prices()
        with self._observed(request, trace_content) as call:
            call.response = await self.send(request)
        response = call.response  # priced on leaving the block
        if not yielded_since(mark):  # a cache hit or an in-process model waited for nothing
            await trio.lowlevel.cancel_shielded_checkpoint()
        return response

    async def request_nested(self, request: LMRequest, trace_content: bool = False) -> LMResponse:
        """:meth:`request` for a caller that is a checkpoint itself (a module
        call, which checked for cancellation on entry and yields on the way out
        unless something inside did): the same call without those two steps.

        Raises:
            trio_dspy.errors.LMError: as :meth:`request`.
        """
        run = ACTIVE_RUN.get()
        if run is not None and not run.inside_step():
            return await run.lm_request(self, request, trace_content)
        request = self._with_defaults(request)
        if cost_wanted():
            await load_prices()
        with self._observed(request, trace_content) as call:
            call.response = await self.send(request)
        return call.response

    def _with_defaults(self, request: LMRequest) -> LMRequest:
        """``request`` with :attr:`defaults` under its own ``params``."""
        if self.defaults:
            request = attrs.evolve(request, params={**self.defaults, **request.params})
        return request

    def _observed(self, request: LMRequest, trace_content: bool, *, stream: bool = False) -> Call:
        """Watch one call in the block: the ``chat {model}`` span, usage and history.

        The block sets ``call.response``; once it has, leaving the block
        records the response's attributes on the span, its usage in every
        active :func:`~trio_dspy.track_usage` and an entry in :attr:`history`.
        A block left without a response (an error, or a stream abandoned
        early) records none of these. ``stream`` marks the span as a streamed
        call (``call.first_chunk()`` then notes the time to its first chunk).

        Every active :func:`~trio_dspy.usage_limits` budget is charged here,
        before the block sends anything, and settled when it ends.

        Raises:
            UsageLimitExceeded: the call could go over a budget (the block does not run).
        """
        return Call(self, request, trace_content, stream)

    def _reserve(self, request: LMRequest) -> Reservation:
        """Hold the worst case of ``request`` on the active :mod:`~trio_dspy.usage_limits` budgets.

        The prompt is estimated as the ``tpm`` limit does, about four bytes a
        token of its JSON; the completion is its ``max_tokens`` (or the
        default reservation); the cost is their list price, when a budget has
        ``max_cost``.

        Raises:
            UsageLimitExceeded: a budget would go over.
        """
        if not active():
            return reserve(0)
        prompt_json = json.dumps(
            [[loggable(m) for m in request.messages], [attrs.asdict(t) for t in request.tools]],
            ensure_ascii=False,
            default=str,
        )
        prompt = len(prompt_json.encode(errors="replace")) // 4
        completion = completion_estimate(request.params)
        cost = None
        if needs_cost():
            cost = estimate_cost(self.provider, (self.model_name,), prompt, completion)
        return reserve(prompt + completion, cost, model=self.model)

    def _priced(self, response: LMResponse) -> LMResponse:
        """``response`` with its cost in its usage, when it is known (see :mod:`.prices`)."""
        usage = response.usage
        if usage.cost is not None:
            return response
        cost = response_cost(self.provider, self.model_name, response)
        if cost is None:
            return response
        return attrs.evolve(response, usage=attrs.evolve(usage, cost=cost))

    @contextlib.asynccontextmanager
    async def stream(
        self, request: LMRequest, *, trace_content: bool = False
    ) -> AsyncIterator[LMStream]:
        """Call the model with ``request`` and read its completion as it arrives.

        ::

            async with lm.stream(request) as stream:
                async for delta in stream:
                    print(delta, end="")
            response = stream.response

        The call belongs to the ``async with``: leaving the block early
        cancels it. Usage, history and the span are recorded as for
        :meth:`request`. This default makes every model streamable: it waits
        for the whole response and gives its text as one piece; models that
        can stream (the HTTP :class:`~trio_dspy.lm.LM`) override it.

        Raises:
            trio_dspy.errors.LMError: the call failed (subclass says how).
            RuntimeError: not running under ``trio.run``.
        """
        yield LMStream.whole(await self.request(request, trace_content=trace_content))

    def _request_attributes(
        self, request: LMRequest, trace_content: bool
    ) -> dict[str, AttributeValue | None]:
        """GenAI semantic-convention attributes of a call (never credentials)."""
        params = request.params
        attributes: dict[str, AttributeValue | None] = {
            sc.GEN_AI_OPERATION_NAME: sc.OPERATION_CHAT,
            sc.GEN_AI_PROVIDER_NAME: self.provider,
            sc.GEN_AI_REQUEST_MODEL: self.model_name,
            sc.SERVER_ADDRESS: getattr(self, "server_address", None),
            sc.SERVER_PORT: getattr(self, "server_port", None),
            sc.GEN_AI_REQUEST_TEMPERATURE: params.get("temperature"),
            sc.GEN_AI_REQUEST_MAX_TOKENS: params.get("max_tokens"),
            sc.GEN_AI_REQUEST_TOP_P: params.get("top_p"),
        }
        if trace_content:
            attributes[sc.GEN_AI_INPUT_MESSAGES] = json.dumps(
                [loggable(m) for m in request.messages], ensure_ascii=False
            )
        return attributes

    def inspect_history(self, n: int = 1, file: TextIO | None = None) -> None:
        """Print this model's last ``n`` calls (DSPy's ``lm.inspect_history``).

        The same as ``td.inspect_history(n, lm=self)``. Raises nothing.
        """
        inspect_history(n, lm=self, file=file)

    async def aclose(self) -> None:
        """Release what the model holds (connections, files): nothing here.

        Models that hold something override it (:meth:`LM.aclose
        <trio_dspy.lm.LM.aclose>`). ``async with model:`` calls it on the way
        out. Raises nothing here.
        """
        await trio.lowlevel.checkpoint()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __deepcopy__(self, memo: dict[int, Any]) -> BaseLM:
        # A model is a shared resource (connections, limits, cache): copies of a
        # module share it rather than cloning it.
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model!r})"
