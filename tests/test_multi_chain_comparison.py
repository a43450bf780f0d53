"""MultiChainComparison: M attempts in, a rationale and the final outputs out."""

from __future__ import annotations

import pytest

import trio_dspy as td
from trio_dspy.modules import MultiChainComparison
from trio_dspy.testing import DummyLM


async def test_formats_each_attempt_and_answers_with_a_rationale() -> None:
    lm = DummyLM([{"rationale": "add them: 4", "answer": "4"}])
    compare = MultiChainComparison("question -> answer", M=3)
    completions = [
        td.Prediction(reasoning="add two and two\nsecond line", answer="4\nignored"),
        {"rationale": "multiply two by two", "answer": "4"},
        {"answer": "5"},
    ]
    with td.context(lm=lm):
        pred = await compare(completions=completions, question="2 + 2?")
    assert (pred.rationale, pred.answer) == ("add them: 4", "4")
    request = lm.requests[0]
    assert request.params["temperature"] == 0.7
    system, user = request.messages[0].content, request.messages[-1].content
    for i in (1, 2, 3):
        assert f"reasoning_attempt_{i}" in system
    assert "reasoning_attempt_4" not in system
    assert "`rationale`" in system
    assert "«I'm trying to add two and two I'm not sure but my prediction is 4»" in user
    assert "«I'm trying to multiply two by two I'm not sure but my prediction is 4»" in user
    assert "«I'm trying to  I'm not sure but my prediction is 5»" in user
    assert "2 + 2?" in user
    # The rationale comes first among the outputs, the signature's after it.
    assert list(compare.predict.signature.output_fields) == ["rationale", "answer"]


async def test_the_answer_shown_is_the_last_output_field() -> None:
    lm = DummyLM([{"rationale": "r", "unit": "m", "value": 3}])
    compare = MultiChainComparison("question -> unit, value: int", M=1, temperature=0.1)
    with td.context(lm=lm):
        pred = await compare(
            completions=[{"reasoning": "r", "unit": "m", "value": 3}], question="q"
        )
    assert pred.value == 3
    assert "my prediction is 3»" in lm.requests[0].messages[-1].content
    assert lm.requests[0].params["temperature"] == 0.1


async def test_wrong_number_of_completions_or_m_is_refused() -> None:
    compare = MultiChainComparison("question -> answer", M=2)
    with pytest.raises(ValueError, match=r"needs 2 completions, got 1"):
        await compare(completions=[{"answer": "a"}], question="q")
    with pytest.raises(ValueError, match="M must be at least 1"):
        MultiChainComparison("question -> answer", M=0)
