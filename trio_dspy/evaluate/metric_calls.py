"""Calling a metric and reading its score: what ``Evaluate`` and the optimizers share.

A metric is ``metric(example, prediction, trace=None) -> float | bool``,
sync (run in a worker thread, as it may block) or async (awaited). Its value
becomes a float score, or a :class:`MetricError` when it is none.
"""

from __future__ import annotations

import functools
import inspect
import math
import reprlib
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ..errors import TrioDSPyError
from ..modules.module import Module
from ..primitives import Example

__all__ = [
    "MAX_SCORE",
    "Metric",
    "MetricError",
    "call_metric",
    "metric_value",
    "score_of",
    "takes_predictor_arguments",
]

Metric = Callable[..., float | bool | Awaitable[float | bool]]
"""``metric(example, prediction, trace=None) -> float | bool``, sync or async."""

MAX_SCORE = sys.float_info.max / 100
"""The largest score (in size) a metric may return: the largest whose percentage
is still a float. Anything beyond is no score, as NaN and the infinities are."""


class MetricError(TrioDSPyError, ValueError, TypeError):
    """A metric returned something that is not a usable score.

    A NaN or an infinity (a ``ValueError``), or no number at all -- a string,
    ``None``, a dict (a ``TypeError``). Its example becomes a failed row scored
    ``failure_score``, since one such score would make the mean of every
    score NaN or infinite. ``value`` is what the metric returned,
    ``prediction`` the prediction it was given (kept: nothing is lost),
    ``index`` the example's position in the devset (``None`` when unknown).
    """

    def __init__(
        self, message: str, *, value: Any, prediction: Any, index: int | None = None
    ) -> None:
        self.value = value
        self.prediction = prediction
        self.index = index
        super().__init__(message)


def _is_async(metric: Any) -> bool:
    """Whether calling ``metric`` gives a coroutine (an ``async def``, or an object whose
    ``__call__`` is one): such a metric runs in trio, never in a thread."""
    if inspect.iscoroutinefunction(metric):
        return True
    # An object's own ``__call__``, looked up on its class as Python calls it.
    return callable(metric) and inspect.iscoroutinefunction(type(metric).__call__)


def _takes_trace(metric: Any) -> bool:
    """Whether ``metric`` can be called with a third (``trace``) argument."""
    try:
        params = list(inspect.signature(metric).parameters.values())
    except (TypeError, ValueError):
        return True
    positional = [
        p
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    has_var = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)
    return has_var or len(positional) >= 3 or any(p.name == "trace" for p in params)


async def call_metric(
    metric: Metric,
    example: Example,
    prediction: Any,
    trace: Any,
    *,
    index: int | None = None,
    failure_score: float | None = None,
    threads: trio.CapacityLimiter | None = None,
) -> float:
    """Call a sync or async metric (or a metric module) and return its score as a float.

    A metric module (a :class:`~trio_dspy.Module`, such as ``SemanticF1``) is
    called with keywords: ``await metric(example=..., pred=..., trace=...)``.
    A two-argument function is called without ``trace``. The score is a
    finite ``float``, ``int`` or ``bool``, or the ``score`` of what the
    metric returned (a ``td.Prediction(score=..., feedback=...)``).
    ``index`` and ``failure_score``, when given, go into the error message.

    With ``threads``, a sync metric runs in a worker thread holding one of
    its tokens (``trio.to_thread.run_sync(..., abandon_on_cancel=True)``): a
    cancellation returns at once and leaves the thread to finish, its
    result discarded. Async metrics and metric modules always run here.

    Raises:
        MetricError: the score is NaN, infinite or larger than
            :data:`MAX_SCORE`, or not a number at all (strings such as
            ``"0.5"`` included).
        Exception: whatever the metric raised.
    """
    value = await metric_value(metric, example, prediction, trace, threads=threads)
    return score_of(value, prediction, index, failure_score)


async def metric_value(
    metric: Metric,
    example: Example,
    prediction: Any,
    trace: Any,
    *,
    predictor: tuple[str | None, Any] | None = None,
    threads: trio.CapacityLimiter | None = None,
) -> Any:
    """What ``metric`` returns for ``prediction``, unchecked (see :func:`call_metric`).

    ``predictor`` is ``(pred_name, pred_trace)``: given, a metric that takes
    them (DSPy's five-argument GEPA form) receives them after ``trace``.

    Raises:
        Exception: whatever the metric raised.
    """
    if isinstance(metric, Module):
        value: Any = await metric(example=example, pred=prediction, trace=trace)
    else:
        if predictor is not None and takes_predictor_arguments(metric):
            args: tuple[Any, ...] = (example, prediction, trace, *predictor)
        elif _takes_trace(metric):
            args = (example, prediction, trace)
        else:
            args = (example, prediction)
        if threads is not None and not _is_async(metric):
            value = await trio.to_thread.run_sync(
                functools.partial(metric, *args), abandon_on_cancel=True, limiter=threads
            )
        else:
            value = metric(*args)
    if inspect.isawaitable(value):
        value = await value
    return value


def takes_predictor_arguments(metric: Any) -> bool:
    """Whether ``metric`` accepts ``pred_name`` and ``pred_trace`` after ``trace``."""
    try:
        params = list(inspect.signature(metric).parameters.values())
    except (TypeError, ValueError):
        return False
    kinds = inspect.Parameter
    if any(p.kind is kinds.VAR_POSITIONAL for p in params):
        return True
    if {"pred_name", "pred_trace"} <= {p.name for p in params}:
        return True
    positional = [
        p for p in params if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)
    ]
    return len(positional) >= 5


def score_of(value: Any, prediction: Any, index: int | None, failure_score: float | None) -> float:
    """The finite float score in what a metric returned.

    Raises:
        MetricError: there is none.
    """
    raw = value if isinstance(value, bool | int | float) else getattr(value, "score", None)
    if isinstance(raw, bool | int | float):
        try:
            score = float(raw)
        except OverflowError:  # an int past float's range
            score = math.inf if raw > 0 else -math.inf
        if abs(score) <= MAX_SCORE:  # false for NaN too
            return score
        problem = f"{score}"
        fix = (
            "a metric must return a finite number (at most MAX_SCORE in size): "
            "one NaN or infinity would make the mean one"
        )
    else:
        problem = _short_repr(value)
        fix = "it must return a float or a bool (or a td.Prediction(score=..., feedback=...))"
    where = f" for example {index}" if index is not None else ""
    scored = f"; scored failure_score={failure_score:g}" if failure_score is not None else ""
    raise MetricError(
        f"the metric returned {problem}{where}{scored}: {fix}",
        value=value,
        prediction=prediction,
        index=index,
    )


def _short_repr(value: Any) -> str:
    """A bounded repr: a huge or deeply nested value must not flood or break the message."""
    return reprlib.repr(value)
