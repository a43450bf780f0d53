"""``BootstrapFewShotWithRandomSearch``: many bootstrapped candidates, the best one kept.

The candidates are DSPy's: the student with no demos, the student with
labelled demos, one bootstrap over the trainset in order, and
``num_candidate_programs`` bootstraps over seeded shuffles with a seeded
number of demos. Each candidate is bootstrapped and then scored on the valset
in its own child task, all under one limit of runs in flight, and a
:class:`~trio_dspy.optimizers.race.Race` cancels the candidates that can no
longer win, so a compile costs fewer calls than scoring everything yet picks
the same program.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence

import attrs
import trio

from ..aliases import limit_alias
from ..checkpoint import entered
from ..evaluate.evaluate import Limiter, Metric
from ..modules.module import Module
from ..primitives import Example
from .base import ModuleT, Optimizer, check_trainset
from .bootstrap import BootstrapFewShot
from .labeled import LabeledFewShot
from .race import Builder, Candidate, Race
from .stats import OptimizerStats, measure

__all__ = ["BootstrapFewShotWithRandomSearch", "RandomSearchStats"]


@attrs.define
class RandomSearchStats(OptimizerStats):
    """What one compile cost (see :class:`OptimizerStats`) and what its race did.

    ``metric_calls`` and ``metric_calls_saved`` include the candidates'
    bootstraps (their metric calls, and the trainset examples they left
    unrun); the fields below are the valset race's own.

    Attributes:
        candidates: candidate programs built and scored.
        pruned: candidates cancelled because they could no longer win.
        example_runs: valset runs made.
        example_runs_saved: valset runs of pruned candidates never made.
    """

    candidates: int = 0
    pruned: int = 0
    example_runs: int = 0
    example_runs_saved: int = 0


class BootstrapFewShotWithRandomSearch(Optimizer):
    """Bootstrap several candidate programs and keep the best on the valset.

    Args:
        metric: ``metric(example, prediction, trace=None)``; candidates are
            scored with ``trace=None`` and bootstrapped with the trace.
        num_candidate_programs: shuffled bootstraps tried (three fixed
            candidates come first: no demos, labelled demos, unshuffled bootstrap).
        max_bootstrapped_demos: as for :class:`BootstrapFewShot`; shuffled
            candidates draw their number of bootstrapped demos between 1 and
            this.
        max_labeled_demos: as for :class:`BootstrapFewShot`.
        max_rounds: as for :class:`BootstrapFewShot`.
        metric_threshold: as for :class:`BootstrapFewShot`.
        limit: the most program runs in flight, bootstrapping and scoring together.
        num_threads: DSPy's name for ``limit`` (deprecated: it warns).
        stop_at_score: a candidate reaching this valset percentage ends the search.
        early_stopping: cancel candidates that can no longer win (see
            :class:`~trio_dspy.optimizers.race.Race`); ``max_score`` is the most
            the metric gives one example.

    After :meth:`compile`, :attr:`candidates` lists every candidate with its
    score (partial for cancelled ones) and :attr:`stats` what the compile cost
    and what early stopping saved.
    """

    def __init__(
        self,
        metric: Metric,
        *,
        num_candidate_programs: int = 8,
        max_bootstrapped_demos: int = 4,
        max_labeled_demos: int = 16,
        max_rounds: int = 1,
        metric_threshold: float | None = None,
        limit: int = 16,
        stop_at_score: float | None = None,
        early_stopping: bool = True,
        max_score: float = 1.0,
        max_errors: int | None = None,
        num_threads: int | None = None,
    ) -> None:
        limit = limit_alias(limit, num_threads, "td.BootstrapFewShotWithRandomSearch", default=16)
        if num_candidate_programs < 0:
            raise ValueError(
                f"num_candidate_programs must be 0 or more, got {num_candidate_programs}"
            )
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self.metric = metric
        self.num_candidate_programs = num_candidate_programs
        self.max_bootstrapped_demos = max_bootstrapped_demos
        self.max_labeled_demos = max_labeled_demos
        self.max_rounds = max_rounds
        self.metric_threshold = metric_threshold
        self.limit = limit
        self.stop_at_score = stop_at_score
        self.early_stopping = early_stopping
        self.max_score = max_score
        self.max_errors = max_errors
        self.candidates: list[Candidate] = []
        self.stats: RandomSearchStats = RandomSearchStats()

    async def compile(
        self,
        student: ModuleT,
        *,
        trainset: Sequence[Example],
        valset: Sequence[Example] | None = None,
        teacher: Module | None = None,
    ) -> ModuleT:
        """The best candidate on ``valset`` (the trainset when not given).

        :attr:`stats` is filled in even when compiling fails or is cancelled.

        Raises:
            TrioDSPyError: the trainset or valset is unusable, or bootstrapping failed.
        """
        self.stats = RandomSearchStats()
        with measure(self.stats):
            return await self._compile(student, trainset, valset, teacher)

    async def _compile(
        self,
        student: ModuleT,
        trainset: Sequence[Example],
        valset: Sequence[Example] | None,
        teacher: Module | None,
    ) -> ModuleT:
        await entered()
        examples = check_trainset(trainset)
        scoring = check_trainset(valset, "valset") if valset is not None else examples
        seeds = range(-3, self.num_candidate_programs)
        builders: list[tuple[str, Builder]] = [
            (_label(seed), functools.partial(self._build, seed, student, examples, teacher))
            for seed in seeds
        ]
        # Bootstrapped candidates usually score best, so they claim slots first:
        # a strong leader known early lets the race cancel weak candidates sooner.
        ranks = [seed if seed >= -1 else self.num_candidate_programs - seed for seed in seeds]
        race = Race(
            scoring,
            self.metric,
            max_score=self.max_score,
            early_stopping=self.early_stopping,
            stop_at_score=self.stop_at_score,
            stats=self.stats,
        )
        try:
            best = await race.run(builders, self.limit, ranks=ranks)
        finally:
            self.candidates = race.candidates
            raced = race.stats()
            self.stats.candidates = raced.candidates
            self.stats.pruned = raced.pruned
            self.stats.example_runs = raced.example_runs
            self.stats.example_runs_saved = raced.example_runs_saved
        assert best.program is not None
        return best.program  # type: ignore[return-value]

    async def _build(
        self,
        seed: int,
        student: Module,
        trainset: list[Example],
        teacher: Module | None,
        limiter: Limiter,
    ) -> Module:
        if seed == -3:
            await trio.lowlevel.checkpoint()
            return student.reset_copy()
        if seed == -2:
            return await LabeledFewShot(self.max_labeled_demos).compile(student, trainset=trainset)
        size = self.max_bootstrapped_demos
        if seed >= 0:
            trainset = list(trainset)
            random.Random(seed).shuffle(trainset)
            size = random.Random(seed).randint(min(1, size), size)
        bootstrap = BootstrapFewShot(
            self.metric,
            self.metric_threshold,
            max_bootstrapped_demos=size,
            max_labeled_demos=self.max_labeled_demos,
            max_rounds=self.max_rounds,
            max_errors=self.max_errors,
        )
        try:
            return await bootstrap.compile(
                student, trainset=trainset, teacher=teacher, limiter=limiter
            )
        finally:
            # Its model calls already count in this compile's measure; its
            # metric calls were counted on its own stats, so they are added here.
            self.stats.metric_calls += bootstrap.stats.metric_calls
            self.stats.metric_calls_saved += bootstrap.stats.metric_calls_saved

    def __repr__(self) -> str:
        n = self.num_candidate_programs
        return f"BootstrapFewShotWithRandomSearch(num_candidate_programs={n})"


def _label(seed: int) -> str:
    return {-3: "zero-shot", -2: "labeled", -1: "bootstrap"}.get(seed, f"bootstrap seed={seed}")
