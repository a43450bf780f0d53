"""``majority``: the most common answer among several predictions."""

from __future__ import annotations

import collections
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, TypeVar

__all__ = ["majority"]

P = TypeVar("P", bound=Mapping[str, Any])


def _vote(value: Any) -> Hashable | None:
    """What a value counts as: normalised text, the value itself, or ``None`` (no vote)."""
    from ..evaluate.metrics import normalize_text

    if isinstance(value, str):
        return normalize_text(value) or None
    if value is None:
        return None
    if isinstance(value, Hashable):
        return value
    return repr(value)


def majority(predictions: Sequence[P], field: str | None = None) -> P:
    """The first prediction holding the most common value of ``field``.

    ::

        answers = await td.gather(*[functools.partial(cot, question=q)] * 5)
        td.majority(answers).answer

    ``field`` defaults to the last field of the first prediction (the last
    output field of a :class:`~trio_dspy.Prediction`). Strings are compared
    after normalisation (``normalize_text``: case, punctuation, articles and
    spaces ignored), other values as values (by ``repr`` when unhashable).
    Predictions lacking the field, or whose text normalises to nothing, do
    not vote. A tie goes to the value seen first.

    Raises:
        ValueError: no predictions, or none of them votes.
    """
    if not predictions:
        raise ValueError("majority() needs at least one prediction")
    if field is None:
        keys = list(predictions[0])
        if not keys:
            raise ValueError("majority(): the first prediction has no fields")
        field = keys[-1]
    counts: collections.Counter[Hashable] = collections.Counter()
    first: dict[Hashable, P] = {}
    for prediction in predictions:
        if field not in prediction:
            continue
        vote = _vote(prediction[field])
        if vote is None:
            continue
        counts[vote] += 1
        first.setdefault(vote, prediction)
    if not counts:
        raise ValueError(f"majority(): no prediction has a value for {field!r}")
    best = max(counts.values())
    winner = next(v for v in first if counts[v] == best)
    return first[winner]
