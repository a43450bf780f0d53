"""OpenAI Chat Completions: request/response mapping and response-format step-down."""

from __future__ import annotations

import httpx
import pytest

from trio_dspy.errors import LMBadRequestError, LMServerError, ToolsUnsupportedError
from trio_dspy.lm import LMRequest, Message, ResponseFormat, ToolCall, ToolSpec
from trio_dspy.lm.openai import OpenAILM

from .test_lm_support import KEY, Scripted, chat, error, ok

SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
    "additionalProperties": False,
}
WEATHER = ToolSpec(
    "get_weather",
    "Weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}},
)


async def test_conversation_with_tools_maps_to_chat_completions_body() -> None:
    server = Scripted()
    lm = server.lm(temperature=0.2, max_tokens=50)
    request = LMRequest(
        messages=[
            Message("system", "be brief"),
            Message("user", "weather in Paris?"),
            Message(
                "assistant", "", tool_calls=(ToolCall("c1", "get_weather", '{"city":"Paris"}'),)
            ),
            Message("tool", "sunny", tool_call_id="c1"),
        ],
        tools=[WEATHER],
        tool_choice="auto",
        params={"seed": 7, "stop": ["\n\n"], "top_p": None, "stream": True},
    )
    await lm.request(request)
    (sent,) = server.requests
    assert sent.url == "http://sim.test/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    body = server.bodies[0]
    assert body == {
        "model": "m",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        ],
        "temperature": 0.2,
        "max_tokens": 50,
        "seed": 7,
        "stop": ["\n\n"],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": WEATHER.parameters,
                },
            }
        ],
        "tool_choice": "auto",
    }


async def test_tool_choice_naming_a_tool_forces_that_function() -> None:
    server = Scripted()
    await server.lm().request(
        LMRequest([Message("user", "hi")], tools=[WEATHER], tool_choice="get_weather")
    )
    assert server.bodies[0]["tool_choice"] == {
        "type": "function",
        "function": {"name": "get_weather"},
    }


async def test_response_with_tool_calls_and_usage_is_parsed() -> None:
    calls = [
        {
            "id": "call_9",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
        },
        {
            "id": "call_10",
            "type": "function",
            "function": {"name": "get_weather", "arguments": {"city": "Rome"}},
        },
    ]
    server = Scripted(
        httpx.Response(200, json=chat(None, tool_calls=calls, usage=(30, 12), finish="tool_calls"))
    )
    response = await server.lm().request(LMRequest([Message("user", "hi")], tools=[WEATHER]))
    assert response.text == ""
    assert response.tool_calls == (
        ToolCall("call_9", "get_weather", '{"city":"Oslo"}'),
        ToolCall("call_10", "get_weather", '{"city": "Rome"}'),
    )
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (30, 12)
    assert response.usage.total_tokens == 42
    assert response.finish_reason == "tool_calls"
    assert response.model == "m-2024"
    assert response.cached is False


async def test_response_without_usage_reports_zero_tokens() -> None:
    body = chat("hello")
    del body["usage"]
    server = Scripted(httpx.Response(200, json=body))
    response = await server.lm().request(LMRequest([Message("user", "hi")]))
    assert response.text == "hello"
    assert response.usage.total_tokens == 0


async def test_a_body_of_the_wrong_shape_fails_without_retries() -> None:
    server = Scripted(httpx.Response(200, json={"content": [{"type": "text", "text": "hi"}]}))
    with pytest.raises(LMServerError, match="not in the openai format"):
        await server.lm().request(LMRequest([Message("user", "hi")]))
    assert len(server.requests) == 1


async def test_a_garbled_body_is_retried(autojump_clock: object) -> None:
    server = Scripted(httpx.Response(200, text='{"choices": [{"mess'), ok("whole"))
    assert (await server.lm().request(LMRequest([Message("user", "hi")]))).text == "whole"
    server = Scripted(httpx.Response(200, text="<html>gateway</html>"))
    with pytest.raises(LMServerError, match="not JSON after 1 retry: '<html>gateway"):
        await server.lm(max_retries=1).request(LMRequest([Message("user", "hi")]))


def _structured() -> LMRequest:
    return LMRequest(
        [Message("system", "answer as JSON"), Message("user", "q")],
        response_format=ResponseFormat("json_schema", name="qa", schema=SCHEMA),
    )


async def test_json_schema_response_format_is_sent_strict() -> None:
    server = Scripted(ok('{"answer": "x"}'))
    await server.lm().request(_structured())
    assert server.bodies[0]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "qa", "schema": SCHEMA, "strict": True},
    }


async def test_refused_json_schema_steps_down_to_json_object_and_remembers() -> None:
    refusal = error(400, "response_format type json_schema is not supported")
    server = Scripted(refusal, ok('{"answer": "x"}'))
    lm = server.lm()
    first = await lm.request(_structured())
    assert first.text == '{"answer": "x"}'
    kinds = [b.get("response_format", {}).get("type") for b in server.bodies]
    assert kinds == ["json_schema", "json_object"]
    assert server.bodies[1]["response_format"]["schema"] == SCHEMA
    assert lm.response_format_level == "json_object"
    await lm.request(_structured())  # goes straight to the accepted level
    assert server.bodies[2]["response_format"]["type"] == "json_object"
    assert len(server.requests) == 3


async def test_server_refusing_both_formats_gets_plain_prompting() -> None:
    server = Scripted(
        error(422, "unsupported parameter: response_format"),
        httpx.Response(500, json={"detail": "json_object is not supported: response_format"}),
        ok('{"answer": "x"}'),
    )
    lm = server.lm()
    response = await lm.request(_structured())
    assert response.text == '{"answer": "x"}'
    assert len(server.requests) == 3  # the 500 refusal is not retried
    assert "response_format" not in server.bodies[2]
    assert server.bodies[2]["messages"][0]["content"] == "answer as JSON"
    assert lm.response_format_level == "prompt"
    await lm.request(_structured())
    assert "response_format" not in server.bodies[3]


async def test_levels_are_remembered_per_lm() -> None:
    server = Scripted(error(400, "json_schema not supported"), ok())
    stepped = server.lm()
    await stepped.request(_structured())
    fresh = server.lm()
    await fresh.request(_structured())
    assert server.bodies[-1]["response_format"]["type"] == "json_schema"


async def test_other_bad_requests_do_not_step_down() -> None:
    server = Scripted(error(400, "messages: field required"))
    with pytest.raises(LMBadRequestError, match="field required"):
        await server.lm().request(_structured())
    assert len(server.requests) == 1


async def test_env_supplies_base_url_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://env.test:9000/v2")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    server = Scripted()
    lm = OpenAILM("openai/m", transport=httpx.MockTransport(server))
    await lm.request(LMRequest([Message("user", "hi")]))
    assert server.requests[0].url == "http://env.test:9000/v2/chat/completions"
    assert server.requests[0].headers["authorization"] == "Bearer sk-from-env"
    assert (lm.server_address, lm.server_port) == ("env.test", 9000)


async def test_no_key_sends_no_authorization_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server = Scripted()
    lm = OpenAILM(
        "openai/m", base_url="http://local.test/v1", transport=httpx.MockTransport(server)
    )
    await lm.request(LMRequest([Message("user", "hi")]))
    assert "authorization" not in server.requests[0].headers


# ------------------------------------------------------------ typed refusals
def _with_tools() -> LMRequest:
    return LMRequest([Message("user", "weather in Paris?")], tools=[WEATHER])


@pytest.mark.parametrize(
    ("status", "param", "code"),
    [(400, "tools", "unsupported"), (422, "tool_choice", None), (400, None, "tools")],
)
async def test_a_refusal_blaming_tools_is_tools_unsupported(
    status: int, param: str | None, code: str | None
) -> None:
    server = Scripted(error(status, "not today", code, param=param))
    with pytest.raises(ToolsUnsupportedError, match="not today") as info:
        await server.lm().request(_with_tools())
    assert isinstance(info.value, LMBadRequestError)
    assert info.value.status_code == status
    assert (info.value.param, info.value.code) == (param, code or "invalid_request_error")
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("request_", "param"),
    [
        (LMRequest([Message("user", "hi")]), "tools"),  # no tools were sent
        (_with_tools(), "tools[0].function.parameters"),  # one tool's schema is wrong
        (_with_tools(), None),  # the words alone do not decide
    ],
)
async def test_other_bad_requests_are_not_tools_unsupported(
    request_: LMRequest, param: str | None
) -> None:
    server = Scripted(error(400, "tools are not supported", "unsupported", param=param))
    with pytest.raises(LMBadRequestError) as info:
        await server.lm().request(request_)
    assert not isinstance(info.value, ToolsUnsupportedError)
    assert (info.value.code, info.value.param) == ("unsupported", param)


async def test_the_blamed_parameter_decides_a_format_refusal() -> None:
    blamed = Scripted(error(400, "invalid value", param="response_format"), ok('{"answer": "x"}'))
    lm = blamed.lm()
    await lm.request(_structured())
    assert lm.response_format_level == "json_object"
    # The text names json_schema, but the server blames the messages: no step-down.
    other = Scripted(error(400, "json_schema output needs a user turn", param="messages"))
    with pytest.raises(LMBadRequestError) as info:
        await other.lm().request(_structured())
    assert info.value.param == "messages"
    assert len(other.requests) == 1
