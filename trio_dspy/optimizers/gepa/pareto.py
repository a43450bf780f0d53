"""The per-instance Pareto front and how GEPA picks a parent from it.

For every valset example GEPA keeps the programs that score best on it (ties
included): the *front* of that instance. A program on no front is beaten
everywhere by someone. Parents are drawn from the fronts with a weight equal
to the number of instances a program is best on, after removing programs
that are dominated: those every one of whose fronts also holds another,
surviving program. This favours programs that solve something no other
program solves, which is what keeps GEPA's search diverse. Pure functions,
as the gepa engine (0.1.x) computes them.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

__all__ = ["dominated_programs", "parent_by_pareto", "reduced_fronts", "update_front"]


def update_front(
    best: dict[int, float], holders: dict[int, set[int]], program: int, scores: Mapping[int, float]
) -> None:
    """Add ``program``'s per-instance ``scores`` to the fronts (a tie joins a front)."""
    for instance, score in scores.items():
        if instance not in best or score > best[instance]:
            best[instance] = score
            holders[instance] = {program}
        elif score == best[instance]:
            holders[instance].add(program)


def dominated_programs(fronts: Mapping[int, set[int]], mean_scores: Sequence[float]) -> set[int]:
    """The programs to ignore: each of their fronts also holds a surviving program.

    Programs are considered from the lowest mean score up (ties by index),
    one at a time, and the scan restarts after each removal, as the engine
    does, so the result does not depend on set iteration order.
    """
    on_fronts = sorted({p for holders in fronts.values() for p in holders})
    ranked = sorted(on_fronts, key=lambda p: (mean_scores[p], p))
    dominated: set[int] = set()
    while True:
        for candidate in ranked:
            if candidate in dominated:
                continue
            others = set(ranked) - {candidate} - dominated
            if all(holders & others for holders in fronts.values() if candidate in holders):
                dominated.add(candidate)
                break
        else:
            return dominated


def reduced_fronts(
    fronts: Mapping[int, set[int]], mean_scores: Sequence[float]
) -> dict[int, set[int]]:
    """Each front without the dominated programs."""
    dominated = dominated_programs(fronts, mean_scores)
    return {instance: holders - dominated for instance, holders in fronts.items()}


def parent_by_pareto(
    fronts: Mapping[int, set[int]], mean_scores: Sequence[float], rng: random.Random
) -> int:
    """One parent, drawn with weight = the number of reduced fronts it is on.

    The draw list is built in instance order and program order within an
    instance, so the same fronts and the same ``rng`` give the same parent.
    """
    reduced = reduced_fronts(fronts, mean_scores)
    draws = [program for instance in sorted(reduced) for program in sorted(reduced[instance])]
    return rng.choice(draws)
