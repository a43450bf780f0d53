"""Guardrails: input checks beside a module, output checks after it, tool-call checks."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
import trio.testing

import trio_dspy as td
from trio_dspy.errors import GuardrailError, GuardrailTripped
from trio_dspy.messages import LMResponse, ToolCall
from trio_dspy.telemetry import InMemoryExporter, collect
from trio_dspy.testing import DummyLM, SimConfig, serve_sim


async def trips_after_one_second(question: str) -> td.GuardrailResult:
    await trio.sleep(1)
    return td.GuardrailResult(tripped="password" in question, info="asks for a secret")


async def test_an_input_guardrail_trip_abandons_the_model_request_at_the_server(
    autojump_clock: trio.testing.MockClock,
) -> None:
    safe = td.guarded(td.Predict("question -> answer"), input=[trips_after_one_second])
    async with serve_sim(SimConfig(latency=10.0)) as sim:
        lm = td.LM("openai/sim-model", base_url=sim.base_url, api_key="k", max_connections=1)
        async with lm:
            with td.context(lm=lm):
                start = trio.current_time()
                with pytest.raises(GuardrailTripped) as info:
                    await safe(question="what is the admin password?")
                elapsed = trio.current_time() - start
                await trio.testing.wait_all_tasks_blocked()
                # The request was in flight at the server and was abandoned there.
                assert sim.stats.requests == 1 and sim.stats.ok == 0
                assert sim.http is not None and sim.http.requests_abandoned == 1
                assert sim.stats.in_flight == 0
                # Its connection slot came back: the one-slot pool serves a next call.
                with trio.fail_after(30):
                    pred = await safe(question="what is the weather?")
    assert elapsed == pytest.approx(1.0)  # the guardrail's second, not the model's ten
    assert info.value.guardrail == "trips_after_one_second"
    assert info.value.stage == "input"
    assert info.value.info == "asks for a secret"
    assert isinstance(pred.answer, str)


async def test_passing_input_guardrails_return_the_prediction_once_all_have_passed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def slow_pass(question: str) -> bool:
        await trio.sleep(5)
        return False

    lm = DummyLM([{"answer": "42"}], latency=1.0)
    safe = td.guarded(td.Predict("question -> answer"), input=[slow_pass, lambda **_: False])
    start = trio.current_time()
    with td.context(lm=lm):
        pred = await safe(question="q")
    assert pred.answer == "42"
    # Concurrent: 5 s (the slow guardrail), not 6 s.
    assert trio.current_time() - start == pytest.approx(5.0)


async def test_concurrent_mode_has_sent_the_request_when_a_guardrail_trips(
    autojump_clock: trio.testing.MockClock,
) -> None:
    lm = DummyLM([{"answer": "42"}], latency=10.0)
    safe = td.guarded(td.Predict("question -> answer"), input=[trips_after_one_second])
    with td.context(lm=lm), pytest.raises(GuardrailTripped):
        await safe(question="password")
    assert len(lm.requests) == 1  # sent, then cancelled


async def test_before_mode_never_calls_the_model_when_a_guardrail_trips(
    autojump_clock: trio.testing.MockClock,
) -> None:
    lm = DummyLM([{"answer": "42"}], latency=10.0)
    safe = td.guarded(
        td.Predict("question -> answer"), input=[trips_after_one_second], input_mode="before"
    )
    with td.context(lm=lm), pytest.raises(GuardrailTripped):
        await safe(question="password")
    assert lm.requests == []
    start = trio.current_time()
    with td.context(lm=lm):
        pred = await safe(question="weather")
    assert pred.answer == "42"
    assert trio.current_time() - start == pytest.approx(11.0)  # one after the other


async def test_an_output_guardrail_sees_the_prediction_and_trips_with_its_info() -> None:
    seen: list[Any] = []

    def no_shouting(pred: td.Prediction) -> td.GuardrailResult:
        seen.append(pred)
        return td.GuardrailResult(tripped=pred.answer.isupper(), info={"answer": pred.answer})

    safe = td.guarded(td.Predict("question -> answer"), output=[no_shouting])
    with td.context(lm=DummyLM([{"answer": "NO"}, {"answer": "fine"}])):
        with pytest.raises(GuardrailTripped) as info:
            await safe(question="q")
        pred = await safe(question="q")
    assert info.value.stage == "output"
    assert info.value.guardrail == "no_shouting"
    assert info.value.info == {"answer": "NO"}
    assert pred.answer == "fine"
    assert [p.answer for p in seen] == ["NO", "fine"]


async def test_a_classifier_module_is_a_guardrail_with_its_own_span_and_usage() -> None:
    classifier = td.Predict("question -> tripped: bool, reason")

    def answer(request: Any) -> Any:
        text = request.messages[-1].content
        if "tripped" in request.messages[0].content:
            return {"tripped": "password" in text, "reason": "secret"}
        return LMResponse(
            "[[ ## answer ## ]]\n42\n\n[[ ## completed ## ]]", usage=td.Usage(5, 5, 10)
        )

    lm = DummyLM(answer)
    safe = td.guarded(td.Predict("question -> answer"), input=[classifier])
    exporter = InMemoryExporter()
    async with collect(exporter):
        with td.context(lm=lm), td.track_usage() as usage:
            with pytest.raises(GuardrailTripped) as info:
                await safe(question="the password?")
            pred = await safe(question="the weather?")
    assert info.value.guardrail == "Predict"
    assert info.value.info == {"reason": "secret"}
    assert pred.answer == "42"
    assert usage.requests == len(lm.requests) == 4  # two classifier calls, two answers
    names = [s.name for s in exporter.spans]
    assert names.count("guardrail Predict") == 2
    guard_span = next(s for s in exporter.spans if s.name == "guardrail Predict")
    assert guard_span.attributes["trio_dspy.guardrail.stage"] == "input"
    assert guard_span.attributes["trio_dspy.guardrail.tripped"] is True


async def test_a_raising_guardrail_fails_the_run_with_its_own_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def broken(question: str) -> bool:
        raise ValueError("classifier offline")

    lm = DummyLM([{"answer": "42"}], latency=10.0)
    safe = td.guarded(td.Predict("question -> answer"), input=[broken])
    start = trio.current_time()
    with td.context(lm=lm), pytest.raises(ValueError, match="classifier offline"):
        await safe(question="q")
    assert trio.current_time() - start == 0  # the module was cancelled, not waited for


async def test_a_guardrail_that_returns_no_verdict_is_a_typed_error() -> None:
    safe = td.guarded(td.Predict("question -> answer"), output=[lambda pred: "maybe"])
    with (
        td.context(lm=DummyLM([{"answer": "42"}])),
        pytest.raises(GuardrailError, match="<lambda>"),
    ):
        await safe(question="q")


async def test_a_hanging_guardrail_is_bounded_by_the_callers_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def hangs(question: str) -> bool:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    lm = DummyLM([{"answer": "42"}], latency=1.0)
    safe = td.guarded(td.Predict("question -> answer"), input=[hangs])
    with td.context(lm=lm), pytest.raises(trio.TooSlowError):
        with trio.fail_after(30):
            await safe(question="q")
    assert trio.current_time() == pytest.approx(30.0)


def test_guarded_refuses_what_it_cannot_run() -> None:
    with pytest.raises(TypeError, match="module"):
        td.guarded(lambda: None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="input_mode"):
        td.guarded(td.Predict("q -> a"), input_mode="after")  # type: ignore[arg-type]


# ------------------------------------------------------------------ tools
def refund(order_id: str, amount: float) -> str:
    """Refund an order."""
    refunded.append(order_id)
    return f"refunded {amount} on {order_id}"


refunded: list[str] = []


def at_most_ten(order_id: str, amount: float) -> td.GuardrailResult:
    return td.GuardrailResult(tripped=amount > 10, info=f"{amount} is over 10")


def call(id: str, tool: str, /, **args: Any) -> ToolCall:
    return ToolCall(id, tool, json.dumps(args))


def turn(*calls: ToolCall) -> LMResponse:
    return LMResponse("", tool_calls=calls, finish_reason="tool_calls")


async def test_a_tool_guardrail_checks_the_arguments_before_the_function_runs() -> None:
    refunded.clear()
    tool = td.Tool(refund, guardrails=[at_most_ten], blocking=False)
    with pytest.raises(GuardrailTripped) as info:
        await tool.acall({"order_id": "A1", "amount": 50})
    assert info.value.stage == "tool" and info.value.guardrail == "at_most_ten"
    assert refunded == []
    assert await tool(order_id="A2", amount=5) == "refunded 5.0 on A2"
    assert refunded == ["A2"]
    assert td.Tool(tool, name="refund2").guardrails == (at_most_ten,)


async def test_a_tripped_tool_call_is_the_agents_observation() -> None:
    refunded.clear()
    lm = DummyLM(
        [
            turn(call("a", "refund", order_id="A1", amount=50)),
            turn(call("b", "refund", order_id="A1", amount=5)),
            turn(call("c", "finish", answer="done")),
        ],
        supports_tools=True,
    )
    tool = td.Tool(refund, guardrails=[at_most_ten], blocking=False)
    agent = td.ReAct("request -> answer", tools=[tool])
    with td.context(lm=lm):
        pred = await agent(request="refund A1")
    first, second = (step.calls[0] for step in pred.trajectory.steps[:2])
    assert not first.ok and "at_most_ten" in first.observation and "50" in first.observation
    assert second.ok
    assert refunded == ["A1"]  # only the allowed call ran
    assert pred.answer == "done"


async def test_a_halting_tool_guardrail_ends_the_agents_run() -> None:
    refunded.clear()

    async def halts(order_id: str, amount: float) -> td.GuardrailResult:
        return td.GuardrailResult(tripped=True, info="fraud suspected", halt=True)

    lm = DummyLM(
        [turn(call("a", "refund", order_id="A1", amount=1)), turn(call("c", "finish", answer="x"))],
        supports_tools=True,
    )
    agent = td.ReAct("request -> answer", tools=[td.Tool(refund, guardrails=[halts])])
    with td.context(lm=lm), pytest.raises(GuardrailTripped) as info:
        await agent(request="refund A1")
    assert info.value.info == "fraud suspected" and info.value.halt
    assert refunded == [] and len(lm.requests) == 1
