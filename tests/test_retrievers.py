"""td.retrievers.Embeddings and td.KNN: nearest passages and examples by their embeddings."""

from __future__ import annotations

import math
from typing import Any

import pytest
import trio

import trio_dspy as td
from trio_dspy.errors import TrioDSPyError
from trio_dspy.testing import serve_sim
from trio_dspy.vectors import VectorizerError

CORPUS = [
    "the stock market fell sharply today",
    "cats like to eat fish",
    "dogs chase cats in the garden",
    "a recipe for grilled fish with lemon",
    "cats sleep most of the day",
]


async def test_the_passages_sharing_the_most_words_with_the_query_come_first() -> None:
    async with serve_sim() as sim:
        embedder = td.Embedder("openai/emb", base_url=sim.base_url, api_key="x")
        search = td.retrievers.Embeddings(CORPUS, embedder, k=2)
        found = await search("grilled fish with lemon for cats")
        other = await search.forward("market today")
    assert isinstance(found, td.Prediction)
    # Four words shared, then two (cats, fish), then one (cats) for 2 and 4.
    assert found.indices == [3, 1] and found.passages == [CORPUS[3], CORPUS[1]]
    assert other.indices[0] == 0
    # The corpus once, then one request per query.
    assert [len(r["input"]) for r in sim.requests] == [5, 1, 1]


async def test_concurrent_first_searches_embed_the_corpus_once() -> None:
    calls: list[int] = []

    async def embed(texts: list[str]) -> list[list[float]]:
        calls.append(len(texts))
        await trio.lowlevel.checkpoint()
        return [[float("cats" in t), 1.0] for t in texts]

    search = td.retrievers.Embeddings(CORPUS, embed, k=1)
    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(search, "cats")
    assert calls.count(len(CORPUS)) == 1 and calls.count(1) == 5


async def test_k_larger_than_the_corpus_returns_every_passage_and_ties_keep_corpus_order() -> None:
    search = td.retrievers.Embeddings(CORPUS, lambda texts: [[1.0]] * len(texts), k=10)
    found = await search("anything")
    assert found.indices == [0, 1, 2, 3, 4] and found.passages == CORPUS


async def test_normalize_scores_by_cosine_and_without_it_by_the_raw_dot_product() -> None:
    vectors = {"long": [10.0, 10.0], "aligned": [1.0, 0.0], "q": [1.0, 0.0]}

    def embed(texts: list[str]) -> list[list[float]]:
        return [vectors[t] for t in texts]

    cosine = td.retrievers.Embeddings(["long", "aligned"], embed, k=1)
    raw = td.retrievers.Embeddings(["long", "aligned"], embed, k=1, normalize=False)
    assert (await cosine("q")).passages == ["aligned"]
    assert (await raw("q")).passages == ["long"]


async def test_scores_come_with_the_passages_nearest_first() -> None:
    async with serve_sim() as sim:
        embedder = td.Embedder("openai/emb", base_url=sim.base_url, api_key="x")
        search = td.retrievers.EmbeddingsWithScores(CORPUS, embedder, k=3)
        found = await search("cats like to eat fish")
    assert found.indices[0] == 1 and math.isclose(found.scores[0], 1.0)
    assert found.scores == sorted(found.scores, reverse=True)


async def test_a_bad_embedder_answer_is_refused_and_a_failed_corpus_is_embedded_again() -> None:
    answers: list[Any] = [[[1.0]] * 4, [[1.0]] * 5, [[math.nan]]]

    def embed(texts: list[str]) -> Any:
        return answers.pop(0)

    search = td.retrievers.Embeddings(CORPUS, embed)
    with pytest.raises(VectorizerError, match="4 vector"):
        await search("q")
    with pytest.raises(VectorizerError, match="finite"):
        await search("q")  # the corpus is embedded again, then the query is refused
    assert answers == []


def test_a_wrong_corpus_or_k_is_refused() -> None:
    embed = td.Embedder(lambda texts: texts)
    with pytest.raises(ValueError, match="empty"):
        td.retrievers.Embeddings([], embed)
    with pytest.raises(TypeError, match="passage 1"):
        td.retrievers.Embeddings(["a", 2], embed)  # type: ignore[list-item]
    with pytest.raises(TypeError, match="not one string"):
        td.retrievers.Embeddings("abc", embed)
    with pytest.raises(ValueError, match="k must"):
        td.retrievers.Embeddings(["a"], embed, k=0)
    with pytest.raises(TypeError, match="embedder"):
        td.retrievers.Embeddings(["a"], "openai/emb")  # type: ignore[arg-type]


async def test_a_query_that_is_not_a_string_is_refused() -> None:
    search = td.retrievers.Embeddings(["a"], lambda texts: [[1.0]] * len(texts))
    with pytest.raises(TypeError, match="query"):
        await search(["a"])  # type: ignore[arg-type]


async def test_a_large_corpus_is_scored_off_the_event_loop() -> None:
    corpus = [f"passage {i} about {'cats' if i == 300 else 'dogs'}" for i in range(400)]

    def embed(texts: list[str]) -> list[list[float]]:
        return [[float("cats" in t), float("dogs" in t), 0.1] for t in texts]

    found = await td.retrievers.Embeddings(corpus, embed, k=1)("cats")
    assert found.indices == [300]


# ------------------------------------------------------------------ KNN
TRAIN = [
    td.Example(question="what do cats eat", answer="fish").with_inputs("question"),
    td.Example(question="when did the market fall", answer="today").with_inputs("question"),
    td.Example(question="do dogs chase cats", answer="yes").with_inputs("question"),
]


async def test_knn_returns_the_nearest_training_examples() -> None:
    async with serve_sim() as sim:
        embedder = td.Embedder("openai/emb", base_url=sim.base_url, api_key="x")
        knn = td.KNN(2, TRAIN, embedder)
        nearest = await knn(question="what do cats like to eat")
        market = await knn(question="the market")
    assert nearest == [TRAIN[0], TRAIN[2]]
    assert market[0] is TRAIN[1]
    assert sim.requests[0]["input"][0] == "question: what do cats eat"


async def test_knn_with_k_above_the_trainset_returns_every_example() -> None:
    knn = td.KNN(5, TRAIN, lambda texts: [[float(len(t))] for t in texts])
    assert len(await knn(question="x")) == 3


def test_knn_refuses_a_trainset_without_inputs() -> None:
    with pytest.raises(TrioDSPyError, match="with_inputs"):
        td.KNN(1, [td.Example(question="q")], lambda texts: texts)
    with pytest.raises(ValueError, match="k must"):
        td.KNN(0, TRAIN, lambda texts: texts)


async def test_copies_of_a_program_share_one_embedding_of_the_corpus_and_trainset() -> None:
    calls: list[int] = []

    def embed(texts: list[str]) -> list[list[float]]:
        calls.append(len(texts))
        return [[1.0]] * len(texts)

    class RAG(td.Module):
        def __init__(self) -> None:
            super().__init__()
            self.search = td.retrievers.Embeddings(CORPUS, td.Embedder(embed), k=1)
            self.knn = td.KNN(1, TRAIN, embed)

        async def forward(self, question: str) -> td.Prediction:
            found = await self.search(question)
            return td.Prediction(passages=found.passages, demos=await self.knn(question=question))

    program = RAG()
    copies = [program.deepcopy(), program.reset_copy(), program.deepcopy().deepcopy()]
    for copy in [program, *copies]:
        await copy(question="q")
    assert calls.count(len(CORPUS)) == 1 and calls.count(len(TRAIN)) == 1


async def test_vectors_with_huge_components_still_normalise_to_their_direction() -> None:
    vectors = {"huge": [1e200, 1e200], "tiny": [1e-200, 0.0], "q": [1.0, 1.0]}
    search = td.retrievers.EmbeddingsWithScores(
        ["tiny", "huge"], lambda texts: [vectors[t] for t in texts], k=2
    )
    found = await search("q")
    assert found.passages == ["huge", "tiny"]
    assert math.isclose(found.scores[0], 1.0) and math.isclose(found.scores[1], math.sqrt(0.5))
