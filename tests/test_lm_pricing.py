"""A call is priced only when something reads its cost, and pricing stays cheap."""

from __future__ import annotations

import sys
import threading
import time
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing

import trio_dspy as td
from trio_dspy.lm import prices
from trio_dspy.messages import LMResponse
from trio_dspy.testing import DummyLM

ANSWER = "[[ ## answer ## ]]\na\n\n[[ ## completed ## ]]"


def named_lm(model: str) -> DummyLM:
    """A model answering 100 + 50 tokens under the ``openai`` provider's name."""
    pytest.importorskip("genai_prices")

    class Named(DummyLM):
        provider = "openai"

    answer = LMResponse(ANSWER, usage=td.Usage(100, 50, 150))
    return Named([answer], cycle=True, model=f"openai/{model}")


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The model names the price table is asked about, in order."""
    genai_prices = pytest.importorskip("genai_prices")

    asked: list[str] = []
    real = genai_prices.calc_price

    def counting(*args: Any, **kwargs: Any) -> Any:
        asked.append(kwargs.get("model_ref", args[1] if len(args) > 1 else "?"))
        return real(*args, **kwargs)

    monkeypatch.setattr(genai_prices, "calc_price", counting)
    return asked


async def test_a_call_nobody_reads_the_cost_of_is_not_priced(lookups: list[str]) -> None:
    lm = named_lm("gpt-4o-mini")
    with td.context(lm=lm):
        await td.Predict("question -> answer")(question="q")
    assert lookups == []
    assert lm.history[-1].response.usage.cost is None


async def test_a_history_entry_is_priced_when_its_cost_is_read(lookups: list[str]) -> None:
    # DSPy programs sum lm.history's costs after the run: they get them,
    # and the calls themselves paid no lookup.
    lm = named_lm("gpt-4o-mini")
    with td.context(lm=lm):
        await td.Predict("question -> answer")(question="q")
    assert lookups == []
    entry = lm.history[-1]
    assert entry.cost is not None and entry.cost > 0
    assert entry["cost"] == entry.cost
    assert lookups and set(lookups) == {"gpt-4o-mini"}


async def test_a_usage_tracker_or_a_budget_gets_the_cost(lookups: list[str]) -> None:
    lm = named_lm("gpt-4o-mini")
    with td.context(lm=lm), td.track_usage() as usage:
        await td.Predict("question -> answer")(question="q")
    assert usage.cost is not None and usage.cost > 0
    with td.context(lm=lm), td.usage_limits(max_requests=5) as budget:
        await td.Predict("question -> answer")(question="q")
    assert budget.cost == pytest.approx(usage.cost)


async def test_an_agents_own_usage_count_does_not_price_its_calls(lookups: list[str]) -> None:
    lm = named_lm("gpt-4o-mini")
    with td.context(lm=lm), td.request_scope():
        await td.Predict("question -> answer")(question="q")
    assert lookups == []


async def test_a_model_the_table_does_not_know_is_looked_up_once(lookups: list[str]) -> None:
    lm = named_lm("no-such-model-anywhere")
    with td.context(lm=lm), td.track_usage() as usage:
        for _ in range(3):
            await td.Predict("question -> answer")(question="q")
    assert usage.cost is None
    assert lookups.count("no-such-model-anywhere") == 1


async def test_the_price_table_is_read_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("genai_prices")
    where: list[threading.Thread] = []
    monkeypatch.delitem(sys.modules, "genai_prices.data_snapshot", raising=False)
    monkeypatch.setattr(prices, "_load_table", lambda: where.append(threading.current_thread()))
    with td.context(lm=named_lm("gpt-4o-mini")), td.track_usage():
        await td.Predict("question -> answer")(question="q")
    assert where and where[0] is not threading.main_thread()


async def test_calls_that_want_the_price_table_at_once_wait_for_one_load(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    # One thread reads the table; the calls waiting for it go on together, so
    # two calls gathered still take one model latency, not two.
    pytest.importorskip("genai_prices")
    loads: list[str] = []
    monkeypatch.delitem(sys.modules, "genai_prices.data_snapshot", raising=False)

    def slow_load() -> None:
        loads.append(threading.current_thread().name)
        time.sleep(0.05)  # a real thread's real time, which the virtual clock does not wait on

    monkeypatch.setattr(prices, "_load_table", slow_load)
    lm = named_lm("gpt-4o-mini")
    lm.latency = 0.5
    predict = td.Predict("question -> answer")
    with td.context(lm=lm), td.track_usage():
        start = trio.current_time()
        await td.gather(partial(predict, question="a"), partial(predict, question="b"))
    assert len(loads) == 1
    assert trio.current_time() - start == pytest.approx(0.5)
