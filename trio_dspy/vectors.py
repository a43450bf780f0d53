"""Vectors of numbers: checking what an embedding function returned, and their arithmetic.

An embedding function (a :class:`~trio_dspy.Embedder`, a vectorizer of
:class:`~trio_dspy.KNNFewShot`, a local model) returns one vector per text.
:func:`checked_vectors` turns its answer into lists of floats or raises a
:class:`VectorizerError` saying what was wrong, since a NaN or a short
vector would otherwise rank neighbours silently at random. Plain Python:
no numpy needed (a numpy array is read like any other sequence).
"""

from __future__ import annotations

import inspect
import math
import numbers
import operator
from collections.abc import Sequence
from typing import Any

from .errors import TrioDSPyError

__all__ = ["VectorizerError", "checked_vectors", "dot", "is_async_callable", "normalised"]


def is_async_callable(function: Any) -> bool:
    """Whether calling ``function`` gives a coroutine (an ``async def`` function or
    an object whose ``__call__`` is one). Raises nothing."""
    if inspect.iscoroutinefunction(function):
        return True
    return callable(function) and inspect.iscoroutinefunction(type(function).__call__)


class VectorizerError(TrioDSPyError, ValueError, TypeError):
    """The vectorizer did not return one finite vector of the same length per text.

    ``value`` is the offending part of what it returned (the whole result, one
    vector, or one component).
    """

    def __init__(self, message: str, *, value: Any) -> None:
        self.value = value
        super().__init__(message)


def dot(a: Sequence[float], b: Sequence[float]) -> float:
    """The dot product of two vectors of the same length. Raises nothing."""
    return float(sum(map(operator.mul, a, b)))


def normalised(vector: list[float]) -> list[float]:
    """``vector`` scaled to length 1; a zero vector stays zero (similar to nothing)."""
    # hypot neither overflows on large components nor underflows on tiny ones.
    norm = math.hypot(*vector)
    return [x / norm for x in vector] if norm else vector


def checked_vectors(result: Any, count: int, what: str, size: int | None) -> list[list[float]]:
    """``result`` as ``count`` lists of floats, all of length ``size`` (or of the first's).

    Raises:
        VectorizerError: ``result`` is not ``count`` vectors of finite real
            numbers of one length.
    """
    try:
        rows = list(result)
    except TypeError:
        raise VectorizerError(
            f"the vectorizer returned {type(result).__name__} for {what}, not a list of "
            "vectors: it must return one vector (a list of numbers) per text",
            value=result,
        ) from None
    if len(rows) != count:
        raise VectorizerError(
            f"the vectorizer returned {len(rows)} vector(s) for the {count} text(s) of {what}: "
            "it must return one vector per text, in order",
            value=result,
        )
    vectors: list[list[float]] = []
    for i, row in enumerate(rows):
        where = f"vector {i} of {what}" if count > 1 else f"the vector of {what}"
        vector = _checked_vector(row, where)
        if not vector:
            raise VectorizerError(f"{where} is empty: a vector needs components", value=row)
        want = size if size is not None else len(vectors[0]) if vectors else len(vector)
        if len(vector) != want:
            other = "the trainset's vectors have" if size is not None else "the first vector has"
            raise VectorizerError(
                f"{where} has {len(vector)} component(s), {other} {want}: "
                "every vector must have the same length",
                value=row,
            )
        vectors.append(vector)
    return vectors


def _checked_vector(row: Any, where: str) -> list[float]:
    if isinstance(row, str | bytes | numbers.Number):
        raise VectorizerError(
            f"{where} is {type(row).__name__} {row!r:.60}, not a vector of numbers", value=row
        )
    try:
        items = list(row)
    except TypeError:
        raise VectorizerError(
            f"{where} is {type(row).__name__}, not a vector of numbers", value=row
        ) from None
    # The usual case, checked at C speed: components of a few real number
    # types (float, int, numpy's), all finite. Anything else is looked at
    # one component at a time, to say which one is wrong.
    kinds = set(map(type, items))
    if kinds == {float}:  # the usual case: nothing to convert
        if math.isfinite(sum(items)) or all(map(math.isfinite, items)):
            return items  # a finite sum has no NaN or infinity in it
    elif all(issubclass(k, numbers.Real) and not issubclass(k, bool) for k in kinds):
        try:
            vector = list(map(float, items))
        except OverflowError:
            pass
        else:
            if all(map(math.isfinite, vector)):
                return vector
    vector = []
    for j, item in enumerate(items):
        if isinstance(item, bool) or not isinstance(item, numbers.Real):
            raise VectorizerError(
                f"component {j} of {where} is {type(item).__name__} {item!r:.60}, not a number",
                value=item,
            )
        try:
            value = float(item)
        except OverflowError:
            value = math.inf
        if not math.isfinite(value):
            raise VectorizerError(
                f"component {j} of {where} is {item!r:.40}: vectors must be finite", value=item
            )
        vector.append(value)
    return vector
