"""majority: the most common value of a field, normalised, first occurrence on ties."""

from __future__ import annotations

import enum

import pytest

import trio_dspy as td
from trio_dspy.modules import majority


def preds(*answers: object) -> list[td.Prediction]:
    return [td.Prediction(reasoning=f"r{i}", answer=a) for i, a in enumerate(answers)]


def test_most_common_normalised_answer_wins() -> None:
    candidates = preds("Paris.", "London", "the  PARIS", "Rome", "paris")
    winner = majority(candidates)
    assert winner is candidates[0]  # the first prediction holding the winning value


def test_a_tie_goes_to_the_value_seen_first() -> None:
    candidates = preds("London", "Paris", "paris", "london!")
    assert majority(candidates) is candidates[0]
    assert majority(list(reversed(candidates))) is candidates[3]


def test_default_field_is_the_last_and_another_can_be_named() -> None:
    candidates = [
        td.Prediction(answer="a", confidence=1),
        td.Prediction(answer="b", confidence=2),
        td.Prediction(answer="b", confidence=1),
    ]
    assert majority(candidates) is candidates[0]  # confidence: 1 twice
    assert majority(candidates, field="answer") is candidates[1]


def test_values_that_are_not_text_vote_as_values() -> None:
    class Size(enum.Enum):
        small = "small"
        large = "large"

    sizes = preds(Size.small, Size.large, Size.large)
    assert majority(sizes) is sizes[1]
    lists = preds([1, 2], [3], [3])
    assert majority(lists) is lists[1]


def test_missing_and_empty_values_do_not_vote() -> None:
    candidates = [
        td.Prediction(answer="x"),
        td.Prediction(answer="!!"),
        td.Prediction(answer=None),
        td.Prediction(answer="the"),
        td.Prediction(other="y"),
        td.Prediction(answer="y"),
        td.Prediction(answer="y"),
    ]
    assert majority(candidates, field="answer") is candidates[5]


def test_nothing_to_count_raises() -> None:
    with pytest.raises(ValueError, match="at least one prediction"):
        majority([])
    with pytest.raises(ValueError, match="has no fields"):
        majority([td.Prediction()])
    with pytest.raises(ValueError, match="no prediction has a value for 'answer'"):
        majority(preds("", "  ", "a an the"))
