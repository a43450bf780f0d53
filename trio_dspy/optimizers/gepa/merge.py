"""GEPA's merge: combine two front programs that grew apart from a common ancestor.

Where two programs descend from one ancestor and each changed different
predictors, a program taking each predictor from whichever descendant
changed it may have both improvements. As the gepa engine (0.1.x) does it:
two programs are drawn from the non-dominated set, an ancestor of both that
scores no better than either is drawn (weighted by score), and the merged
candidate takes, predictor by predictor, the text that differs from the
ancestor (or, where both differ, the better parent's). The merge is then
scored on a few valset examples where the parents differ, and kept if it
does at least as well there as the better parent. Pure functions of the
candidates, their scores and the random generator given.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

import attrs

__all__ = ["MergePlan", "plan_merge", "subsample_for_merge"]

Candidate = Mapping[str, str]

ATTEMPTS = 10
SUBSAMPLE = 5
"""Valset examples a merged candidate is scored on before a full evaluation
(the engine's ``num_subsample_ids``); also the fewest common examples a merge
needs (``val_overlap_floor``)."""


@attrs.frozen
class MergePlan:
    """Two parents, the ancestor they share, the merged candidate, and its check set."""

    first: int
    second: int
    ancestor: int
    candidate: dict[str, str]
    subsample: tuple[int, ...]


def ancestors(program: int, parents: Sequence[Sequence[int]]) -> set[int]:
    """Every ancestor of ``program`` (the transitive closure of its parents)."""
    found: set[int] = set()
    stack = list(parents[program])
    while stack:
        p = stack.pop()
        if p not in found:
            found.add(p)
            stack.extend(parents[p])
    return found


def plan_merge(
    *,
    merge_candidates: Sequence[int],
    candidates: Sequence[Candidate],
    parents: Sequence[Sequence[int]],
    mean_scores: Sequence[float],
    val_scores: Sequence[Mapping[int, float]],
    tried_triples: set[tuple[int, int, int]],
    tried_merges: set[tuple[int, int, tuple[tuple[str, int], ...]]],
    rng: random.Random,
) -> MergePlan | None:
    """A merge to try, or ``None`` when no pair and ancestor qualify.

    ``tried_triples`` and ``tried_merges`` are updated, so that no (pair,
    ancestor) and no merged combination is tried twice.
    """
    pool = sorted(merge_candidates)
    if len(pool) < 2 or len(candidates) < 3:
        return None
    for _ in range(ATTEMPTS):
        pair = _pair_with_ancestor(pool, candidates, parents, mean_scores, tried_triples, rng)
        if pair is None:
            return None
        i, j, ancestor = pair
        merged, origin = _merged(candidates, i, j, ancestor, mean_scores, rng)
        key = (i, j, tuple(sorted(origin.items())))
        if key in tried_merges:
            continue
        common = sorted(set(val_scores[i]) & set(val_scores[j]))
        if len(common) < SUBSAMPLE:
            continue
        tried_merges.add(key)
        tried_triples.add((i, j, ancestor))
        subsample = subsample_for_merge(val_scores[i], val_scores[j], common, rng)
        return MergePlan(i, j, ancestor, merged, subsample)
    return None


def _pair_with_ancestor(
    pool: Sequence[int],
    candidates: Sequence[Candidate],
    parents: Sequence[Sequence[int]],
    mean_scores: Sequence[float],
    tried_triples: set[tuple[int, int, int]],
    rng: random.Random,
) -> tuple[int, int, int] | None:
    for _ in range(ATTEMPTS):
        i, j = sorted(rng.sample(list(pool), 2))
        up_i, up_j = ancestors(i, parents), ancestors(j, parents)
        if i in up_j or j in up_i:
            continue
        usable = [
            a
            for a in sorted(up_i & up_j)
            if (i, j, a) not in tried_triples
            and mean_scores[a] <= mean_scores[i]
            and mean_scores[a] <= mean_scores[j]
            and _desirable(candidates[a], candidates[i], candidates[j])
        ]
        if not usable:
            continue
        weights = [max(mean_scores[a], 0.0) for a in usable]
        if not any(weights):  # all-zero weights: an even draw (the engine would crash)
            weights = [1.0] * len(usable)
        return i, j, rng.choices(usable, weights=weights)[0]
    return None


def _desirable(ancestor: Candidate, first: Candidate, second: Candidate) -> bool:
    """Some predictor changed in exactly one of the two descendants."""
    return any(
        (ancestor[name] == first[name]) != (ancestor[name] == second[name]) for name in ancestor
    )


def _merged(
    candidates: Sequence[Candidate],
    i: int,
    j: int,
    ancestor: int,
    mean_scores: Sequence[float],
    rng: random.Random,
) -> tuple[dict[str, str], dict[str, int]]:
    """The merged texts, and which program each came from (``ancestor`` for unchanged)."""
    base, first, second = candidates[ancestor], candidates[i], candidates[j]
    merged: dict[str, str] = {}
    origin: dict[str, int] = {}
    for name in sorted(base):  # sorted: the engine's set order varies by process
        a, p1, p2 = base[name], first[name], second[name]
        if a in (p1, p2) and p1 != p2:
            source = i if a != p1 else j
        elif a != p1 and a != p2:
            if mean_scores[i] != mean_scores[j]:
                source = i if mean_scores[i] > mean_scores[j] else j
            else:
                source = rng.choice([i, j])
        else:  # p1 == p2: unchanged, or changed the same way in both
            source = i if p1 != a else ancestor
        merged[name] = candidates[source][name]
        origin[name] = source
    return merged, origin


def subsample_for_merge(
    first: Mapping[int, float],
    second: Mapping[int, float],
    common: Sequence[int],
    rng: random.Random,
) -> tuple[int, ...]:
    """Up to :data:`SUBSAMPLE` common valset examples: some where each parent wins, some ties."""
    wins_first = [k for k in common if first[k] > second[k]]
    wins_second = [k for k in common if second[k] > first[k]]
    ties = [k for k in common if first[k] == second[k]]
    each = max(1, math.ceil(SUBSAMPLE / 3))
    chosen: list[int] = []
    for bucket in (wins_first, wins_second, ties):
        take = min(len(bucket), each, SUBSAMPLE - len(chosen))
        if take > 0:
            chosen += rng.sample(bucket, take)
    remaining = SUBSAMPLE - len(chosen)
    unused = [k for k in common if k not in chosen]
    if remaining > 0:
        if len(unused) >= remaining:
            chosen += rng.sample(unused, remaining)
        else:
            chosen += rng.choices(list(common), k=remaining)
    return tuple(chosen)
