"""Anthropic Messages API (``LM("anthropic/<model>")``).

The system prompt goes to the top-level ``system`` field; assistant tool
calls become ``tool_use`` blocks and tool results ``tool_result`` blocks in
the following user turn; ``max_tokens`` is required (default 4096). There is
no JSON-schema response format here: structured output relies on the prompt,
which already spells out the schema.
"""

from __future__ import annotations

import json
from typing import Any

from ..http import Secret
from ..messages import (
    AudioPart,
    ContentPart,
    FilePart,
    LMRequest,
    LMResponse,
    Message,
    TextPart,
    ToolCall,
)
from ..primitives import Usage
from .anthropic_parts import media_block
from .anthropic_stream import STOP_REASONS, AnthropicStreamDecoder, anthropic_tokens
from .client import LM
from .params import BadField, optional_text, read_text

__all__ = ["AnthropicLM"]

DEFAULT_MAX_TOKENS = 4096
API_VERSION = "2023-06-01"

# OpenAI-only parameters Anthropic would reject.
_DROPPED = frozenset(
    {
        "seed",
        "n",
        "presence_penalty",
        "frequency_penalty",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "response_format",
        "parallel_tool_calls",
        "stream",
        "user",
    }
)


def _input(arguments: str) -> Any:
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return {"_raw": arguments}
    return value if isinstance(value, dict) else {"value": value}


def _content_blocks(content: str | tuple[ContentPart, ...]) -> list[dict[str, Any]]:
    """``text`` blocks, and ``image`` blocks: a data: URL as ``base64``, else ``url``."""
    parts = (TextPart(content),) if isinstance(content, str) else content
    blocks: list[dict[str, Any]] = []
    for p in parts:
        if isinstance(p, TextPart):
            if p.text:
                blocks.append({"type": "text", "text": p.text})
        elif isinstance(p, AudioPart | FilePart):
            blocks.append(media_block(p))
        elif p.url.startswith("data:"):
            head, _, data = p.url.partition(",")
            media_type = head[5:].partition(";")[0]
            source = {"type": "base64", "media_type": media_type, "data": data}
            blocks.append({"type": "image", "source": source})
        else:
            blocks.append({"type": "image", "source": {"type": "url", "url": p.url}})
    return blocks


def _blocks(m: Message) -> list[dict[str, Any]]:
    if m.role == "tool":
        return [{"type": "tool_result", "tool_use_id": m.tool_call_id or "", "content": m.text}]
    blocks = _content_blocks(m.content)
    blocks.extend(
        {"type": "tool_use", "id": c.id, "name": c.name, "input": _input(c.arguments)}
        for c in m.tool_calls
    )
    return blocks


def _messages(messages: tuple[Message, ...]) -> tuple[str, list[dict[str, Any]]]:
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            system.append(m.text)
            continue
        role = "assistant" if m.role == "assistant" else "user"
        blocks = _blocks(m)
        if not blocks:
            continue
        if out and out[-1]["role"] == role:  # Anthropic wants alternating turns
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return "\n\n".join(system), out


class AnthropicLM(LM):
    """Anthropic's Messages API.

    ``base_url`` defaults to ``$ANTHROPIC_BASE_URL``, then
    ``https://api.anthropic.com`` (``/v1/messages`` is appended; a base URL
    already ending in ``/v1`` gets ``/messages``); ``api_key`` to
    ``$ANTHROPIC_API_KEY`` (sent as ``x-api-key``). See :class:`LM` for every option.
    """

    provider = "anthropic"
    default_base_url = "https://api.anthropic.com"
    base_url_env = "ANTHROPIC_BASE_URL"
    api_key_env = "ANTHROPIC_API_KEY"

    def endpoint_path(self, base_path: str) -> str:
        """``/messages`` after a ``.../v1`` base URL, else ``/v1/messages``."""
        return "/messages" if base_path.rstrip("/").endswith("/v1") else "/v1/messages"

    def extra_headers(self) -> dict[str, str]:
        """The ``anthropic-version`` header."""
        return {"anthropic-version": API_VERSION}

    def auth_headers(self, api_key: Secret) -> dict[str, Secret]:
        """``x-api-key: <key>``."""
        return {"x-api-key": api_key}

    def build_body(self, request: LMRequest, level: str | None) -> dict[str, Any]:
        """The ``/v1/messages`` body for ``request`` (``level`` is always prompt-only here)."""
        system, messages = _messages(request.messages)
        body: dict[str, Any] = {"model": self.model_name, "messages": messages}
        if system:
            body["system"] = system
        params = dict(request.params)
        if "max_completion_tokens" in params:
            params.setdefault("max_tokens", params.pop("max_completion_tokens"))
        stop = params.pop("stop", None)
        if stop:
            params["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
        for key, value in params.items():
            if value is not None and key not in _DROPPED:
                body[key] = value
        body.setdefault("max_tokens", DEFAULT_MAX_TOKENS)
        if request.tools:
            body["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.parameters}
                for t in request.tools
            ]
        choice = request.tool_choice
        if choice is not None:
            if choice == "none":
                body["tool_choice"] = {"type": "none"}
            elif choice == "auto":
                body["tool_choice"] = {"type": "auto"}
            elif choice == "required":
                body["tool_choice"] = {"type": "any"}
            else:
                body["tool_choice"] = {"type": "tool", "name": choice}
        return body

    def parse_body(self, data: Any) -> LMResponse:
        """Text blocks, ``tool_use`` blocks, usage and stop reason of a Messages response.
        A stop reason or model that is not a string is left unknown; usage
        that cannot be read counts as 0.

        Raises:
            BadField: a text or tool name field holds no text.
            Exception: another of :data:`~trio_dspy.lm.params.MALFORMED`: the
                body is not a Messages response.
        """
        texts: list[str] = []
        thinking: list[str] = []
        calls: list[ToolCall] = []
        content = data["content"]
        if not isinstance(content, list):
            raise BadField("content", content, "a list of blocks")
        for block in content:
            kind = block.get("type")
            if kind == "text":
                texts.append(read_text(block.get("text"), "content[].text"))
            elif kind == "thinking":  # extended thinking: the model's reasoning
                thinking.append(read_text(block.get("thinking"), "content[].thinking"))
            elif kind == "tool_use":
                calls.append(
                    ToolCall(
                        id=str(block["id"]),
                        name=read_text(block["name"], "content[].name", null=False),
                        arguments=json.dumps(block.get("input") or {}, ensure_ascii=False),
                    )
                )
        prompt, completion = anthropic_tokens(data.get("usage"))
        reason = optional_text(data.get("stop_reason"))
        return LMResponse(
            text="".join(texts),
            tool_calls=tuple(calls),
            usage=Usage(prompt, completion, prompt + completion),
            finish_reason=STOP_REASONS.get(reason, reason) if reason else None,
            model=optional_text(data.get("model")) or self.model_name,
            reasoning="".join(thinking) or None,
        )

    def stream_decoder(self) -> AnthropicStreamDecoder:
        """A reader of Messages stream events."""
        return AnthropicStreamDecoder(self.model_name)
