"""``BootstrapFewShot``: demos from the teacher's own successful runs.

The teacher runs over the trainset, every example a child task (at most
``limit`` in flight). Each run collects a trace of its predictor calls; a run
that passes the metric turns its trace into demos, one per predictor call.
The demos are those of the *first* passing examples in trainset order, so
the compiled program is the same whatever order the calls complete in; once
that prefix is settled, the examples still running are cancelled.
:attr:`BootstrapFewShot.stats` says what a compile cost.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import attrs
import trio

from ..checkpoint import entered
from ..errors import TrioDSPyError
from ..evaluate.evaluate import Limiter, Metric, call_metric, run_in_order
from ..modules.module import Module
from ..primitives import Example
from ..settings import context, current
from ..trace import collect_trace
from .base import ModuleT, Optimizer, check_trainset, matching_predictors
from .labeled import LabeledFewShot
from .stats import OptimizerStats, measure

__all__ = ["BootstrapFewShot", "BootstrapStats"]

Demos = dict[str, list[Example]]
"""Demos by predictor name, from one passing run."""


@attrs.define
class BootstrapStats(OptimizerStats):
    """What one compile cost (see :class:`OptimizerStats`) and what its bootstrap did.

    ``metric_calls_saved`` counts the examples left unrun once the demos
    were settled. The other fields describe the teacher's runs:

    Attributes:
        examples: the trainset's size.
        run: examples whose teacher run finished.
        passed: finished examples that passed the metric.
        errors: teacher runs (or their metric calls) that raised.
        cancelled: examples never run, or cancelled while running.
    """

    examples: int = 0
    run: int = 0
    passed: int = 0
    errors: int = 0
    cancelled: int = 0


class BootstrapFewShot(Optimizer):
    """Compile few-shot demos from the teacher's runs that pass ``metric``.

    Args:
        metric: ``metric(example, prediction, trace)``; it receives the run's
            trace, so it may be stricter than during evaluation.
        metric_threshold: a run passes when its score reaches this (``None``:
            when the score is truthy).
        max_bootstrapped_demos: demos per predictor taken from passing runs.
        max_labeled_demos: predictors are topped up to this many demos with
            trainset examples that were not bootstrapped (seeded sample); the
            default teacher also gets this many labelled demos.
        max_rounds: tries per example; later rounds run at a slightly
            different temperature so that they differ (and miss the cache).
        limit: the most teacher runs in flight.
        max_errors: how many teacher runs may raise before compiling fails
            (``None``: any number; a raising run simply does not pass).
        seed: seeds the sample of labelled demos.
    """

    def __init__(
        self,
        metric: Metric,
        metric_threshold: float | None = None,
        max_bootstrapped_demos: int = 4,
        max_labeled_demos: int = 16,
        max_rounds: int = 1,
        *,
        limit: int = 16,
        max_errors: int | None = None,
        seed: int = 0,
    ) -> None:
        if max_rounds < 1:
            raise ValueError(f"max_rounds must be at least 1, got {max_rounds}")
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self.metric = metric
        self.metric_threshold = metric_threshold
        self.max_bootstrapped_demos = max_bootstrapped_demos
        self.max_labeled_demos = max_labeled_demos
        self.max_rounds = max_rounds
        self.limit = limit
        self.max_errors = max_errors
        self.seed = seed
        self.stats: BootstrapStats = BootstrapStats()
        """What the latest :meth:`compile` cost and did, filled in as it runs."""

    async def compile(
        self,
        student: ModuleT,
        *,
        trainset: Sequence[Example],
        valset: Sequence[Example] | None = None,
        teacher: Module | None = None,
        limiter: Limiter | None = None,
    ) -> ModuleT:
        """A copy of ``student`` with bootstrapped and labelled demos.

        ``teacher`` defaults to a copy of the student given ``max_labeled_demos``
        labelled demos; it must have the same predictors. ``limiter`` lets
        several compilations share one bound on runs in flight.

        :attr:`stats` is filled in even when compiling fails or is cancelled.

        Raises:
            TrioDSPyError: the trainset is unusable, the teacher does not match
                the student, or more than ``max_errors`` teacher runs raised.
        """
        self.stats = BootstrapStats()
        with measure(self.stats):
            return await self._compile(student, trainset, teacher, limiter)

    async def _compile(
        self,
        student: ModuleT,
        trainset: Sequence[Example],
        teacher: Module | None,
        limiter: Limiter | None,
    ) -> ModuleT:
        await entered()
        examples = check_trainset(trainset)
        compiled = student.reset_copy()
        if teacher is None:
            teacher = student.reset_copy()
            if self.max_labeled_demos:
                teacher = await LabeledFewShot(self.max_labeled_demos).compile(
                    teacher, trainset=examples
                )
        else:
            teacher = teacher.deepcopy()
        matching_predictors(compiled, teacher)
        found = await self.bootstrap(teacher, examples, limiter or trio.CapacityLimiter(self.limit))
        self._install(compiled, examples, found)
        return compiled

    async def bootstrap(
        self, teacher: Module, examples: list[Example], limiter: Limiter
    ) -> list[Demos | None]:
        """Run the teacher; for each example, its demos if it is among the first passing.

        Counts its metric calls and runs into :attr:`stats`.

        Raises:
            TrioDSPyError: more than ``max_errors`` runs raised.
        """
        results: list[Demos | bool | None] = [False] * len(examples)  # False: not run yet
        errors: list[Exception] = []
        want = self.max_bootstrapped_demos
        settled = _Prefix(len(examples), want)

        async def run(index: int, cancel: trio.CancelScope) -> None:
            results[index] = await self._one(teacher, examples[index], errors)
            if settled.done(index, results[index] is not None) or self._too_many(errors):
                cancel.cancel()

        # Never more runs in flight than passes still missing: a teacher that
        # passes every time costs exactly ``want`` runs, as a one-by-one loop would.
        def window() -> int:
            return want - sum(isinstance(r, dict) for r in results)

        stats = self.stats
        try:
            await run_in_order(len(examples) if want > 0 else 0, run, limiter, window=window)
        finally:  # a cancelled bootstrap still says what it ran
            ran = [r for r in results if r is not False]
            stats.examples = len(examples)
            stats.run = len(ran)
            stats.passed = sum(isinstance(r, dict) for r in ran)
            stats.errors = len(errors)
            stats.cancelled = len(examples) - len(ran)
        if self._too_many(errors):
            raise TrioDSPyError(
                f"{len(errors)} teacher run(s) raised, more than max_errors={self.max_errors}; "
                f"first: {type(errors[0]).__name__}: {errors[0]}"
            )
        if want > 0 and len(settled.passing) >= want:
            # The demos were settled before the trainset's end: the rest was spared.
            stats.metric_calls_saved += stats.cancelled
        chosen: list[Demos | None] = [None] * len(examples)
        for index in settled.passing[:want]:
            demos = results[index]
            assert isinstance(demos, dict)
            chosen[index] = demos
        return chosen

    def _too_many(self, errors: list[Exception]) -> bool:
        return self.max_errors is not None and len(errors) > self.max_errors

    async def _one(
        self, teacher: Module, example: Example, errors: list[Exception]
    ) -> Demos | None:
        """Run one example for up to ``max_rounds``; its demos if a round passes."""
        program = _without(teacher, example)
        names = {id(p): n for n, p in program.named_predictors()}
        for round_index in range(self.max_rounds):
            overrides: dict[str, Any] = {}
            if round_index:
                kwargs = current().lm_kwargs
                overrides["lm_kwargs"] = {**kwargs, "temperature": 0.7 + 0.001 * round_index}
            try:
                with context(**overrides), collect_trace() as trace:
                    prediction = await program(**example.inputs())
            except Exception as exc:
                errors.append(exc)
                continue
            # The metric runs outside the trace: a judge's own calls are no demos.
            # A call counts once it returns or raises (a cancelled one scored nothing).
            try:
                score = await call_metric(self.metric, example, prediction, trace)
            except Exception as exc:
                self.stats.metric_calls += 1
                errors.append(exc)
                continue
            self.stats.metric_calls += 1
            passed = score >= self.metric_threshold if self.metric_threshold is not None else score
            if passed:
                demos: Demos = {}
                for predictor, inputs, output in trace:
                    name = names.get(id(predictor))
                    if name is not None:
                        demos.setdefault(name, []).append(
                            Example({**inputs, **dict(output)}, augmented=True)
                        )
                return demos
        return None

    def _install(
        self, compiled: Module, examples: list[Example], found: list[Demos | None]
    ) -> None:
        """Give each predictor its bootstrapped demos, topped up with labelled ones."""
        rng = random.Random(self.seed)
        by_name: dict[str, list[Example]] = {}
        for demos in found:
            for name, items in (demos or {}).items():
                by_name.setdefault(name, []).extend(items)
        raw = [e for e, demos in zip(examples, found) if demos is None]
        for name, predictor in compiled.named_predictors():
            augmented = by_name.get(name, [])[: self.max_bootstrapped_demos]
            size = max(0, min(self.max_labeled_demos - len(augmented), len(raw)))
            raw = rng.sample(raw, size)
            predictor.demos = [*augmented, *raw]

    def __repr__(self) -> str:
        return (
            f"BootstrapFewShot(max_bootstrapped_demos={self.max_bootstrapped_demos}, "
            f"max_labeled_demos={self.max_labeled_demos}, max_rounds={self.max_rounds})"
        )


class _Prefix:
    """Tracks when the first ``want`` passing examples in order are known."""

    def __init__(self, total: int, want: int) -> None:
        self.outcome: list[bool | None] = [None] * total
        self.next = 0  # every example before this one has finished
        self.passing: list[int] = []
        self.want = want

    def done(self, index: int, passed: bool) -> bool:
        """Record that ``index`` finished; whether the first ``want`` passes are now known."""
        self.outcome[index] = passed
        while self.next < len(self.outcome) and self.outcome[self.next] is not None:
            if self.outcome[self.next]:
                self.passing.append(self.next)
            self.next += 1
        return len(self.passing) >= self.want


def _without(teacher: Module, example: Example) -> Module:
    """The teacher, without ``example`` among its demos (it must not see the answer)."""
    if not any(example in p.demos for p in teacher.predictors()):
        return teacher
    clone = teacher.deepcopy()
    for predictor in clone.predictors():
        predictor.demos = [d for d in predictor.demos if d != example]
    return clone
