"""``Evaluate``: run a program over a devset concurrently and score it with a metric.

Every example is a child task of one nursery, at most ``limit`` in flight, so
an evaluation takes about ``len(devset) / limit`` model latencies instead of
``len(devset)``. Rows land in devset order whatever order they finish in.
Nothing finished is ever lost: when ``max_errors`` stops the run the partial
result travels on the error, and when the run is cancelled (a deadline,
Ctrl-C) :attr:`Evaluate.last_result` holds every finished row.
"""

from __future__ import annotations

import functools
import inspect
import math
import reprlib
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TextIO

import trio

from ..aliases import limit_alias, refuse_keywords, renamed
from ..checkpoint import entered
from ..errors import TrioDSPyError
from ..modules.module import Module
from ..primitives import Example
from .result import EvaluationResult

__all__ = [
    "MAX_SCORE",
    "Evaluate",
    "EvaluationError",
    "Limiter",
    "Metric",
    "MetricError",
    "call_metric",
    "run_examples",
    "run_in_order",
]

Metric = Callable[..., float | bool | Awaitable[float | bool]]
"""``metric(example, prediction, trace=None) -> float | bool``, sync or async."""

Progress = bool | Callable[[int, int], None] | None

MAX_SCORE = sys.float_info.max / 100
"""The largest score (in size) a metric may return: the largest whose percentage
is still a float. Anything beyond is no score, as NaN and the infinities are."""


# DSPy's Evaluate keywords that have no counterpart here, and what to write instead.
DSPY_ONLY = {
    "provide_traceback": "a failed row keeps its exception in result.results",
    "save_as_csv": "call result.to_csv(path) on the result",
    "save_as_json": "call result.to_jsonl(path), or json.dump(result.to_records(), file)",
    "return_all_scores": "the result has them: result.scores",
    "return_outputs": "the result has them: result.results",
    "callback_metadata": "it is not needed: spans carry each call (td.telemetry)",
}


class EvaluationError(TrioDSPyError):
    """An evaluation stopped early because more than ``max_errors`` examples failed.

    ``result`` holds every row that finished before it stopped; ``errors``
    the exceptions counted, in the order they happened.
    """

    def __init__(
        self, message: str, *, result: EvaluationResult, errors: Sequence[BaseException]
    ) -> None:
        self.result = result
        self.errors = list(errors)
        super().__init__(message)


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


class Evaluate:
    """Score a program on ``devset`` with ``metric``, every example a child task.

    ::

        evaluate = td.Evaluate(devset, td.evaluate.answer_exact_match, limit=16)
        result = await evaluate(program)
        result.score  # 87.5 (percent)
        result.results  # [(example, prediction or exception, score), ...] in devset order

    Args:
        devset: :class:`~trio_dspy.Example` objects with their inputs marked
            (``Example(...).with_inputs("question")``).
        metric: ``metric(example, prediction, trace=None) -> float | bool``,
            sync or async, or a metric module.
        limit: the most examples in flight at once.
        max_errors: how many failing examples are tolerated; one more stops the
            run with :class:`EvaluationError` (``None``: never stop).
        progress: ``None`` shows a progress bar when standard error is a
            terminal; ``True`` always, ``False`` never; a function
            ``progress(done, total)`` is called instead of drawing.
        metric_thread: run a sync metric in a worker thread
            (``trio.to_thread.run_sync(..., abandon_on_cancel=True)``), at most
            ``limit`` of them at once, counting those still running after a
            cancellation: a cancellation (a deadline, Ctrl-C, ``max_errors``)
            then returns at once, and a metric still running finishes in its
            thread with its result discarded. The metric must then be safe to
            call from several threads. Off by default: a sync metric runs in
            trio's own thread, where a blocking one (a judge called over
            blocking HTTP, a long computation) holds up every task, and delays
            cancellation until it returns. Async metrics and metric modules
            always run in trio.
        failure_score: the score of an example whose program (or metric)
            raised, or whose metric returned no usable score: NaN, an infinity
            or not a number (its row's outcome is then a :class:`MetricError`,
            which keeps the prediction). It must be a finite number.
        num_threads, display_progress: DSPy's names for ``limit`` and
            ``progress`` (deprecated: they warn).
        display_table: after each run, print the result's table
            (:meth:`EvaluationResult.summary`) to standard output: every row
            for ``True``, the first N for an int N, as DSPy does.

    Evaluate calls the metric with ``trace=None``, as DSPy does: a metric that
    is stricter when given a trace applies that strictness only inside
    optimizers.

    Raises:
        TypeError: a DSPy keyword this class does not take (``save_as_csv=``,
            ...): the message says what to write instead.
        ValueError: ``limit`` or ``max_errors`` is out of range, or
            ``failure_score`` is not a finite number.
        TrioDSPyError: an example does not say which of its fields are inputs.
    """

    def __init__(
        self,
        devset: Sequence[Example],
        metric: Metric,
        *,
        limit: int = 16,
        max_errors: int | None = None,
        progress: Progress = None,
        failure_score: float = 0.0,
        metric_thread: bool = False,
        num_threads: int | None = None,
        display_progress: bool | None = None,
        display_table: bool | int = False,
        **dspy_only: Any,
    ) -> None:
        refuse_keywords("td.Evaluate", dspy_only, DSPY_ONLY)
        limit = limit_alias(limit, num_threads, "td.Evaluate", default=16)
        if display_progress is not None:
            progress = renamed(display_progress, "display_progress", "progress", "td.Evaluate")
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        if max_errors is not None and max_errors < 0:
            raise ValueError(f"max_errors must be 0 or more, got {max_errors}")
        if not isinstance(failure_score, int | float) or not math.isfinite(failure_score):
            raise ValueError(f"failure_score must be a finite number, got {failure_score!r}")
        self.devset = list(devset)
        for i, example in enumerate(self.devset):
            if not isinstance(example, Example) or example._input_keys is None:
                raise TrioDSPyError(
                    f"devset example {i} does not say which fields are inputs: build it as "
                    "td.Example(...).with_inputs('question', ...) or load it with "
                    "td.datasets.load_jsonl(path, input_keys=[...])"
                )
        self.metric = metric
        self.limit = limit
        self.max_errors = max_errors
        self.progress = progress
        self.failure_score = float(failure_score)
        self.metric_thread = metric_thread
        self.display_table = display_table
        # The metric threads' tokens, for the trio run that made them: an
        # abandoned thread keeps its token until it ends, so a later call in
        # the same run still counts it against ``limit``.
        self._threads: tuple[trio.lowlevel.TrioToken, trio.CapacityLimiter] | None = None
        self.last_result: EvaluationResult | None = None
        """The result of the latest call, filled in as examples finish."""

    async def __call__(self, program: Callable[..., Awaitable[Any]]) -> EvaluationResult:
        """Run ``program`` on every example and return the scored result.

        When an enclosing cancel scope cancels the run, the cancellation
        propagates as usual and :attr:`last_result` keeps every finished row.

        Raises:
            EvaluationError: more than ``max_errors`` examples failed; ``.result``
                holds the rows finished until then.
            RuntimeError: not running under ``trio.run``.
        """
        await entered()
        result = EvaluationResult.empty(len(self.devset))
        self.last_result = result
        await run_examples(
            program,
            self.devset,
            self.metric,
            result,
            limiter=trio.CapacityLimiter(self.limit),
            max_errors=self.max_errors,
            failure_score=self.failure_score,
            report=_reporter(self.progress),
            metric_threads=self._metric_threads() if self.metric_thread else None,
        )
        if self.display_table is not False and self.display_table is not None:
            shown = len(result) if self.display_table is True else int(self.display_table)
            print(result.summary(max_rows=shown))
        return result

    def _metric_threads(self) -> trio.CapacityLimiter:
        """The limiter of this run's metric threads (made anew in a new ``trio.run``)."""
        token = trio.lowlevel.current_trio_token()
        if self._threads is None or self._threads[0] is not token:
            self._threads = (token, trio.CapacityLimiter(self.limit))
        return self._threads[1]

    def __repr__(self) -> str:
        metric = getattr(self.metric, "__name__", self.metric)
        return f"Evaluate({len(self.devset)} examples, metric={metric!r}, limit={self.limit})"


async def run_examples(
    program: Callable[..., Awaitable[Any]],
    devset: Sequence[Example],
    metric: Metric,
    result: EvaluationResult,
    *,
    limiter: Limiter,
    max_errors: int | None = None,
    failure_score: float = 0.0,
    report: Callable[[EvaluationResult], None] | None = None,
    on_row: Callable[[int, EvaluationResult], None] | None = None,
    metric_threads: trio.CapacityLimiter | None = None,
    on_metric_call: Callable[[], None] | None = None,
) -> None:
    """Fill ``result`` with one row per example, each example a child task.

    ``limiter`` bounds the examples in flight (several evaluations may share
    one). ``on_row(index, result)`` runs after each row lands, and may cancel
    an enclosing scope to stop early; ``result.complete`` is set only when
    every example finished. With ``metric_threads``, a sync metric runs in a
    worker thread holding one of its tokens (:func:`call_metric`).
    ``on_metric_call()`` runs once for each call of the metric that returned
    or raised (an example whose program raised makes none; a call cancelled
    midway is not counted).

    Raises:
        EvaluationError: more than ``max_errors`` examples failed.
    """
    await trio.lowlevel.checkpoint_if_cancelled()
    errors: list[BaseException] = []

    async def run_one(index: int, cancel: trio.CancelScope) -> None:
        example = devset[index]
        metric_called = False
        try:
            prediction = await program(**example.inputs())
            metric_called = True
            score = await call_metric(
                metric,
                example,
                prediction,
                None,
                index=index,
                failure_score=failure_score,
                threads=metric_threads,
            )
            row: tuple[Example, Any, float] = (example, prediction, score)
        except Exception as exc:
            errors.append(exc)
            row = (example, exc, failure_score)
        if metric_called and on_metric_call is not None:
            on_metric_call()
        result.set_row(index, row)
        if report is not None:
            report(result)
        if on_row is not None:
            on_row(index, result)
        if max_errors is not None and len(errors) > max_errors:
            cancel.cancel()

    await run_in_order(len(devset), run_one, limiter)
    if max_errors is not None and len(errors) > max_errors:
        raise EvaluationError(
            f"{len(errors)} example(s) failed, more than max_errors={max_errors}; "
            f"first: {type(errors[0]).__name__}: {errors[0]}",
            result=result,
            errors=errors,
        )
    result.complete = result.finished == result.total


class Limiter(Protocol):
    """What bounds runs in flight: :class:`trio.CapacityLimiter` or an optimizer's slots."""

    async def acquire_on_behalf_of(self, borrower: Any) -> None:
        """Wait for a slot for ``borrower``."""

    def release_on_behalf_of(self, borrower: Any) -> None:
        """Free ``borrower``'s slot."""


async def run_in_order(
    count: int,
    job: Callable[[int, trio.CancelScope], Awaitable[None]],
    limiter: Limiter,
    *,
    window: Callable[[], int] | None = None,
) -> None:
    """Run ``job(index, cancel_scope)`` for each index as child tasks, started in order.

    A task starts only once it holds a slot of ``limiter`` (released when it
    ends), and slots are requested in index order, so the first items run
    first even when several callers share the limiter. ``window()``, when
    given, caps how many of these jobs may run at once, asked again each time
    one ends (at least one always may). ``cancel_scope`` cancels every job of
    this call.
    """
    running = 0
    finished = trio.Event()

    async def hold(index: int, token: object, cancel: trio.CancelScope) -> None:
        nonlocal running, finished
        try:
            await job(index, cancel)
        finally:
            limiter.release_on_behalf_of(token)
            running -= 1
            finished.set()
            finished = trio.Event()

    async with trio.open_nursery() as nursery:
        for index in range(count):
            while window is not None and running >= max(1, window()):
                await finished.wait()
            token = object()
            await limiter.acquire_on_behalf_of(token)
            running += 1
            nursery.start_soon(hold, index, token, nursery.cancel_scope)


def _reporter(progress: Progress) -> Callable[[EvaluationResult], None] | None:
    if progress is False:
        return None
    if callable(progress):
        fn = progress
        return lambda result: fn(result.finished, result.total)
    stream = sys.stderr
    if progress is None and not _is_terminal(stream):
        return None
    return _ProgressBar(stream)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class _ProgressBar:
    """``[#####.....] 12/50  score 66.67%  errors 1`` redrawn in place."""

    WIDTH = 24

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, result: EvaluationResult) -> None:
        done, total = result.finished, result.total
        filled = math.floor(self.WIDTH * done / total) if total else self.WIDTH
        bar = "#" * filled + "." * (self.WIDTH - filled)
        errors = f"  errors {result.errors}" if result.errors else ""
        end = "\n" if done == total else ""
        self.stream.write(f"\r[{bar}] {done}/{total}  score {result.score:.2f}%{errors}{end}")
        self.stream.flush()
