"""The simulated server answers each request in the format it asks for."""

from __future__ import annotations

import enum
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal

import attrs
import httpx
import pytest
import trio

import trio_dspy as td
from trio_dspy.testing import SimConfig, SimReply, SimServer, SimToolCall, keyword_script, serve_sim

from .test_sim_values import assert_valid


class Mood(enum.Enum):
    HAPPY = "happy"
    ANGRY = "angry"
    CALM = "calm"


@attrs.frozen
class Refund:
    amount: float
    reason: str


@attrs.frozen
class Escalate:
    team: str
    urgent: bool


class Triage(td.Signature):
    """Triage a support ticket."""

    ticket: str = td.InputField(desc="the customer's message")
    mood: Mood = td.OutputField(desc="how the customer feels")
    action: Refund | Escalate = td.OutputField()
    confidence: float = td.OutputField()
    priority: Literal["low", "high"] = td.OutputField()
    done: bool = td.OutputField()
    tags: list[str] = td.OutputField()


def chat_messages(adapter: Any, ticket: str) -> list[dict[str, str]]:
    return [
        {"role": m.role, "content": m.content}
        for m in adapter.format(Triage, [], {"ticket": ticket})
    ]


def json_schema_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "out", "schema": schema, "strict": True}}


TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "find an order",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "integer"}, "note": {"type": "string"}},
                "required": ["order_id", "note"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "refund",
            "parameters": {
                "type": "object",
                "properties": {"amount": {"type": "number", "minimum": 0}},
                "required": ["amount"],
            },
        },
    },
]


@asynccontextmanager
async def sim_client(
    config: SimConfig | None = None,
) -> AsyncIterator[tuple[SimServer, httpx.AsyncClient]]:
    # timeout=None: virtual-time jumps while bytes are in flight can never fire a timeout
    async with (
        serve_sim(config) as sim,
        httpx.AsyncClient(base_url=sim.base_url, timeout=None) as client,
    ):
        yield sim, client


async def complete(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    body.setdefault("model", "sim-model")
    r = await client.post("/chat/completions", json=body)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def content(reply: dict[str, Any]) -> str:
    return reply["choices"][0]["message"]["content"]  # type: ignore[no-any-return]


# ---------------------------------------------------------------- formats
async def test_chat_completion_has_the_openai_shape() -> None:
    messages = [{"role": "user", "content": "x" * 400}]
    async with sim_client() as (sim, client):
        reply = await complete(client, model="my-model", messages=messages)
    assert reply["object"] == "chat.completion"
    assert reply["id"].startswith("chatcmpl-")
    assert isinstance(reply["created"], int)
    assert reply["model"] == "my-model"
    choice = reply["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str) and choice["message"]["content"]
    assert choice["finish_reason"] == "stop"
    usage = reply["usage"]
    assert usage["prompt_tokens"] == 100  # 400 characters, about four per token
    assert usage["completion_tokens"] >= 1
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert sim.stats.ok == 1 and sim.requests[0]["messages"] == messages


async def test_chat_adapter_prompts_get_parseable_typed_sections() -> None:
    adapter = td.ChatAdapter()
    kinds = set()
    async with sim_client() as (_, client):
        for i in range(12):
            text = content(await complete(client, messages=chat_messages(adapter, f"ticket {i}")))
            assert text.rstrip().endswith("[[ ## completed ## ]]")
            values = adapter.parse(Triage, text)
            assert isinstance(values["mood"], Mood)
            assert isinstance(values["action"], Refund | Escalate)
            assert isinstance(values["confidence"], float)
            assert values["priority"] in ("low", "high")
            assert isinstance(values["done"], bool)
            assert all(isinstance(t, str) for t in values["tags"])
            kinds.add(type(values["action"]))
    assert kinds == {Refund, Escalate}  # both union members come up


async def test_json_schema_answers_validate_against_the_schema() -> None:
    schema = td.JSONAdapter().response_format(Triage).schema
    assert schema is not None
    messages = chat_messages(td.JSONAdapter(), "broken kettle")
    async with sim_client() as (_, client):
        for i in range(10):
            reply = await complete(
                client, messages=messages, seed=i, response_format=json_schema_format(dict(schema))
            )
            assert_valid(json.loads(content(reply)), schema)
            td.JSONAdapter().parse(Triage, content(reply))
        non_object = {"type": "array", "items": {"type": "integer"}, "minItems": 2}
        reply = await complete(
            client, messages=messages, response_format=json_schema_format(non_object)
        )
        assert_valid(json.loads(content(reply)), non_object)


async def test_json_object_uses_an_inlined_schema_or_the_prompt() -> None:
    inline = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "zip": {"type": "integer"}},
        "required": ["city", "zip"],
        "additionalProperties": False,
    }
    async with sim_client() as (_, client):
        llama = await complete(
            client,
            messages=[{"role": "user", "content": "where?"}],
            response_format={"type": "json_object", "schema": inline},
        )
        assert_valid(json.loads(content(llama)), inline)
        plain = await complete(
            client,
            messages=chat_messages(td.ChatAdapter(), "hi"),
            response_format={"type": "json_object"},
        )
    data = json.loads(content(plain))
    assert list(data) == list(Triage.output_fields)
    td.JSONAdapter().parse(Triage, content(plain))


async def test_json_adapter_prompt_without_response_format_gets_a_json_object() -> None:
    async with sim_client() as (_, client):
        reply = await complete(client, messages=chat_messages(td.JSONAdapter(), "late delivery"))
    values = td.JSONAdapter().parse(Triage, content(reply))
    assert isinstance(values["mood"], Mood) and isinstance(values["action"], Refund | Escalate)


async def test_same_request_same_answer_and_seed_changes_it() -> None:
    messages = chat_messages(td.ChatAdapter(), "same")
    async with sim_client(SimConfig(seed=1)) as (_, client):
        a = content(await complete(client, messages=messages))
        b = content(await complete(client, messages=messages))
    async with sim_client(SimConfig(seed=2)) as (_, client):
        c = content(await complete(client, messages=messages))
    assert a == b
    assert a != c


async def test_streaming_sends_chunks_that_add_up_to_the_answer() -> None:
    async with sim_client() as (_, client):
        r = await client.post(
            "/chat/completions",
            json={
                "model": "m",
                "messages": chat_messages(td.ChatAdapter(), "stream"),
                "stream": True,
                "stream_options": {"include_usage": True},
            },
        )
    assert r.headers["content-type"].startswith("text/event-stream")
    events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert td.ChatAdapter().parse(Triage, text)["mood"] in Mood
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["usage"]["total_tokens"] > 0


# ------------------------------------------------------------------ tools
async def test_tools_are_called_until_a_tool_result_is_in_the_conversation() -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "where is my order?"}]
    async with sim_client() as (_, client):
        first = await complete(client, messages=messages, tools=TOOLS)
        choice = first["choices"][0]
        assert choice["finish_reason"] == "tool_calls"
        (call,) = choice["message"]["tool_calls"]
        assert call["type"] == "function" and call["function"]["name"] == "lookup_order"
        assert_valid(json.loads(call["function"]["arguments"]), TOOLS[0]["function"]["parameters"])
        messages += [
            choice["message"],
            {"role": "tool", "tool_call_id": call["id"], "content": "shipped"},
        ]
        second = await complete(client, messages=messages, tools=TOOLS)
        assert second["choices"][0]["finish_reason"] == "stop"
        assert content(second) and "tool_calls" not in second["choices"][0]["message"]

        named = await complete(
            client,
            messages=messages[:1],
            tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "refund"}},
        )
        assert named["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "refund"
        none = await complete(client, messages=messages[:1], tools=TOOLS, tool_choice="none")
        assert none["choices"][0]["finish_reason"] == "stop"


# ------------------------------------------------------- refusals and auth
async def test_refused_capabilities_answer_400_naming_the_parameter() -> None:
    config = SimConfig(supports_json_schema=False, supports_json_object=False, supports_tools=False)
    msgs = [{"role": "user", "content": "hi"}]
    cases: list[tuple[dict[str, Any], str, str]] = [
        (
            {"response_format": json_schema_format({"type": "object"})},
            "json_schema",
            "response_format",
        ),
        ({"response_format": {"type": "json_object"}}, "json_object", "response_format"),
        ({"tools": TOOLS}, "tools", "tools"),
    ]
    async with sim_client(config) as (sim, client):
        for extra, word, param in cases:
            r = await client.post(
                "/chat/completions", json={"model": "m", "messages": msgs, **extra}
            )
            assert r.status_code == 400
            error = r.json()["error"]
            assert word in error["message"] and error["param"] == param
        assert (
            await client.post("/chat/completions", json={"model": "m", "messages": msgs})
        ).status_code == 200
    assert sim.stats.errors == 3 and sim.stats.ok == 1


async def test_api_key_is_required_when_configured() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    async with sim_client(SimConfig(api_key="sk-secret")) as (sim, client):
        missing = await client.post("/chat/completions", json=body)
        wrong = await client.post(
            "/chat/completions", json=body, headers={"Authorization": "Bearer nope"}
        )
        models = await client.get("/models")
        ok = await client.post(
            "/chat/completions", json=body, headers={"Authorization": "Bearer sk-secret"}
        )
    for r in (missing, wrong, models):
        assert r.status_code == 401
        assert "API key" in r.json()["error"]["message"]
        assert "sk-secret" not in r.text
    assert ok.status_code == 200
    assert "sk-secret" not in repr(sim.config) and "sk-secret" not in repr(sim)


async def test_models_endpoint_and_unknown_paths() -> None:
    async with sim_client(SimConfig(models=("a", "b"))) as (_, client):
        models = (await client.get("/models")).json()
        missing = await client.get("/nothing")
        bad = await client.post("/chat/completions", content=b"{not json")
    assert [m["id"] for m in models["data"]] == ["a", "b"]
    assert missing.status_code == 404 and "error" in missing.json()
    assert bad.status_code == 400 and "JSON" in bad.json()["error"]["message"]


async def test_the_counters_can_be_read_over_http_from_another_process() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    async with sim_client(SimConfig()) as (sim, client):
        for _ in range(3):
            assert (await client.post("/chat/completions", json=body)).status_code == 200
        stats = (await client.get("/sim/stats")).json()
    assert stats == attrs.asdict(sim.stats)
    assert (stats["requests"], stats["ok"], stats["in_flight"]) == (3, 3, 0)


# -------------------------------------------------------------- anthropic
async def test_anthropic_messages_endpoint_shape_auth_and_tools() -> None:
    tools = [{"name": "weather", "input_schema": TOOLS[0]["function"]["parameters"]}]
    system = td.ChatAdapter().system_prompt(Triage)
    user = {"role": "user", "content": [{"type": "text", "text": "[[ ## ticket ## ]]\nhi"}]}
    async with (
        sim_client(SimConfig(api_key="k")) as (sim, _),
        httpx.AsyncClient(
            base_url=sim.root_url, headers={"x-api-key": "k", "anthropic-version": "2023-06-01"}
        ) as client,
    ):
        r = await client.post(
            "/v1/messages",
            json={"model": "claude", "max_tokens": 500, "system": system, "messages": [user]},
        )
        denied = await client.post("/v1/messages", json={}, headers={"x-api-key": "bad"})
        t1 = (
            await client.post(
                "/v1/messages",
                json={"model": "c", "max_tokens": 9, "messages": [user], "tools": tools},
            )
        ).json()
        use = t1["content"][-1]
        result = {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use["id"], "content": "sunny"}],
        }
        convo = [user, {"role": "assistant", "content": t1["content"]}, result]
        t2 = (
            await client.post(
                "/v1/messages",
                json={"model": "c", "max_tokens": 900, "messages": convo, "tools": tools},
            )
        ).json()
    msg = r.json()
    assert msg["type"] == "message" and msg["role"] == "assistant" and msg["model"] == "claude"
    assert msg["id"].startswith("msg_") and msg["stop_reason"] == "end_turn"
    assert msg["content"][0]["type"] == "text"
    assert td.ChatAdapter().parse(Triage, msg["content"][0]["text"])["mood"] in Mood
    assert msg["usage"]["input_tokens"] >= len(system) // 4 and msg["usage"]["output_tokens"] > 0
    assert denied.status_code == 401 and denied.json()["error"]["type"] == "authentication_error"
    assert (
        t1["stop_reason"] == "tool_use" and use["type"] == "tool_use" and use["name"] == "weather"
    )
    assert_valid(use["input"], tools[0]["input_schema"])
    assert t2["stop_reason"] == "end_turn" and t2["content"][0]["type"] == "text"


# ----------------------------------------------------------------- scripts
async def test_scripted_outputs_render_in_the_requested_format() -> None:
    def script(body: Mapping[str, Any]) -> SimReply | None:
        return SimReply(outputs={"mood": "calm", "action": Refund(12.5, "late")})

    schema = td.JSONAdapter().response_format(Triage).schema
    assert schema is not None
    async with sim_client(SimConfig(script=script)) as (_, client):
        chat = content(await complete(client, messages=chat_messages(td.ChatAdapter(), "a")))
        as_json = content(
            await complete(
                client,
                messages=chat_messages(td.JSONAdapter(), "a"),
                response_format=json_schema_format(dict(schema)),
            )
        )
    for adapter, text in ((td.ChatAdapter(), chat), (td.JSONAdapter(), as_json)):
        values = adapter.parse(Triage, text)
        assert values["mood"] is Mood.CALM
        assert values["action"] == Refund(12.5, "late")
        assert isinstance(values["confidence"], float)  # not scripted: generated
    assert "[[ ## mood ## ]]\ncalm" in chat
    assert_valid(json.loads(as_json), schema)


async def test_scripted_text_tool_calls_latency_and_finish_reason(autojump_clock: Any) -> None:
    async def script(body: Mapping[str, Any]) -> SimReply | None:
        last = body["messages"][-1]["content"]
        if last == "call":
            return SimReply(tool_calls=[SimToolCall("refund", {"amount": 3})])
        if last == "slow":
            return SimReply(text="finally", latency=7.0, finish_reason="length")
        return None

    async with sim_client(SimConfig(script=script, latency=1.0)) as (_, client):
        call = await complete(client, messages=[{"role": "user", "content": "call"}])
        start = trio.current_time()
        slow = await complete(client, messages=[{"role": "user", "content": "slow"}])
        slow_took = trio.current_time() - start
        other = await complete(client, messages=[{"role": "user", "content": "x"}])
    fn = call["choices"][0]["message"]["tool_calls"][0]["function"]
    assert (fn["name"], json.loads(fn["arguments"])) == ("refund", {"amount": 3})
    assert content(slow) == "finally" and slow["choices"][0]["finish_reason"] == "length"
    assert 7.0 <= slow_took < 7.5
    assert content(other)  # None from the script: a generated answer


async def test_keyword_script_picks_replies_by_keyword() -> None:
    script = keyword_script(
        {"refund": {"mood": "angry"}, "thanks": "You're welcome!"},
        default=SimReply(text="no idea"),
    )
    async with sim_client(SimConfig(script=script)) as (_, client):
        angry = content(
            await complete(client, messages=chat_messages(td.ChatAdapter(), "I want a REFUND"))
        )
        thanks = content(await complete(client, messages=[{"role": "user", "content": "Thanks!"}]))
        other = content(await complete(client, messages=[{"role": "user", "content": "hm"}]))
    assert td.ChatAdapter().parse(Triage, angry)["mood"] is Mood.ANGRY
    assert (thanks, other) == ("You're welcome!", "no idea")


async def test_requests_are_recorded_bounded_and_clearable() -> None:
    async with sim_client(SimConfig(keep_requests=2)) as (sim, client):
        for i in range(3):
            await complete(client, messages=[{"role": "user", "content": str(i)}])
        assert [r["messages"][0]["content"] for r in sim.requests] == ["1", "2"]
        assert sim.stats.requests == 3
        sim.clear()
        assert not sim.requests and sim.stats.requests == 0


async def test_max_tokens_truncates_with_finish_reason_length() -> None:
    async with sim_client() as (_, client):
        full = await complete(client, messages=chat_messages(td.ChatAdapter(), "long"))
        short = await complete(
            client, messages=chat_messages(td.ChatAdapter(), "long"), max_tokens=5
        )
    assert len(content(full)) > 20
    assert len(content(short)) <= 20 and short["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_scripted_reply_with_text_and_tool_calls_sends_both(provider: str) -> None:
    from trio_dspy.messages import LMRequest, Message, ToolSpec

    def script(body: Mapping[str, Any]) -> SimReply:
        return SimReply(text="Thinking aloud first.", tool_calls=[SimToolCall("f", {"x": 1})])

    spec = ToolSpec("f", "d", {"type": "object", "properties": {"x": {"type": "integer"}}})
    request = LMRequest([Message("user", "hi")], tools=(spec,))
    async with serve_sim(SimConfig(script=script)) as sim:
        base = sim.base_url if provider == "openai" else sim.root_url
        async with td.LM(f"{provider}/m", base_url=base, api_key="k") as lm:
            whole = await lm.request(request)
            async with lm.stream(request) as stream:
                streamed = [e for e in [e async for e in stream.events()] if isinstance(e, str)]
    assert whole.text == "Thinking aloud first." and whole.tool_calls[0].name == "f"
    assert "".join(streamed) == "Thinking aloud first."
