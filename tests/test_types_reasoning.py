"""td.Reasoning: a str output shown as str, filled from a model's native reasoning when it has one."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import httpx
import pytest

import trio_dspy as td
from trio_dspy.errors import AdapterParseError
from trio_dspy.lm.cache_codec import decode_response, encode_response
from trio_dspy.messages import LMResponse
from trio_dspy.testing import DummyLM
from trio_dspy.types import structure, unstructure

from .test_lm_support import Scripted, chat


class Think(td.Signature):
    """Answer the question."""

    question: str = td.InputField()
    reasoning: td.Reasoning = td.OutputField()
    answer: str = td.OutputField()


def test_reasoning_is_a_string_for_every_purpose() -> None:
    r = td.Reasoning("Because 2 + 2 = 4.")
    assert r == "Because 2 + 2 = 4." and isinstance(r, str)
    assert r.content == "Because 2 + 2 = 4." and type(r.content) is str
    assert r.strip(".").lower().startswith("because") and "2 + 2" in r and len(r) == 18
    assert r + " Done." == "Because 2 + 2 = 4. Done."
    assert isinstance(r + td.Reasoning("!"), td.Reasoning)
    assert json.dumps({"r": r}) == '{"r": "Because 2 + 2 = 4."}'
    assert (
        pickle.loads(pickle.dumps(r)) == r and type(pickle.loads(pickle.dumps(r))) is td.Reasoning
    )
    assert td.Reasoning("\ud800x") == "\ufffdx"  # the lone-surrogate policy
    with pytest.raises(TypeError, match="text"):
        td.Reasoning(3)


def test_structuring_takes_text_and_dspys_saved_object() -> None:
    assert type(structure("why", td.Reasoning)) is td.Reasoning
    assert structure({"content": "why"}, td.Reasoning) == "why"
    with pytest.raises(ValueError, match="reasoning"):
        structure(["why"], td.Reasoning)
    assert unstructure(td.Reasoning("why")) == "why"


def test_the_prompt_shows_a_reasoning_field_as_a_str_field() -> None:
    messages = td.ChatAdapter().format(Think, [], {"question": "q"})
    assert "1. `reasoning` (str)\n2. `answer` (str)" in messages[0].text
    assert "{reasoning}\n" in messages[0].text and "JSON schema" not in messages[0].text
    assert "`[[ ## reasoning ## ]]` (must be formatted as a valid Python str)" in messages[-1].text


@pytest.mark.parametrize("adapter", [td.ChatAdapter(), td.JSONAdapter(), td.XMLAdapter()])
async def test_each_adapter_reads_written_reasoning_as_reasoning(adapter: td.Adapter) -> None:
    with td.context(lm=DummyLM([{"reasoning": "step by step", "answer": "4"}]), adapter=adapter):
        pred = await td.Predict(Think)(question="2+2?")
    assert type(pred.reasoning) is td.Reasoning and pred.reasoning == "step by step"


async def test_native_reasoning_fills_the_field_and_the_prompt_does_not_ask_for_it() -> None:
    body = chat("[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]")
    body["choices"][0]["message"]["reasoning_content"] = "2 and 2 make 4"
    server = Scripted(httpx.Response(200, json=body))
    async with server.lm(reasoning_effort="low") as lm:
        with td.context(lm=lm):
            pred = await td.Predict(Think, reasoning_effort="low")(question="2+2?")
    assert pred.answer == "4"
    assert type(pred.reasoning) is td.Reasoning and pred.reasoning == "2 and 2 make 4"
    sent = server.bodies[0]
    assert sent["reasoning_effort"] == "low"
    assert "reasoning" not in sent["messages"][0]["content"]


async def test_native_reasoning_wins_over_written_reasoning() -> None:
    body = chat("[[ ## reasoning ## ]]\nwritten\n\n[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]")
    body["choices"][0]["message"]["reasoning"] = "native"
    async with Scripted(httpx.Response(200, json=body)).lm() as lm:
        with td.context(lm=lm):
            pred = await td.Predict(Think)(question="2+2?")
    assert pred.reasoning == "native" and pred.answer == "4"


async def test_asked_natively_without_reasoning_back_re_asks_for_it_in_text() -> None:
    first = httpx.Response(200, json=chat("[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]"))
    second = httpx.Response(
        200,
        json=chat("[[ ## reasoning ## ]]\nadded\n\n[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]"),
    )
    server = Scripted(first, second)
    adapter = td.ChatAdapter(use_json_adapter_fallback=False)
    async with server.lm() as lm:
        with td.context(lm=lm, adapter=adapter):
            pred = await td.Predict(Think, reasoning_effort="low")(question="2+2?")
    assert pred.reasoning == "added" and len(server.requests) == 2


async def test_anthropic_thinking_blocks_are_the_reasoning() -> None:
    body: dict[str, Any] = {
        "type": "message",
        "model": "claude-x",
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 3, "output_tokens": 4},
        "content": [
            {"type": "thinking", "thinking": "Let me add.", "signature": "sig"},
            {"type": "text", "text": "[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]"},
        ],
    }
    async with Scripted(httpx.Response(200, json=body)).lm("anthropic/claude-x") as lm:
        with td.context(lm=lm):
            thinking = {"type": "enabled", "budget_tokens": 1024}
            pred = await td.Predict(Think, thinking=thinking)(question="2+2?")
    assert pred.reasoning == "Let me add." and pred.answer == "4"


def test_a_cached_response_keeps_its_reasoning() -> None:
    response = LMResponse(text="t", reasoning="why")
    assert decode_response(encode_response(response)) == response
    assert decode_response(encode_response(LMResponse(text="t"))) == LMResponse(text="t")


def test_a_parse_error_without_native_reasoning_still_names_the_missing_field() -> None:
    with pytest.raises(AdapterParseError, match="reasoning"):
        td.ChatAdapter().parse_response(Think, LMResponse("[[ ## answer ## ]]\n4"))


def test_saved_demos_keep_reasoning(tmp_path: Path) -> None:
    program = td.Predict(Think)
    program.demos = [td.Example(question="q", reasoning=td.Reasoning("r"), answer="a")]
    program.save(tmp_path / "p.json")
    loaded = td.Predict(Think)
    loaded.load(tmp_path / "p.json")
    assert loaded.demos[0]["reasoning"] == "r"


# ------------------------------------------------------------------ streamed
async def test_streamed_reasoning_content_is_the_responses_reasoning() -> None:
    from .test_lm_stream_wire import chunk, events, read, serving

    transport, _ = serving(
        events(
            chunk({"reasoning_content": "Two and "}),
            chunk({"reasoning_content": "two."}),
            chunk({"content": "4"}),
            chunk({}, "stop"),
            b"data: [DONE]\n\n",
        )
    )
    lm = td.LM("openai/m", base_url="http://sim.test/v1", transport=transport)
    pieces, response = await read(lm)
    assert pieces == ["4"] and response.reasoning == "Two and two."


async def test_streamed_anthropic_thinking_is_the_responses_reasoning() -> None:
    from .test_lm_stream_wire import events, named, read, serving

    transport, _ = serving(
        events(
            named("message_start", {"message": {"model": "c", "usage": {"input_tokens": 1}}}),
            named("content_block_start", {"index": 0, "content_block": {"type": "thinking"}}),
            named(
                "content_block_delta",
                {"index": 0, "delta": {"type": "thinking_delta", "thinking": "Hmm."}},
            ),
            named("content_block_start", {"index": 1, "content_block": {"type": "text"}}),
            named(
                "content_block_delta", {"index": 1, "delta": {"type": "text_delta", "text": "4"}}
            ),
            named("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {}}),
            named("message_stop", {}),
        )
    )
    lm = td.LM("anthropic/c", base_url="http://sim.test", api_key="k", transport=transport)
    pieces, response = await read(lm)
    assert pieces == ["4"] and response.reasoning == "Hmm." and response.text == "4"
