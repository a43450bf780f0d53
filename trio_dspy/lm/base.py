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
import json
import time
from typing import Any

import attrs

from ..checkpoint import entered
from ..messages import LMRequest, LMResponse, Message, ResponseFormat, ToolCall, ToolSpec
from ..telemetry import semconv as sc
from ..telemetry.span import AttributeValue, SpanKind, start_span
from ..usage import record_usage
from .history import record

__all__ = [
    "BaseLM",
    "HistoryEntry",
    "LMRequest",
    "LMResponse",
    "Message",
    "ResponseFormat",
    "ToolCall",
    "ToolSpec",
]


@attrs.frozen
class HistoryEntry:
    """One call kept in :attr:`BaseLM.history`."""

    request: LMRequest
    response: LMResponse
    started_at: float  # wall clock (time.time())
    duration: float  # seconds


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
        a scripted model): it checks for cancellation and yields first.

        Raises:
            trio_dspy.errors.LMError: the call failed (subclass says how).
            RuntimeError: not running under ``trio.run``.
        """
        await entered()
        if self.defaults:
            request = attrs.evolve(request, params={**self.defaults, **request.params})
        started_at, t0 = time.time(), time.perf_counter()
        with start_span(f"chat {self.model_name}", SpanKind.CLIENT) as span:
            if span.is_recording:
                span.set_attributes(self._request_attributes(request, trace_content))
            response = await self.send(request)
            if span.is_recording:
                span.set_attributes(_response_attributes(response, trace_content))
        record_usage(response.usage)
        record(self, HistoryEntry(request, response, started_at, time.perf_counter() - t0))
        return response

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
                [attrs.asdict(m) for m in request.messages], ensure_ascii=False
            )
        return attributes

    def __deepcopy__(self, memo: dict[int, Any]) -> BaseLM:
        # A model is a shared resource (connections, limits, cache): copies of a
        # module share it rather than cloning it.
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model!r})"


def _response_attributes(
    response: LMResponse, trace_content: bool
) -> dict[str, AttributeValue | None]:
    attributes: dict[str, AttributeValue | None] = {
        sc.GEN_AI_RESPONSE_MODEL: response.model or None,
        sc.GEN_AI_RESPONSE_FINISH_REASONS: (response.finish_reason,)
        if response.finish_reason
        else None,
        sc.GEN_AI_USAGE_INPUT_TOKENS: response.usage.prompt_tokens,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: response.usage.completion_tokens,
        "trio_dspy.cached": response.cached or None,
    }
    if trace_content:
        attributes[sc.GEN_AI_OUTPUT_MESSAGES] = json.dumps(
            [
                {
                    "role": "assistant",
                    "content": response.text,
                    "tool_calls": [attrs.asdict(c) for c in response.tool_calls],
                }
            ],
            ensure_ascii=False,
        )
    return attributes
