"""KNNFewShot: demos bootstrapped per call from the nearest training examples.

The vectorizer is a fake with hand-made vectors, so which examples are
nearest is known; the model is a DummyLM answering every question, so the
demos that reach the final request show which neighbours were chosen.
"""

from __future__ import annotations

import math
import re
import threading
from typing import Any

import pytest
import trio

import trio_dspy as td
from trio_dspy.errors import TrioDSPyError
from trio_dspy.messages import LMRequest
from trio_dspy.optimizers import VectorizerError, neighbours
from trio_dspy.optimizers.neighbours import OFF_LOOP_AT
from trio_dspy.testing import DummyLM, SimConfig, serve_sim

QA = "question -> answer"

# Training questions and their vectors: q0..q5 along two axes.
VECTORS: dict[str, list[float]] = {
    "question: q0": [1.0, 0.0],
    "question: q1": [0.9, 0.1],
    "question: q2": [0.0, 1.0],
    "question: q3": [0.1, 0.9],
    "question: q4": [0.7, 0.7],
    "question: q5": [-1.0, 0.0],
    # Queries.
    "question: near x": [1.0, 0.05],  # q0 first, then q1
    "question: near y": [0.05, 1.0],  # q2 first, then q3
    "question: middle": [0.6, 0.6],  # q4 first
}


def trainset(n: int = 6) -> list[td.Example]:
    return [td.Example(question=f"q{i}", answer=f"a{i}").with_inputs("question") for i in range(n)]


class Vectors:
    """An async vectorizer from the table above, counting its calls."""

    def __init__(self, table: dict[str, Any] | None = None) -> None:
        self.table = VECTORS if table is None else table
        self.calls: list[list[str]] = []

    async def __call__(self, texts: list[str]) -> list[Any]:
        self.calls.append(list(texts))
        await trio.lowlevel.checkpoint()
        return [self.table[t] for t in texts]


def answering(latency: float = 0.0) -> DummyLM:
    """Answers ``question`` with ``answer: <question>!``."""

    def answer(request: LMRequest) -> dict[str, str]:
        asked = re.findall(r"\[\[ ## question ## \]\]\s*(.+)", request.messages[-1].text)
        return {"answer": f"{asked[-1].strip()}!"}

    return DummyLM(answer, latency=latency)


def demo_questions(request: LMRequest) -> list[str]:
    """The demos' questions in a request: every question before the last message's."""
    found: list[str] = []
    for message in request.messages[:-1]:
        if message.role == "system":
            continue  # it describes the format: "[[ ## question ## ]] {question}"
        found += [q.strip() for q in re.findall(r"\[\[ ## question ## \]\]\s*(\S+)", message.text)]
    return found


def asked(request: LMRequest) -> str:
    found: list[str] = re.findall(r"\[\[ ## question ## \]\]\s*(.+)", request.messages[-1].text)
    return found[-1].strip()


async def test_knn_demos_come_from_the_nearest_training_examples(
    autojump_clock: trio.abc.Clock,
) -> None:
    lm = answering()
    knn = td.KNNFewShot(2, trainset(), Vectors())
    program = await knn.compile(td.Predict(QA))
    with td.context(lm=lm):
        near_x = await program(question="near x")
        final_x = lm.requests[-1]
        await program(question="near y")
        final_y = lm.requests[-1]
    assert near_x.answer == "near x!"
    assert asked(final_x) == "near x"
    assert demo_questions(final_x) == ["q0", "q1"]  # nearest first
    assert demo_questions(final_y) == ["q2", "q3"]
    # The teacher ran on exactly the neighbours (metric None: every run passes).
    teacher_runs = sorted(asked(r) for r in lm.requests if asked(r) not in {"near x", "near y"})
    assert teacher_runs == ["q0", "q1", "q2", "q3"]


async def test_knn_compiled_program_keeps_its_own_predictors_empty(
    autojump_clock: trio.abc.Clock,
) -> None:
    student = td.Predict(QA)
    student.demos = [td.Example(question="old", answer="old")]
    program = await td.KNNFewShot(2, trainset(), Vectors()).compile(student)
    with td.context(lm=answering()):
        await program(question="middle")
    assert program.demos == [] and len(student.demos) == 1
    assert type(program) is td.Predict


async def test_knn_embeds_the_trainset_once_however_many_calls(
    autojump_clock: trio.abc.Clock,
) -> None:
    vectors = Vectors()
    knn = td.KNNFewShot(2, trainset(), vectors)
    assert vectors.calls == []  # construction embeds nothing
    first = await knn.compile(td.Predict(QA))
    second = await knn.compile(td.Predict(QA))
    assert vectors.calls == []  # neither does compiling
    assert knn.stats == td.optimizers.OptimizerStats()
    questions = ["near x", "near y", "middle", "near x", "near y"]
    with td.context(lm=answering(latency=1.0)):
        # The first calls are concurrent: they share one embedding of the trainset.
        await first.batch([{"question": q} for q in questions])
        await second(question="middle")
    trainset_calls = [c for c in vectors.calls if len(c) > 1]
    assert trainset_calls == [[f"question: q{i}" for i in range(6)]]
    assert len(vectors.calls) == 1 + len(questions) + 1  # then one text per call


def test_knn_sync_vectorizer_runs_in_a_worker_thread() -> None:
    threads: list[int] = []

    def vectorize(texts: list[str]) -> list[list[float]]:
        threads.append(threading.get_ident())
        return [VECTORS[t] for t in texts]

    async def main() -> td.Prediction:
        program = await td.KNNFewShot(1, trainset(), vectorize).compile(td.Predict(QA))
        lm = answering()
        with td.context(lm=lm):
            prediction = await program(question="near y")
        assert demo_questions(lm.requests[-1]) == ["q2"]
        return prediction

    assert trio.run(main).answer == "near y!"
    assert len(threads) == 2 and threading.get_ident() not in threads


async def test_knn_ties_go_to_the_earlier_training_example(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Every training example is equally near: DSPy's argsort leaves the order open.
    same = {f"question: q{i}": [1.0, 1.0] for i in range(6)} | {"question: middle": [0.5, 0.5]}
    lm = answering()
    program = await td.KNNFewShot(3, trainset(), Vectors(same)).compile(td.Predict(QA))
    with td.context(lm=lm):
        await program(question="middle")
    assert demo_questions(lm.requests[-1]) == ["q0", "q1", "q2"]


async def test_knn_dot_product_favours_long_vectors_cosine_does_not(
    autojump_clock: trio.abc.Clock,
) -> None:
    table = {
        "question: q0": [1.0, 0.0],  # same direction as the query
        "question: q1": [3.0, 3.0],  # long, 45 degrees off
        "question: query": [2.0, 0.0],
    }
    chosen = {}
    for similarity in ("dot", "cosine"):
        lm = answering()
        knn = td.KNNFewShot(1, trainset(2), Vectors(table), similarity=similarity)
        program = await knn.compile(td.Predict(QA))
        with td.context(lm=lm):
            await program(question="query")
        chosen[similarity] = demo_questions(lm.requests[-1])
    assert chosen == {"dot": ["q1"], "cosine": ["q0"]}


async def test_knn_reuses_the_bootstrap_of_a_repeated_neighbour_set(
    autojump_clock: trio.abc.Clock,
) -> None:
    lm = answering()
    program = await td.KNNFewShot(2, trainset(), Vectors()).compile(td.Predict(QA))
    with td.context(lm=lm):
        await program(question="near x")
        after_first = len(lm.requests)
        await program(question="near x")
    assert after_first == 3  # two teacher runs, then the answer
    assert len(lm.requests) == 4  # the repeat only answers
    assert demo_questions(lm.requests[-1]) == ["q0", "q1"]


async def test_knn_without_a_cache_bootstraps_every_call_as_dspy_does(
    autojump_clock: trio.abc.Clock,
) -> None:
    lm = answering()
    knn = td.KNNFewShot(2, trainset(), Vectors(), cache_size=0)
    program = await knn.compile(td.Predict(QA))
    with td.context(lm=lm):
        await program(question="near x")
        await program(question="near x")
    assert len(lm.requests) == 6


async def test_knn_concurrent_calls_with_the_same_neighbours_share_one_bootstrap(
    autojump_clock: trio.abc.Clock,
) -> None:
    lm = answering(latency=1.0)
    program = await td.KNNFewShot(2, trainset(), Vectors()).compile(td.Predict(QA))
    with td.context(lm=lm):
        await program.batch([{"question": "near x"}] * 4)
    assert sorted(asked(r) for r in lm.requests) == ["near x"] * 4 + ["q0", "q1"]


async def test_knn_does_not_serve_one_models_demos_to_another(
    autojump_clock: trio.abc.Clock,
) -> None:
    first, second = answering(), answering()
    program = await td.KNNFewShot(2, trainset(), Vectors()).compile(td.Predict(QA))
    with td.context(lm=first):
        await program(question="near x")
    with td.context(lm=second):
        await program(question="near x")
    assert len(first.requests) == 3 and len(second.requests) == 3


async def test_knn_teacher_runs_of_one_call_are_concurrent(
    autojump_clock: trio.abc.Clock,
) -> None:
    program = await td.KNNFewShot(3, trainset(), Vectors()).compile(td.Predict(QA))
    start = trio.current_time()
    with td.context(lm=answering(latency=1.0)):
        await program(question="middle")
    # Three teacher runs at once, then the answer: two latencies, not four.
    assert trio.current_time() - start == pytest.approx(2.0)


async def test_knn_a_cancelled_bootstrap_is_not_cached(autojump_clock: trio.abc.Clock) -> None:
    lm = answering(latency=1.0)
    program = await td.KNNFewShot(2, trainset(), Vectors()).compile(td.Predict(QA))
    with td.context(lm=lm):
        with trio.move_on_after(0.5) as scope:
            await program(question="near x")
        assert scope.cancelled_caught
        prediction = await program(question="near x")
    assert prediction.answer == "near x!"
    assert demo_questions(lm.requests[-1]) == ["q0", "q1"]


async def test_knn_passes_its_bootstrap_arguments_on(autojump_clock: trio.abc.Clock) -> None:
    def only_q1(example: td.Example, prediction: Any, trace: Any = None) -> bool:
        return bool(example.question == "q1")

    lm = answering()
    knn = td.KNNFewShot(3, trainset(), Vectors(), metric=only_q1, max_labeled_demos=0)
    program = await knn.compile(td.Predict(QA))
    with td.context(lm=lm):
        await program(question="near x")
    assert demo_questions(lm.requests[-1]) == ["q1"]


async def test_knn_compile_trainset_replaces_the_constructors(
    autojump_clock: trio.abc.Clock,
) -> None:
    vectors = Vectors()
    knn = td.KNNFewShot(1, trainset(), vectors)
    lm = answering()
    program = await knn.compile(td.Predict(QA), trainset=trainset()[2:4])
    with td.context(lm=lm):
        await program(question="near x")  # q0 and q1 are not in this trainset
    assert demo_questions(lm.requests[-1]) == ["q3"]
    assert vectors.calls[0] == ["question: q2", "question: q3"]


async def test_knn_refuses_bad_arguments_before_any_call() -> None:
    with pytest.raises(ValueError, match="k must be"):
        td.KNNFewShot(0, trainset(), Vectors())
    with pytest.raises(TrioDSPyError, match="with_inputs"):
        td.KNNFewShot(2, [td.Example(question="q", answer="a")], Vectors())
    with pytest.raises(TrioDSPyError, match="empty"):
        td.KNNFewShot(2, [], Vectors())
    with pytest.raises(TypeError):
        td.KNNFewShot(2, trainset(), Vectors(), max_bootstraped_demos=2)
    with pytest.raises(TypeError, match="vectorizer"):
        td.KNNFewShot(2, trainset(), [[1.0]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="similarity"):
        td.KNNFewShot(2, trainset(), Vectors(), similarity="euclid")  # type: ignore[arg-type]
    knn = td.KNNFewShot(2, trainset(), Vectors())
    with pytest.raises(TrioDSPyError, match="same predictors"):
        await knn.compile(td.Predict(QA), teacher=td.Module())


BAD_OUTPUTS: list[tuple[str, Any, str]] = [
    ("too few vectors", lambda texts: [[1.0, 0.0]] * (len(texts) - 1), r"4 vector\(s\) for the 5"),
    ("not a list", lambda texts: 3.0, "float for the trainset"),
    ("a string component", lambda texts: [[1.0, "0.5"]] * len(texts), "component 1"),
    ("a bool component", lambda texts: [[True, 0.0]] * len(texts), "bool"),
    ("NaN", lambda texts: [[1.0, math.nan]] * len(texts), "finite"),
    ("infinity", lambda texts: [[math.inf, 0.0]] * len(texts), "finite"),
    ("uneven lengths", lambda texts: [[1.0, 0.0]] + [[1.0]] * (len(texts) - 1), "same length"),
    ("empty vectors", lambda texts: [[]] * len(texts), "empty"),
    ("a number for a vector", lambda texts: [1.0] * len(texts), "not a vector"),
    (
        "a query of another length",
        lambda texts: [[1.0, 0.0]] * len(texts) if len(texts) > 1 else [[1.0]],
        "the trainset's vectors have 2",
    ),
]


@pytest.mark.parametrize(
    ("case", "vectorize", "message"), BAD_OUTPUTS, ids=[c[0] for c in BAD_OUTPUTS]
)
async def test_knn_unusable_vectorizer_output_is_a_clear_typed_error(
    case: str, vectorize: Any, message: str
) -> None:
    async def vectorizer(texts: list[str]) -> Any:
        return vectorize(texts)

    program = await td.KNNFewShot(2, trainset(5), vectorizer).compile(td.Predict(QA))
    lm = answering()
    with td.context(lm=lm), pytest.raises(VectorizerError, match=message) as info:
        await program(question="x")
    assert isinstance(info.value, ValueError)
    assert lm.requests == []  # nothing was asked of the model


async def test_knn_tries_the_trainset_embedding_again_after_a_failure(
    autojump_clock: trio.abc.Clock,
) -> None:
    failures = [RuntimeError("embedding server down")]

    async def flaky(texts: list[str]) -> list[list[float]]:
        if failures:
            raise failures.pop()
        return [VECTORS[t] for t in texts]

    program = await td.KNNFewShot(1, trainset(), flaky).compile(td.Predict(QA))
    with td.context(lm=answering()):
        with pytest.raises(RuntimeError, match="down"):
            await program(question="near y")
        assert (await program(question="near y")).answer == "near y!"


async def test_knn_over_loopback_puts_the_neighbours_in_the_prompt(
    autojump_clock: trio.abc.Clock,
) -> None:
    program = await td.KNNFewShot(2, trainset(), Vectors()).compile(td.Predict(QA))
    async with serve_sim(SimConfig(seed=1, latency=0.5)) as sim:
        async with td.LM("openai/sim-model", base_url=sim.base_url, api_key="k") as http:
            with td.context(lm=http):
                await program(question="near y")
        bodies = list(sim.requests)
    assert len(bodies) == 3  # two teacher runs at once, then the answer
    final = bodies[-1]["messages"]
    assert "near y" in final[-1]["content"]
    prompt = " ".join(str(m["content"]) for m in final[:-1])
    assert "q2" in prompt and "q3" in prompt and "q0" not in prompt


def test_knn_large_trainsets_are_scored_off_the_event_loop() -> None:
    size = OFF_LOOP_AT + 10
    table: dict[str, Any] = {f"question: q{i}": [1.0, i / size] for i in range(size)}
    table["question: high"] = [0.0, 1.0]
    table["question: low"] = [1.0, 0.0]  # every example scores 1.0: a tie
    threads: list[int] = []

    async def main() -> list[list[str]]:
        vectors = Vectors(table)
        program = await td.KNNFewShot(2, trainset(size), vectors).compile(td.Predict(QA))
        lm = answering()
        asked = []
        with td.context(lm=lm):
            for question in ("high", "low"):
                await program(question=question)
                asked.append(demo_questions(lm.requests[-1]))
        return asked

    original = neighbours._rank

    def ranking(*args: Any) -> list[int]:
        threads.append(threading.get_ident())
        return original(*args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(neighbours, "_rank", ranking)
        assert trio.run(main) == [[f"q{size - 1}", f"q{size - 2}"], ["q0", "q1"]]
    assert len(threads) == 2 and threading.get_ident() not in threads
