"""OpenAI Chat Completions (and every server that speaks it: vLLM, llama.cpp, Ollama, ...).

Maps :class:`~trio_dspy.messages.LMRequest` to a ``/chat/completions`` body and
``choices[0]`` back to an :class:`~trio_dspy.messages.LMResponse`. Structured
output is asked for as ``json_schema``; servers that refuse it are stepped
down to ``json_object`` (schema inlined, which llama.cpp's server honours)
and then to plain prompting, and the LM remembers the level that worked.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..http import Reply, Secret
from ..messages import (
    AudioPart,
    ContentPart,
    FilePart,
    LMRequest,
    LMResponse,
    Message,
    TextPart,
    ToolCall,
    trusted_response,
)
from .client import LM
from .openai_stream import OpenAIStreamDecoder, openai_usage, tool_arguments, with_header_cost
from .params import clean_arguments, optional_text, read_text

__all__ = ["OpenAILM"]

_TOOL_CHOICE_KEYWORDS = frozenset({"auto", "none", "required"})
# Parameters this client owns (it asks for a stream in stream_body).
_DROPPED = frozenset({"stream", "stream_options"})


def _content(content: str | tuple[ContentPart, ...]) -> str | list[dict[str, Any]]:
    """Text as is; parts as ``text``, ``image_url`` (a data: URL carries bytes),
    ``input_audio`` and ``file`` parts, as Chat Completions takes them."""
    if isinstance(content, str):
        return content
    return [_part(p) for p in content]


def _part(p: ContentPart) -> dict[str, Any]:
    if isinstance(p, TextPart):
        return {"type": "text", "text": p.text}
    if isinstance(p, AudioPart):
        return {"type": "input_audio", "input_audio": {"data": p.data, "format": p.format}}
    if isinstance(p, FilePart):
        fields = {"file_data": p.file_data, "file_id": p.file_id, "filename": p.filename}
        return {"type": "file", "file": {k: v for k, v in fields.items() if v is not None}}
    return {"type": "image_url", "image_url": {"url": p.url}}


def _message(m: Message) -> dict[str, Any]:
    if m.role == "tool":
        return {"role": "tool", "tool_call_id": m.tool_call_id or "", "content": m.text}
    out: dict[str, Any] = {"role": m.role, "content": _content(m.content)}
    if m.tool_calls:
        out["content"] = out["content"] or None
        out["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments},
            }
            for c in m.tool_calls
        ]
    if m.name:
        out["name"] = m.name
    return out


def _response_format(request: LMRequest, level: str | None) -> dict[str, Any] | None:
    fmt = request.response_format
    if fmt is None or level in (None, "prompt"):
        return None
    if level == "json_schema" and fmt.schema is not None:
        return {
            "type": "json_schema",
            "json_schema": {"name": fmt.name, "schema": fmt.schema, "strict": fmt.strict},
        }
    out: dict[str, Any] = {"type": "json_object"}
    if fmt.schema is not None:
        out["schema"] = fmt.schema
    return out


class OpenAILM(LM):
    """An OpenAI-compatible Chat Completions endpoint (``LM("openai/<model>")``).

    ``base_url`` defaults to ``$OPENAI_BASE_URL``, then
    ``https://api.openai.com/v1``; ``api_key`` to ``$OPENAI_API_KEY`` (sent as
    a bearer token; local servers usually need none). See :class:`LM` for
    every option.
    """

    provider = "openai"
    supports_n = True
    format_levels: ClassVar[tuple[str, ...]] = ("json_schema", "json_object", "prompt")
    default_base_url = "https://api.openai.com/v1"
    base_url_env = "OPENAI_BASE_URL"
    api_key_env = "OPENAI_API_KEY"
    endpoint = "/chat/completions"

    def auth_headers(self, api_key: Secret) -> dict[str, Secret]:
        """``Authorization: Bearer <key>``."""
        return {"authorization": Secret(f"Bearer {api_key.reveal()}")}

    def build_body(self, request: LMRequest, level: str | None) -> dict[str, Any]:
        """The ``/chat/completions`` body for ``request`` at response-format ``level``."""
        body: dict[str, Any] = {
            "model": self.model_name,
            "messages": [_message(m) for m in request.messages],
        }
        for key, value in request.params.items():
            if value is not None and key not in _DROPPED:
                body[key] = value
        if request.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters,
                    },
                }
                for t in request.tools
            ]
        choice = request.tool_choice
        if choice is not None:
            body["tool_choice"] = (
                choice
                if choice in _TOOL_CHOICE_KEYWORDS
                else {"type": "function", "function": {"name": choice}}
            )
        fmt = _response_format(request, level)
        if fmt is not None:
            body["response_format"] = fmt
        return body

    def parse_body(self, data: Any) -> LMResponse:
        """``choices[0]`` of a Chat Completions response (decoded by
        :func:`~trio_dspy.lm.params.load_json`), the other choices (``n``) as
        its ``alternatives``. A finish reason or model that is not a string is
        left unknown; usage that cannot be read counts as 0.

        Raises:
            BadField: a text, tool name or arguments field holds no text.
            Exception: another of :data:`~trio_dspy.lm.params.MALFORMED`: the
                body is not a Chat Completions response.
        """
        choices = data["choices"]
        choice = choices[0]
        text, calls = _choice(choice)
        model = optional_text(data.get("model")) or self.model_name
        alternatives = (
            tuple(
                LMResponse(
                    *_choice(c), finish_reason=optional_text(c.get("finish_reason")), model=model
                )
                for c in choices[1:]
            )
            if len(choices) > 1  # one choice (no ``n``): no generator to build per call
            else ()
        )
        # ``data`` was decoded by load_json, which cleaned its text already.
        return trusted_response(
            text,
            calls,
            openai_usage(data.get("usage")),
            optional_text(choice.get("finish_reason")),
            model,
            alternatives,
            _reasoning(choice),
        )

    def read_reply(self, response: LMResponse, reply: Reply) -> LMResponse:
        """``response`` with the cost a LiteLLM proxy reports in a header when
        the body's usage has none (:func:`with_header_cost`). Raises nothing."""
        return with_header_cost(response, reply)

    def stream_body(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` with ``stream`` on and usage asked for in the last chunk."""
        return {**body, "stream": True, "stream_options": {"include_usage": True}}

    def stream_decoder(self) -> OpenAIStreamDecoder:
        """A reader of ``chat.completion.chunk`` events."""
        return OpenAIStreamDecoder(self.model_name)


def _choice(choice: Any) -> tuple[str, tuple[ToolCall, ...]]:
    """The text and tool calls of one element of ``choices``."""
    message = choice.get("message") or {}
    raw_calls = message.get("tool_calls")
    if not raw_calls:  # a plain answer: no generator to build per call
        return _text(message.get("content")), ()
    calls = tuple(
        ToolCall(
            id=str(c.get("id") or f"call_{i}"),
            name=read_text(c["function"]["name"], "tool_calls[].function.name", null=False),
            arguments=clean_arguments(tool_arguments(c["function"].get("arguments"))),
        )
        for i, c in enumerate(raw_calls)
    )
    return _text(message.get("content")), calls


def _reasoning(choice: Any) -> str | None:
    """The reasoning a server returned beside the answer: ``reasoning_content``
    (DeepSeek, vLLM, LiteLLM) or ``reasoning`` (OpenRouter, Ollama); text only."""
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        return None
    value = message.get("reasoning_content")
    if type(value) is str and value:
        return value
    value = message.get("reasoning")
    return value if type(value) is str and value else None


def _text(content: Any) -> str:
    """``message.content``: a string, or a list of parts whose ``text`` parts are joined
    (some compatible servers send the parts, reasoning first, even for plain text)."""
    if not isinstance(content, list):
        return read_text(content, "message.content")
    return "".join(
        read_text(part.get("text"), "message.content[].text")
        for part in content
        if part.get("type") == "text"
    )
