"""Feedback metrics: DSPy's five-argument form, the older forms, sync and async."""

from __future__ import annotations

from typing import Any

import pytest

import trio_dspy as td
from trio_dspy.evaluate import MetricError
from trio_dspy.evaluate.feedback import Scored, call_feedback_metric

GOLD = td.Example(question="q", answer="a").with_inputs("question")
PRED = td.Prediction(answer="b")


async def test_a_five_argument_metric_receives_the_predictor_and_its_trace() -> None:
    seen: list[Any] = []

    def metric(gold: Any, pred: Any, trace: Any, pred_name: Any, pred_trace: Any) -> Any:
        seen.append((trace, pred_name, pred_trace))
        return td.Prediction(score=0.25, feedback=f"look at {pred_name}")

    scored = await call_feedback_metric(
        metric, GOLD, PRED, trace=["t"], pred_name="qa.predict", pred_trace=["p"]
    )
    assert scored == Scored(0.25, "look at qa.predict")
    assert seen == [(["t"], "qa.predict", ["p"])]


async def test_keyword_defaults_count_as_the_five_argument_form() -> None:
    async def metric(
        gold: Any, pred: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None
    ) -> Any:
        return td.Prediction(score=1.0, feedback=str(pred_name))

    assert await call_feedback_metric(metric, GOLD, PRED, pred_name="p") == Scored(1.0, "p")


async def test_a_three_argument_metric_still_works_and_may_give_feedback() -> None:
    def metric(gold: Any, pred: Any, trace: Any = None) -> Any:
        return td.Prediction(score=0.0, feedback="wrong answer")

    scored = await call_feedback_metric(metric, GOLD, PRED, pred_name="p", pred_trace=[])
    assert scored == Scored(0.0, "wrong answer")


async def test_a_plain_number_has_no_feedback() -> None:
    assert await call_feedback_metric(lambda g, p: True, GOLD, PRED) == Scored(1.0, None)


async def test_feedback_of_the_wrong_type_is_a_metric_error_naming_it() -> None:
    def metric(gold: Any, pred: Any, trace: Any = None) -> Any:
        return td.Prediction(score=1.0, feedback={"why": "x"})

    with pytest.raises(MetricError, match="feedback for example 3 is a dict"):
        await call_feedback_metric(metric, GOLD, PRED, index=3)


async def test_a_nan_score_with_feedback_is_a_metric_error() -> None:
    def metric(gold: Any, pred: Any, trace: Any = None) -> Any:
        return td.Prediction(score=float("nan"), feedback="?")

    with pytest.raises(MetricError, match="nan"):
        await call_feedback_metric(metric, GOLD, PRED)
