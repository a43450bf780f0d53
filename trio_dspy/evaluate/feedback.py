"""Feedback metrics: a score, and words on what went wrong.

A metric may return a number (``float``, ``int``, ``bool``) or DSPy's
``td.Prediction(score=..., feedback="...")``. Every optimizer and
:class:`~trio_dspy.Evaluate` use the score; GEPA also reads the feedback,
which tells its reflection model *why* an answer fell short.

GEPA calls a metric as DSPy does, with five arguments,
``metric(gold, pred, trace=None, pred_name=None, pred_trace=None)``: when
``pred_name`` is given, the feedback should be about that one predictor,
whose calls are in ``pred_trace``. Older metrics of three (or two) arguments
still work: they are called without the last two, and their feedback (if
any) is taken to be about the whole program.
"""

from __future__ import annotations

from typing import Any

import attrs
import trio

from ..primitives import Example
from .evaluate import Metric, MetricError, metric_value, score_of

__all__ = ["Scored", "call_feedback_metric"]


@attrs.frozen
class Scored:
    """What a metric said of one prediction: its score and, if it gave any, its feedback."""

    score: float
    feedback: str | None = None


async def call_feedback_metric(
    metric: Metric,
    example: Example,
    prediction: Any,
    *,
    trace: Any = None,
    pred_name: str | None = None,
    pred_trace: Any = None,
    index: int | None = None,
    threads: trio.CapacityLimiter | None = None,
) -> Scored:
    """Call ``metric`` (sync or async) and read its score and its feedback.

    A five-argument metric receives ``pred_name`` and ``pred_trace``; a
    three- or two-argument one is called as :func:`~trio_dspy.evaluate.call_metric`
    calls it. ``threads`` runs a sync metric in a worker thread.

    Raises:
        MetricError: the score is not a finite number, or the feedback is
            neither a string nor ``None``.
        Exception: whatever the metric raised.
    """
    value = await metric_value(
        metric, example, prediction, trace, predictor=(pred_name, pred_trace), threads=threads
    )
    score = score_of(value, prediction, index, None)
    feedback = getattr(value, "feedback", None)
    if feedback is not None and not isinstance(feedback, str):
        where = f" for example {index}" if index is not None else ""
        raise MetricError(
            f"the metric's feedback{where} is a {type(feedback).__name__}; it must be a "
            "string (or None): return td.Prediction(score=..., feedback='...')",
            value=value,
            prediction=prediction,
            index=index,
        )
    return Scored(score, feedback)
