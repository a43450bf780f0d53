"""Anthropic Messages: request/response mapping, headers, errors."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from trio_dspy.errors import ContextWindowExceededError, LMAuthError
from trio_dspy.lm import LM, LMRequest, Message, ResponseFormat, ToolCall, ToolSpec
from trio_dspy.lm.anthropic import AnthropicLM

from .test_lm_support import KEY, Scripted

TOOL = ToolSpec(
    "lookup", "Find an order", {"type": "object", "properties": {"id": {"type": "string"}}}
)


def messages_body(
    content: list[dict[str, Any]], stop: str = "end_turn", usage: tuple[int, int] = (20, 7)
) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x-2025",
        "content": content,
        "stop_reason": stop,
        "usage": {"input_tokens": usage[0], "output_tokens": usage[1]},
    }


def text_reply(text: str = "ok", **kw: Any) -> httpx.Response:
    return httpx.Response(200, json=messages_body([{"type": "text", "text": text}], **kw))


def anthropic(server: Scripted, **kw: Any) -> LM:
    kw.setdefault("base_url", "http://sim.test")
    return server.lm("anthropic/claude-x", **kw)


async def test_lm_dispatches_to_the_anthropic_client() -> None:
    lm = anthropic(Scripted(text_reply()))
    assert isinstance(lm, AnthropicLM) and isinstance(lm, LM)
    assert (lm.provider, lm.model, lm.model_name) == ("anthropic", "anthropic/claude-x", "claude-x")


async def test_conversation_maps_to_messages_body_and_headers() -> None:
    server = Scripted(text_reply())
    lm = anthropic(server, temperature=0.5)
    request = LMRequest(
        messages=[
            Message("system", "you are a shop assistant"),
            Message("user", "where is order 7?"),
            Message(
                "assistant",
                "Let me check.",
                tool_calls=(
                    ToolCall("t1", "lookup", '{"id": "7"}'),
                    ToolCall("t2", "lookup", '{"id": "8"}'),
                ),
            ),
            Message("tool", "shipped", tool_call_id="t1"),
            Message("tool", "pending", tool_call_id="t2"),
        ],
        tools=[TOOL],
        tool_choice="required",
        params={"stop": "END", "seed": 3, "max_completion_tokens": 99},
    )
    await lm.request(request)
    (sent,) = server.requests
    assert sent.url == "http://sim.test/v1/messages"
    assert sent.headers["x-api-key"] == KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    assert server.bodies[0] == {
        "model": "claude-x",
        "system": "you are a shop assistant",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "where is order 7?"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "t1", "name": "lookup", "input": {"id": "7"}},
                    {"type": "tool_use", "id": "t2", "name": "lookup", "input": {"id": "8"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "shipped"},
                    {"type": "tool_result", "tool_use_id": "t2", "content": "pending"},
                ],
            },
        ],
        "temperature": 0.5,
        "max_tokens": 99,
        "stop_sequences": ["END"],
        "tools": [
            {"name": "lookup", "description": "Find an order", "input_schema": TOOL.parameters}
        ],
        "tool_choice": {"type": "any"},
    }


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("lookup", {"type": "tool", "name": "lookup"}),
    ],
)
async def test_tool_choice_mapping(choice: str, wire: dict[str, str]) -> None:
    server = Scripted(text_reply())
    await anthropic(server).request(
        LMRequest([Message("user", "hi")], tools=[TOOL], tool_choice=choice)
    )
    assert server.bodies[0]["tool_choice"] == wire


async def test_max_tokens_defaults_and_response_format_is_prompt_only() -> None:
    server = Scripted(text_reply('{"a": 1}'))
    fmt = ResponseFormat("json_schema", schema={"type": "object"})
    await anthropic(server).request(LMRequest([Message("user", "hi")], response_format=fmt))
    body = server.bodies[0]
    assert body["max_tokens"] == 4096
    assert "response_format" not in body
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "base_url", ["http://sim.test", "http://sim.test/v1", "http://sim.test/v1/"]
)
async def test_base_url_with_or_without_v1(base_url: str) -> None:
    server = Scripted(text_reply())
    await anthropic(server, base_url=base_url).request(LMRequest([Message("user", "hi")]))
    assert server.requests[0].url == "http://sim.test/v1/messages"


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
    ],
)
async def test_stop_reason_maps_to_finish_reason(stop: str, finish: str) -> None:
    server = Scripted(text_reply(stop=stop))
    response = await anthropic(server).request(LMRequest([Message("user", "hi")]))
    assert response.finish_reason == finish


async def test_text_and_tool_use_blocks_and_usage_are_parsed() -> None:
    content: list[dict[str, Any]] = [
        {"type": "text", "text": "Checking "},
        {"type": "text", "text": "now."},
        {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"id": "7"}},
    ]
    body = messages_body(content, stop="tool_use", usage=(100, 25))
    body["usage"]["cache_read_input_tokens"] = 50
    server = Scripted(httpx.Response(200, json=body))
    response = await anthropic(server).request(LMRequest([Message("user", "hi")], tools=[TOOL]))
    assert response.text == "Checking now."
    assert response.tool_calls == (ToolCall("toolu_1", "lookup", '{"id": "7"}'),)
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (150, 25)
    assert response.usage.total_tokens == 175
    assert response.model == "claude-x-2025"


def anthropic_error(status: int, kind: str, message: str) -> httpx.Response:
    return httpx.Response(
        status, json={"type": "error", "error": {"type": kind, "message": message}}
    )


async def test_prompt_too_long_is_a_context_window_error() -> None:
    server = Scripted(
        anthropic_error(
            400, "invalid_request_error", "prompt is too long: 250000 tokens > 200000 maximum"
        )
    )
    with pytest.raises(ContextWindowExceededError, match="prompt is too long"):
        await anthropic(server).request(LMRequest([Message("user", "hi")]))


async def test_auth_error_names_the_env_var() -> None:
    server = Scripted(anthropic_error(401, "authentication_error", "invalid x-api-key"))
    with pytest.raises(LMAuthError, match="ANTHROPIC_API_KEY") as info:
        await anthropic(server).request(LMRequest([Message("user", "hi")]))
    assert info.value.status_code == 401 and "invalid x-api-key" in str(info.value)
    assert (info.value.code, info.value.param) == ("authentication_error", None)
    assert len(server.requests) == 1


async def test_overloaded_529_is_retried(autojump_clock: object) -> None:
    server = Scripted(anthropic_error(529, "overloaded_error", "Overloaded"), text_reply("fine"))
    response = await anthropic(server).request(LMRequest([Message("user", "hi")]))
    assert response.text == "fine"
    assert len(server.requests) == 2


async def test_key_comes_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "ak-env")
    server = Scripted(text_reply())
    lm = LM("anthropic/claude-x", base_url="http://sim.test", transport=httpx.MockTransport(server))
    await lm.request(LMRequest([Message("user", "hi")]))
    assert server.requests[0].headers["x-api-key"] == "ak-env"
