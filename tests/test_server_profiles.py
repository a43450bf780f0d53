"""The LM client against the way each OpenAI-compatible server really behaves.

Each simulated server profile (``SimConfig(profile=...)``) refuses what that
server refuses, in its own words and error shape; the client must still give
typed answers: structured output steps down to what the server takes, an
agent falls back from native tools the server refuses, and usage accounting
copes with what the server reports.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import httpx
import pytest

import trio_dspy as td
from trio_dspy import cli
from trio_dspy.errors import LMBadRequestError, ToolsUnsupportedError
from trio_dspy.lm.errors import error_for_status, read_error_body
from trio_dspy.messages import LMRequest, Message, ResponseFormat, ToolSpec
from trio_dspy.testing import SimConfig, SimServer, serve_sim
from trio_dspy.testing.sim_profiles import PROFILES, SimProfile, get_profile

NAMES = sorted(PROFILES)
#: The strongest response format each server takes for a JSONAdapter request,
#: reached from ``openai/`` (the generic client, which learns it by refusals).
FORMAT_REACHED = {
    "gemini": "prompt",  # json_schema: schema keywords refused; json_object: "schema" refused
    "groq": "json_object",
    "llamacpp": "json_schema",
    "lmstudio": "json_schema",
    "ollama": "json_schema",
    "vllm": "json_schema",
}
#: Servers that (as profiled) take no tool definitions.
NO_TOOLS = {"ollama", "vllm", "llamacpp"}


class Order(td.Signature):
    """Take a coffee order."""

    request: str = td.InputField()
    cups: int = td.OutputField()
    iced: bool = td.OutputField()


@asynccontextmanager
async def server(profile: str | SimProfile, **kw: Any) -> AsyncIterator[SimServer]:
    async with serve_sim(SimConfig(profile=profile, **kw)) as sim:
        yield sim


def generic(sim: SimServer, **kw: Any) -> td.LM:
    return td.LM("openai/sim-model", base_url=sim.base_url, api_key="", **kw)


def formats(sim: SimServer) -> list[str | None]:
    return [(body.get("response_format") or {}).get("type") for body in sim.requests]


@pytest.mark.parametrize("name", NAMES)
async def test_predict_gives_a_typed_answer_on_every_server(name: str) -> None:
    async with server(name) as sim, generic(sim) as lm:
        with td.context(lm=lm):
            pred = await td.Predict(Order)(request="two iced lattes")
            chat = await td.Predict(Order)(request="one hot mocha")
    assert isinstance(pred.cups, int) and isinstance(pred.iced, bool)
    assert isinstance(chat.cups, int) and isinstance(chat.iced, bool)


@pytest.mark.parametrize("name", NAMES)
async def test_json_adapter_steps_down_to_the_format_the_server_takes(name: str) -> None:
    async with server(name) as sim, generic(sim) as lm:
        with td.context(lm=lm, adapter=td.JSONAdapter()):
            pred = await td.Predict(Order)(request="two iced lattes")
            first = len(sim.requests)
            await td.Predict(Order)(request="one hot mocha")
    assert isinstance(pred.cups, int) and isinstance(pred.iced, bool)
    reached = FORMAT_REACHED[name]
    assert lm.response_format_level == reached
    # The refusals were recognised (no error, no retry of the same level) ...
    steps = ["json_schema", "json_object", "prompt"]
    tried = steps[: steps.index(reached) + 1]
    assert formats(sim)[:first] == [None if t == "prompt" else t for t in tried]
    # ... and remembered: the next call goes straight to what worked.
    assert formats(sim)[first:] == [None if reached == "prompt" else reached]


async def test_lm_studio_refuses_json_object_and_the_client_falls_back_to_prompting() -> None:
    request = LMRequest(
        [Message("user", "Answer in JSON: how many cups?")],
        response_format=ResponseFormat("json_object"),
    )
    async with server("lmstudio") as sim, generic(sim) as lm:
        response = await lm.request(request)
    assert response.text
    assert formats(sim) == ["json_object", None]


@pytest.mark.parametrize("name", NAMES)
async def test_react_uses_native_tools_or_falls_back_when_the_server_refuses_them(
    name: str,
) -> None:
    made: list[str] = []

    def make_drink(drink: str) -> str:
        """Make a drink."""
        made.append(drink)
        return f"made {drink}"

    # The gemini alias leaves out the schema keywords Gemini refuses.
    model = "gemini/sim-model" if name == "gemini" else "openai/sim-model"
    async with (
        server(name) as sim,
        td.LM(model, base_url=sim.base_url, api_key="", max_retries=2) as lm,
    ):
        with td.context(lm=lm):
            agent = td.ReAct(Order, tools=[make_drink], max_iters=3)
            pred = await agent(request="two iced lattes")
    assert isinstance(pred.cups, int)
    native = [body for body in sim.requests if body.get("tools")]
    if name in NO_TOOLS:
        # One refused native request, not retried (llama.cpp's 500 included),
        # then the text loop, which sends no tool definitions.
        assert len(native) == 1
        assert sim.stats.errors == 1
    else:
        assert native and sim.stats.errors == 0


async def test_react_on_gemini_through_the_generic_client_falls_back_to_text() -> None:
    def make_drink(drink: str) -> str:
        """Make a drink."""
        return f"made {drink}"

    # The generic client sends additionalProperties, which Gemini refuses.
    async with server("gemini") as sim, generic(sim) as lm:
        with td.context(lm=lm):
            pred = await td.ReAct(Order, tools=[make_drink], max_iters=3)(request="a latte")
    assert isinstance(pred.cups, int)
    assert sum(1 for body in sim.requests if body.get("tools")) == 1
    assert sim.stats.errors == 1


@pytest.mark.parametrize("name", sorted(NO_TOOLS))
async def test_a_tool_refusal_is_a_tools_unsupported_error(name: str) -> None:
    spec = ToolSpec("make_drink", "Make a drink.", {"type": "object", "properties": {}})
    request = LMRequest([Message("user", "a latte")], tools=(spec,))
    async with server(name) as sim, generic(sim, max_retries=3) as lm:
        with pytest.raises(ToolsUnsupportedError) as caught:
            await lm.request(request)
    assert sim.stats.requests == 1  # not retried, even as a 500
    assert caught.value.status_code == (500 if name == "llamacpp" else 400)


@pytest.mark.parametrize("name", NAMES)
async def test_usage_is_counted_as_each_server_reports_it(name: str) -> None:
    async with server(name) as sim, generic(sim, tpm=100_000) as lm:
        with td.context(lm=lm), td.track_usage() as usage:
            await td.Predict(Order)(request="two iced lattes")
    assert len(sim.requests) == 1
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    extra = PROFILES[name].reasoning_tokens  # Gemini's hidden reasoning, in the total only
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens + extra


async def test_a_server_without_usage_keeps_the_tpm_estimate_and_counts_nothing() -> None:
    silent = attrs.evolve(PROFILES["ollama"], usage=False)
    async with server(silent) as sim, generic(sim, tpm=100_000) as lm:
        with td.context(lm=lm), td.track_usage() as usage:
            first = await td.Predict(Order)(request="two iced lattes")
            second = await td.Predict(Order)(request="one mocha")
    assert isinstance(first.cups, int) and isinstance(second.cups, int)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (0, 0, 0)
    assert [entry.response.usage.total_tokens for entry in lm.history] == [0, 0]
    assert sim.stats.ok == 2


@pytest.mark.parametrize(
    ("name", "asked", "expected"),
    [
        ("ollama", True, True),
        ("ollama", False, False),
        ("lmstudio", True, False),  # LM Studio never sends stream usage
        ("llamacpp", False, True),  # llama.cpp always does
        ("vllm", True, True),
    ],
)
async def test_stream_usage_follows_each_server(name: str, asked: bool, expected: bool) -> None:
    body: dict[str, Any] = {
        "model": "sim-model",
        "messages": [{"role": "user", "content": "hello"}],
        "stream": True,
    }
    if asked:
        body["stream_options"] = {"include_usage": True}
    async with server(name) as sim, httpx.AsyncClient() as client:
        reply = await client.post(sim.base_url + "/chat/completions", json=body)
    chunks = [
        json.loads(line[6:]) for line in reply.text.splitlines() if line.startswith("data: {")
    ]
    assert any(chunk.get("usage") for chunk in chunks) is expected


async def test_groq_refuses_logprobs_and_n_above_one() -> None:
    async with server("groq") as sim, generic(sim) as lm:
        with pytest.raises(LMBadRequestError, match="'logprobs' is unsupported"):
            await lm.request(LMRequest([Message("user", "hi")], params={"logprobs": True}))
        with pytest.raises(LMBadRequestError, match="at most 1"):
            await lm.request(LMRequest([Message("user", "hi")], params={"n": 2}))
        response = await lm.request(LMRequest([Message("user", "hi")], params={"n": 1}))
    assert response.text


async def test_gemini_refuses_fields_it_does_not_know_with_a_list_body() -> None:
    async with server("gemini") as sim, generic(sim) as lm:
        with pytest.raises(LMBadRequestError) as caught:
            await lm.request(LMRequest([Message("user", "hi")], params={"top_k": 5}))
    assert 'Unknown name "top_k"' in str(caught.value)
    assert caught.value.code == "400" and caught.value.status_code == 400


async def test_gemini_spends_max_tokens_on_reasoning_first() -> None:
    async with server("gemini") as sim, generic(sim) as lm:
        short = await lm.request(LMRequest([Message("user", "hi")], params={"max_tokens": 32}))
        long = await lm.request(LMRequest([Message("user", "hi")], params={"max_tokens": 4096}))
    assert (short.text, short.finish_reason) == ("", "length")
    assert long.text and long.finish_reason == "stop"


async def test_each_profile_imitates_its_server_on_the_wire() -> None:
    refusals: dict[str, tuple[dict[str, Any], int]] = {
        "ollama": ({"tools": [{"type": "function", "function": {"name": "f"}}]}, 400),
        "lmstudio": ({"response_format": {"type": "json_object"}}, 400),
        "vllm": ({"tools": [{"type": "function", "function": {"name": "f"}}]}, 400),
        "llamacpp": ({"tools": [{"type": "function", "function": {"name": "f"}}]}, 500),
        "groq": ({"response_format": {"type": "json_schema", "json_schema": {}}}, 400),
        "gemini": ({"top_k": 3}, 400),
    }
    shapes: dict[str, Any] = {}
    async with httpx.AsyncClient() as client:
        for name, (extra, status) in refusals.items():
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}
            async with server(name) as sim:
                reply = await client.post(sim.base_url + "/chat/completions", json=body)
            assert reply.status_code == status, name
            shapes[name] = reply.json()
    assert isinstance(shapes["gemini"], list)
    assert isinstance(shapes["lmstudio"]["error"], str)
    assert shapes["vllm"]["object"] == "error"
    assert shapes["llamacpp"]["error"]["code"] == 500


def test_profiles_are_found_by_name_and_unknown_names_are_refused() -> None:
    assert get_profile("vllm") is PROFILES["vllm"]
    assert get_profile(None) is None
    with pytest.raises(ValueError, match="unknown server profile 'olama'.*ollama"):
        SimConfig(profile="olama")


async def test_a_profile_does_not_touch_the_anthropic_endpoint() -> None:
    async with server("gemini") as sim:
        lm = td.LM("anthropic/sim-model", base_url=sim.root_url, api_key="k", top_k=3)
        async with lm:
            response = await lm.request(LMRequest([Message("user", "hi")]))
    assert response.text


def test_serve_sim_takes_a_profile(capsys: pytest.CaptureFixture[str]) -> None:
    args = cli.build_parser().parse_args(["serve-sim", "--profile", "vllm"])
    assert cli.sim_config_from_args(args).profile is PROFILES["vllm"]
    assert cli.sim_config_from_args(cli.build_parser().parse_args(["serve-sim"])).profile is None
    with pytest.raises(SystemExit) as info:
        cli.main(["serve-sim", "--profile", "olama"])
    assert info.value.code == 2
    assert "invalid choice: 'olama'" in capsys.readouterr().err


def test_groq_tool_use_failed_is_not_a_refusal_of_tools() -> None:
    # Groq's model failed to write a call; the server does take tools.
    body = read_error_body(
        {
            "error": {
                "message": "Failed to call a function. Please adjust your prompt.",
                "type": "invalid_request_error",
                "code": "tool_use_failed",
                "failed_generation": "make_drink does not support tools",
            }
        },
        "",
    )
    error = error_for_status(400, body, sent_tools=True)
    assert type(error) is LMBadRequestError and error.code == "tool_use_failed"


def test_error_bodies_of_each_server_are_read() -> None:
    gemini = read_error_body(
        [{"error": {"code": 400, "message": "Unknown name", "status": "INVALID_ARGUMENT"}}], ""
    )
    assert (gemini.message, gemini.code) == ("Unknown name", "400")
    status_only = read_error_body([{"error": {"message": "m", "status": "UNAVAILABLE"}}], "")
    assert status_only.code == "UNAVAILABLE"
    assert read_error_body({"error": "'response_format.type' must be"}, "").param is None


async def test_groq_wants_the_word_json_for_json_object_and_the_client_steps_down() -> None:
    request = LMRequest(
        [Message("user", "How many cups?")], response_format=ResponseFormat("json_object")
    )
    async with server("groq") as sim, generic(sim) as lm:
        response = await lm.request(request)
    assert response.text
    assert formats(sim) == ["json_object", None]
    # The word counts wherever it is, in text parts too.
    parts = {"role": "user", "content": [{"type": "text", "text": "Reply in JSON"}]}
    body = {"messages": [parts], "response_format": {"type": "json_object"}}
    assert PROFILES["groq"].refusal(body) is None
