"""Fuzzing: whatever a guardrail returns, and whatever a call asks for under a budget,
the run ends in a result or a typed error, in bounded time, with nothing left running."""

from __future__ import annotations

import json
from typing import Any

import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

import trio_dspy as td
from trio_dspy.errors import GuardrailError, GuardrailTripped, UsageLimitExceeded
from trio_dspy.testing import DummyLM

from .hostile import fuzz_settings, hostile_numbers, hostile_values


def _decoded(raw: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return raw


_odd = st.sampled_from(
    [None, 0, 1, "true", float("nan"), td.Prediction(tripped="yes"), td.Prediction(tripped=True)]
)


def _run(program: Any, **inputs: Any) -> Any:
    async def main() -> Any:
        with trio.fail_after(60):
            return await program(**inputs)

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


@fuzz_settings(40)
@given(verdict=hostile_values.map(_decoded) | _odd, stage=st.sampled_from(["input", "output"]))
def test_any_verdict_is_a_pass_a_trip_or_a_typed_error(verdict: Any, stage: str) -> None:
    def guard(*args: Any, **kwargs: Any) -> Any:
        return verdict

    guards: dict[str, Any] = {stage: [guard]}
    safe = td.guarded(td.Predict("question -> answer"), **guards)

    async def program(**inputs: Any) -> Any:
        with td.context(lm=DummyLM([{"answer": "a"}], latency=1.0)):
            return await safe(**inputs)

    try:
        result = _run(program, question="q")
    except GuardrailTripped:
        assert verdict is True or getattr(verdict, "tripped", None) is True
    except GuardrailError:
        assert not isinstance(verdict, bool)
    else:
        assert result.answer == "a"
        assert verdict is False


@fuzz_settings(40)
@given(
    max_tokens=hostile_numbers.map(_decoded) | st.integers(-5, 10**6), limit=st.integers(1, 10**4)
)
def test_any_max_tokens_under_a_budget_is_sent_or_refused(max_tokens: Any, limit: int) -> None:
    lm = DummyLM([{"answer": "a"}], cycle=True)

    async def program() -> Any:
        with td.context(lm=lm), td.usage_limits(max_total_tokens=limit) as budget:
            try:
                await td.Predict("question -> answer", max_tokens=max_tokens)(question="q")
            except UsageLimitExceeded:
                assert lm.requests == []
            assert budget.reserved_tokens == budget.reserved_requests == 0
            return budget

    budget = _run(program)
    assert budget.requests == len(lm.requests)
