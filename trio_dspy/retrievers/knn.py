"""``KNN``: the training examples nearest a call's inputs, as DSPy's ``dspy.KNN``.

The search is :class:`~trio_dspy.KNNFewShot`'s: the same text per example
(``"key: value | ..."`` over its inputs), embedded once on first use, and the
same ranking (DSPy's raw dot product, ties to the earlier example).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..checkpoint import entered
from ..optimizers.base import check_trainset
from ..optimizers.neighbours import Index, Similarity, Vectorizer
from ..primitives import Example

__all__ = ["KNN"]


class KNN:
    """The ``k`` training examples most similar to a call's inputs.

    ::

        knn = td.KNN(3, trainset, td.Embedder("openai/text-embedding-3-small"))
        examples = await knn(question="...")      # nearest first

    Args:
        k: examples per call (all the trainset when it is smaller).
        trainset: examples marking their inputs (``.with_inputs(...)``).
        vectorizer: a :class:`~trio_dspy.Embedder`, or any function from a list
            of texts to one vector per text (sync functions run in a worker thread).
        similarity: ``"dot"`` (DSPy's raw dot product) or ``"cosine"``.

    The trainset is embedded on the first call (DSPy embeds it in the
    constructor), in one call of the vectorizer.

    Raises:
        ValueError: ``k`` is below 1, or ``similarity`` is unknown.
        TypeError: the vectorizer is not callable.
        TrioDSPyError: the trainset is empty or does not mark inputs.
    """

    def __init__(
        self,
        k: int,
        trainset: Sequence[Example],
        vectorizer: Vectorizer,
        *,
        similarity: Similarity = "dot",
    ) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a whole number of at least 1, got {k!r}")
        self.k = k
        self.trainset = check_trainset(trainset)
        self.index = Index(self.trainset, vectorizer, similarity)

    async def __call__(self, **inputs: Any) -> list[Example]:
        """The ``k`` training examples nearest ``inputs``, nearest first.

        The text embedded for the call is ``"key: value | ..."`` over
        ``inputs`` in the order given (give them in the examples' order).

        Raises:
            VectorizerError: the vectorizer's answer is unusable.
            LMError: a hosted embedder's request failed.
            Exception: whatever the vectorizer raised.
        """
        await entered()
        return [self.trainset[i] for i in await self.index.nearest(inputs, self.k)]

    def __repr__(self) -> str:
        return f"KNN(k={self.k}, {len(self.trainset)} examples)"

    def __deepcopy__(self, memo: dict[int, Any]) -> KNN:
        # Shared like a model: copies of a program (optimizers make many) use
        # one trainset embedding instead of each embedding the trainset again.
        return self
