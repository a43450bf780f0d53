"""Evaluate candidate programs side by side and cancel those that can no longer win.

Every candidate is built and then scored on the valset in its own child task;
all of them share one set of slots, so at most ``limit`` runs are in flight in
total, handed out by candidate rank (see :mod:`.slots`) so that one candidate
finishes before the next is far along. After every scored example the race
compares bounds: a candidate's *floor* is the sum of its scores so far (the rest counted as 0), its
*ceiling* that sum plus ``max_score`` for each example it has not scored yet.
A candidate whose ceiling is below another's floor (or equal to the floor of
an earlier candidate, which would win the tie) cannot be chosen, and is
cancelled at once: its calls in flight stop and its remaining examples never
run. The winner is the same one a full evaluation of every candidate picks,
the first of the best scores in candidate order, as long as the metric gives
the same score to the same prediction (and stays within ``[0, max_score]``).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence

import attrs
import trio

from ..evaluate.evaluate import Limiter, Metric, run_examples
from ..evaluate.result import EvaluationResult
from ..modules.module import Module
from ..primitives import Example
from .slots import PrioritySlots, RankedSlots
from .stats import OptimizerStats

__all__ = ["Builder", "Candidate", "Race", "RaceStats"]

Builder = Callable[[Limiter], Awaitable[Module]]
"""Makes a candidate program, running whatever it runs through the slots given."""


@attrs.define(eq=False)
class Candidate:
    """One candidate program: its label, the program, its (possibly partial) result."""

    index: int
    label: str
    program: Module | None = None
    result: EvaluationResult | None = None
    pruned: bool = False
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope, repr=False)

    @property
    def score(self) -> float:
        """The percentage scored on the valset so far (the whole valset when complete)."""
        return self.result.score if self.result is not None else 0.0

    @property
    def complete(self) -> bool:
        """Whether every valset example was scored."""
        return self.result is not None and self.result.complete

    def floor(self) -> float:
        return math.fsum(self.result.scores) if self.result is not None else 0.0

    def ceiling(self, max_score: float) -> float:
        if self.result is None:
            return math.inf
        return self.floor() + (self.result.total - self.result.finished) * max_score


@attrs.frozen
class RaceStats:
    """What early stopping saved: example runs made, and runs of pruned candidates never made."""

    candidates: int
    pruned: int
    example_runs: int
    example_runs_saved: int


class Race:
    """Score candidates concurrently on ``valset``, cancelling sure losers.

    Args:
        valset: the examples every candidate is scored on.
        metric: as for :class:`~trio_dspy.Evaluate` (called with ``trace=None``).
        max_score: the highest score the metric gives one example.
        early_stopping: cancel candidates that can no longer win (``False``
            scores every candidate on every example).
        stop_at_score: a candidate that completes with at least this
            percentage ends the race for every later candidate.
        stats: where the race adds its metric calls (as they are made) and
            the runs that pruning saved (when :meth:`run` ends, however it ends).
    """

    def __init__(
        self,
        valset: Sequence[Example],
        metric: Metric,
        *,
        max_score: float = 1.0,
        early_stopping: bool = True,
        stop_at_score: float | None = None,
        stats: OptimizerStats | None = None,
    ) -> None:
        self.valset = list(valset)
        self.metric = metric
        self.max_score = max_score
        self.early_stopping = early_stopping
        self.stop_at_score = stop_at_score
        self.candidates: list[Candidate] = []
        self._stats = stats

    async def run(
        self,
        builders: Sequence[tuple[str, Builder]],
        limit: int,
        *,
        ranks: Sequence[int] | None = None,
    ) -> Candidate:
        """Build and score every ``(label, build)`` candidate; return the winner.

        ``build(slots)`` makes the candidate program, running whatever it runs
        through ``slots``. ``ranks`` orders the candidates' claims on the
        ``limit`` slots (default: their order); the winner is chosen by score
        and then by position in ``builders``, whatever the ranks.

        Raises:
            Exception: whatever building a candidate raised (the race stops).
        """
        slots = PrioritySlots(limit)
        order = list(ranks) if ranks is not None else list(range(len(builders)))
        self.candidates = [Candidate(i, label) for i, (label, _) in enumerate(builders)]
        try:
            async with trio.open_nursery() as nursery:
                for candidate, (_, build), rank in zip(self.candidates, builders, order):
                    nursery.start_soon(self._run_one, candidate, build, slots.view(rank))
        finally:
            if self._stats is not None:
                self._stats.metric_calls_saved += self.saved()
        return self.winner()

    async def _run_one(self, candidate: Candidate, build: Builder, slots: RankedSlots) -> None:
        with candidate.scope:
            candidate.program = await build(slots)
            candidate.result = EvaluationResult.empty(len(self.valset))
            await run_examples(
                candidate.program,
                self.valset,
                self.metric,
                candidate.result,
                limiter=slots,
                on_row=lambda _index, _result: self._scored(candidate),
                on_metric_call=self._metric_called,
            )
        stop = self.stop_at_score
        if candidate.complete and stop is not None and candidate.score >= stop:
            for later in self.candidates[candidate.index + 1 :]:
                later.pruned = later.pruned or not later.complete
                later.scope.cancel()

    def _metric_called(self) -> None:
        if self._stats is not None:
            self._stats.metric_calls += 1

    def _scored(self, changed: Candidate) -> None:
        if not self.early_stopping:
            return
        leader = max(
            (c for c in self.candidates if c.result is not None),
            key=lambda c: (c.floor(), -c.index),
        )
        best = leader.floor()
        for c in self.candidates:
            if c is leader or c.pruned or c.result is None or c.complete:
                continue
            ceiling = c.ceiling(self.max_score)
            if best > ceiling or (best == ceiling and leader.index < c.index):
                c.pruned = True
                c.scope.cancel()

    def winner(self) -> Candidate:
        """The first complete candidate with the best score.

        Raises:
            RuntimeError: no candidate completed.
        """
        complete = [c for c in self.candidates if c.complete]
        if not complete:
            raise RuntimeError("no candidate was scored on the whole valset")
        return max(complete, key=lambda c: (c.floor(), -c.index))

    def saved(self) -> int:
        """The valset runs of pruned candidates that were never made.

        Runs cut off by a cancellation from outside (a deadline) are not
        counted: no decision of the race spared them.
        """
        return sum(
            len(self.valset) - (c.result.finished if c.result is not None else 0)
            for c in self.candidates
            if c.pruned
        )

    def stats(self) -> RaceStats:
        """How many example runs the race made and how many early stopping saved."""
        return RaceStats(
            candidates=len(self.candidates),
            pruned=sum(c.pruned for c in self.candidates),
            example_runs=sum(c.result.finished for c in self.candidates if c.result is not None),
            example_runs_saved=self.saved(),
        )
