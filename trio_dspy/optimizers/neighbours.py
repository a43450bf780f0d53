"""The nearest training examples to a call's inputs, by their vectors.

A *vectorizer* turns a list of texts into one vector per text: an async
callable (a future ``td.Embedder``, a function calling an embedding server)
or a sync one (a local model), which runs in a worker thread so that it never
blocks the event loop. The trainset is embedded once, on first use, in one
call; every query is one more call with one text.

What the vectorizer returns is checked before it is used: one vector per
text, every vector the same length, every component a finite real number.
Anything else is a :class:`VectorizerError` saying what was wrong, since a
NaN or a short vector would otherwise pick neighbours silently at random.
"""

from __future__ import annotations

import functools
import heapq
import inspect
import math
import numbers
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import trio

from ..errors import TrioDSPyError
from ..primitives import Example
from ..unicode import clean_text

__all__ = ["Similarity", "Vectorizer", "VectorizerError", "example_text", "inputs_text"]

Vectorizer = Callable[[list[str]], Any]
"""``vectorizer(texts) -> vectors``, sync or async: one vector (a sequence of
real numbers, a list or a numpy row) per text, in order."""

Similarity = Literal["dot", "cosine"]

T = TypeVar("T")

OFF_LOOP_AT = 256
"""Trainsets this large are checked and scored in a worker thread (see :meth:`Index._work`)."""


class VectorizerError(TrioDSPyError, ValueError, TypeError):
    """The vectorizer did not return one finite vector of the same length per text.

    ``value`` is the offending part of what it returned (the whole result, one
    vector, or one component).
    """

    def __init__(self, message: str, *, value: Any) -> None:
        self.value = value
        super().__init__(message)


def example_text(example: Example) -> str:
    """The text embedded for a training example: ``"key: value | ..."`` over its inputs.

    The keys come in the example's own order, as DSPy writes them.
    """
    keys = example._input_keys or frozenset()
    return " | ".join(f"{key}: {value}" for key, value in example.items() if key in keys)


def inputs_text(inputs: Mapping[str, Any]) -> str:
    """The text embedded for a call: ``"key: value | ..."`` over its inputs, in call order."""
    return " | ".join(f"{key}: {value}" for key, value in inputs.items())


def _is_async(function: Any) -> bool:
    """Whether calling ``function`` gives a coroutine: it then runs here, not in a thread."""
    if inspect.iscoroutinefunction(function):
        return True
    return callable(function) and inspect.iscoroutinefunction(type(function).__call__)


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    return float(sum(map(operator.mul, a, b)))


def _normalised(vector: list[float]) -> list[float]:
    """``vector`` scaled to length 1; a zero vector stays zero (similar to nothing)."""
    norm = math.sqrt(_dot(vector, vector))
    return [x / norm for x in vector] if norm else vector


class Index:
    """The trainset's vectors, embedded on first use, and the nearest examples to inputs.

    Args:
        trainset: examples marking their inputs (checked by the caller).
        vectorizer: see :data:`Vectorizer`.
        similarity: ``"dot"`` (DSPy's: the raw dot product, which equals the
            cosine only when the vectorizer returns unit vectors) or
            ``"cosine"`` (vectors are normalised first).
    """

    def __init__(
        self, trainset: list[Example], vectorizer: Vectorizer, similarity: Similarity
    ) -> None:
        if not callable(vectorizer):
            raise TypeError(
                "the vectorizer must be a function of a list of texts, "
                f"got {type(vectorizer).__name__}"
            )
        if similarity not in ("dot", "cosine"):
            raise ValueError(f"similarity must be 'dot' or 'cosine', got {similarity!r}")
        self.trainset = trainset
        self.vectorizer = vectorizer
        self.similarity = similarity
        self.embeddings = 0
        """Calls made to the vectorizer (the trainset's one included)."""
        self._vectors: list[list[float]] | None = None
        # Concurrent first calls share one embedding of the trainset.
        self._lock = trio.Lock()

    async def nearest(self, inputs: Mapping[str, Any], k: int) -> list[int]:
        """Indices of the ``k`` training examples most similar to ``inputs``, nearest first.

        Ties go to the example earlier in the trainset.

        Raises:
            VectorizerError: the vectorizer's answer is unusable.
            Exception: whatever the vectorizer raised.
        """
        vectors = await self.vectors()
        result = await self._embed([inputs_text(inputs)])
        [query] = self._prepare(result, 1, "the call's inputs", len(vectors[0]))
        return await self._work(_rank, vectors, query, k)

    async def vectors(self) -> list[list[float]]:
        """The trainset's vectors, embedding it on the first call.

        Raises:
            VectorizerError: the vectorizer's answer is unusable.
            Exception: whatever the vectorizer raised (the next call tries again).
        """
        if self._vectors is not None:
            return self._vectors
        async with self._lock:
            if self._vectors is None:
                result = await self._embed([example_text(e) for e in self.trainset])
                count = len(self.trainset)
                self._vectors = await self._work(self._prepare, result, count, "the trainset", None)
            return self._vectors

    def _prepare(self, result: Any, count: int, what: str, size: int | None) -> list[list[float]]:
        """What the vectorizer returned, checked, and normalised for the cosine."""
        vectors = checked_vectors(result, count, what, size)
        if self.similarity == "cosine":
            vectors = [_normalised(v) for v in vectors]
        return vectors

    async def _work(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)``, in a worker thread for a trainset of :data:`OFF_LOOP_AT` or more.

        Checking and scoring take pure-Python arithmetic over every component
        of every vector: for a large trainset that would hold up every other
        task, while a thread lets the event loop keep running.
        """
        if len(self.trainset) >= OFF_LOOP_AT:
            return await trio.to_thread.run_sync(
                functools.partial(function, *args), abandon_on_cancel=True
            )
        return function(*args)

    async def _embed(self, texts: list[str]) -> Any:
        """What the vectorizer returns for ``texts``, unchecked."""
        texts = [clean_text(t) for t in texts]
        self.embeddings += 1
        if _is_async(self.vectorizer):
            result = self.vectorizer(texts)
        else:
            result = await trio.to_thread.run_sync(self.vectorizer, texts, abandon_on_cancel=True)
        if inspect.isawaitable(result):
            result = await result
        return result


def _rank(vectors: list[list[float]], query: list[float], k: int) -> list[int]:
    """Indices of the ``k`` vectors with the largest dot product with ``query``, ties in order.

    Raises:
        VectorizerError: a dot product overflows.
    """
    scores = [_dot(vector, query) for vector in vectors]
    for index, score in enumerate(scores):
        if not math.isfinite(score):
            raise VectorizerError(
                f"the similarity of training example {index} to the call's inputs is "
                f"{score}: the vectors' components are too large to multiply; "
                "scale them down (or use similarity='cosine')",
                value=score,
            )
    return heapq.nsmallest(k, range(len(scores)), key=lambda i: (-scores[i], i))


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
    if all(issubclass(k, numbers.Real) and not issubclass(k, bool) for k in kinds):
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
