"""GEPA with several proposals in flight runs the sequential loop's search, sooner.

Iterations after the oldest one in flight run speculative plans, checked
when they become the oldest; these tests hold it to the sequential loop
(``proposals=1``): the same candidates whatever order calls finish in, the
budget kept in calls really made, and nothing left running when cancelled.
"""

from __future__ import annotations

import hashlib
from typing import Any

import trio

import trio_dspy as td
from trio_dspy.lm.base import BaseLM
from trio_dspy.messages import LMRequest, LMResponse
from trio_dspy.testing import InstructionTask, SimConfig, serve_sim

from .optimizer_support import random_latency_lm

TASK = InstructionTask(seed=1)
TRAIN = TASK.examples(12)
VAL = TASK.examples(10, start=100)


def program() -> td.Predict:
    return td.Predict(td.make_signature("question -> answer", instructions=TASK.instructions))


class CountingMetric:
    """The task's metric, counting the scoring calls (those without ``pred_name``)."""

    def __init__(self) -> None:
        self.scoring = 0

    def __call__(
        self, gold: Any, pred: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None
    ) -> td.Prediction:
        if pred_name is None:
            self.scoring += 1
        return TASK.metric(gold, pred, trace, pred_name, pred_trace)


class Fickle(BaseLM):
    """A reflection model that helps on about half the prompts (the task's own
    answer) and on the others proposes a child that is rejected: iterations that
    add a program and iterations that add none, mixed."""

    def __init__(self, latency_seed: int) -> None:
        super().__init__("fickle")
        self.inner = random_latency_lm(TASK, latency_seed)

    async def send(self, request: LMRequest) -> LMResponse:
        prompt = request.messages[-1].text
        if hashlib.sha256(prompt.encode()).digest()[0] % 2:
            return await self.inner.send(request)
        await trio.sleep(1.0)
        current = prompt.split("```")[1].strip()
        return LMResponse(text=f"```\n{current} Be precise.\n```")


async def run(
    proposals: int, latency_seed: int, budget: int = 150, **options: Any
) -> tuple[dict[str, Any], td.GEPA, float, CountingMetric]:
    lm = random_latency_lm(TASK, latency_seed)
    metric = CountingMetric()
    gepa = td.GEPA(
        metric,
        reflection_lm=options.pop("reflection", lm),
        max_metric_calls=budget,
        proposals=proposals,
        track_stats=True,
        **options,
    )
    start = trio.current_time()
    with td.context(lm=lm):
        compiled = await gepa.compile(program(), trainset=TRAIN, valset=VAL)
    elapsed = trio.current_time() - start
    data = compiled.detailed_results.to_dict()  # type: ignore[attr-defined]
    data.pop("total_metric_calls")  # calls cancelled speculation made differ with timing
    return data, gepa, elapsed, metric


async def test_several_proposals_find_what_the_sequential_loop_finds(
    autojump_clock: trio.abc.Clock,
) -> None:
    sequential, _, _, _ = await run(1, latency_seed=0)
    assert len(sequential["candidates"]) > 2
    for proposals in (2, 4, 8):
        for latency_seed in (1, 2, 3):
            found, _, _, _ = await run(proposals, latency_seed)
            assert found == sequential, (proposals, latency_seed)


async def test_with_children_often_rejected_the_search_is_still_the_sequential_one(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Once most iterations add nothing, later ones are guessed on that and run
    # side by side; a guess proved wrong is cancelled and made again.
    sequential, _, _, _ = await run(1, latency_seed=0, reflection=Fickle(0), budget=250)
    assert len(sequential["candidates"]) > 2
    for proposals in (4, 8):
        for latency_seed in (1, 2):
            found, gepa, _, metric = await run(
                proposals, latency_seed, reflection=Fickle(latency_seed), budget=250
            )
            assert found == sequential, (proposals, latency_seed)
            assert metric.scoring == gepa.stats.metric_calls <= 250


async def test_several_proposals_take_less_time_than_one(
    autojump_clock: trio.abc.Clock,
) -> None:
    # The reflection on the next parent overlaps the valset evaluation of the
    # child before it, and iterations that change nothing run side by side.
    _, _, one, _ = await run(1, latency_seed=4)
    _, _, four, _ = await run(4, latency_seed=4)
    assert four < 0.8 * one


async def test_calls_really_made_never_exceed_the_budget(autojump_clock: trio.abc.Clock) -> None:
    for proposals in (4, 8):
        for budget in (10, 23, 40, 61, 100, 150):
            _, gepa, _, metric = await run(proposals, latency_seed=budget, budget=budget)
            assert metric.scoring == gepa.stats.metric_calls <= budget


async def test_a_budget_that_ends_mid_search_ends_where_the_sequential_loop_does(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Budgets ending after an accepted child, a rejected one, or a skip: the
    # candidates found are the sequential loop's, in its order.
    for budget in (36, 52, 68, 84):
        sequential, _, _, _ = await run(1, latency_seed=0, budget=budget)
        found, _, _, _ = await run(8, latency_seed=budget, budget=budget)
        assert found == sequential, budget


async def test_whatever_speculation_spends_the_candidates_are_the_sequential_loops_first(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Calls made by wrong guesses count against the budget; should they leave
    # too little for the oldest iteration, the run ends early, with the
    # sequential loop's first candidates: never others, never in another order.
    keys = ("candidates", "parents", "val_subscores", "discovery_eval_counts")
    for budget in (30, 46, 62, 78, 94):
        sequential, _, _, _ = await run(1, latency_seed=0, reflection=Fickle(0), budget=budget)
        for proposals in (4, 8):
            found, gepa, _, metric = await run(
                proposals, latency_seed=budget, reflection=Fickle(budget), budget=budget
            )
            count = len(found["candidates"])
            for key in keys:
                assert found[key] == sequential[key][:count], (budget, proposals, key)
            assert metric.scoring == gepa.stats.metric_calls <= budget


async def test_cancelling_with_speculation_in_flight_leaves_nothing_running(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with serve_sim(SimConfig(script=TASK.script(), latency=1.0)) as server:
        lm = td.LM("openai/sim-model", base_url=server.base_url, api_key="k", max_retries=0)
        async with lm:
            for seconds in (0.5, 2.5, 4.5, 7.5):  # the seed, then reflections and valsets
                gepa = td.GEPA(TASK.metric, reflection_lm=lm, max_metric_calls=150, proposals=8)
                with td.context(lm=lm), trio.move_on_after(seconds) as scope:
                    await gepa.compile(program(), trainset=TRAIN, valset=VAL)
                assert scope.cancelled_caught
                await trio.sleep(10)  # nothing finishes late: nothing is left to
                assert server.stats.in_flight == 0
