"""Anthropic Messages streams (``stream: true``): named server-sent events.

``message_start`` brings the message (model, input usage);
``content_block_start`` opens block ``index`` (``text``, or ``tool_use``
with ``id`` and ``name``); ``content_block_delta`` adds to it (``text_delta``
text, ``input_json_delta`` a piece of the tool input's JSON,
``thinking_delta`` the model's reasoning; other kinds are skipped);
``message_delta`` gives the
``stop_reason`` and the output usage so far; ``message_stop`` ends the
stream; ``ping`` keeps it alive; ``error`` reports an error mid-stream.
"""

from __future__ import annotations

import io
import json
from typing import Any

import attrs

from ..http.sse import SSEEvent
from ..messages import LMResponse, ToolCall, ToolCallDelta
from ..primitives import Usage
from .errors import read_error_body
from .params import clean_arguments, optional_text, read_index, read_text, token_count
from .streaming import StreamDecoder, StreamErrorEvent, load_event

__all__ = ["STOP_REASONS", "AnthropicStreamDecoder", "anthropic_tokens"]

#: Anthropic's stop reasons as the OpenAI finish reasons the rest of the library uses.
STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
}
# The statuses an error event's type stands for (as Anthropic documents them).
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


def anthropic_tokens(usage: Any) -> tuple[int, int]:
    """Prompt and completion tokens of an Anthropic ``usage`` object (cache reads included)."""
    usage = usage if isinstance(usage, dict) else {}
    prompt = (
        token_count(usage.get("input_tokens"))
        + token_count(usage.get("cache_creation_input_tokens"))
        + token_count(usage.get("cache_read_input_tokens"))
    )
    return prompt, token_count(usage.get("output_tokens"))


@attrs.define
class _Block:
    kind: str
    call_index: int = 0  # its position among the tool_use blocks
    id: str = ""
    name: str = ""
    start_input: Any = None
    # One growing buffer, not a list of pieces: a long answer in thousands of
    # small deltas would cost an object header per piece.
    parts: io.StringIO = attrs.field(factory=io.StringIO)


class AnthropicStreamDecoder(StreamDecoder):
    """Assembles a Messages stream into an :class:`LMResponse`."""

    def __init__(self, model: str) -> None:
        super().__init__()
        self._model = model
        self._blocks: dict[int, _Block] = {}
        self._prompt = 0
        self._completion = 0
        self._stop: str | None = None

    def feed(self, event: SSEEvent) -> str:
        """The text delta of one event; tool input pieces (also queued in
        :attr:`tool_deltas`), usage and stop reason are kept.

        Raises:
            StreamErrorEvent: an ``error`` event.
            BadField: an index is not a position.
            Exception: one of :data:`~trio_dspy.lm.params.MALFORMED`: the event is garbled.
        """
        data = load_event(event)
        kind = event.event if event.event != "message" else str(data.get("type") or "")
        if kind == "content_block_delta":
            return self._delta(data)
        if kind == "message_start":
            message = data["message"]
            self._model = optional_text(message.get("model")) or self._model
            self._prompt, self._completion = anthropic_tokens(message.get("usage"))
        elif kind == "content_block_start":
            block = data["content_block"]
            index = read_index(data["index"], "content_block_start.index")
            self._blocks[index] = _Block(
                kind=str(block.get("type")),
                call_index=sum(b.kind == "tool_use" for b in self._blocks.values()),
                id=str(block.get("id") or ""),
                name=read_text(block.get("name"), "content_block.name"),
                start_input=block.get("input"),
            )
            text = read_text(block.get("text"), "content_block.text")
            if block.get("type") == "text" and text:
                self._blocks[index].parts.write(text)
                return text
        elif kind == "message_delta":
            reason = optional_text((data.get("delta") or {}).get("stop_reason"))
            if reason:
                self._stop = STOP_REASONS.get(reason, reason)
            usage = data.get("usage")
            if isinstance(usage, dict):
                prompt, completion = anthropic_tokens(usage)
                self._prompt = prompt or self._prompt
                self._completion = completion or self._completion
        elif kind == "message_stop":
            self.finished = True
        elif kind == "error":
            error = data.get("error") or {}
            status = _ERROR_STATUS.get(str(error.get("type")), 500)
            raise StreamErrorEvent(status, read_error_body(data, event.data[:2000]))
        return ""

    def _delta(self, data: dict[str, Any]) -> str:
        index = read_index(data["index"], "content_block_delta.index")
        block = self._blocks.setdefault(index, _Block("text"))
        delta = data["delta"]
        kind = delta.get("type")
        if kind == "text_delta":
            text = read_text(delta.get("text"), "delta.text")
            block.parts.write(text)
            return text
        if kind == "thinking_delta":  # extended thinking: the response's reasoning
            block.parts.write(read_text(delta.get("thinking"), "delta.thinking"))
            return ""
        if kind == "input_json_delta":
            piece = read_text(delta.get("partial_json"), "delta.partial_json")
            block.parts.write(piece)
            if piece and block.kind == "tool_use":
                self.tool_deltas.append(
                    ToolCallDelta(block.call_index, block.id, block.name, piece)
                )
        return ""

    @property
    def complete(self) -> bool:
        """Whether ``message_stop`` or a stop reason arrived."""
        return self.finished or self._stop is not None

    def response(self) -> LMResponse:
        """The text blocks joined, the ``tool_use`` blocks as calls, usage, stop reason."""
        texts: list[str] = []
        thinking: list[str] = []
        calls: list[ToolCall] = []
        for _, block in sorted(self._blocks.items()):
            if block.kind == "text":
                texts.append(block.parts.getvalue())
            elif block.kind == "thinking":
                thinking.append(block.parts.getvalue())
            elif block.kind == "tool_use":
                arguments = clean_arguments(block.parts.getvalue()) or json.dumps(
                    block.start_input or {}, ensure_ascii=False
                )
                calls.append(ToolCall(id=block.id, name=block.name, arguments=arguments))
        return LMResponse(
            text="".join(texts),
            tool_calls=tuple(calls),
            usage=Usage(self._prompt, self._completion, self._prompt + self._completion),
            finish_reason=self._stop,
            model=self._model,
            reasoning="".join(thinking) or None,
        )
