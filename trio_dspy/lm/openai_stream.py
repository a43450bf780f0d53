"""Chat Completions streams (``stream: true``): ``chat.completion.chunk`` events.

Each event's data is a chunk whose ``choices[0].delta`` carries a piece of
the text (``content``) or of tool calls (``tool_calls``, pieces of one call
share its ``index``: the first brings ``id`` and ``function.name``, the
rest pieces of ``function.arguments``); the chunk that ends the choice has
its ``finish_reason``. With ``stream_options.include_usage`` a last chunk
with no choices carries ``usage``. ``data: [DONE]`` ends the stream. A chunk
with an ``error`` object is an error the server met mid-stream.
"""

from __future__ import annotations

import io
import json
from typing import Any

import attrs

from ..http import Reply
from ..http.sse import SSEEvent
from ..messages import LMResponse, ToolCall, ToolCallDelta
from ..primitives import Usage
from .errors import read_error_body
from .params import (
    MAX_TOKEN_COUNT,
    clean_arguments,
    optional_text,
    read_index,
    read_text,
    token_count,
)
from .streaming import StreamDecoder, StreamErrorEvent, load_event

__all__ = ["OpenAIStreamDecoder", "openai_usage", "tool_arguments", "with_header_cost"]


def openai_usage(usage: Any) -> Usage:
    """The :class:`Usage` in an OpenAI ``usage`` object (a count that is not a number is 0)."""
    usage = usage if isinstance(usage, dict) else {}
    prompt, completion, total = (
        usage.get("prompt_tokens"),
        usage.get("completion_tokens"),
        usage.get("total_tokens"),
    )
    # What servers send: three sane ints and no cost, read without a call each.
    if (
        type(prompt) is int
        and type(completion) is int
        and type(total) is int
        and 0 <= prompt <= MAX_TOKEN_COUNT
        and 0 <= completion <= MAX_TOKEN_COUNT
        and 0 < total <= MAX_TOKEN_COUNT
        and "cost" not in usage
    ):
        return Usage(prompt, completion, total)
    prompt, completion = token_count(prompt), token_count(completion)
    total = token_count(total) or prompt + completion
    return Usage(prompt, completion, total, cost=_reported_cost(usage.get("cost")))


def _reported_cost(value: Any) -> float | None:
    """A server's ``usage.cost`` (OpenRouter's, in US dollars): ``None`` unless a
    finite number from 0 to a million. Raises nothing."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    cost = float(value)
    return cost if 0 <= cost <= 1e6 else None  # NaN fails both comparisons


def with_header_cost(response: LMResponse, reply: Reply) -> LMResponse:
    """``response`` with the cost a LiteLLM proxy reports in its
    ``x-litellm-response-cost`` header, when its usage reports none and the
    header is a sane number (as for ``usage.cost``). Raises nothing."""
    if response.usage.cost is not None:
        return response
    header = reply.header("x-litellm-response-cost")
    if not header:  # the usual case: no proxy, and no exception raised to say so
        return response
    try:
        cost = _reported_cost(float(header))
    except ValueError:
        return response
    if cost is None:
        return response
    return attrs.evolve(response, usage=attrs.evolve(response.usage, cost=cost))


def tool_arguments(raw: Any) -> str:
    """A tool call's ``arguments`` as JSON text: as sent when text, written out when
    a server sends the object itself, ``"{}"`` when absent.

    Raises:
        ValueError, RecursionError: an object that cannot be written as JSON.
    """
    if raw is None:
        return "{}"
    return raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False)


@attrs.define
class _Call:
    id: str = ""
    name: str = ""
    arguments: list[str] = attrs.field(factory=list)


class OpenAIStreamDecoder(StreamDecoder):
    """Assembles a Chat Completions stream (``choices[0]``) into an :class:`LMResponse`."""

    def __init__(self, model: str) -> None:
        super().__init__()
        self._model = model
        # One growing buffer, not a list of pieces (an object header each).
        self._text = io.StringIO()
        self._reasoning = io.StringIO()
        self._calls: dict[int, _Call] = {}
        self._finish: str | None = None
        self._usage = Usage()

    def feed(self, event: SSEEvent) -> str:
        """The text delta of one chunk; tool-call pieces (also queued in
        :attr:`tool_deltas`), finish reason and usage are kept.

        Raises:
            StreamErrorEvent: the chunk is an error.
            BadField: a tool call's index is not a position.
            Exception: one of :data:`~trio_dspy.lm.params.MALFORMED`: the chunk is garbled.
        """
        if event.data.strip() == "[DONE]":
            self.finished = True
            return ""
        chunk = load_event(event)
        if chunk.get("error"):
            error = chunk["error"]
            code = token_count(error.get("code")) if isinstance(error, dict) else 0
            status = code if 400 <= code < 600 else 500  # vLLM puts the status in code
            raise StreamErrorEvent(status, read_error_body(chunk, event.data[:2000]))
        self._model = optional_text(chunk.get("model")) or self._model
        if chunk.get("usage"):
            self._usage = openai_usage(chunk["usage"])
        delta = ""
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta += self._choice(choice)
        return delta

    def _choice(self, choice: dict[str, Any]) -> str:
        self._finish = optional_text(choice.get("finish_reason")) or self._finish
        piece = choice.get("delta") or {}
        for part in piece.get("tool_calls") or ():
            index = read_index(part.get("index", len(self._calls)), "tool_calls[].index")
            call = self._calls.setdefault(index, _Call())
            call.id = call.id or str(part.get("id") or "")
            function = part.get("function") or {}
            call.name = call.name or read_text(function.get("name"), "function.name")
            if function.get("arguments"):
                arguments = tool_arguments(function["arguments"])
                call.arguments.append(arguments)
                self.tool_deltas.append(ToolCallDelta(index, call.id, call.name, arguments))
        for key in ("reasoning_content", "reasoning"):  # native reasoning, as the body's
            if isinstance(piece.get(key), str):
                self._reasoning.write(piece[key])
                break
        content = piece.get("content")
        if not isinstance(content, str):
            return ""
        self._text.write(content)
        return content

    @property
    def complete(self) -> bool:
        """Whether ``[DONE]`` or a finish reason arrived."""
        return self.finished or self._finish is not None

    def response(self) -> LMResponse:
        """The text, the tool calls in index order, usage, finish reason and model."""
        calls = tuple(
            ToolCall(
                id=call.id or f"call_{index}",
                name=call.name,
                arguments=clean_arguments("".join(call.arguments)) or "{}",
            )
            for index, call in sorted(self._calls.items())
        )
        return LMResponse(
            text=self._text.getvalue(),
            tool_calls=calls,
            usage=self._usage,
            finish_reason=self._finish,
            model=self._model,
            reasoning=self._reasoning.getvalue() or None,
        )
