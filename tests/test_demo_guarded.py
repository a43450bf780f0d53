"""The demo's guarded barista: the abusive customer refused mid-call, budgets, the run's cost."""

from __future__ import annotations

import io
import re
import subprocess
import sys

import pytest
import trio
import trio.testing

import trio_dspy as td
from trio_dspy.demo.pricing import Price, parse_price
from trio_dspy.demo.runner import Budget, guarded_agent, run_demo, serve
from trio_dspy.demo.story import ABUSIVE, SCREEN_LATENCY, customers, script
from trio_dspy.lm.prices import estimate_cost, prices_available
from trio_dspy.testing import SimConfig, serve_sim


def _rows(text: str, marker: str) -> list[str]:
    return [line for line in text.splitlines() if marker in line]


async def test_the_guardrail_refuses_the_abusive_customer_while_the_barista_call_is_in_flight(
    autojump_clock: trio.testing.MockClock,
) -> None:
    people = [*customers(4), ABUSIVE]
    async with serve_sim(SimConfig(script=script(people, 1.0))) as sim:
        lm = td.LM("openai/sim-model", base_url=sim.base_url, api_key="k")
        async with lm:
            with td.context(lm=lm):
                served = await serve(guarded_agent(), ABUSIVE, None)
            await trio.testing.wait_all_tasks_blocked()
            # The screen and the barista's first call both reached the server;
            # only the screen was answered: the barista's was abandoned mid-call.
            assert sim.stats.requests == 2 and sim.stats.ok == 1
            assert sim.http is not None and sim.http.requests_abandoned == 1
            assert sim.stats.in_flight == 0
    assert served.refused and served.action == "refused by abuse_screen"
    assert "an essay is not on the menu" in served.reply
    # Refused at the screen's answer, not the barista's 3 s first call.
    assert served.latency == pytest.approx(SCREEN_LATENCY)


async def test_the_others_are_served_concurrently_while_the_abusive_one_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    out = io.StringIO()
    numbers = await run_demo(count=4, time_scale=1.0, out=out, width=300)
    text = out.getvalue()
    # The story's timings: 25 s one after another (and the refusal's 0.6 s), or
    # as long as the slowest customer (7.5 s) when served at once.
    assert numbers["sequential"] == pytest.approx(25.0 + SCREEN_LATENCY, abs=0.05)
    assert numbers["concurrent"] == pytest.approx(7.5, abs=0.05)
    refused = _rows(text, "refused by abuse_screen")
    assert len(refused) == 2 and all(row.lstrip().startswith("5 ") for row in refused)
    assert all(row.rstrip().endswith(f"{SCREEN_LATENCY:.2f}s") for row in refused)
    assert text.count("RefundOrder(A17, $5.25)") == 2  # the others were served
    assert "guardrail: customer 5 refused after 0.60s, the barista cancelled mid-call" in text
    # One barista call abandoned per pass.
    assert "the simulated server saw 2 requests abandoned by their client" in text


async def test_each_customer_has_a_budget_of_their_own(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # One customer takes three calls (the screen, a tool turn, the finish):
    # three each serves all of them, though the run makes 26.
    out = io.StringIO()
    await run_demo(count=4, time_scale=1.0, out=out, width=300, budget=Budget(max_requests=3))
    text = out.getvalue()
    assert "over budget" not in text and text.count("RefundOrder(A17, $5.25)") == 2
    assert "26 model calls" in text
    assert "the most one customer used: 3 calls" in text
    # Two each: every customer's finishing call is refused before it is sent.
    out = io.StringIO()
    await run_demo(count=4, time_scale=1.0, out=out, width=300, budget=Budget(max_requests=2))
    text = out.getvalue()
    over = [row for row in _rows(text, "over budget") if "UsageLimitExceeded" in row]
    assert len(over) == 2 * 4  # four customers, two passes
    assert len(_rows(text, "refused by abuse_screen")) == 2  # the screen still refuses
    assert "the most one customer used: 2 calls" in text
    assert "8 stopped over budget" in text


def _cost_line(text: str) -> tuple[str, int, int]:
    joined = " ".join(text.split())
    found = re.search(
        r"cost of the run: (\S+) for \d+ model calls, ([\d,]+) prompt and ([\d,]+) completion",
        joined,
    )
    assert found is not None, joined
    return (
        found.group(1),
        int(found.group(2).replace(",", "")),
        int(found.group(3).replace(",", "")),
    )


async def test_the_run_costs_nothing_on_the_simulator() -> None:
    out = io.StringIO()
    numbers = await run_demo(count=4, time_scale=0.0, out=out, width=300)
    figure, prompt, completion = _cost_line(out.getvalue())
    assert numbers["cost"] == 0.0 and figure == "$0.000000"
    assert prompt > 0 and completion > 0
    assert "the simulated server charges nothing" in out.getvalue()


async def test_price_charges_the_runs_tokens_per_million() -> None:
    out = io.StringIO()
    numbers = await run_demo(
        count=4, time_scale=0.0, out=out, width=300, price=parse_price("2, 10")
    )
    _, prompt, completion = _cost_line(out.getvalue())
    assert numbers["cost"] == pytest.approx((prompt * 2 + completion * 10) / 1e6)
    assert "at $2 per million prompt tokens and $10 per million completion tokens" in (
        " ".join(out.getvalue().split())
    )


@pytest.mark.skipif(not prices_available(), reason="needs the prices extra")
async def test_price_charges_a_known_models_list_price() -> None:
    out = io.StringIO()
    price = parse_price("openai/gpt-4o-mini")
    numbers = await run_demo(count=4, time_scale=0.0, out=out, width=300, price=price)
    _, prompt, completion = _cost_line(out.getvalue())
    expected = estimate_cost("openai", ("gpt-4o-mini",), prompt, completion)
    assert expected is not None and expected > 0
    assert numbers["cost"] == pytest.approx(expected)
    assert "at openai/gpt-4o-mini's list price" in " ".join(out.getvalue().split())


@pytest.mark.parametrize("text", ["gpt", "1,2,3", "-1", "nan", "0.1,inf", "openai/"])
def test_a_price_that_is_neither_form_is_refused_saying_both(text: str) -> None:
    with pytest.raises(ValueError, match="PROVIDER/MODEL|IN,OUT"):
        parse_price(text)


def test_a_single_number_prices_prompt_and_completion_alike() -> None:
    assert parse_price("0.5") == Price(input_per_million=0.5, output_per_million=0.5)


def _demo(*options: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "trio_dspy.cli", "demo", "--time-scale", "0", *options]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.skipif(not prices_available(), reason="needs the prices extra")
def test_the_command_prices_the_run_and_refuses_an_unknown_model() -> None:
    run = _demo("--price", "openai/gpt-4o-mini")
    assert run.returncode == 0, run.stderr
    figure, _, _ = _cost_line(run.stdout)
    assert figure.startswith("$") and float(figure[1:]) > 0
    refused = _demo("--price", "openai/no-such-model")
    assert refused.returncode == 2
    assert "the price table does not know openai/no-such-model" in refused.stderr
