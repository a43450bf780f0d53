"""Evaluate: bounded concurrency, devset order, errors, partial results, metrics, output."""

from __future__ import annotations

import csv
import json
import math
import random
import re
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import trio_dspy as td
from trio_dspy.errors import TrioDSPyError
from trio_dspy.evaluate import EvaluationError, MetricError
from trio_dspy.testing import DummyLM


def _devset(n: int) -> list[td.Example]:
    return [td.Example(question=f"q{i}", answer=f"a{i}").with_inputs("question") for i in range(n)]


class Echo(td.Module):
    """Answers ``a<i>`` for ``q<i>`` after a random delay, counting calls in flight."""

    def __init__(self, seed: int = 0, wrong: frozenset[int] = frozenset()) -> None:
        self.rng = random.Random(seed)
        self.wrong = wrong
        self.in_flight = 0
        self.peak = 0
        self.finished: list[int] = []

    async def forward(self, question: str) -> td.Prediction:
        i = int(question[1:])
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await trio.sleep(self.rng.uniform(0.1, 2.0))
        finally:
            self.in_flight -= 1
        self.finished.append(i)
        return td.Prediction(answer="nope" if i in self.wrong else f"a{i}")


async def test_never_more_than_limit_in_flight_and_rows_in_devset_order(
    autojump_clock: Any,
) -> None:
    program = Echo(seed=3, wrong=frozenset({2, 5}))
    result = await td.Evaluate(_devset(40), td.evaluate.answer_exact_match, limit=6)(program)
    assert program.peak == 6
    assert program.finished != sorted(program.finished)  # finished out of order...
    assert [ex.question for ex, _, _ in result.results] == [f"q{i}" for i in range(40)]
    assert [s for _, _, s in result.results] == [0.0 if i in (2, 5) else 1.0 for i in range(40)]
    assert result.score == 95.0
    assert result.complete and result.errors == 0


async def test_wall_time_is_about_devset_over_limit_latencies(autojump_clock: Any) -> None:
    class Slow(td.Module):
        async def forward(self, question: str) -> td.Prediction:
            await trio.sleep(1.0)
            return td.Prediction(answer="x")

    start = trio.current_time()
    await td.Evaluate(_devset(32), lambda e, p: 1.0, limit=8)(Slow())
    assert trio.current_time() - start == pytest.approx(4.0)


async def test_sync_async_and_two_argument_metrics_all_work(autojump_clock: Any) -> None:
    seen: list[Any] = []

    def sync_metric(example: td.Example, pred: td.Prediction, trace: Any = None) -> bool:
        seen.append(trace)
        return bool(pred.answer == example.answer)

    async def async_metric(example: td.Example, pred: td.Prediction, trace: Any = None) -> float:
        await trio.sleep(0.5)
        return 0.5

    def two_args(example: td.Example, pred: td.Prediction) -> int:
        return 1

    program = Echo(wrong=frozenset({0}))
    assert (await td.Evaluate(_devset(4), sync_metric)(program)).score == 75.0
    assert seen == [None] * 4  # as in DSPy, evaluation passes no trace
    assert (await td.Evaluate(_devset(4), async_metric)(program)).score == 50.0
    assert (await td.Evaluate(_devset(4), two_args)(program)).score == 100.0


async def test_a_metric_returning_nonsense_is_a_failed_row(autojump_clock: Any) -> None:
    result = await td.Evaluate(_devset(2), lambda e, p: "yes", progress=False)(Echo())  # type: ignore[arg-type, return-value]
    assert all(isinstance(out, TypeError) for _, out, _ in result.results)
    assert result.errors == 2


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 1e308, -(10**400)])
async def test_a_metric_returning_nan_or_inf_is_a_failed_row_not_a_poisoned_score(
    autojump_clock: Any, bad: float
) -> None:
    def metric(example: td.Example, pred: td.Prediction) -> float:
        return bad if example.question == "q1" else 1.0

    evaluate = td.Evaluate(_devset(4), metric, failure_score=0.5, progress=False)
    result = await evaluate(Echo())
    _, outcome, score = result.results[1]
    assert isinstance(outcome, MetricError) and isinstance(outcome, ValueError)
    shown = f"{float(bad)}" if isinstance(bad, float) else "-inf"
    assert f"the metric returned {shown} for example 1; scored failure_score=0.5" in str(outcome)
    assert outcome.value is not None and outcome.prediction == td.Prediction(answer="a1")
    assert score == 0.5
    assert result.errors == 1
    assert result.score == pytest.approx(100 * 3.5 / 4)
    assert math.isfinite(result.score)
    assert "MetricError" in result.to_records()[1]["error"]


def test_the_mean_of_many_large_scores_stays_finite() -> None:
    largest = sys.float_info.max / 100  # the largest score a metric may give
    result = td.EvaluationResult.empty(300)
    for i in range(300):
        result.set_row(i, (td.Example(question="q"), td.Prediction(), largest))
    assert result.score == pytest.approx(100 * largest)
    assert math.isfinite(result.score)


async def test_a_feedback_metric_with_a_nan_score_is_a_failed_row_too(autojump_clock: Any) -> None:
    def metric(example: td.Example, pred: td.Prediction) -> td.Prediction:
        return td.Prediction(score=math.nan, feedback="?")

    result = await td.Evaluate(_devset(2), metric, progress=False)(Echo())
    assert all(isinstance(out, MetricError) for _, out, _ in result.results)
    assert result.score == 0.0


@pytest.mark.parametrize("value", ["0.5", None, {"score": 1}, [1.0], b"1"])
async def test_a_metric_returning_a_non_number_is_a_typed_failed_row(
    autojump_clock: Any, value: Any
) -> None:
    result = await td.Evaluate(_devset(2), lambda e, p: value, progress=False)(Echo())
    for _, outcome, score in result.results:
        assert isinstance(outcome, MetricError) and isinstance(outcome, TypeError)
        assert "must return a float or a bool" in str(outcome)
        assert score == 0.0
    assert result.errors == 2 and result.score == 0.0


def test_a_failure_score_that_is_not_a_finite_number_is_refused() -> None:
    for bad in (math.nan, math.inf, "0"):
        with pytest.raises(ValueError, match="failure_score"):
            td.Evaluate(_devset(1), lambda e, p: 1.0, failure_score=bad)  # type: ignore[arg-type]


async def test_failures_score_failure_score_and_keep_their_exception(autojump_clock: Any) -> None:
    class Flaky(Echo):
        async def forward(self, question: str) -> td.Prediction:
            if question == "q1":
                raise ValueError("boom")
            return await super().forward(question)

    result = await td.Evaluate(_devset(3), lambda e, p: 1.0, failure_score=0.25)(Flaky())
    _, outcome, score = result.results[1]
    assert isinstance(outcome, ValueError) and score == 0.25
    assert result.errors == 1
    assert result.score == pytest.approx(100 * 2.25 / 3, abs=0.01)


async def test_past_max_errors_the_run_stops_and_raises_with_the_partial_result(
    autojump_clock: Any,
) -> None:
    class Broken(td.Module):
        def __init__(self) -> None:
            self.started = 0

        async def forward(self, question: str) -> td.Prediction:
            self.started += 1
            i = int(question[1:])
            await trio.sleep(1.0 + i)
            if i % 2:
                raise RuntimeError(f"bad {i}")
            return td.Prediction(answer=f"a{i}")

    program = Broken()
    evaluate = td.Evaluate(_devset(20), td.evaluate.answer_exact_match, limit=4, max_errors=2)
    with pytest.raises(EvaluationError, match="3 example.*max_errors=2") as info:
        await evaluate(program)
    result = info.value.result
    assert len(info.value.errors) == 3
    assert not result.complete
    assert result.finished < 20 and program.started < 20
    assert [ex.question for ex, _, _ in result.results] == [f"q{i}" for i in range(6)]


async def test_a_cancelled_run_keeps_every_finished_row(autojump_clock: Any) -> None:
    evaluate = td.Evaluate(_devset(10), td.evaluate.answer_exact_match, limit=2)

    class Steady(td.Module):
        async def forward(self, question: str) -> td.Prediction:
            await trio.sleep(1.0)
            return td.Prediction(answer=f"a{question[1:]}")

    with trio.move_on_after(2.5) as scope:
        await evaluate(Steady())
    assert scope.cancelled_caught
    partial = evaluate.last_result
    assert partial is not None and not partial.complete
    assert partial.finished == 4 and partial.total == 10
    assert partial.score == 100.0
    assert "stopped after 4 of 10" in partial.summary()


async def test_with_metric_thread_a_blocking_sync_metric_does_not_hold_up_cancellation(
    autojump_clock: Any,
) -> None:
    release = threading.Event()
    started: list[str] = []

    def blocking_metric(example: td.Example, pred: td.Prediction) -> float:
        started.append(example.question)
        release.wait()  # a metric stuck on I/O, until the test lets it go
        return 1.0

    evaluate = td.Evaluate(_devset(6), blocking_metric, limit=2, metric_thread=True, progress=False)
    try:
        start = trio.current_time()
        with trio.move_on_after(0.5) as scope:
            await evaluate(Echo())
        assert scope.cancelled_caught
        assert trio.current_time() - start == pytest.approx(0.5)
        assert evaluate.last_result is not None and evaluate.last_result.finished == 0
        assert len(started) <= 2  # never more metric threads than limit
    finally:
        release.set()


async def test_with_metric_thread_metrics_score_as_without_it(autojump_clock: Any) -> None:
    in_trio = threading.get_ident()
    threads: set[int] = set()

    def sync_metric(example: td.Example, pred: td.Prediction) -> bool:
        threads.add(threading.get_ident())
        return bool(pred.answer == example.answer)

    async def async_metric(example: td.Example, pred: td.Prediction) -> float:
        assert threading.get_ident() == in_trio
        return 0.5

    program = Echo(wrong=frozenset({1}))
    threaded = td.Evaluate(_devset(4), sync_metric, metric_thread=True, progress=False)
    assert (await threaded(program)).score == 75.0
    assert threads and in_trio not in threads
    both = td.Evaluate(_devset(4), async_metric, metric_thread=True, progress=False)
    assert (await both(program)).score == 50.0

    class Judge:
        async def __call__(self, example: td.Example, pred: td.Prediction) -> float:
            return await async_metric(example, pred)

    judged = td.Evaluate(_devset(4), Judge(), metric_thread=True, progress=False)
    assert (await judged(program)).score == 50.0
    nan = td.Evaluate(_devset(2), lambda e, p: math.nan, metric_thread=True, progress=False)
    assert all(isinstance(out, MetricError) for _, out, _ in (await nan(program)).results)


async def test_an_example_without_inputs_is_refused_before_anything_runs() -> None:
    with pytest.raises(TrioDSPyError, match=r"devset example 1 .*with_inputs"):
        td.Evaluate([*_devset(1), td.Example(question="q")], td.evaluate.answer_exact_match)


async def test_evaluate_is_a_checkpoint_even_with_an_empty_devset() -> None:
    evaluate = td.Evaluate([], td.evaluate.answer_exact_match)
    with trio.testing.assert_checkpoints():
        result = await evaluate(Echo())
    assert result.score == 0.0 and result.complete


async def test_progress_goes_to_a_callback_and_stays_off_a_non_terminal(
    autojump_clock: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[tuple[int, int]] = []
    await td.Evaluate(_devset(3), lambda e, p: 1, progress=lambda d, t: calls.append((d, t)))(
        Echo()
    )
    assert sorted(calls) == [(1, 3), (2, 3), (3, 3)]
    await td.Evaluate(_devset(3), lambda e, p: 1)(Echo())  # progress=None, stderr is captured
    assert capsys.readouterr().err == ""
    await td.Evaluate(_devset(3), lambda e, p: 1, progress=True)(Echo())
    assert "3/3" in capsys.readouterr().err


async def test_results_write_to_csv_and_jsonl(tmp_path: Path, autojump_clock: Any) -> None:
    class Flaky(Echo):
        async def forward(self, question: str) -> td.Prediction:
            if question == "q1":
                raise ValueError("boom")
            return await super().forward(question)

    result = await td.Evaluate(_devset(3), td.evaluate.answer_exact_match)(Flaky())
    result.to_jsonl(tmp_path / "r.jsonl")
    lines = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert lines[0] == {
        "example": {"question": "q0", "answer": "a0"},
        "prediction": {"answer": "a0"},
        "error": None,
        "score": 1.0,
    }
    assert lines[1]["error"] == "ValueError: boom" and lines[1]["prediction"] is None
    result.to_csv(tmp_path / "r.csv")
    rows = list(csv.reader((tmp_path / "r.csv").open()))
    assert rows[0] == ["question", "answer", "pred_answer", "error", "score"]
    assert rows[2] == ["q1", "a1", "", "ValueError: boom", "0.0"]
    assert re.search(r"score 66\.67% over 3 example\(s\), 1 error", str(result))


def test_text_metrics_normalise_like_squad() -> None:
    ex = td.Example(question="?", answer=["The Eiffel Tower", "eiffel tower"])
    assert td.evaluate.answer_exact_match(ex, td.Prediction(answer="eiffel  tower!"))
    assert not td.evaluate.answer_exact_match(ex, td.Prediction(answer="the tower"))
    assert td.evaluate.answer_exact_match(ex, td.Prediction(answer="tower eiffel"), frac=0.9)
    assert td.evaluate.token_f1(ex, td.Prediction(answer="the tower")) == pytest.approx(2 / 3)
    passages = td.Prediction(context=["Paris has the Eiffel Tower.", "Lyon"])
    assert td.evaluate.answer_passage_match(ex, passages)
    assert not td.evaluate.answer_passage_match(ex, td.Prediction(context="towers in Paris"))
    assert td.evaluate.f1_score("", "") == 1.0


def test_exact_match_compares_typed_values_as_values() -> None:
    import enum

    class Mood(enum.Enum):
        happy = "happy"

    assert td.evaluate.answer_exact_match(
        td.Example(answer="Happy"), td.Prediction(answer=Mood.happy)
    )
    assert td.evaluate.answer_exact_match(td.Example(answer=3), td.Prediction(answer=3))
    assert not td.evaluate.answer_exact_match(td.Example(answer=3), td.Prediction(answer=4))
    with pytest.raises(KeyError, match="prediction has no field 'answer'"):
        td.evaluate.answer_exact_match(td.Example(answer=3), td.Prediction(other=4))


async def test_semantic_f1_is_a_module_whose_judge_calls_are_counted() -> None:
    lm = DummyLM([{"reasoning": "half covered", "recall": 0.5, "precision": 1.0}], cycle=True)
    judge = td.evaluate.SemanticF1(threshold=0.7)
    example = td.Example(question="Why?", response="Because A and B").with_inputs("question")
    with td.context(lm=lm), td.track_usage() as usage:
        score = await judge(example=example, pred=td.Prediction(response="Because A"))
        strict = await judge(example=example, pred=td.Prediction(response="A"), trace=[])
        result = await td.Evaluate([example], judge)(lambda **kw: _const(response="Because A"))
    assert score == pytest.approx(2 / 3)
    assert strict is False  # with a trace: pass/fail against the threshold
    assert result.score == pytest.approx(66.67)
    assert len(lm.requests) == 3 and usage.total_tokens > 0
    assert "Because A and B" in lm.requests[0].messages[-1].content


async def _const(**fields: Any) -> td.Prediction:
    return td.Prediction(**fields)
