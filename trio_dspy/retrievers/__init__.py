"""Retrievers: the passages of a corpus nearest a query, by their embeddings.

``td.retrievers.Embeddings(corpus, embedder, k=5)``: ``await search(query)``
gives a :class:`~trio_dspy.Prediction` with ``passages`` and their ``indices``
in the corpus, nearest first. ``td.KNN(k, trainset, vectorizer)`` gives the
training examples nearest a call's inputs.
"""

from .embeddings import Embeddings, EmbeddingsWithScores
from .knn import KNN

__all__ = ["KNN", "Embeddings", "EmbeddingsWithScores"]
