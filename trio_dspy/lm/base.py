"""The interface every language model implements, and the values it exchanges.

A model is anything with ``async def send(request: LMRequest) -> LMResponse``
(subclass :class:`BaseLM`). Callers use :meth:`BaseLM.request`, which wraps
``send`` with what every model shares: default parameters, usage accounting,
bounded history and telemetry.
"""

from __future__ import annotations

import abc
import collections
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs

from ..primitives import Usage
from ..settings import current as current_settings
from ..telemetry import semconv as sc
from ..telemetry.span import AttributeValue, SpanKind, start_span
from ..usage import record_usage

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

Role = Literal["system", "user", "assistant", "tool"]


@attrs.frozen
class ToolCall:
    """A tool the model asked to call. ``arguments`` is the JSON text it sent."""

    id: str
    name: str
    arguments: str = "{}"


@attrs.frozen
class Message:
    """One chat message. Assistant messages may carry ``tool_calls``; tool
    results are ``role="tool"`` messages naming the ``tool_call_id`` they answer."""

    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


@attrs.frozen
class ToolSpec:
    """A tool offered to the model: name, description, JSON schema of arguments."""

    name: str
    description: str
    parameters: Mapping[str, Any]


@attrs.frozen
class ResponseFormat:
    """Structured-output request: ``json_schema`` (with ``schema``) or ``json_object``."""

    type: Literal["json_schema", "json_object"]
    name: str = "response"
    schema: Mapping[str, Any] | None = None
    strict: bool = True


def _tuple(value: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(value)


@attrs.frozen
class LMRequest:
    """Everything one model call needs, provider-neutral.

    ``params`` holds sampling parameters (``temperature``, ``max_tokens``,
    ``top_p``, ``stop``, ``seed``, ...); the model's own defaults fill in what
    is missing. ``timeout`` bounds the whole call, retries included.
    """

    messages: tuple[Message, ...] = attrs.field(converter=_tuple)
    tools: tuple[ToolSpec, ...] = attrs.field(default=(), converter=_tuple)
    tool_choice: str | None = None
    response_format: ResponseFormat | None = None
    params: Mapping[str, Any] = attrs.field(factory=dict)
    timeout: float | None = None


@attrs.frozen
class LMResponse:
    """What a model returned: text, tool calls, usage, why it stopped, which model."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = attrs.field(default=(), converter=_tuple)
    usage: Usage = attrs.field(factory=Usage)
    finish_reason: str | None = None
    model: str = ""
    cached: bool = False


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
        """Perform one call. Implementations raise ``td.errors.LMError`` subclasses."""

    async def request(self, request: LMRequest) -> LMResponse:
        """Call the model with ``request`` and return its response.

        Applies :attr:`defaults`, records the usage into every active
        :func:`~trio_dspy.track_usage` block and appends to :attr:`history`.

        Raises:
            trio_dspy.errors.LMError: the call failed (subclass says how).
        """
        if self.defaults:
            request = attrs.evolve(request, params={**self.defaults, **request.params})
        started_at, t0 = time.time(), time.perf_counter()
        with start_span(f"chat {self.model_name}", SpanKind.CLIENT) as span:
            if span.is_recording:
                span.set_attributes(self._request_attributes(request))
            response = await self.send(request)
            if span.is_recording:
                span.set_attributes(_response_attributes(response))
        record_usage(response.usage)
        self.history.append(HistoryEntry(request, response, started_at, time.perf_counter() - t0))
        return response

    def _request_attributes(self, request: LMRequest) -> dict[str, AttributeValue | None]:
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
        if current_settings().trace_content:
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


def _response_attributes(response: LMResponse) -> dict[str, AttributeValue | None]:
    attributes: dict[str, AttributeValue | None] = {
        sc.GEN_AI_RESPONSE_MODEL: response.model or None,
        sc.GEN_AI_RESPONSE_FINISH_REASONS: (response.finish_reason,)
        if response.finish_reason
        else None,
        sc.GEN_AI_USAGE_INPUT_TOKENS: response.usage.prompt_tokens,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: response.usage.completion_tokens,
        "trio_dspy.cached": response.cached or None,
    }
    if current_settings().trace_content:
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
