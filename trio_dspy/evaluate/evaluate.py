"""``Evaluate``: run a program over a devset concurrently and score it with a metric.

Every example is a child task of one nursery, at most ``limit`` in flight, so
an evaluation takes about ``len(devset) / limit`` model latencies instead of
``len(devset)``. Rows land in devset order whatever order they finish in.
Nothing finished is ever lost: when ``max_errors`` stops the run the partial
result travels on the error, and when the run is cancelled (a deadline,
Ctrl-C) :attr:`Evaluate.last_result` holds every finished row.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TextIO

import trio

from ..aliases import limit_alias, refuse_keywords, renamed
from ..checkpoint import entered
from ..errors import ApprovalRequired, JournalError, TrioDSPyError
from ..primitives import Example
from .metric_calls import (
    MAX_SCORE,
    Metric,
    MetricError,
    call_metric,
    metric_value,
    score_of,
    takes_predictor_arguments,
)
from .result import EvaluationResult

__all__ = [  # the metric names are re-exported from .metric_calls
    "MAX_SCORE",
    "Evaluate",
    "EvaluationError",
    "Limiter",
    "Metric",
    "MetricError",
    "call_metric",
    "metric_value",
    "run_examples",
    "run_in_order",
    "score_of",
    "takes_predictor_arguments",
]

Progress = bool | Callable[[int, int], None] | None

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
            ApprovalRequired: inside ``td.durable``, an example stopped for an
                approval (what ran is recorded; decide and run it again).
            JournalError: inside ``td.durable``, the journal could not be used
                or does not match the program (not a failed row).
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
        ApprovalRequired: inside ``td.durable``, an example stopped for an approval.
        JournalError: inside ``td.durable``, the journal could not be used.
    """
    await trio.lowlevel.checkpoint_if_cancelled()
    errors: list[BaseException] = []
    stopped: list[BaseException] = []

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
        except (JournalError, ApprovalRequired) as exc:
            # A durable run's stop (an approval, a journal that cannot be used or
            # does not match) ends the evaluation: scoring it as a failed row would
            # go on without the journal, or record a failure to replay later.
            stopped.append(exc)
            cancel.cancel()
            return
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
    if stopped:
        raise stopped[0]
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
