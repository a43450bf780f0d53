"""td.usage_limits: budgets on LM calls, checked before sending, shared by child tasks."""

from __future__ import annotations

from functools import partial

import pytest
import trio
import trio.testing

import trio_dspy as td
from trio_dspy.errors import UsageLimitExceeded
from trio_dspy.messages import LMRequest, Message
from trio_dspy.testing import DummyLM, SimConfig, serve_sim
from trio_dspy.usage_limits import Remaining


async def test_fifty_concurrent_children_never_spend_past_the_budget(
    autojump_clock: trio.testing.MockClock,
) -> None:
    overdrawn: list[int] = []

    def latency(request: LMRequest) -> float:
        # What the model sees while every call is in flight: never past the budget.
        spent = budget.total_tokens + budget.reserved_tokens
        if spent > 3000:
            overdrawn.append(spent)
        return 1.0

    lm = DummyLM([{"answer": "a short answer"}], cycle=True, latency=latency)
    predict = td.Predict("question -> answer", max_tokens=100)
    with td.context(lm=lm), td.usage_limits(max_total_tokens=3000) as budget:
        results = await td.gather(
            *(partial(predict, question=f"question {i}") for i in range(50)),
            return_exceptions=True,
        )
    answered = [r for r in results if isinstance(r, td.Prediction)]
    refused = [r for r in results if isinstance(r, UsageLimitExceeded)]
    assert len(answered) + len(refused) == 50
    assert answered and refused  # the budget admitted some and refused the rest
    assert overdrawn == []
    assert budget.total_tokens <= 3000
    assert len(lm.requests) == len(answered) == budget.requests  # refused ones never sent
    assert budget.reserved_tokens == budget.reserved_requests == 0
    assert refused[0].limit == "max_total_tokens" and refused[0].maximum == 3000


async def test_max_requests_admits_exactly_that_many_concurrent_calls(
    autojump_clock: trio.testing.MockClock,
) -> None:
    lm = DummyLM([{"answer": "a"}], cycle=True, latency=1.0)
    predict = td.Predict("question -> answer")
    with td.context(lm=lm), td.usage_limits(max_requests=10) as budget:
        results = await td.gather(
            *(partial(predict, question=str(i)) for i in range(50)), return_exceptions=True
        )
    assert sum(isinstance(r, td.Prediction) for r in results) == 10
    assert sum(isinstance(r, UsageLimitExceeded) for r in results) == 40
    assert len(lm.requests) == 10
    assert budget.requests == 10
    assert trio.current_time() == pytest.approx(1.0)  # the ten ran at once


async def test_the_refused_call_never_reaches_the_model() -> None:
    lm = DummyLM([{"answer": "a"}], cycle=True)
    predict = td.Predict("question -> answer")
    with td.context(lm=lm), td.usage_limits(max_requests=1):
        await predict(question="q")
        with pytest.raises(UsageLimitExceeded, match=r"max_requests=1") as info:
            await predict(question="q")
    assert len(lm.requests) == 1
    assert info.value.used == 1
    # Outside the block nothing is bounded.
    with td.context(lm=lm):
        await predict(question="q")
    assert len(lm.requests) == 2


async def test_a_call_whose_reservation_does_not_fit_is_refused_whole() -> None:
    lm = DummyLM([{"answer": "a"}])
    limited = td.usage_limits(max_total_tokens=500)
    with td.context(lm=lm), limited, pytest.raises(UsageLimitExceeded, match="max_tokens"):
        await td.Predict("question -> answer", max_tokens=1000)(question="q")
    assert lm.requests == []


async def test_nested_budgets_both_charge_and_the_stricter_refuses() -> None:
    lm = DummyLM([{"answer": "a"}], cycle=True)
    predict = td.Predict("question -> answer")
    with td.context(lm=lm), td.usage_limits(max_requests=3) as outer:
        with td.usage_limits(max_requests=2) as inner:
            await predict(question="1")
            await predict(question="2")
            with pytest.raises(UsageLimitExceeded, match="max_requests=2"):
                await predict(question="3")
        assert inner.requests == outer.requests == 2
        # An inner block cannot loosen the outer one.
        with td.usage_limits(max_requests=100):
            await predict(question="3")
            with pytest.raises(UsageLimitExceeded, match="max_requests=3"):
                await predict(question="4")
    assert outer.requests == 3
    assert outer.total_tokens == sum(e.response.usage.total_tokens for e in lm.history)


async def test_remaining_tells_what_is_left() -> None:
    lm = DummyLM([{"answer": "a"}], cycle=True)
    with td.context(lm=lm), td.usage_limits(max_requests=5, max_total_tokens=10_000) as budget:
        assert budget.remaining == Remaining(requests=5, total_tokens=10_000)
        await td.Predict("question -> answer")(question="q")
        used = lm.history[-1].response.usage.total_tokens
        assert budget.remaining.requests == 4
        assert budget.remaining.total_tokens == 10_000 - used
    with td.usage_limits(max_requests=1) as only_requests:
        assert only_requests.remaining.total_tokens is None


@pytest.mark.parametrize("bad", [0, -1])
def test_zero_or_negative_limits_are_refused(bad: int) -> None:
    with pytest.raises(ValueError, match="positive"), td.usage_limits(max_requests=bad):
        pass
    with pytest.raises(ValueError, match="positive"), td.usage_limits(max_total_tokens=bad):
        pass


def test_limits_that_are_not_ints_are_refused() -> None:
    with pytest.raises(TypeError), td.usage_limits(max_requests=True):
        pass
    with pytest.raises(TypeError), td.usage_limits(max_total_tokens=1.5):  # type: ignore[arg-type]
        pass


async def test_a_failed_call_counts_a_request_and_frees_its_reservation() -> None:
    def fail(request: LMRequest) -> str:
        raise td.errors.LMServerError("down", model="dummy")

    limited = td.usage_limits(max_requests=5)
    with td.context(lm=DummyLM(fail)), limited as budget, pytest.raises(td.errors.LMServerError):
        await td.Predict("question -> answer")(question="q")
    assert budget.requests == 1 and budget.total_tokens == 0
    assert budget.reserved_requests == budget.reserved_tokens == 0


async def test_over_http_the_server_never_sees_a_refused_call_streamed_or_not() -> None:
    async with serve_sim(SimConfig()) as sim:
        lm = td.LM("openai/sim-model", base_url=sim.base_url, api_key="k")
        request = LMRequest([Message("user", "hello")], params={"max_tokens": 16})
        async with lm:
            with td.usage_limits(max_requests=2) as budget:
                await lm.request(request)
                async with lm.stream(request) as stream:
                    async for _ in stream:
                        pass
                with pytest.raises(UsageLimitExceeded):
                    await lm.request(request)
                with pytest.raises(UsageLimitExceeded):
                    async with lm.stream(request):
                        pass
    assert sim.stats.requests == 2
    assert budget.requests == 2
    assert budget.total_tokens == sum(e.response.usage.total_tokens for e in lm.history) > 0
