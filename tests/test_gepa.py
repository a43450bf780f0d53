"""GEPA: improves instructions within its budget, concurrently, deterministically, resumably.

Most tests run the instruction-rewarding task (``td.testing.InstructionTask``)
in process, with random latency on the autojump clock; one runs it over
loopback against the simulated server.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import trio

import trio_dspy as td
from trio_dspy.errors import TrioDSPyError
from trio_dspy.lm.base import BaseLM
from trio_dspy.messages import LMRequest
from trio_dspy.optimizers.gepa import auto_budget, extract_instruction
from trio_dspy.optimizers.gepa.pareto import dominated_programs, parent_by_pareto
from trio_dspy.testing import DummyLM, InstructionTask, SimConfig, serve_sim

from .optimizer_support import Watching, random_latency_lm

TASK = InstructionTask(seed=1)
TRAIN = TASK.examples(12)
VAL = TASK.examples(10, start=100)


def program() -> td.Predict:
    return td.Predict(td.make_signature("question -> answer", instructions=TASK.instructions))


def task_lm(seed: int = 0) -> DummyLM:
    """The task's model with random latency drawn from ``seed``."""
    return random_latency_lm(TASK, seed)


async def compile_task(
    lm: BaseLM, *, reflection: BaseLM | None = None, **options: Any
) -> tuple[td.Module, td.GEPA]:
    options.setdefault("max_metric_calls", 150)
    gepa = td.GEPA(TASK.metric, reflection_lm=reflection or lm, track_stats=True, **options)
    with td.context(lm=lm):
        compiled = await gepa.compile(program(), trainset=TRAIN, valset=VAL)
    return compiled, gepa


def valset_accuracy(compiled: td.Module) -> float:
    instructions = compiled.predictors()[0].signature.instructions
    return TASK.accuracy(instructions, range(100, 110))


async def test_gepa_improves_the_seed_within_its_budget(autojump_clock: trio.abc.Clock) -> None:
    lm = task_lm()
    compiled, gepa = await compile_task(lm)
    result = compiled.detailed_results  # type: ignore[attr-defined]
    assert result.val_aggregate_scores[0] == pytest.approx(0.3)
    assert result.val_aggregate_scores[result.best_idx] == 1.0
    assert valset_accuracy(compiled) == 1.0  # the instructions really say what is needed
    assert gepa.stats.metric_calls <= 150
    assert result.total_metric_calls == gepa.stats.metric_calls
    # The student is left as it was.
    assert TASK.instructions == program().signature.instructions


async def test_the_budget_is_never_exceeded_whatever_its_size(
    autojump_clock: trio.abc.Clock,
) -> None:
    for budget in (10, 17, 26, 40, 61):
        lm = task_lm(budget)
        gepa = td.GEPA(TASK.metric, reflection_lm=lm, max_metric_calls=budget, proposals=4)
        with td.context(lm=lm):
            await gepa.compile(program(), trainset=TRAIN, valset=VAL)
        scoring_calls = gepa.stats.metric_calls
        assert scoring_calls <= budget
        # Every scoring call is one run the budget counts (feedback calls are extra).
        assert scoring_calls + gepa.stats.metric_calls_replayed >= 10


def unhelpful_reflection() -> DummyLM:
    """A reflection model whose proposals add nothing the task rewards: every child
    is rejected, so iterations add no program and run side by side."""

    def answer(request: LMRequest) -> str:
        current = request.messages[-1].text.split("```")[1].strip()
        return f"```\n{current} Be precise.\n```"

    rng = random.Random(0)
    return DummyLM(answer, latency=lambda request: rng.uniform(0.5, 1.5))


async def test_several_proposals_are_in_flight_at_once(autojump_clock: trio.abc.Clock) -> None:
    lm = task_lm()
    watcher = Watching(unhelpful_reflection())
    await compile_task(lm, reflection=watcher, proposals=4)
    assert watcher.most_in_flight >= 2
    watcher_one = Watching(unhelpful_reflection())
    await compile_task(lm, reflection=watcher_one, proposals=1)
    assert watcher_one.most_in_flight == 1


async def test_no_child_of_a_parent_that_left_the_front_is_kept(
    autojump_clock: trio.abc.Clock,
) -> None:
    from trio_dspy.optimizers.gepa.pareto import reduced_fronts, update_front

    compiled, _ = await compile_task(task_lm(3), proposals=4, max_metric_calls=300)
    result = compiled.detailed_results  # type: ignore[attr-defined]
    for k in range(1, len(result.candidates)):
        if len(result.parents[k]) != 1:
            continue  # a merge
        best: dict[int, float] = {}
        holders: dict[int, set[int]] = {}
        for i in range(k):
            update_front(best, holders, i, result.val_subscores[i])
        fronts = reduced_fronts(holders, result.val_aggregate_scores[:k])
        (parent,) = result.parents[k]
        assert any(parent in h for h in fronts.values()), (k, parent)


async def test_the_result_is_the_same_whatever_order_calls_finish_in(
    autojump_clock: trio.abc.Clock,
) -> None:
    results = []
    for latency_seed in (1, 2, 3):
        compiled, _ = await compile_task(task_lm(latency_seed), proposals=4)
        data = compiled.detailed_results.to_dict()  # type: ignore[attr-defined]
        data.pop("total_metric_calls")  # runs cancelled or shared may differ in count
        results.append(data)
    assert results[0] == results[1] == results[2]
    assert len(results[0]["candidates"]) > 2


async def test_a_resumed_run_repeats_no_finished_run_and_ends_as_an_uninterrupted_one(
    autojump_clock: trio.abc.Clock, tmp_path: Path
) -> None:
    whole, whole_gepa = await compile_task(task_lm(7), log_dir=tmp_path / "whole")
    # Interrupted after 40 metric calls, then started again with the same log_dir.
    lm = task_lm(7)
    scope = trio.CancelScope()
    calls = 0

    def interrupting(gold: Any, pred: Any, trace: Any = None, *rest: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 40:
            scope.cancel()
        return TASK.metric(gold, pred, trace, *rest)

    gepa = td.GEPA(
        interrupting,
        reflection_lm=lm,
        max_metric_calls=150,
        track_stats=True,
        log_dir=tmp_path / "r",
    )
    with td.context(lm=lm), scope:
        await gepa.compile(program(), trainset=TRAIN, valset=VAL)
    first_part = gepa.stats.metric_calls
    assert 10 < first_part < whole_gepa.stats.metric_calls
    lm_again = task_lm(7)
    resumed = td.GEPA(
        TASK.metric,
        reflection_lm=lm_again,
        max_metric_calls=150,
        track_stats=True,
        log_dir=tmp_path / "r",
    )
    with td.context(lm=lm_again):
        compiled = await resumed.compile(program(), trainset=TRAIN, valset=VAL)
    assert resumed.stats.metric_calls_replayed >= first_part
    # No finished run was made again: each run's record is in the journal once.
    lines = (tmp_path / "r" / "gepa.jsonl").read_text().splitlines()
    keys = [json.loads(line)["key"] for line in lines[1:]]
    assert len(keys) == len(set(keys))
    assert sum(key.startswith('["run"') for key in keys) == first_part + resumed.stats.metric_calls
    mine = compiled.detailed_results.to_dict()  # type: ignore[attr-defined]
    theirs = whole.detailed_results.to_dict()  # type: ignore[attr-defined]
    for data in (mine, theirs):
        data.pop("total_metric_calls")
        data.pop("log_dir")
    assert mine == theirs


async def test_a_journal_from_another_run_is_refused(
    autojump_clock: trio.abc.Clock, tmp_path: Path
) -> None:
    await compile_task(task_lm(), max_metric_calls=40, log_dir=tmp_path)
    with pytest.raises(TrioDSPyError, match="budget differ"):
        await compile_task(task_lm(), max_metric_calls=41, log_dir=tmp_path)


async def test_a_journal_cut_short_by_a_crash_is_read_up_to_the_cut(
    autojump_clock: trio.abc.Clock, tmp_path: Path
) -> None:
    await compile_task(task_lm(), max_metric_calls=40, log_dir=tmp_path)
    journal = tmp_path / "gepa.jsonl"
    text = journal.read_text()
    journal.write_text(text[: len(text) - 25])  # the last record torn in half
    compiled, gepa = await compile_task(task_lm(), max_metric_calls=40, log_dir=tmp_path)
    assert gepa.stats.metric_calls <= 2
    assert compiled.detailed_results.best_idx >= 0  # type: ignore[attr-defined]


async def test_cancelling_a_compile_leaves_nothing_running(autojump_clock: trio.abc.Clock) -> None:
    task = InstructionTask(seed=1)
    async with serve_sim(SimConfig(script=task.script(), latency=1.0)) as server:
        lm = td.LM("openai/sim-model", base_url=server.base_url, api_key="k", max_retries=0)
        async with lm:
            gepa = td.GEPA(task.metric, reflection_lm=lm, max_metric_calls=150, limit=8)
            with td.context(lm=lm), trio.move_on_after(5.5) as scope:
                await gepa.compile(program(), trainset=TRAIN, valset=VAL)
            assert scope.cancelled_caught
            await trio.sleep(10)  # nothing finishes late: nothing is left to
            assert server.stats.in_flight == 0


async def test_gepa_over_loopback_improves_the_task(autojump_clock: trio.abc.Clock) -> None:
    task = InstructionTask(seed=2)
    async with serve_sim(SimConfig(script=task.script(), latency=0.5)) as server:
        lm = td.LM("openai/sim-model", base_url=server.base_url, api_key="k", cache=False)
        async with lm:
            gepa = td.GEPA(task.metric, reflection_lm=lm, max_metric_calls=120, track_stats=True)
            with td.context(lm=lm):
                compiled = await gepa.compile(
                    program(), trainset=task.examples(12), valset=task.examples(10, start=50)
                )
    result = compiled.detailed_results  # type: ignore[attr-defined]
    assert result.val_aggregate_scores[result.best_idx] > result.val_aggregate_scores[0]
    assert gepa.stats.lm_calls > gepa.stats.metric_calls  # reflection calls counted too


# --------------------------------------------------------------------- bad input
def test_the_budget_is_given_exactly_once() -> None:
    lm = DummyLM(["x"])
    with pytest.raises(ValueError, match="exactly one of auto, max_metric_calls"):
        td.GEPA(TASK.metric, reflection_lm=lm)
    with pytest.raises(ValueError, match="exactly one of auto, max_metric_calls"):
        td.GEPA(TASK.metric, reflection_lm=lm, auto="light", max_metric_calls=100)
    with pytest.raises(TypeError, match="reflection_lm must be a language model"):
        td.GEPA(TASK.metric, reflection_lm="openai/gpt-4o", auto="light")  # type: ignore[arg-type]


async def test_a_program_without_predictors_or_data_is_refused() -> None:
    class Nothing(td.Module):
        async def forward(self, **inputs: Any) -> td.Prediction:
            return td.Prediction(answer="x")

    gepa = td.GEPA(TASK.metric, reflection_lm=DummyLM(["x"]), max_metric_calls=50)
    with pytest.raises(TrioDSPyError, match="no predictors"):
        await gepa.compile(Nothing(), trainset=TRAIN)
    with pytest.raises(TrioDSPyError, match="valset is empty"):
        await gepa.compile(program(), trainset=TRAIN, valset=[])
    with pytest.raises(TrioDSPyError, match="cannot score the seed program"):
        await td.GEPA(TASK.metric, reflection_lm=DummyLM(["x"]), max_metric_calls=5).compile(
            program(), trainset=TRAIN, valset=VAL
        )


async def test_a_metric_that_always_fails_is_reported_not_optimized(
    autojump_clock: trio.abc.Clock,
) -> None:
    def broken(gold: Any, pred: Any, trace: Any = None) -> Any:
        return td.Prediction(score=float("nan"), feedback="?")

    lm = task_lm()
    gepa = td.GEPA(broken, reflection_lm=lm, max_metric_calls=50)
    with td.context(lm=lm), pytest.raises(TrioDSPyError, match="every valset run .* MetricError"):
        await gepa.compile(program(), trainset=TRAIN, valset=VAL)


async def test_a_reflection_without_fences_or_text_is_handled(
    autojump_clock: trio.abc.Clock,
) -> None:
    task_model = task_lm()

    def unfenced(request: LMRequest) -> str:
        return "Given the question, produce the shelf code. Also: read the item number first."

    compiled, gepa = await compile_task(
        task_model, reflection=DummyLM(unfenced), max_metric_calls=60
    )
    assert "read the item number first" in compiled.predictors()[0].signature.instructions
    empty = DummyLM(["```\n```"], cycle=True)
    compiled, gepa = await compile_task(task_model, reflection=empty, max_metric_calls=60)
    assert compiled.predictors()[0].signature.instructions == TASK.instructions
    assert gepa.stats.metric_calls <= 60


async def test_a_one_example_valset_works_without_merges(autojump_clock: trio.abc.Clock) -> None:
    lm = task_lm()
    gepa = td.GEPA(TASK.metric, reflection_lm=lm, max_metric_calls=60, track_stats=True)
    with td.context(lm=lm):
        compiled = await gepa.compile(program(), trainset=TRAIN, valset=VAL[:1])
    result = compiled.detailed_results  # type: ignore[attr-defined]
    assert all(len(parents) <= 1 for parents in result.parents)  # a merge needs 5 in common
    assert gepa.stats.metric_calls <= 60


async def test_a_metric_that_hangs_is_bounded_by_a_deadline(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def metric(gold: Any, pred: Any, trace: Any = None, *rest: Any) -> Any:
        if gold.question == TRAIN[5].question:
            await trio.sleep_forever()
        return TASK.metric(gold, pred, trace, *rest)

    lm = task_lm()
    gepa = td.GEPA(metric, reflection_lm=lm, max_metric_calls=80)
    with td.context(lm=lm), trio.move_on_after(600) as scope:
        await gepa.compile(program(), trainset=TRAIN, valset=VAL)
    assert scope.cancelled_caught  # a run that never ends holds the compile, not the deadline
    assert gepa.stats.metric_calls > 10  # what finished before is counted (and journaled)


# --------------------------------------------------------------------- the parts
def test_auto_budget_matches_dspy() -> None:
    # DSPy 3.4's GEPA.auto_budget for 1 predictor and 10 / 50 valset examples.
    assert auto_budget(1, 6, 10) == 420
    assert auto_budget(1, 12, 50) == 940
    assert auto_budget(3, 18, 100) == 3040
    gepa = td.GEPA(TASK.metric, reflection_lm=DummyLM(["x"]), max_full_evals=2)
    assert gepa.max_full_evals == 2


def test_extract_instruction_reads_between_the_first_and_last_fence() -> None:
    assert extract_instruction("Sure:\n```\nDo it well.\n```\nDone.") == "Do it well."
    assert extract_instruction("```text\nline one\n```\nand\n```\nline two\n```") == (
        "line one\n```\nand\n```\nline two"
    )
    assert extract_instruction("just the text") == "just the text"
    assert extract_instruction("```markdown\nonly an opening fence") == "only an opening fence"
    assert extract_instruction("```\n```") == ""


def test_dominated_programs_leave_the_front() -> None:
    fronts = {0: {0, 1}, 1: {1}, 2: {2}}
    means = [0.2, 0.6, 0.5]
    assert dominated_programs(fronts, means) == {0}  # 1 is on every front 0 is on
    draws = [parent_by_pareto(fronts, means, random.Random(s)) for s in range(200)]
    assert set(draws) == {1, 2}
    assert draws.count(1) > draws.count(2)  # on two fronts, drawn about twice as often


async def test_merges_combine_two_predictors_improved_apart(
    autojump_clock: trio.abc.Clock,
) -> None:
    task = InstructionTask(seed=3)

    class TwoSteps(td.Module):
        def __init__(self) -> None:
            self.first = td.Predict(td.make_signature("question -> answer", instructions="First."))
            self.second = td.Predict(
                td.make_signature("question -> answer", instructions=task.instructions)
            )

        async def forward(self, question: str) -> td.Prediction:
            await self.first(question=question)
            return await self.second(question=question)

    rng = random.Random(0)
    lm = task.dummy_lm(latency=lambda r: rng.uniform(0.1, 1.0))
    gepa = td.GEPA(
        task.metric, reflection_lm=lm, max_metric_calls=400, track_stats=True, proposals=2
    )
    with td.context(lm=lm):
        compiled = await gepa.compile(
            TwoSteps(), trainset=task.examples(15), valset=task.examples(10, start=40)
        )
    result = compiled.detailed_results  # type: ignore[attr-defined]
    assert result.val_aggregate_scores[result.best_idx] > result.val_aggregate_scores[0]
    assert json.dumps(result.to_dict())  # JSON-ready
