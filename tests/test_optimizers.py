"""Optimizers: demos from passing traces only, order-independent results, early stopping,
instruction search, and compiled programs that save and load to the same requests."""

from __future__ import annotations

import math
import random
import re
from pathlib import Path
from typing import Any

import pytest
import trio

import trio_dspy as td
from trio_dspy.errors import TrioDSPyError
from trio_dspy.messages import LMRequest
from trio_dspy.testing import DummyLM, SimConfig, serve_sim
from trio_dspy.trace import collect_trace

QA = "question -> answer"


def _set(n: int, start: int = 0) -> list[td.Example]:
    return [
        td.Example(question=f"what is {i} doubled", answer=str(2 * i)).with_inputs("question")
        for i in range(start, start + n)
    ]


def _asked(request: LMRequest) -> int:
    found = re.findall(r"what is (\d+) doubled", request.messages[-1].text)
    return int(found[-1])


def _doubler(wrong: set[int], seed: int | None = None) -> DummyLM:
    """Right for every question but those in ``wrong``; random latency when seeded."""
    rng = random.Random(seed)

    def answer(request: LMRequest) -> dict[str, str]:
        i = _asked(request)
        return {"answer": "-1" if i in wrong else str(2 * i)}

    latency = (lambda request: rng.uniform(0.1, 3.0)) if seed is not None else 0.0
    return DummyLM(answer, latency=latency)


class Pipeline(td.Module):
    """Two predictors, the second fed by the first, to check trace-to-demo mapping."""

    def __init__(self) -> None:
        self.draft = td.Predict("question -> answer")
        self.check = td.Predict("question, draft -> answer")

    async def forward(self, question: str) -> td.Prediction:
        draft = await self.draft(question=question)
        return await self.check(question=question, draft=draft.answer)


async def test_labeled_few_shot_gives_k_demos_and_leaves_the_student_alone() -> None:
    student = td.Predict(QA)
    compiled = await td.LabeledFewShot(k=3).compile(student, trainset=_set(10))
    assert len(compiled.demos) == 3 and student.demos == []
    again = await td.LabeledFewShot(k=3).compile(student, trainset=_set(10))
    assert compiled.demos == again.demos  # seeded
    first = await td.LabeledFewShot(k=2, sample=False).compile(student, trainset=_set(10))
    assert [d["question"] for d in first.demos] == ["what is 0 doubled", "what is 1 doubled"]


async def test_bootstrap_takes_demos_only_from_runs_that_pass(autojump_clock: Any) -> None:
    lm = _doubler(wrong={0, 2, 3})
    student = Pipeline()
    optimizer = td.BootstrapFewShot(
        td.evaluate.answer_exact_match, max_bootstrapped_demos=2, max_labeled_demos=3
    )
    with td.context(lm=lm):
        compiled = await optimizer.compile(student, trainset=_set(8))
    draft = compiled.draft.demos
    # Examples 1 and 4 are the first two that pass; 0, 2, 3 failed.
    assert [d["question"] for d in draft[:2]] == ["what is 1 doubled", "what is 4 doubled"]
    assert all(d["augmented"] for d in draft[:2])
    assert draft[0]["answer"] == "2"
    check = compiled.check.demos
    assert [d["draft"] for d in check[:2]] == ["2", "8"]  # the second predictor's own inputs
    # Topped up to 3 with labelled examples that were not bootstrapped.
    assert len(draft) == 3 and "augmented" not in draft[2]
    assert draft[2]["question"] not in {"what is 1 doubled", "what is 4 doubled"}
    assert student.draft.demos == [] and student.check.demos == []
    assert optimizer.stats is not None and optimizer.stats.passed >= 2


async def test_bootstrap_gives_the_same_demos_whatever_order_calls_complete(
    autojump_clock: Any,
) -> None:
    optimizer = td.BootstrapFewShot(
        td.evaluate.answer_exact_match, max_bootstrapped_demos=3, max_labeled_demos=5, limit=4
    )
    results = []
    for seed in range(5):
        with td.context(lm=_doubler(wrong={1, 4, 5}, seed=seed)):
            compiled = await optimizer.compile(td.Predict(QA), trainset=_set(12))
        results.append([dict(d) for d in compiled.demos])
    assert all(r == results[0] for r in results)
    assert [d["question"] for d in results[0][:3]] == [
        "what is 0 doubled",
        "what is 2 doubled",
        "what is 3 doubled",
    ]


async def test_bootstrap_stops_running_examples_once_the_demos_are_settled(
    autojump_clock: Any,
) -> None:
    lm = _doubler(wrong=set(), seed=1)
    optimizer = td.BootstrapFewShot(
        td.evaluate.answer_exact_match, max_bootstrapped_demos=2, max_labeled_demos=0, limit=2
    )
    with td.context(lm=lm):
        await optimizer.compile(td.Predict(QA), trainset=_set(30))
    assert optimizer.stats is not None
    assert optimizer.stats.cancelled > 20
    assert len(lm.requests) < 10


async def test_a_metric_sees_the_trace_of_its_own_run_only(autojump_clock: Any) -> None:
    seen: dict[str, list[str]] = {}

    def metric(example: td.Example, pred: td.Prediction, trace: Any = None) -> bool:
        assert trace is not None
        seen[example.question] = [inputs["question"] for _, inputs, _ in trace]
        return True

    with td.context(lm=_doubler(wrong=set(), seed=7)):
        await td.BootstrapFewShot(metric, max_bootstrapped_demos=10, limit=10).compile(
            Pipeline(), trainset=_set(10)
        )
    assert seen == {q: [q, q] for q in (e.question for e in _set(10))}


async def test_traces_of_concurrent_runs_never_mix(autojump_clock: Any) -> None:
    program = Pipeline()
    traces: dict[int, list[str]] = {}

    async def run(i: int) -> None:
        with collect_trace() as trace:
            await program(question=f"what is {i} doubled")
        traces[i] = [inputs["question"] for _, inputs, _ in trace]

    with td.context(lm=_doubler(wrong=set(), seed=3)):
        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(run, i)
    assert traces == {i: [f"what is {i} doubled"] * 2 for i in range(20)}


async def test_random_search_cancels_losers_and_picks_what_a_full_search_picks(
    autojump_clock: Any,
) -> None:
    # The model is wrong on odd questions unless "what is 5 doubled" is among its demos,
    # so candidates differ by the demos they drew.
    def answer(request: LMRequest) -> dict[str, str]:
        i = _asked(request)
        demos = " ".join(m.text for m in request.messages[1:-1])
        right = i % 2 == 0 or "what is 5 doubled" in demos
        return {"answer": str(2 * i) if right else "-1"}

    trainset, valset = _set(10), _set(12, start=100)
    chosen, calls = {}, {}
    for early in (True, False):
        lm = DummyLM(answer, latency=lambda r: 0.5 + (_asked(r) % 5) * 0.3)
        optimizer = td.BootstrapFewShotWithRandomSearch(
            td.evaluate.answer_exact_match,
            num_candidate_programs=6,
            max_bootstrapped_demos=3,
            max_labeled_demos=4,
            early_stopping=early,
            limit=8,
        )
        with td.context(lm=lm):
            compiled = await optimizer.compile(td.Predict(QA), trainset=trainset, valset=valset)
        chosen[early] = [dict(d) for d in compiled.demos]
        calls[early] = len(lm.requests)
        assert optimizer.stats is not None
        if early:
            assert optimizer.stats.pruned > 0 and optimizer.stats.example_runs_saved > 0
            scores = {c.label: c.score for c in optimizer.candidates}
        else:
            assert optimizer.stats.pruned == 0 and optimizer.stats.example_runs_saved == 0
        assert len(optimizer.candidates) == 9
    assert chosen[True] == chosen[False]
    assert calls[True] < calls[False]
    assert "zero-shot" in scores


async def test_copro_keeps_the_instruction_that_scores_best(autojump_clock: Any) -> None:
    proposals = iter(["Answer carefully, doubling the number.", "Be brief.", "Guess."] * 10)

    def answer(request: LMRequest) -> dict[str, str]:
        system = request.messages[0].content
        if "instruction optimizer" in system:
            return {"proposed_instruction": next(proposals)}
        i = _asked(request)
        return {"answer": str(2 * i) if "carefully" in system else "0"}

    lm = DummyLM(answer, latency=0.5)
    optimizer = td.COPRO(td.evaluate.answer_exact_match, breadth=3, depth=2)
    student = td.Predict(QA)
    with td.context(lm=lm):
        compiled = await optimizer.compile(student, trainset=_set(6))
    assert compiled.signature.instructions == "Answer carefully, doubling the number."
    assert student.signature.instructions != compiled.signature.instructions
    best = max(optimizer.attempts, key=lambda a: a.score)
    assert best.score == 100.0 and best.instruction == compiled.signature.instructions
    assert {a.depth for a in optimizer.attempts} == {0, 1}


@pytest.mark.parametrize("bad", [math.nan, math.inf])
@pytest.mark.parametrize("threshold", [None, 0.5])
async def test_bootstrap_takes_no_demo_from_a_run_its_metric_scored_nan_or_inf(
    autojump_clock: Any, bad: float, threshold: float | None
) -> None:
    def metric(example: td.Example, pred: td.Prediction, trace: Any = None) -> float:
        return bad if example.question == "what is 1 doubled" else 0.0

    optimizer = td.BootstrapFewShot(metric, threshold, max_bootstrapped_demos=2)
    with td.context(lm=_doubler(wrong=set())):
        compiled = await optimizer.compile(td.Predict(QA), trainset=_set(4))
    assert not any(d.get("augmented") for d in compiled.demos)
    assert optimizer.stats is not None and optimizer.stats.errors == 1


def _inf_for_wrong(example: td.Example, pred: td.Prediction, trace: Any = None) -> float:
    """Exact match, but infinite for a wrong answer: a broken metric."""
    return math.inf if pred.answer == "-1" else td.evaluate.answer_exact_match(example, pred)


async def test_random_search_is_not_won_by_a_metric_returning_inf(autojump_clock: Any) -> None:
    def answer(request: LMRequest) -> dict[str, str]:
        i = _asked(request)
        demos = " ".join(m.text for m in request.messages[1:-1])
        right = i % 2 == 0 or "what is 5 doubled" in demos
        return {"answer": str(2 * i) if right else "-1"}

    trainset, valset = _set(10), _set(12, start=100)
    chosen = {}
    for name, metric in [("inf", _inf_for_wrong), ("exact", td.evaluate.answer_exact_match)]:
        optimizer = td.BootstrapFewShotWithRandomSearch(
            metric, num_candidate_programs=4, max_bootstrapped_demos=3, early_stopping=False
        )
        with td.context(lm=DummyLM(answer, latency=0.5)):
            compiled = await optimizer.compile(td.Predict(QA), trainset=trainset, valset=valset)
        chosen[name] = [dict(d) for d in compiled.demos]
        assert all(math.isfinite(c.score) for c in optimizer.candidates)
    assert chosen["inf"] == chosen["exact"]


async def test_copro_is_not_won_by_a_metric_returning_inf(autojump_clock: Any) -> None:
    proposals = iter(["Answer carefully, doubling the number.", "Guess."] * 10)

    def answer(request: LMRequest) -> dict[str, str]:
        system = request.messages[0].content
        if "instruction optimizer" in system:
            return {"proposed_instruction": next(proposals)}
        i = _asked(request)
        return {"answer": str(2 * i) if "carefully" in system else "-1"}

    optimizer = td.COPRO(_inf_for_wrong, breadth=3, depth=1)
    with td.context(lm=DummyLM(answer, latency=0.5)):
        compiled = await optimizer.compile(td.Predict(QA), trainset=_set(6))
    assert compiled.signature.instructions == "Answer carefully, doubling the number."
    assert all(math.isfinite(a.score) for a in optimizer.attempts)


async def test_a_compiled_program_saves_and_loads_to_the_same_requests(tmp_path: Path) -> None:
    lm = _doubler(wrong={2})
    with td.context(lm=lm):
        compiled = await td.BootstrapFewShot(
            td.evaluate.answer_exact_match, max_bootstrapped_demos=2, max_labeled_demos=4
        ).compile(Pipeline(), trainset=_set(8))
    compiled.save(tmp_path / "compiled.json")
    loaded = Pipeline()
    loaded.load(tmp_path / "compiled.json")

    async def bodies_on_the_wire(program: td.Module) -> list[dict[str, Any]]:
        async with serve_sim(SimConfig(seed=1)) as sim:
            async with td.LM("openai/sim-model", base_url=sim.base_url, api_key="k") as http:
                with td.context(lm=http):
                    await program(question="what is 21 doubled")
            return list(sim.requests)

    original = await bodies_on_the_wire(compiled)
    restored = await bodies_on_the_wire(loaded)
    assert len(original) == 2 and len(original[0]["messages"]) > 2  # demos are in the prompt
    assert original == restored


async def test_optimizers_refuse_examples_without_inputs() -> None:
    bad = [td.Example(question="q", answer="a")]
    with pytest.raises(TrioDSPyError, match="with_inputs"):
        await td.LabeledFewShot().compile(td.Predict(QA), trainset=bad)
    with pytest.raises(TrioDSPyError, match="empty"):
        await td.BootstrapFewShot(td.evaluate.answer_exact_match).compile(
            td.Predict(QA), trainset=[]
        )


async def test_a_teacher_with_other_predictors_is_refused() -> None:
    with pytest.raises(TrioDSPyError, match="same predictors"):
        await td.BootstrapFewShot(td.evaluate.answer_exact_match).compile(
            Pipeline(), trainset=_set(2), teacher=td.Predict(QA)
        )
