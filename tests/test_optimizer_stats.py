"""``optimizer.stats``: every optimizer reports what its compile cost the same way.

Model calls are those a model answered, metric calls those the metric
made (a run whose program raised makes none), saved calls the example runs
a decision cancelled, and wall time real seconds. Each is checked against an
independent count: a model that counts its answers and a metric that counts
its calls, on the instruction-rewarding task in process, with random latency
on the autojump clock.
"""

from __future__ import annotations

import random
import re
from typing import Any

import pytest
import trio

import trio_dspy as td
from trio_dspy.errors import LMServerError, TrioDSPyError
from trio_dspy.lm.base import BaseLM
from trio_dspy.messages import LMRequest, LMResponse
from trio_dspy.optimizers import BootstrapStats, OptimizerStats, RandomSearchStats
from trio_dspy.testing import DummyLM, InstructionTask, SimConfig, serve_sim

TASK = InstructionTask(seed=3)
TRAIN = TASK.examples(10)
VAL = TASK.examples(8, start=100)
_ITEM = re.compile(r"\bItem (\d+):")


class Answering(BaseLM):
    """The task's model with random latency, counting the calls it answered.

    Asked for a proposed instruction, it adds a subset of the task's phrases
    drawn from the request's temperature, so that COPRO's samples differ.
    Calls about an item in ``fail`` raise, as a server error would.
    """

    def __init__(self, seed: int = 0, *, fail: frozenset[int] = frozenset()) -> None:
        super().__init__("answering")
        rng = random.Random(seed)

        def latency(request: LMRequest) -> float:
            return rng.uniform(0.1, 2.0)

        self.task = TASK.dummy_lm(latency=latency)
        self.proposer = DummyLM(_proposal, latency=latency)
        self.fail = fail
        self.answered = 0

    async def send(self, request: LMRequest) -> LMResponse:
        item = _ITEM.search(request.messages[-1].text)
        if item is not None and int(item.group(1)) in self.fail:
            await trio.sleep(0.5)
            raise LMServerError("the server failed")
        proposing = "`proposed_instruction`" in request.messages[0].text
        response = await (self.proposer if proposing else self.task).send(request)
        self.answered += 1
        return response


def _proposal(request: LMRequest) -> dict[str, str]:
    rng = random.Random(f"{request.params.get('temperature')}:{request.messages[-1].text}")
    chosen = [p for p in TASK.phrases if rng.random() < 0.5]
    if not chosen:
        return {"proposed_instruction": TASK.instructions}
    return {"proposed_instruction": f"{TASK.instructions} Be sure to: {'; '.join(chosen)}."}


class Counting:
    """The task's metric, counting its calls (``raise_on``: those about these items raise)."""

    def __init__(self, raise_on: frozenset[int] = frozenset()) -> None:
        self.calls = 0
        self.raise_on = raise_on

    def __call__(self, gold: td.Example, pred: Any, trace: Any = None) -> float:
        self.calls += 1
        item = _ITEM.search(str(gold.question))
        if item is not None and int(item.group(1)) in self.raise_on:
            raise ValueError("the metric failed")
        return float(TASK.metric(gold, pred, trace).score)


def program() -> td.Predict:
    return td.Predict(td.make_signature("question -> answer", instructions=TASK.instructions))


def optimizers(metric: Counting) -> dict[str, td.optimizers.Optimizer]:
    return {
        "labeled": td.LabeledFewShot(k=3),
        "bootstrap": td.BootstrapFewShot(
            metric, max_bootstrapped_demos=3, max_labeled_demos=2, max_rounds=2, limit=4
        ),
        "random search": td.BootstrapFewShotWithRandomSearch(
            metric, num_candidate_programs=3, max_bootstrapped_demos=2, limit=6
        ),
        "copro": td.COPRO(metric, breadth=3, depth=2, limit=6, early_stopping=True),
    }


@pytest.mark.parametrize("name", ["labeled", "bootstrap", "random search", "copro"])
async def test_every_optimizer_counts_the_model_and_metric_calls_it_made(
    autojump_clock: trio.abc.Clock, name: str
) -> None:
    # Items 2 and 103 fail at the model: their runs make no metric call.
    lm = Answering(seed=1, fail=frozenset({2, 103}))
    metric = Counting()
    optimizer = optimizers(metric)[name]
    with td.context(lm=lm), td.track_usage() as usage:
        await optimizer.compile(program(), trainset=TRAIN, valset=VAL)
    stats = optimizer.stats
    assert isinstance(stats, OptimizerStats)
    assert stats.lm_calls == lm.answered == usage.requests
    assert stats.metric_calls == metric.calls
    assert stats.prompt_tokens == usage.prompt_tokens
    assert stats.completion_tokens == usage.completion_tokens
    assert stats.metric_calls_replayed == 0
    assert stats.wall_time > 0
    if name != "labeled":
        assert stats.lm_calls > 0 and stats.metric_calls > 0


async def test_a_metric_that_raises_still_counts_as_a_call(
    autojump_clock: trio.abc.Clock,
) -> None:
    for name in ("bootstrap", "random search", "copro"):
        metric = Counting(raise_on=frozenset({1, 101}))
        optimizer = optimizers(metric)[name]
        with td.context(lm=Answering(seed=2)):
            await optimizer.compile(program(), trainset=TRAIN, valset=VAL)
        assert optimizer.stats.metric_calls == metric.calls, name


async def test_each_compile_reports_its_own_cost(autojump_clock: trio.abc.Clock) -> None:
    metric = Counting()
    optimizer = td.COPRO(metric, breadth=3, depth=1)
    for seed in (1, 2):
        metric.calls = 0
        lm = Answering(seed)
        with td.context(lm=lm):
            await optimizer.compile(program(), trainset=TRAIN)
        assert optimizer.stats.lm_calls == lm.answered
        assert optimizer.stats.metric_calls == metric.calls


async def test_bootstrap_counts_the_examples_it_left_unrun_as_saved(
    autojump_clock: trio.abc.Clock,
) -> None:
    metric = Counting()
    optimizer = td.BootstrapFewShot(metric, max_bootstrapped_demos=2, max_labeled_demos=0, limit=2)
    with td.context(lm=Answering(seed=4)):
        await optimizer.compile(program(), trainset=TASK.examples(30))
    stats = optimizer.stats
    assert isinstance(stats, BootstrapStats)
    # One round per example: each either ran to its metric call or was saved.
    assert stats.metric_calls == metric.calls == stats.run
    assert stats.metric_calls + stats.metric_calls_saved == 30
    assert stats.metric_calls_saved == stats.cancelled > 20


async def test_random_search_counts_what_early_stopping_saved(
    autojump_clock: trio.abc.Clock,
) -> None:
    made: dict[bool, RandomSearchStats] = {}
    for early in (True, False):
        metric = Counting()
        optimizer = td.BootstrapFewShotWithRandomSearch(
            metric,
            num_candidate_programs=4,
            max_bootstrapped_demos=3,
            early_stopping=early,
            limit=6,
        )
        with td.context(lm=Answering(seed=5)):
            await optimizer.compile(program(), trainset=TRAIN, valset=VAL)
        stats = optimizer.stats
        assert isinstance(stats, RandomSearchStats)
        assert stats.metric_calls == metric.calls
        # Every candidate's valset runs are either made or saved.
        assert stats.example_runs + stats.example_runs_saved == stats.candidates * len(VAL)
        made[early] = stats
    assert made[True].pruned > 0
    assert made[True].example_runs_saved > 0
    assert made[True].metric_calls_saved >= made[True].example_runs_saved
    assert made[False].pruned == made[False].example_runs_saved == 0
    assert made[True].metric_calls < made[False].metric_calls


async def test_copro_counts_what_early_stopping_saved(autojump_clock: trio.abc.Clock) -> None:
    saved = {}
    for early in (True, False):
        metric = Counting()
        optimizer = td.COPRO(metric, breadth=4, depth=2, limit=4, early_stopping=early)
        with td.context(lm=Answering(seed=6)):
            await optimizer.compile(program(), trainset=TRAIN)
        assert optimizer.stats.metric_calls == metric.calls
        saved[early] = optimizer.stats.metric_calls_saved
    assert saved[True] > 0 and saved[False] == 0


async def test_wall_time_is_real_seconds_not_the_trio_clock(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Every call takes 100 virtual seconds; the autojump clock skips them, so
    # the compile takes far less real time than the trio clock says.
    lm = TASK.dummy_lm(latency=100.0)
    optimizer = td.BootstrapFewShot(Counting(), max_bootstrapped_demos=2, limit=2)
    start = trio.current_time()
    with td.context(lm=lm):
        await optimizer.compile(program(), trainset=TRAIN)
    virtual = trio.current_time() - start
    assert virtual >= 100.0
    assert 0 < optimizer.stats.wall_time < virtual


async def test_a_failed_compile_still_reports_what_it_cost(
    autojump_clock: trio.abc.Clock,
) -> None:
    metric = Counting(raise_on=frozenset({0, 1}))
    lm = Answering(seed=7)
    optimizer = td.BootstrapFewShot(metric, max_bootstrapped_demos=4, max_errors=0, limit=4)
    with td.context(lm=lm), pytest.raises(TrioDSPyError, match="max_errors"):
        await optimizer.compile(program(), trainset=TRAIN)
    assert optimizer.stats.errors >= 1
    assert optimizer.stats.metric_calls == metric.calls >= 1
    assert optimizer.stats.lm_calls == lm.answered


async def test_a_cancelled_compile_still_reports_what_it_cost(
    autojump_clock: trio.abc.Clock,
) -> None:
    metric = Counting()
    lm = Answering(seed=8)
    optimizer = td.BootstrapFewShotWithRandomSearch(
        metric, num_candidate_programs=6, max_bootstrapped_demos=3, limit=3
    )
    with td.context(lm=lm), trio.move_on_after(6.0) as scope:
        await optimizer.compile(program(), trainset=TRAIN, valset=VAL)
    assert scope.cancelled_caught
    assert optimizer.stats.lm_calls == lm.answered > 0
    assert optimizer.stats.metric_calls == metric.calls > 0


async def test_a_compile_over_loopback_counts_the_requests_the_server_answered(
    autojump_clock: trio.abc.Clock,
) -> None:
    metric = Counting()
    async with serve_sim(SimConfig(script=TASK.script(), latency=0.5)) as server:
        lm = td.LM("openai/sim-model", base_url=server.base_url, api_key="k", cache=False)
        async with lm:
            optimizer = td.COPRO(metric, breadth=3, depth=2, limit=4)
            with td.context(lm=lm):
                await optimizer.compile(program(), trainset=TRAIN)
        answered = server.stats.ok
    assert optimizer.stats.lm_calls == answered == server.stats.requests
    # Without early stopping every instruction tried is scored on the whole trainset.
    assert optimizer.stats.metric_calls == metric.calls == len(optimizer.attempts) * len(TRAIN)
    assert optimizer.stats.prompt_tokens > 0 and optimizer.stats.completion_tokens > 0
