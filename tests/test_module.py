from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import trio

import trio_dspy as td
from trio_dspy.errors import TrioDSPyError
from trio_dspy.modules.module import Predictor
from trio_dspy.testing import DummyLM

from .story import HandleCustomer, Mood, Refund


class Triage(td.Module):
    def __init__(self) -> None:
        self.classify = td.Predict("request -> category")
        self.handlers = {"drinks": td.ChainOfThought(HandleCustomer)}
        self.steps = [td.Predict("category -> reply")]

    async def forward(self, **inputs: Any) -> td.Prediction:
        category = (await self.classify(request=inputs["request"])).category
        return await self.steps[0](category=category)


def test_named_predictors_walks_attributes_lists_and_dicts() -> None:
    names = [n for n, _ in Triage().named_predictors()]
    assert names == ["classify", "handlers['drinks'].predict", "steps[0]"]
    predict = td.Predict("a -> b")
    assert predict.named_predictors() == [("self", predict)]


class Counter(td.Module):
    """A predictor of its own kind: it learns a number, and is no Predict."""

    def __init__(self) -> None:
        self.signature: type[td.Signature] = td.make_signature("q -> a")
        self.demos: list[Mapping[str, Any]] = []
        self.lm: td.BaseLM | None = None
        self.count = 0

    def reset(self) -> None:
        self.count = 0

    def dump_predictor_state(self) -> dict[str, Any]:
        return {"count": self.count}

    def parse_predictor_state(self, state: Any) -> int:
        if not isinstance(state, dict) or not isinstance(state.get("count"), int):
            raise TrioDSPyError(f"bad counter state {state!r}")
        return int(state["count"])

    def apply_predictor_state(self, parsed: Any) -> None:
        self.count = int(parsed)


class Program(td.Module):
    def __init__(self) -> None:
        self.counter = Counter()
        self.answer = td.Predict("q -> a")


def test_predictors_are_found_by_the_predictor_protocol(tmp_path: Path) -> None:
    program = Program()
    assert [n for n, _ in program.named_predictors()] == ["counter", "answer"]
    assert isinstance(program.counter, Predictor) and isinstance(program.answer, Predictor)
    assert not isinstance(td.ReAct("q -> a", tools=[]), Predictor)
    program.counter.count = 3
    program.save(tmp_path / "p.json")
    again = Program()
    again.load(tmp_path / "p.json")
    assert again.counter.count == 3


def test_shared_predictor_is_reported_once() -> None:
    t = Triage()
    t.alias = t.classify  # type: ignore[attr-defined]
    assert [n for n, _ in t.named_predictors()].count("alias") == 0


async def test_module_call_runs_forward() -> None:
    lm = DummyLM([{"category": "drinks"}, {"reply": "coming up"}])
    with td.context(lm=lm):
        pred = await Triage()(request="latte")
    assert pred.reply == "coming up"


def _demo() -> td.Example:
    return td.Example(
        request="refund order 9",
        mood=Mood.upset,
        reasoning="bad",
        action=Refund("9", 2.0),
        confidence=0.7,
    )


def test_save_and_load_round_trip_demos_and_instructions(tmp_path: Path) -> None:
    source = Triage()
    handler = source.handlers["drinks"]
    handler.demos = [_demo()]
    handler.signature = handler.signature.with_instructions("Be kind to upset customers.")
    path = tmp_path / "triage.json"
    source.save(path)
    saved = json.loads(path.read_text())
    assert saved["format"] == "trio_dspy.module/1"
    assert (
        saved["predictors"]["handlers['drinks'].predict"]["demos"][0]["action"]["_type"] == "Refund"
    )

    target = Triage()
    target.load(path)
    loaded = target.handlers["drinks"]
    assert loaded.signature.instructions == "Be kind to upset customers."
    assert list(loaded.signature.output_fields) == ["reasoning", "action", "confidence"]
    assert loaded.demos == [_demo()]
    assert loaded.demos[0]["action"] == Refund("9", 2.0)  # typed again, not a dict
    assert loaded.demos[0]["mood"] is Mood.upset


def test_load_of_mismatched_state_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    td.Predict("a -> b").save(path)
    target = Triage()
    target.classify.demos = [td.Example(request="x", category="y")]
    with pytest.raises(TrioDSPyError, match="missing predictor.*classify.*unknown predictor.*self"):
        target.load(path)
    assert target.classify.demos == [td.Example(request="x", category="y")]


def test_load_rejects_bad_demo_values_without_partial_update(tmp_path: Path) -> None:
    source = Triage()
    source.classify.demos = [td.Example(request="a", category="b")]
    source.handlers["drinks"].demos = [_demo()]
    path = tmp_path / "m.json"
    source.save(path)
    data = json.loads(path.read_text())
    data["predictors"]["handlers['drinks'].predict"]["demos"][0]["mood"] = "furious"
    path.write_text(json.dumps(data))
    target = Triage()
    with pytest.raises(
        TrioDSPyError,
        match=r"handlers\['drinks'\]\.predict\.demos\[0\]\.mood: 'furious' is not one of",
    ):
        target.load(path)
    assert target.classify.demos == []


def test_load_rejects_files_that_are_not_saved_modules(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"hello": 1}')
    with pytest.raises(TrioDSPyError, match="not a saved trio_dspy module"):
        td.Predict("a -> b").load(path)
    path.write_text("not json")
    with pytest.raises(TrioDSPyError, match="not a JSON file"):
        td.Predict("a -> b").load(path)


def test_load_refuses_a_file_saved_from_another_signature(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    source = td.Predict("question -> answer")
    source.signature = source.signature.with_instructions("Answer briefly.")
    source.demos = [td.Example(question="q", answer="a")]
    source.save(path)
    target = td.Predict("request -> category")
    target.demos = [td.Example(request="x", category="y")]
    before = target.signature
    with pytest.raises(TrioDSPyError, match="another signature") as info:
        target.load(path)
    message = str(info.value)
    assert "lacks field(s) request, category" in message
    assert "has field(s) question, answer that" in message
    assert target.signature is before  # instructions unchanged
    assert target.demos == [td.Example(request="x", category="y")]


def test_load_of_invalid_utf8_is_a_trio_dspy_error(tmp_path: Path) -> None:
    path = tmp_path / "binary.json"
    path.write_bytes(b'{"format": "\xff\xfe"}')
    with pytest.raises(TrioDSPyError, match="not a UTF-8 text file"):
        td.Predict("a -> b").load(path)


def test_deepcopy_copies_state_but_shares_the_lm() -> None:
    source = Triage()
    lm = DummyLM([])
    source.classify.lm = lm
    source.classify.demos = [td.Example(request="a", category="b")]
    clone = source.deepcopy()
    assert clone.classify is not source.classify
    assert clone.classify.lm is lm
    clone.classify.demos.append(td.Example(request="c", category="d"))
    assert len(source.classify.demos) == 1
    assert source.reset_copy().classify.demos == []


async def test_pinned_predictor_lm_wins_over_context() -> None:
    pinned, default = DummyLM([{"category": "drinks"}]), DummyLM([{"reply": "ok"}])
    t = Triage()
    t.classify.lm = pinned
    with td.context(lm=default):
        await t(request="latte")
    assert len(pinned.requests) == 1
    assert len(default.requests) == 1


async def test_track_usage_sums_child_tasks_and_nests() -> None:
    lm = DummyLM([{"a": "x"}], cycle=True)
    predict = td.Predict("q -> a")
    with td.context(lm=lm), td.track_usage() as outer:
        with td.track_usage() as inner:
            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(lambda: predict(q="?"))
        await predict(q="?")
    per_call = lm.history[0].response.usage.total_tokens
    assert inner.total_tokens == 3 * per_call
    assert outer.total_tokens == 4 * per_call
    assert outer.prompt_tokens + outer.completion_tokens == outer.total_tokens


def test_example_and_prediction_behave_like_mappings() -> None:
    ex = td.Example(question="2+2?", answer="4").with_inputs("question")
    assert ex.answer == "4"
    assert dict(ex) == {"question": "2+2?", "answer": "4"}
    assert dict(ex.inputs()) == {"question": "2+2?"}
    assert dict(ex.labels()) == {"answer": "4"}
    with pytest.raises(AttributeError, match="no field 'missing'"):
        _ = ex.missing
    pred = td.Prediction(answer="4")
    assert pred == {"answer": "4"}
    assert "answer" in pred
    assert repr(pred) == "Prediction(answer='4')"


class Scored(td.Module):
    def __init__(self) -> None:
        self.qa = td.Predict("question -> answer, score: float")

    async def forward(self, question: str) -> td.Prediction:
        return await self.qa(question=question)


def _saved_scored(tmp_path: Path) -> dict[str, Any]:
    source = Scored()
    source.qa.demos = [td.Example(question="2 + 2?", answer="4", score=0.9)]
    source.save(tmp_path / "scored.json")
    saved: dict[str, Any] = json.loads((tmp_path / "scored.json").read_text())
    return saved


def _set(document: Any, path: tuple[Any, ...], value: Any) -> None:
    for step in path[:-1]:
        document = document[step]
    document[path[-1]] = value


@pytest.mark.parametrize(
    ("where", "value", "message"),
    [
        (("qa", "instructions"), {"x": 1}, r"qa\.instructions: expected a string, got an object"),
        (("qa", "instructions"), None, r"qa\.instructions: expected a string, got null"),
        (
            ("qa", "fields", "answer", "desc"),
            12,
            r"qa\.fields\.answer\.desc: expected a string, got 12",
        ),
        (
            ("qa", "fields", "answer", "prefix"),
            ["A:"],
            r"qa\.fields\.answer\.prefix: expected a string, got a list",
        ),
        (("qa", "fields", "answer"), "one word", r"qa\.fields\.answer: expected an object"),
        (("qa", "fields", "answer", "colour"), "red", r"qa\.fields\.answer\.colour: unknown key"),
        (("qa", "signature"), 3, r"qa\.signature: expected a string, got 3"),
        (("qa", "demos"), {}, r"qa\.demos: expected a list, got an object"),
        (("qa", "demos", 0), "2 + 2?", r"qa\.demos\[0\]: expected an object, got '2 \+ 2\?'"),
        (("qa", "demos", 0, "score"), "high", r"qa\.demos\[0\]\.score: expected a number"),
        (("qa", "colour"), "red", r"qa\.colour: unknown key"),
        (("qa",), [], r"qa: expected an object, got a list"),
    ],
    ids=[
        "instructions-object",
        "instructions-null",
        "desc-number",
        "prefix-list",
        "field-text",
        "field-unknown-key",
        "signature-number",
        "demos-object",
        "demo-text",
        "demo-value",
        "predictor-unknown-key",
        "predictor-list",
    ],
)
def test_a_wrong_typed_value_in_a_saved_module_is_refused_naming_its_path(
    where: tuple[Any, ...], value: Any, message: str, tmp_path: Path
) -> None:
    saved = _saved_scored(tmp_path)
    _set(saved["predictors"], where, value)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(saved))
    target = Scored()
    target.qa.demos = [td.Example(question="kept?", answer="yes", score=1.0)]
    before = target.dump_state()
    with pytest.raises(TrioDSPyError, match=message):
        target.load(path)
    assert target.dump_state() == before


def test_unknown_keys_at_the_top_of_a_saved_module_are_refused(tmp_path: Path) -> None:
    saved = _saved_scored(tmp_path)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**saved, "colour": "red"}))
    with pytest.raises(TrioDSPyError, match="colour: unknown key"):
        Scored().load(path)
    path.write_text(json.dumps({**saved, "predictors": []}))
    with pytest.raises(TrioDSPyError, match="predictors: expected an object, got a list"):
        Scored().load(path)


def test_a_saved_demo_with_a_number_in_a_text_field_loads_as_its_text(tmp_path: Path) -> None:
    # A dataset may hold 4 where the signature says str; save writes it as it
    # is, and loading reads it as a model's answer would be: the text "4".
    source = td.Predict("question -> answer")
    source.demos = [td.Example(question="2 + 2?", answer=4)]
    source.save(tmp_path / "p.json")
    target = td.Predict("question -> answer")
    target.load(tmp_path / "p.json")
    assert target.demos == [td.Example(question="2 + 2?", answer="4")]


async def test_a_lone_surrogate_in_a_saved_module_loads_as_a_replacement_character(
    tmp_path: Path,
) -> None:
    saved = _saved_scored(tmp_path)
    saved["predictors"]["qa"]["instructions"] = "Answer \ud800 briefly."
    saved["predictors"]["qa"]["demos"][0]["answer"] = "four \udfff"
    path = tmp_path / "surrogate.json"
    # json.dumps writes the lone surrogates as the escapes \ud800 and \udfff.
    path.write_text(json.dumps(saved), encoding="utf-8")
    program = Scored()
    program.load(path)
    assert program.qa.signature.instructions == "Answer \ufffd briefly."
    assert program.qa.demos[0]["answer"] == "four \ufffd"
    lm = DummyLM([{"answer": "5", "score": "0.5"}])
    with td.context(lm=lm):
        await program(question="2 + 3?")
    (request,) = lm.requests
    sent = json.dumps([m.content for m in request.messages], ensure_ascii=False).encode()
    assert "four \ufffd".encode() in sent
