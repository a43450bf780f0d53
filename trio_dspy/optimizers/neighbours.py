"""The nearest training examples to a call's inputs, by their vectors.

A *vectorizer* turns a list of texts into one vector per text: an async
callable (a ``td.Embedder``, a function calling an embedding server)
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
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

import trio

from ..primitives import Example
from ..unicode import clean_text
from ..vectors import VectorizerError, checked_vectors, dot, is_async_callable, normalised

__all__ = [
    "Similarity",
    "Vectorizer",
    "VectorizerError",
    "checked_vectors",
    "example_text",
    "inputs_text",
]

Vectorizer = Callable[[list[str]], Any]
"""``vectorizer(texts) -> vectors``, sync or async: one vector (a sequence of
real numbers, a list or a numpy row) per text, in order."""

Similarity = Literal["dot", "cosine"]

T = TypeVar("T")

OFF_LOOP_AT = 256
"""Trainsets this large are checked and scored in a worker thread (see :meth:`Index._work`)."""


def example_text(example: Example) -> str:
    """The text embedded for a training example: ``"key: value | ..."`` over its inputs.

    The keys come in the example's own order, as DSPy writes them.
    """
    keys = example._input_keys or frozenset()
    return " | ".join(f"{key}: {value}" for key, value in example.items() if key in keys)


def inputs_text(inputs: Mapping[str, Any]) -> str:
    """The text embedded for a call: ``"key: value | ..."`` over its inputs, in call order."""
    return " | ".join(f"{key}: {value}" for key, value in inputs.items())


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
            vectors = [normalised(v) for v in vectors]
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
        if is_async_callable(self.vectorizer):
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
    scores = [dot(vector, query) for vector in vectors]
    for index, score in enumerate(scores):
        if not math.isfinite(score):
            raise VectorizerError(
                f"the similarity of training example {index} to the call's inputs is "
                f"{score}: the vectors' components are too large to multiply; "
                "scale them down (or use similarity='cosine')",
                value=score,
            )
    return heapq.nsmallest(k, range(len(scores)), key=lambda i: (-scores[i], i))
