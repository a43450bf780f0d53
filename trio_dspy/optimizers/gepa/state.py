"""The candidates a GEPA run has found, their valset scores, and its result."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import attrs

from ...modules.module import Module
from .pareto import update_front
from .runs import build_program

__all__ = ["Commit", "GEPAResult", "Program", "State"]


@attrs.define
class Program:
    """One accepted candidate."""

    instructions: dict[str, str]
    parents: tuple[int, ...]
    val_scores: dict[int, float]
    discovered_at: int  # metric calls charged when its valset evaluation began

    @property
    def mean(self) -> float:
        """Its average valset score."""
        if not self.val_scores:
            return -math.inf
        return math.fsum(self.val_scores.values()) / len(self.val_scores)


@attrs.frozen
class Commit:
    """What the state looked like after one iteration was committed."""

    programs: int  # how many programs there were
    accepted_child: bool  # the iteration's reflective child was accepted
    merges_due: int
    merges_accepted: int


@attrs.define
class State:
    """Every accepted program, in the order accepted (the seed first)."""

    programs: list[Program] = attrs.field(factory=list)
    commits: list[Commit] = attrs.field(factory=list)
    merges_due: int = 0
    merges_accepted: int = 0

    def after(self, iteration: int) -> Commit:
        """The state committed by iteration ``iteration`` (before any: the seed alone)."""
        if iteration < 0:
            return Commit(1, False, 0, 0)
        return self.commits[iteration]

    def fronts(self, count: int) -> dict[int, set[int]]:
        """The per-instance fronts of the first ``count`` programs."""
        best: dict[int, float] = {}
        holders: dict[int, set[int]] = {}
        for index, program in enumerate(self.programs[:count]):
            update_front(best, holders, index, program.val_scores)
        return holders

    def means(self, count: int) -> list[float]:
        """The mean valset scores of the first ``count`` programs."""
        return [p.mean for p in self.programs[:count]]

    def best(self) -> int:
        """The program with the best mean valset score (the earliest of equals)."""
        means = self.means(len(self.programs))
        return max(range(len(means)), key=lambda i: (means[i], -i))


@attrs.frozen
class GEPAResult:
    """What a GEPA run found (``compiled.detailed_results`` with ``track_stats=True``).

    Attributes:
        candidates: each accepted candidate's instructions (``{predictor: text}``),
            the seed first; :meth:`program` builds one.
        parents: each candidate's parents (``()`` for the seed, two for a merge).
        val_aggregate_scores: each candidate's mean valset score.
        val_subscores: each candidate's score on every valset example.
        per_val_instance_best_candidates: for each valset example, the candidates
            scoring best on it (the Pareto front).
        discovery_eval_counts: metric calls charged before each candidate's
            valset evaluation began.
        best_idx: the candidate returned (best mean, earliest of equals).
        total_metric_calls: metric calls made (replayed ones not included).
        budget: the metric-call budget.
        num_full_val_evals: valset evaluations (the seed's and each accepted candidate's).
        log_dir: the journal's directory, if any.
        seed: the run's seed.
    """

    candidates: list[dict[str, str]]
    parents: list[tuple[int, ...]]
    val_aggregate_scores: list[float]
    val_subscores: list[dict[int, float]]
    per_val_instance_best_candidates: dict[int, set[int]]
    discovery_eval_counts: list[int]
    best_idx: int
    total_metric_calls: int
    budget: int
    num_full_val_evals: int
    log_dir: str | None
    seed: int
    _student: Module | None = attrs.field(default=None, repr=False, eq=False, alias="student")

    @property
    def best_candidate(self) -> dict[str, str]:
        """The instructions of the returned candidate."""
        return self.candidates[self.best_idx]

    def program(self, index: int) -> Module:
        """Candidate ``index`` as a program (a copy of the student).

        Raises:
            IndexError: there is no such candidate.
            RuntimeError: the result was not made by a compile (no student).
        """
        if self._student is None:
            raise RuntimeError("this result has no student program to build candidates from")
        return build_program(self._student, self.candidates[index])

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data."""
        return {
            "candidates": self.candidates,
            "parents": [list(p) for p in self.parents],
            "val_aggregate_scores": self.val_aggregate_scores,
            "val_subscores": [{str(k): v for k, v in s.items()} for s in self.val_subscores],
            "per_val_instance_best_candidates": {
                str(k): sorted(v) for k, v in self.per_val_instance_best_candidates.items()
            },
            "discovery_eval_counts": self.discovery_eval_counts,
            "best_idx": self.best_idx,
            "total_metric_calls": self.total_metric_calls,
            "budget": self.budget,
            "num_full_val_evals": self.num_full_val_evals,
            "log_dir": self.log_dir,
            "seed": self.seed,
        }

    @classmethod
    def from_state(
        cls,
        state: State,
        *,
        student: Module,
        total_metric_calls: int,
        budget: int,
        log_dir: str | None,
        seed: int,
    ) -> GEPAResult:
        """The result of a finished run."""
        programs: Sequence[Program] = state.programs
        return cls(
            candidates=[dict(p.instructions) for p in programs],
            parents=[p.parents for p in programs],
            val_aggregate_scores=[p.mean for p in programs],
            val_subscores=[dict(p.val_scores) for p in programs],
            per_val_instance_best_candidates=state.fronts(len(programs)),
            discovery_eval_counts=[p.discovered_at for p in programs],
            best_idx=state.best(),
            total_metric_calls=total_metric_calls,
            budget=budget,
            num_full_val_evals=len(programs),
            log_dir=log_dir,
            seed=seed,
            student=student,
        )
