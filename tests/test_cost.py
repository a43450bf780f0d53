"""What LM calls cost: the server's figure, or the prices table; and max_cost budgets."""

from __future__ import annotations

from functools import partial

import pytest
import trio
import trio.testing

import trio_dspy as td
from trio_dspy.errors import UsageLimitExceeded
from trio_dspy.lm.cache_codec import decode_response, encode_response, read_response
from trio_dspy.lm.openai_stream import openai_usage
from trio_dspy.messages import LMRequest, LMResponse, Message
from trio_dspy.testing import DummyLM, SimConfig, serve_sim
from trio_dspy.testing.sim_profiles import SimProfile

REQUEST = LMRequest([Message("user", "hello")], params={"max_tokens": 16})


def test_a_sum_of_costs_is_unknown_once_one_call_is_unknown() -> None:
    total = td.Usage()
    total.add(td.Usage(10, 5, 15, cost=0.5))
    total.add(td.Usage(10, 5, 15, cost=0.25))
    assert total.cost == 0.75
    total.add(td.Usage())  # nothing (a cache hit) changes nothing
    assert total.cost == 0.75
    assert (total + td.Usage(1, 1, 2)).cost is None  # a call of unknown price
    assert td.Usage(1, 1, 2, cost=1.0) == td.Usage(1, 1, 2)  # equal by their counts


@pytest.mark.parametrize(
    ("reported", "cost"),
    [(0.002, 0.002), (0, 0.0), ("0.1", None), (True, None), (-1, None), (float("nan"), None)],
)
def test_a_servers_usage_cost_is_read_when_it_is_a_sane_number(
    reported: object, cost: float | None
) -> None:
    usage = openai_usage({"prompt_tokens": 3, "completion_tokens": 2, "cost": reported})
    assert usage.cost == cost


async def test_track_usage_sums_the_cost_the_server_reports() -> None:
    profile = SimProfile("priced", usage_extra={"cost": 0.125})
    async with serve_sim(SimConfig(profile=profile)) as sim:
        lm = td.LM("openai/local-model", base_url=sim.base_url, api_key="k")
        async with lm:
            with td.track_usage() as usage:
                response = await lm.request(REQUEST)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(lm.request, REQUEST)
    assert response.usage.cost == 0.125
    assert usage.cost == 0.25


async def test_cost_is_none_for_a_model_without_a_price() -> None:
    with td.context(lm=DummyLM([{"answer": "a"}])), td.track_usage() as usage:
        await td.Predict("question -> answer")(question="q")
    assert usage.total_tokens > 0
    assert usage.cost is None


def priced_lm(latency: float = 0.0) -> DummyLM:
    """A model named as one the prices table knows, answering 100 + 50 tokens."""
    pytest.importorskip("genai_prices")

    class Priced(DummyLM):
        provider = "openai"

    answer = LMResponse(
        "[[ ## answer ## ]]\na\n\n[[ ## completed ## ]]", usage=td.Usage(100, 50, 150)
    )
    return Priced([answer], cycle=True, model="openai/gpt-4o-mini", latency=latency)


async def test_the_prices_table_prices_a_known_model() -> None:
    from genai_prices import Usage as PriceUsage
    from genai_prices import calc_price

    lm = priced_lm()
    expected = float(
        calc_price(
            PriceUsage(input_tokens=100, output_tokens=50), "gpt-4o-mini", provider_id="openai"
        ).total_price
    )
    with td.context(lm=lm), td.track_usage() as usage:
        await td.Predict("question -> answer")(question="q")
        await td.Predict("question -> answer")(question="q")
    assert usage.cost == pytest.approx(2 * expected) and expected > 0
    assert lm.history[-1].response.usage.cost == pytest.approx(expected)


async def test_max_cost_holds_fifty_concurrent_calls_to_the_budget(
    autojump_clock: trio.testing.MockClock,
) -> None:
    lm = priced_lm(latency=1.0)
    predict = td.Predict("question -> answer", max_tokens=100)
    with td.context(lm=lm), td.usage_limits(max_cost=0.0005) as budget:
        results = await td.gather(
            *(partial(predict, question=str(i)) for i in range(50)), return_exceptions=True
        )
    answered = sum(isinstance(r, td.Prediction) for r in results)
    refused = [r for r in results if isinstance(r, UsageLimitExceeded)]
    assert answered and refused and answered + len(refused) == 50
    assert refused[0].limit == "max_cost"
    assert 0 < budget.cost <= 0.0005
    assert len(lm.requests) == answered
    assert budget.remaining.cost == pytest.approx(0.0005 - budget.cost)


async def test_max_cost_refuses_a_model_it_cannot_price() -> None:
    lm = DummyLM([{"answer": "a"}])
    limited = td.usage_limits(max_cost=1.0)
    with td.context(lm=lm), limited, pytest.raises(UsageLimitExceeded, match="no price is known"):
        await td.Predict("question -> answer")(question="q")
    assert lm.requests == []


@pytest.mark.parametrize("bad", [0, -0.5, float("inf"), float("nan")])
def test_a_max_cost_that_bounds_nothing_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="max_cost"), td.usage_limits(max_cost=bad):
        pass


@pytest.mark.parametrize(("stored", "cost"), [(0.125, 0.125), (2, 2.0), (None, None)])
def test_a_cached_response_keeps_its_reported_cost(
    stored: float | None, cost: float | None
) -> None:
    response = LMResponse("hi", usage=td.Usage(3, 2, 5, cost=stored))
    read = read_response(encode_response(response))
    assert read.usage.cost == cost


@pytest.mark.parametrize("bad", ['"0.1"', "true", "-1", "1e400"])
def test_a_stored_cost_that_is_no_cost_makes_the_entry_a_miss(bad: str) -> None:
    raw = encode_response(LMResponse("hi", usage=td.Usage(3, 2, 5, cost=0.5)))
    assert decode_response(raw.replace('"cost": 0.5', f'"cost": {bad}')) is None


async def test_history_entries_carry_the_cost_the_server_reports() -> None:
    profile = SimProfile("priced", usage_extra={"cost": 0.125})
    async with serve_sim(SimConfig(profile=profile)) as sim:
        lm = td.LM("openai/local-model", base_url=sim.base_url, api_key="k")
        async with lm:
            await lm.request(REQUEST)
    entry = lm.history[-1]
    assert entry.cost == 0.125
    assert entry["cost"] == 0.125  # DSPy's history entries are dicts with a "cost"
    assert entry["usage"]["prompt_tokens"] == entry.response.usage.prompt_tokens


async def test_a_litellm_proxys_response_cost_header_is_the_calls_cost() -> None:
    profile = SimProfile("litellm-proxy", headers={"x-litellm-response-cost": "0.0042"})
    async with serve_sim(SimConfig(profile=profile)) as sim:
        lm = td.LM("openai/local-model", base_url=sim.base_url, api_key="k")
        async with lm:
            with td.track_usage() as usage:
                response = await lm.request(REQUEST)
    assert response.usage.cost == 0.0042
    assert lm.history[-1].cost == 0.0042
    assert usage.cost == 0.0042


@pytest.mark.parametrize("header", ["free", "-1", "nan", "inf", ""])
async def test_a_response_cost_header_that_is_no_cost_is_ignored(header: str) -> None:
    profile = SimProfile("litellm-proxy", headers={"x-litellm-response-cost": header})
    async with serve_sim(SimConfig(profile=profile)) as sim:
        lm = td.LM("openai/local-model", base_url=sim.base_url, api_key="k")
        async with lm:
            response = await lm.request(REQUEST)
    assert response.usage.cost is None
    assert lm.history[-1]["cost"] is None


async def test_a_history_entry_refuses_a_key_dspy_entries_do_not_have() -> None:
    lm = DummyLM([{"answer": "a"}])
    with td.context(lm=lm):
        await td.Predict("question -> answer")(question="q")
    entry = lm.history[-1]
    assert entry["outputs"] == [entry.response.text]
    assert entry["messages"][0]["role"] == "system"
    with pytest.raises(KeyError, match="use one of cost, kwargs, messages"):
        entry["nope"]
    assert entry.get("cost") is None and entry.get("nope", 0) == 0
    assert "cost" in entry and "nope" not in entry and entry.keys()[0] == "cost"
