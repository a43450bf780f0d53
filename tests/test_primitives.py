"""Example, Prediction and Usage as a user handles them."""

from __future__ import annotations

import copy
import pickle

import pytest

import trio_dspy as td


def test_example_is_a_read_only_mapping_with_attributes() -> None:
    ex = td.Example({"question": "2+2?"}, answer="4")
    assert dict(ex) == {"question": "2+2?", "answer": "4"}
    assert ex["answer"] == ex.answer == "4"
    assert "question" in ex and len(ex) == 2
    assert repr(ex) == "Example(question='2+2?', answer='4')"
    with pytest.raises(AttributeError, match=r"no field 'nope'; fields: question, answer"):
        ex.nope  # noqa: B018


def test_setting_an_attribute_sets_a_field() -> None:
    ex = td.Example(question="q")
    ex.answer = "a"
    assert ex.to_dict() == {"question": "q", "answer": "a"}


def test_examples_compare_by_fields_and_are_not_hashable() -> None:
    ex = td.Example(a=1)
    assert ex == td.Example(a=1)
    assert ex == {"a": 1}
    assert ex != td.Example(a=2)
    assert ex != [("a", 1)]
    with pytest.raises(TypeError):
        hash(ex)


def test_with_inputs_splits_inputs_from_labels() -> None:
    ex = td.Example(question="q", context="c", answer="a").with_inputs("question", "context")
    assert dict(ex.inputs()) == {"question": "q", "context": "c"}
    assert dict(ex.labels()) == {"answer": "a"}
    # Copies keep which keys are inputs; a copy of a copy too.
    assert dict(td.Example(ex).inputs()) == {"question": "q", "context": "c"}
    changed = ex.copy(answer="b")
    assert changed.answer == "b" and dict(changed.inputs()) == dict(ex.inputs())
    assert dict(ex.without("context")) == {"question": "q", "answer": "a"}


def test_with_inputs_names_missing_fields_and_inputs_needs_it() -> None:
    ex = td.Example(question="q")
    with pytest.raises(KeyError, match="no field"):
        ex.with_inputs("question", "answer")
    with pytest.raises(ValueError, match="with_inputs"):
        ex.inputs()
    assert dict(ex.labels()) == {"question": "q"}


def test_examples_and_predictions_pickle_and_copy() -> None:
    ex = td.Example(question="q", answer="a").with_inputs("question")
    back = pickle.loads(pickle.dumps(ex))
    assert back == ex and dict(back.inputs()) == {"question": "q"}

    pred = td.Prediction.from_completions({"answer": "a"}, td.Usage(3, 2, 5))
    again = pickle.loads(pickle.dumps(pred))
    assert again == pred and again.usage == td.Usage(3, 2, 5)
    assert copy.deepcopy(pred).usage == td.Usage(3, 2, 5)
    assert td.Prediction.from_completions({"answer": "a"}).usage == td.Usage()


def test_a_prediction_s_usage_is_not_a_field() -> None:
    pred = td.Prediction(answer="a")
    pred.usage = td.Usage(1, 1, 2)
    assert pred.usage == td.Usage(1, 1, 2)
    assert dict(pred) == {"answer": "a"}


def test_usage_adds_up() -> None:
    a, b = td.Usage(1, 2, 3), td.Usage(10, 20, 30)
    assert a + b == td.Usage(11, 22, 33)
    assert td.Usage.sum([a, b, a]) == td.Usage(12, 24, 36)
    assert td.Usage.sum([]) == td.Usage()
    a.add(b)
    assert a == td.Usage(11, 22, 33)


async def test_track_usage_counts_model_calls_but_not_cache_hits() -> None:
    from trio_dspy.testing import DummyLM

    lm = DummyLM([{"a": "1"}, {"a": "2"}])
    with td.context(lm=lm), td.track_usage() as usage:
        await td.Predict("q -> a")(q="x")
        await td.Predict("q -> a")(q="y")
    assert usage.requests == 2
    assert td.Usage(1, 1, 2, 1) + td.Usage(1, 1, 2, 2) == td.Usage(2, 2, 4, 3)


def test_a_prediction_from_completions_holds_what_it_was_given() -> None:
    fields = {"answer": "2"}
    pred = td.Prediction.from_completions(fields)
    fields["answer"] = "changed later"  # the prediction keeps its own copy
    assert pred.answer == "2" and pred.to_dict() == {"answer": "2"}
    assert pred.usage == td.Usage() and pred.usage is not td.Prediction.from_completions({}).usage
    assert len(pred.completions) == 1 and pred.completions.answer == ["2"]
    several = td.Prediction.from_completions({"a": 1}, td.Usage(1, 2, 3), [{"a": 1}, {"a": 2}])
    assert several.usage == td.Usage(1, 2, 3) and several.completions.a == [1, 2]

    class Mine(td.Prediction):
        pass

    mine = Mine.from_completions({"a": 1}, td.Usage(1, 2, 3), [{"a": 1}, {"a": 2}])
    assert type(mine) is Mine and str(mine) == str(several)
