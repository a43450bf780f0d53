"""``Embeddings``: exact nearest-passage search over a corpus, as DSPy's retriever.

The corpus is embedded once, on the first search (inside trio; concurrent
first searches share that one embedding, and a failed one is tried again by
the next search). A search embeds its query and scores every passage by the
dot product of the (by default normalised, so cosine) vectors: exact, in
plain Python, no numpy or FAISS. For a corpus of :data:`OFF_LOOP_AT`
passages or more the scoring runs in a worker thread so that it never holds
up the event loop.
"""

from __future__ import annotations

import functools
import heapq
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import trio

from ..checkpoint import entered
from ..primitives import Prediction
from ..unicode import clean_text
from ..vectors import VectorizerError, checked_vectors, dot, is_async_callable, normalised

__all__ = ["OFF_LOOP_AT", "Embeddings", "EmbeddingsWithScores"]

OFF_LOOP_AT = 256
"""Corpora this large are checked and scored in a worker thread."""


class Embeddings:
    """The ``k`` passages of ``corpus`` most similar to a query.

    ::

        search = td.retrievers.Embeddings(corpus, td.Embedder("openai/text-embedding-3-small"))
        found = await search("what do cats eat?")
        found.passages, found.indices          # nearest first

    Args:
        corpus: the passages (strings).
        embedder: a :class:`~trio_dspy.Embedder`, or any function from a list
            of texts to one vector per text (sync functions run in a worker thread).
        k: passages per search (all of them when the corpus is smaller).
        normalize: scale every vector to length 1 first, so the score is the
            cosine (DSPy's default); ``False`` scores by the raw dot product.

    Where this differs from DSPy: the corpus is embedded on the first search
    rather than in the constructor (which stays sync and free of I/O);
    search is always exact (no FAISS index for large corpora); ties go to
    the passage earlier in the corpus.

    Raises:
        ValueError: the corpus is empty or ``k`` is below 1.
        TypeError: a passage is not a string, or the embedder is not callable.
    """

    def __init__(
        self,
        corpus: Sequence[str],
        embedder: Callable[[list[str]], Any],
        k: int = 5,
        *,
        normalize: bool = True,
    ) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a whole number of at least 1, got {k!r}")
        if not callable(embedder):
            raise TypeError(
                "the embedder must be a td.Embedder or a function of a list of texts, "
                f"got {type(embedder).__name__}"
            )
        if isinstance(corpus, str):
            raise TypeError("corpus must be a list of passages, not one string")
        passages = list(corpus)
        if not passages:
            raise ValueError("the corpus is empty: give at least one passage")
        for index, passage in enumerate(passages):
            if not isinstance(passage, str):
                raise TypeError(f"passage {index} is {type(passage).__name__}, not a string")
        self.corpus = passages
        self.embedder = embedder
        self.k = k
        self.normalize = normalize
        self._vectors: list[list[float]] | None = None
        self._lock = trio.Lock()

    async def __call__(self, query: str) -> Prediction:
        """The ``k`` passages nearest ``query``: ``Prediction(passages=[...], indices=[...])``.

        Raises:
            TypeError: ``query`` is not a string.
            VectorizerError: the embedder's answer is not one finite vector
                per text, all of one length.
            LMError: a hosted embedder's request failed.
            Exception: whatever an embedding function raised.
        """
        passages, indices, _ = await self._search(query)
        return Prediction(passages=passages, indices=indices)

    forward = __call__

    async def vectors(self) -> list[list[float]]:
        """The corpus's vectors (normalised when ``normalize``), embedding it on the first call.

        Raises:
            VectorizerError: the embedder's answer is unusable.
            Exception: whatever the embedder raised (the next call tries again).
        """
        await entered()
        if self._vectors is not None:
            return self._vectors
        async with self._lock:
            if self._vectors is None:
                result = await self._embed([clean_text(p) for p in self.corpus])
                self._vectors = await self._work(
                    self._prepare, result, len(self.corpus), "the corpus", None
                )
            return self._vectors

    async def _search(self, query: str) -> tuple[list[str], list[int], list[float]]:
        await entered()
        if not isinstance(query, str):
            raise TypeError(f"the query must be a string, got {type(query).__name__}")
        vectors = await self.vectors()
        result = await self._embed([clean_text(query)])
        [vector] = self._prepare(result, 1, "the query", len(vectors[0]))
        ranked = await self._work(_rank, vectors, vector, self.k)
        return [self.corpus[i] for i, _ in ranked], [i for i, _ in ranked], [s for _, s in ranked]

    def _prepare(self, result: Any, count: int, what: str, size: int | None) -> list[list[float]]:
        vectors = checked_vectors(result, count, what, size)
        return [normalised(v) for v in vectors] if self.normalize else vectors

    async def _embed(self, texts: list[str]) -> Any:
        if is_async_callable(self.embedder):
            result = self.embedder(texts)
        else:
            result = await trio.to_thread.run_sync(self.embedder, texts, abandon_on_cancel=True)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def _work(self, function: Callable[..., Any], *args: Any) -> Any:
        if len(self.corpus) >= OFF_LOOP_AT:
            return await trio.to_thread.run_sync(
                functools.partial(function, *args), abandon_on_cancel=True
            )
        return function(*args)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.corpus)} passages, k={self.k})"

    def __deepcopy__(self, memo: dict[int, Any]) -> Embeddings:
        # Shared like a model: copies of a program (optimizers make many) use
        # one corpus embedding instead of each embedding the corpus again.
        return self


class EmbeddingsWithScores(Embeddings):
    """:class:`Embeddings` whose results also carry each passage's ``scores`` (as DSPy's)."""

    async def __call__(self, query: str) -> Prediction:
        """``Prediction(passages=[...], indices=[...], scores=[...])``, nearest first.

        Raises:
            TypeError, VectorizerError, LMError, Exception: as :class:`Embeddings`.
        """
        passages, indices, scores = await self._search(query)
        return Prediction(passages=passages, indices=indices, scores=scores)

    forward = __call__


def _rank(vectors: list[list[float]], query: list[float], k: int) -> list[tuple[int, float]]:
    """The ``k`` (index, score) pairs with the largest dot product with ``query``, ties in order.

    Raises:
        VectorizerError: a score overflows (vectors too large to multiply).
    """
    scores = [dot(vector, query) for vector in vectors]
    for index, score in enumerate(scores):
        if not math.isfinite(score):
            raise VectorizerError(
                f"the similarity of passage {index} to the query is {score}: the vectors' "
                "components are too large to multiply; scale them down (or normalize=True)",
                value=score,
            )
    best = heapq.nsmallest(k, range(len(scores)), key=lambda i: (-scores[i], i))
    return [(i, scores[i]) for i in best]
