"""The values a program and a language model exchange: messages, tools, requests, responses.

A leaf module: adapters, tools, agents and model clients all speak in these
values, so they depend on this module and not on one another.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import attrs

from .primitives import Usage
from .unicode import clean_json, clean_text

__all__ = [
    "AudioPart",
    "ContentPart",
    "FilePart",
    "ImagePart",
    "LMRequest",
    "LMResponse",
    "Message",
    "ResponseFormat",
    "Role",
    "TextPart",
    "ToolCall",
    "ToolCallDelta",
    "ToolSpec",
    "loggable",
    "short_url",
    "text_message",
    "trusted_request",
    "trusted_response",
]

Role = Literal["system", "user", "assistant", "tool"]


def short_url(url: str) -> str:
    """``url`` as reprs, logs and spans show it: a ``data:`` URL without its payload.

    ``data:image/png;base64,iVBOR...`` (megabytes) becomes
    ``data:image/png;base64,<183204 chars>``; other URLs are returned as is.
    """
    if not url.startswith("data:"):
        return url
    head, sep, payload = url.partition(",")
    return f"{head}{sep}<{len(payload)} chars>"


@attrs.frozen
class TextPart:
    """A piece of text in a message made of several parts."""

    text: str = attrs.field(converter=clean_text)


@attrs.frozen(repr=False)
class ImagePart:
    """An image in a message: an ``http(s)`` URL, or a ``data:`` URL holding the bytes.

    Its repr shows a ``data:`` URL without the payload (:func:`short_url`).
    """

    url: str

    def __repr__(self) -> str:
        return f"ImagePart({short_url(self.url)!r})"


@attrs.frozen(repr=False)
class AudioPart:
    """Audio in a message: base64 ``data`` in ``format`` (``wav``, ``mp3``).

    Its repr, :attr:`Message.text` and :func:`loggable` show the size of
    the data, never the data.
    """

    data: str
    format: str

    def __repr__(self) -> str:
        return f"AudioPart(format={self.format!r}, data=<{len(self.data)} chars>)"


@attrs.frozen(repr=False)
class FilePart:
    """A file in a message: inline ``file_data`` (a base64 ``data:`` URL), or a
    provider's ``file_id``; ``filename`` names it. Shown without its data."""

    file_data: str | None = None
    file_id: str | None = None
    filename: str | None = None

    def __repr__(self) -> str:
        data = None if self.file_data is None else short_url(self.file_data)
        return f"FilePart(file_data={data!r}, file_id={self.file_id!r}, filename={self.filename!r})"


ContentPart = TextPart | ImagePart | AudioPart | FilePart
"""One part of a message's content: text, an image, audio or a file."""


def part_placeholder(part: ContentPart) -> str:
    """A part as plain text shows it: the text itself, media as a short
    ``[image: URL]``-style placeholder that never holds the data."""
    if isinstance(part, TextPart):
        return part.text
    if isinstance(part, ImagePart):
        return f"[image: {short_url(part.url)}]"
    if isinstance(part, AudioPart):
        return f"[audio: {part.format}, <{len(part.data)} chars>]"
    name = part.filename or part.file_id or "file"
    return f"[file: {name}]"


@attrs.frozen
class ToolCall:
    """A tool the model asked to call. ``arguments`` is the JSON text it sent."""

    id: str = attrs.field(converter=clean_text)
    name: str = attrs.field(converter=clean_text)
    arguments: str = attrs.field(default="{}", converter=clean_text)


@attrs.frozen
class ToolCallDelta:
    """A piece of a tool call's arguments, as a streamed model writes them.

    Attributes:
        index: the call's position among the response's tool calls (from 0).
        id: the call's id, once known (``""`` before the provider sent it).
        name: the tool's name, once known.
        arguments: the next piece of the call's JSON arguments (never empty).
    """

    index: int
    id: str
    name: str
    arguments: str


def _content(value: str | Sequence[ContentPart]) -> str | tuple[ContentPart, ...]:
    if isinstance(value, str):
        # ASCII, the usual prompt, holds no surrogate: clean as it is.
        return value if value.isascii() else clean_text(value)
    return tuple(value)


def _optional_text(value: str | None) -> str | None:
    return None if value is None else clean_text(value)


@attrs.frozen
class Message:
    """One chat message. Assistant messages may carry ``tool_calls``; tool
    results are ``role="tool"`` messages naming the ``tool_call_id`` they answer.

    ``content`` is text, or (for a user message that shows images) a tuple of
    :class:`TextPart` and :class:`ImagePart` in reading order.
    """

    role: Role
    content: str | tuple[ContentPart, ...] = attrs.field(default="", converter=_content)
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = attrs.field(default=None, converter=_optional_text)
    name: str | None = attrs.field(default=None, converter=_optional_text)

    @property
    def text(self) -> str:
        """The content as plain text: the text parts in order, each image as a
        short ``[image: URL]`` placeholder (never its data)."""
        if isinstance(self.content, str):
            return self.content
        return "".join(part_placeholder(p) for p in self.content)


def _short_images(inst: Any, field: attrs.Attribute[Any] | None, value: Any) -> Any:
    if isinstance(inst, ImagePart) and field is not None and field.name == "url":
        return short_url(value)
    if isinstance(inst, AudioPart) and field is not None and field.name == "data":
        return f"<{len(value)} chars>"
    if isinstance(inst, FilePart) and field is not None and field.name == "file_data":
        return None if value is None else short_url(value)
    return value


def loggable(message: Message) -> dict[str, Any]:
    """``message`` as a dict for spans and logs: an image shows as its URL
    without the base64 payload (:func:`short_url`), audio and files as the
    size of their data, never as megabytes of data."""
    return attrs.asdict(message, value_serializer=_short_images)


@attrs.frozen
class ToolSpec:
    """A tool offered to the model: name, description, JSON schema of arguments."""

    name: str = attrs.field(converter=clean_text)
    description: str = attrs.field(converter=clean_text)
    parameters: Mapping[str, Any] = attrs.field(converter=clean_json)


@attrs.frozen
class ResponseFormat:
    """Structured-output request: ``json_schema`` (with ``schema``) or ``json_object``."""

    type: Literal["json_schema", "json_object"]
    name: str = "response"
    schema: Mapping[str, Any] | None = None
    strict: bool = True


if TYPE_CHECKING:

    def _tuple(value: Sequence[Any]) -> tuple[Any, ...]: ...

else:
    _tuple = tuple  # the builtin itself: a converter that costs no Python call


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
    #: Tells otherwise identical requests apart in the LM's cache (never sent), as
    #: DSPy's ``rollout_id``: separate samples of one prompt get separate answers.
    rollout_id: int | None = None


@attrs.frozen
class LMResponse:
    """What a model returned: text, tool calls, usage, why it stopped, which model.

    These describe the first completion. A request for several (``n=3``)
    puts the others in ``alternatives``, each an ``LMResponse`` of its own
    text, tool calls and finish reason (its usage is counted in this one's);
    :attr:`choices` lists them all, this one first.
    """

    text: str = attrs.field(default="", converter=clean_text)
    tool_calls: tuple[ToolCall, ...] = attrs.field(default=(), converter=_tuple)
    usage: Usage = attrs.field(factory=Usage)
    finish_reason: str | None = None
    model: str = ""
    cached: bool = False
    alternatives: tuple[LMResponse, ...] = attrs.field(default=(), converter=_tuple)
    #: The model's own reasoning, from a model that returns it beside the
    #: answer (``reasoning_content``, Anthropic's ``thinking``); else ``None``.
    reasoning: str | None = attrs.field(default=None, converter=_optional_text)

    @property
    def choices(self) -> tuple[LMResponse, ...]:
        """Every completion: this response, then its :attr:`alternatives`."""
        return (self, *self.alternatives)


# -------------------------------------------------------- built without attrs
# Every call builds a user message, a request and a response. attrs' frozen
# ``__init__`` sets each field through ``object.__setattr__`` and runs each
# converter, about twice what setting the slots directly costs; the builders
# below set the slots directly for values their callers know to be in the
# converters' form already. A test checks that they set every field.
_new = object.__new__


def _slot_setters(cls: type, *names: str) -> tuple[Any, ...]:
    return tuple(cls.__dict__[name].__set__ for name in names)


_MESSAGE_FIELDS = ("role", "content", "tool_calls", "tool_call_id", "name")
_M_ROLE, _M_CONTENT, _M_CALLS, _M_CALL_ID, _M_NAME = _slot_setters(Message, *_MESSAGE_FIELDS)


def text_message(role: Role, text: str) -> Message:
    """``Message(role, text)``, built faster: text content and nothing else.

    The text is cleaned as the constructor cleans it (each lone surrogate
    becomes U+FFFD). Raises nothing.
    """
    message = _new(Message)
    _M_ROLE(message, role)
    _M_CONTENT(message, text if text.isascii() else clean_text(text))
    _M_CALLS(message, ())
    _M_CALL_ID(message, None)
    _M_NAME(message, None)
    return message


_REQUEST_FIELDS = (
    "messages",
    "tools",
    "tool_choice",
    "response_format",
    "params",
    "timeout",
    "rollout_id",
)
_Q_MESSAGES, _Q_TOOLS, _Q_CHOICE, _Q_FORMAT, _Q_PARAMS, _Q_TIMEOUT, _Q_ROLLOUT = _slot_setters(
    LMRequest, *_REQUEST_FIELDS
)


def trusted_request(
    messages: tuple[Message, ...],
    tools: tuple[ToolSpec, ...],
    response_format: ResponseFormat | None,
    params: Mapping[str, Any],
) -> LMRequest:
    """``LMRequest(messages, tools=tools, response_format=..., params=params)``
    for an adapter's request, built faster: ``messages`` and ``tools`` must
    be tuples already (the converters' form). Raises nothing."""
    request = _new(LMRequest)
    _Q_MESSAGES(request, messages)
    _Q_TOOLS(request, tools)
    _Q_CHOICE(request, None)
    _Q_FORMAT(request, response_format)
    _Q_PARAMS(request, params)
    _Q_TIMEOUT(request, None)
    _Q_ROLLOUT(request, None)
    return request


_RESPONSE_FIELDS = (
    "text",
    "tool_calls",
    "usage",
    "finish_reason",
    "model",
    "cached",
    "alternatives",
    "reasoning",
)
_R_TEXT, _R_CALLS, _R_USAGE, _R_FINISH, _R_MODEL, _R_CACHED, _R_ALTERNATIVES, _R_REASONING = (
    _slot_setters(LMResponse, *_RESPONSE_FIELDS)
)


def trusted_response(
    text: str,
    tool_calls: tuple[ToolCall, ...],
    usage: Usage,
    finish_reason: str | None,
    model: str,
    alternatives: tuple[LMResponse, ...],
    reasoning: str | None,
) -> LMResponse:
    """An uncached ``LMResponse`` of text already clean, built faster.

    For a model client's reader of a body decoded by
    :func:`~trio_dspy.lm.params.load_json` (which replaced every lone
    surrogate): the text is not cleaned again, and ``tool_calls`` and
    ``alternatives`` must be tuples. Anything else goes through
    ``LMResponse(...)``, whose converters clean. Raises nothing.
    """
    response = _new(LMResponse)
    _R_TEXT(response, text)
    _R_CALLS(response, tool_calls)
    _R_USAGE(response, usage)
    _R_FINISH(response, finish_reason)
    _R_MODEL(response, model)
    _R_CACHED(response, False)
    _R_ALTERNATIVES(response, alternatives)
    _R_REASONING(response, reasoning)
    return response
