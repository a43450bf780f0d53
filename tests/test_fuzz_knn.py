"""Fuzzing: whatever a vectorizer returns, a KNNFewShot call answers or raises VectorizerError."""

from __future__ import annotations

import json
from typing import Any

import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

import trio_dspy as td
from trio_dspy.optimizers import VectorizerError
from trio_dspy.testing import DummyLM

from .hostile import fuzz_settings, hostile_values

TRAIN = [td.Example(question=f"q{i}", answer="a").with_inputs("question") for i in range(3)]

# Vectors that are nearly right: the right count and length, with hostile numbers inside.
_components = st.floats() | st.integers() | st.booleans() | st.none() | st.text(max_size=3)
_vectors = st.lists(st.lists(_components, min_size=1, max_size=3), min_size=1, max_size=4)


def _decoded(raw: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # too many digits, too deep: the text itself
        return raw


@fuzz_settings(60)
@given(trainset_answer=hostile_values | _vectors.map(json.dumps), query_answer=_vectors)
def test_no_vectorizer_answer_escapes_as_anything_but_a_vectorizer_error(
    trainset_answer: str, query_answer: list[list[Any]]
) -> None:
    answers = [_decoded(trainset_answer), query_answer]

    async def vectorizer(texts: list[str]) -> Any:
        await trio.sleep(0.1)
        return answers.pop(0)

    async def main() -> Any:
        lm = DummyLM(lambda request: {"answer": "x"}, latency=0.1)
        program = await td.KNNFewShot(2, TRAIN, vectorizer).compile(
            td.Predict("question -> answer")
        )
        with trio.fail_after(10), td.context(lm=lm):
            try:
                return await program(question="q")
            except VectorizerError as exc:
                return exc

    outcome = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert isinstance(outcome, td.Prediction | VectorizerError)
