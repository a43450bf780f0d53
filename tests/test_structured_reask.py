"""A ChatAdapter answer that does not parse is re-asked once in structured-output mode."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

import trio_dspy as td
from trio_dspy.errors import AdapterParseError
from trio_dspy.messages import LMRequest
from trio_dspy.modules import format_memory
from trio_dspy.testing import DummyLM, SimConfig, serve_sim, small_model_script

from .story import HandleCustomer, MakeDrink, Mood, Refund


def format_of(body: dict[str, Any]) -> str | None:
    fmt = body.get("response_format")
    return fmt["type"] if fmt else None


async def ask(base_url: str, adapter: td.Adapter | None = None) -> td.Prediction:
    lm = td.LM("openai/sim-model", base_url=base_url, api_key="k", max_tokens=200)
    async with lm:
        with td.context(lm=lm, adapter=adapter):
            return await td.Predict(HandleCustomer)(request="A large latte", mood=Mood.happy)


async def test_a_small_model_lost_in_free_text_is_recovered_by_one_structured_call() -> None:
    async with serve_sim(SimConfig(script=small_model_script())) as sim:
        pred = await ask(sim.base_url)
        bodies = list(sim.requests)
    assert isinstance(pred.action, MakeDrink | Refund)
    assert isinstance(pred.confidence, float)
    # The chat request (answered with a ramble cut at the limit), then exactly
    # one structured-output request, which parsed.
    assert [format_of(b) for b in bodies] == [None, "json_schema"]
    assert "[[ ## action ## ]]" in bodies[0]["messages"][0]["content"]
    assert bodies[1]["response_format"]["json_schema"]["schema"]["required"] == [
        "action",
        "confidence",
    ]
    # A fresh request in JSONAdapter's format, not the ramble shown back.
    assert [m["role"] for m in bodies[1]["messages"]] == ["system", "user"]
    assert pred.usage.total_tokens > 0


async def test_a_server_refusing_json_schema_recovers_through_the_step_down() -> None:
    config = SimConfig(script=small_model_script(), supports_json_schema=False)
    async with serve_sim(config) as sim:
        pred = await ask(sim.base_url)
        bodies = list(sim.requests)
    assert isinstance(pred.confidence, float)
    # json_schema refused (400), stepped down to json_object with the schema inline.
    assert [format_of(b) for b in bodies] == [None, "json_schema", "json_object"]
    assert bodies[2]["response_format"]["schema"]["required"] == ["action", "confidence"]
    assert sim.stats.errors == 1


async def test_a_clean_chat_answer_costs_one_call() -> None:
    async with serve_sim(SimConfig()) as sim:
        pred = await ask(sim.base_url)
        bodies = list(sim.requests)
    assert isinstance(pred.confidence, float)
    assert [format_of(b) for b in bodies] == [None]


async def test_the_fallback_can_be_turned_off() -> None:
    adapter = td.ChatAdapter(use_json_adapter_fallback=False)
    assert repr(adapter) == "ChatAdapter(use_json_adapter_fallback=False)"
    async with serve_sim(SimConfig(script=small_model_script())) as sim:
        with pytest.raises(AdapterParseError, match="cut off"):
            await ask(sim.base_url, adapter)
        bodies = list(sim.requests)
    # One call and two free-text re-asks, none in structured-output mode.
    assert [format_of(b) for b in bodies] == [None, None, None]


async def test_structured_reask_failing_too_continues_with_json_reasks() -> None:
    lm = DummyLM(["rambling", "still rambling", '{"action": 1}', "more"])
    with td.context(lm=lm), pytest.raises(AdapterParseError) as info:
        await td.Predict(HandleCustomer)(request="latte", mood=Mood.happy)
    assert info.value.attempts == 3
    assert len(lm.requests) == 3
    first, structured, again = lm.requests
    assert first.response_format is None
    assert structured.response_format == td.JSONAdapter().response_format(HandleCustomer)
    # After the structured call, the re-ask shows the JSON answer its error.
    assert again.response_format == structured.response_format
    assert again.messages[-2].content == "still rambling"
    assert "Respond with a JSON object" in again.messages[-1].content


async def test_no_reask_at_all_without_parse_retries() -> None:
    lm = DummyLM(["rambling"], cycle=True)
    with td.context(lm=lm, max_parse_retries=0), pytest.raises(AdapterParseError):
        await td.Predict(HandleCustomer)(request="latte", mood=Mood.happy)
    assert len(lm.requests) == 1


async def test_a_model_rescued_twice_in_a_row_is_asked_in_structured_mode_first() -> None:
    async with serve_sim(SimConfig(script=small_model_script())) as sim:
        lm = td.LM("openai/sim-model", base_url=sim.base_url, api_key="k", max_tokens=200)
        async with lm:
            with td.context(lm=lm):
                for _ in range(3):
                    pred = await td.Predict(HandleCustomer)(request="A latte", mood=Mood.happy)
                    assert isinstance(pred.confidence, float)
        bodies = list(sim.requests)
    # Two rescues cost two calls each; the third answer is one structured call.
    assert [format_of(b) for b in bodies] == [None, "json_schema"] * 2 + ["json_schema"]
    assert format_memory.prefers_structured(lm)
    format_memory.forget(lm)
    assert not format_memory.prefers_structured(lm)


async def test_a_model_that_only_slips_now_and_then_keeps_the_text_format() -> None:
    # Chat answers alternate: a ramble (rescued in JSON), then a clean one.
    chat_answers: Iterator[str | dict[str, str]] = iter(["rambling", {"answer": "4"}] * 3)

    def answer(request: LMRequest) -> str | dict[str, str]:
        if request.response_format is not None:
            return {"answer": "4"}
        return next(chat_answers)

    lm = DummyLM(answer)
    with td.context(lm=lm):
        for _ in range(6):
            assert (await td.Predict("question -> answer")(question="2+2?")).answer == "4"
    formats = [r.response_format is not None for r in lm.requests]
    # Never two rescues in a row: every call starts in the text format.
    assert formats == [False, True, False] * 3
    assert not format_memory.prefers_structured(lm)


async def test_values_that_fail_their_type_do_not_switch_the_model_to_structured_mode() -> None:
    # Well-formed sections, but "four" is not an int: a value error, not a lost format.
    def answer(request: LMRequest) -> str | dict[str, int]:
        if request.response_format is not None:
            return {"answer": 4}
        return "[[ ## answer ## ]]\nfour\n\n[[ ## completed ## ]]"

    lm = DummyLM(answer)
    with td.context(lm=lm):
        for _ in range(3):
            assert (await td.Predict("question -> answer: int")(question="2+2?")).answer == 4
    # Each call starts in the chat format and is rescued by one structured re-ask.
    assert [r.response_format is not None for r in lm.requests] == [False, True] * 3
    assert not format_memory.prefers_structured(lm)


async def test_the_structured_reask_keeps_the_rollout_and_the_timeout() -> None:
    lm = DummyLM(lambda r: {"answer": "4"} if r.response_format else "rambling")
    with td.context(lm=lm):
        pred = await td.Predict("question -> answer", n=2)(question="2+2?")
    assert len(pred.completions) == 2
    # Two separate calls (DummyLM takes no n), each re-asked under its own rollout id.
    rollouts = sorted((r.rollout_id, r.response_format is not None) for r in lm.requests)
    assert rollouts == [(0, False), (0, True), (1, False), (1, True)]


def test_what_is_learned_about_a_model_goes_with_the_model() -> None:
    lm = DummyLM(["unused"])
    for _ in range(format_memory.STRUCTURED_AFTER):
        format_memory.note_rescued(lm)
    assert format_memory.prefers_structured(lm)
    gone, key = weakref.ref(lm), id(lm)
    del lm
    gc.collect()
    assert gone() is None  # the memory does not keep the model alive
    # Nor is its count left for a model that later gets the same id.
    assert key not in format_memory._rescues
