"""``Module.load`` reads the JSON DSPy's ``program.save`` writes (files in tests/data)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pytest

import trio_dspy as td
from trio_dspy.errors import TrioDSPyError
from trio_dspy.testing import SimConfig, serve_sim

DATA = Path(__file__).parent / "data"


class QA(td.Signature):
    """Answer the question in one word."""

    question: str = td.InputField(desc="a trivia question")
    answer: str = td.OutputField(desc="one word")


class Triage(td.Signature):
    """Decide how the customer feels."""

    request: str = td.InputField(desc="what the customer said")
    mood: Literal["happy", "upset"] = td.OutputField()


class CoffeeShop(td.Module):
    def __init__(self, reply: str = "request, mood -> reply") -> None:
        self.triage = td.ChainOfThought(Triage)
        self.reply = td.Predict(reply)

    async def forward(self, request: str) -> td.Prediction:
        mood = (await self.triage(request=request)).mood
        return await self.reply(request=request, mood=mood)


def look_up(city: str) -> str:
    """Look up the weather in a city."""
    return "sunny"


async def wire(program: td.Module, **inputs: Any) -> list[list[dict[str, Any]]]:
    """The messages of every request ``program`` sends to the simulated server."""
    async with serve_sim(SimConfig()) as sim:
        async with td.LM("openai/sim-model", base_url=sim.base_url, api_key="k") as lm:
            with td.context(lm=lm):
                await program(**inputs)
        return [body["messages"] for body in sim.requests]


async def test_a_dspy_predict_file_sends_its_demos_and_instructions() -> None:
    predict = td.Predict(QA)
    predict.load(DATA / "dspy_predict.json")
    assert predict.signature.instructions == "Answer in one word, no punctuation."
    assert predict.demos == [
        td.Example(question="Capital of France?", answer="Paris"),
        td.Example(question="Largest planet?", answer="Jupiter"),
    ]
    # The descriptions written by hand stay; DSPy's prefixes come along.
    assert predict.signature.fields["question"].desc == "a trivia question"
    assert predict.signature.fields["answer"].prefix == "Answer:"
    (messages,) = await wire(predict, question="Capital of Peru?")
    assert messages[0]["content"].endswith("Answer in one word, no punctuation.")
    assert "1. `question` (str): a trivia question" in messages[0]["content"]
    assert [m["role"] for m in messages] == ["system", *["user", "assistant"] * 2, "user"]
    assert "[[ ## question ## ]]\nCapital of France?" in messages[1]["content"]
    assert "[[ ## answer ## ]]\nParis" in messages[2]["content"]
    assert "[[ ## answer ## ]]\nJupiter" in messages[4]["content"]


async def test_a_dspy_program_with_chain_of_thought_maps_predict_paths() -> None:
    shop = CoffeeShop()
    shop.load(DATA / "dspy_program.json")
    # DSPy's "triage.predict" is this program's ChainOfThought "triage" (named so).
    assert shop.triage.signature.instructions == "Read the customer's mood from their words."
    assert shop.triage.demos[0] == {
        "request": "This coffee is terrible!",
        "reasoning": "They complain.",
        "mood": "upset",
    }
    # The placeholder "${mood}" DSPy writes for a field without description reads as none.
    assert shop.triage.signature.fields["mood"].desc == ""
    triage, reply = await wire(shop, request="Cold again!")
    assert triage[0]["content"].endswith("Read the customer's mood from their words.")
    assert "[[ ## reasoning ## ]]\nThey complain." in triage[2]["content"]
    # A demo without reasoning (DSPy's labelled demos) says so, as DSPy does.
    assert (
        "[[ ## reasoning ## ]]\nNot supplied for this particular example." in triage[4]["content"]
    )
    assert "[[ ## reply ## ]]\nComing right up!" in reply[2]["content"]


async def test_a_dspy_chain_of_thought_file_loads_into_a_chain_of_thought() -> None:
    cot = td.ChainOfThought("question -> answer")
    cot.load(DATA / "dspy_chain_of_thought.json")
    (messages,) = await wire(cot, question="3 + 3?")
    assert "[[ ## reasoning ## ]]\nTwo and two." in messages[2]["content"]
    assert "[[ ## answer ## ]]\n4" in messages[2]["content"]


def test_a_dspy_react_file_loads_into_react() -> None:
    agent = td.ReAct("question -> answer", tools=[look_up])
    agent.load(DATA / "dspy_react.json")
    predictors = dict(agent.named_predictors())
    assert predictors["extract.predict"].demos[0]["answer"] == "sunny"
    assert "(1) look_up, whose description is" in predictors["react"].signature.instructions


@pytest.mark.parametrize(
    ("program", "message"),
    [
        (
            lambda: CoffeeShop("request -> reply"),
            "DSPy predictor 'reply' has 3 fields, .* has 2 \\(request, reply\\)",
        ),
        (
            lambda: CoffeeShop("request, tone -> reply"),
            "DSPy predictor 'reply': field 2 is 'mood' there and 'tone' in",
        ),
        (
            lambda: td.Predict(QA),
            "DSPy predictor 'triage.predict' has no counterpart in this program",
        ),
    ],
    ids=["field-count", "field-name", "predictor"],
)
def test_a_dspy_file_for_another_program_is_refused_naming_the_difference(
    program: Any, message: str
) -> None:
    module = program()
    before = module.dump_state()
    with pytest.raises(TrioDSPyError, match=message):
        module.load(DATA / "dspy_program.json")
    assert module.dump_state() == before  # nothing changed


def test_a_program_with_a_predictor_the_dspy_file_lacks_is_refused() -> None:
    class Bigger(CoffeeShop):
        def __init__(self) -> None:
            super().__init__()
            self.extra = td.Predict("a -> b")

    with pytest.raises(TrioDSPyError, match="no state for predictor\\(s\\) extra"):
        Bigger().load(DATA / "dspy_program.json")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"demos": {}, "signature": {"instructions": "", "fields": []}},
            r"self\.demos: expected a list, got an object",
        ),
        (
            {"demos": [], "signature": {"instructions": "", "fields": ["question", "answer"]}},
            r"self\.signature\.fields\[0\]: expected an object, got 'question'",
        ),
        (
            {"demos": [], "signature": {"fields": []}},
            r"self\.signature: missing key\(s\) instructions",
        ),
    ],
)
def test_a_malformed_dspy_file_is_refused(entry: Any, message: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"self": entry, "metadata": {}}))
    with pytest.raises(TrioDSPyError, match=message):
        td.Predict(QA).load(path)


def test_a_json_file_that_is_neither_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"predictors": {}}))
    with pytest.raises(TrioDSPyError, match="not a saved trio_dspy module .* nor a DSPy save"):
        td.Predict(QA).load(path)


def _program_file(tmp_path: Path, where: tuple[Any, ...], value: Any) -> Path:
    document = json.loads((DATA / "dspy_program.json").read_text())
    node = document
    for step in where[:-1]:
        node = node[step]
    node[where[-1]] = value
    path = tmp_path / "program.json"
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize(
    ("where", "value", "message"),
    [
        (
            ("triage.predict", "signature", "instructions"),
            ["Read the mood."],
            r"triage\.predict\.signature\.instructions: expected a string, got a list",
        ),
        (
            ("reply", "signature", "fields", 2, "description"),
            {"text": "the reply"},
            r"reply\.signature\.fields\[2\]\.description: expected a string, got an object",
        ),
        (
            ("reply", "signature", "fields", 0, "prefix"),
            12,
            r"reply\.signature\.fields\[0\]\.prefix: expected a string, got 12",
        ),
        (
            ("reply", "signature", "fields"),
            {},
            r"reply\.signature\.fields: expected a list, got an object",
        ),
        (("reply", "signature"), "x", r"reply\.signature: expected an object, got 'x'"),
        (("reply", "demos", 0), 5, r"reply\.demos\[0\]: expected an object, got 5"),
        (
            ("triage.predict", "demos", 0, "mood"),
            "furious",
            r"triage\.predict\.demos\[0\]\.mood: 'furious' is not one of",
        ),
        (("reply", "lm"), 12, r"reply\.lm: expected an object or null, got 12"),
        (("reply", "traces"), {}, r"reply\.traces: expected a list, got an object"),
        (("metadata",), [], r"metadata: expected an object, got a list"),
        (("reply",), 12, r"^reply: expected an object, got 12"),
        (("reply",), {"demos": []}, r"^reply: missing key\(s\) signature"),
    ],
    ids=[
        "instructions-list",
        "description-object",
        "prefix-number",
        "fields-object",
        "signature-text",
        "demo-number",
        "demo-value",
        "lm-number",
        "traces-object",
        "metadata-list",
        "predictor-number",
        "predictor-without-signature",
    ],
)
def test_a_wrong_typed_value_in_a_dspy_file_is_refused_naming_its_path(
    where: tuple[Any, ...], value: Any, message: str, tmp_path: Path
) -> None:
    path = _program_file(tmp_path, where, value)
    shop = CoffeeShop()
    shop.triage.demos = [td.Example(request="kept", mood="happy")]
    before = shop.dump_state()
    with pytest.raises(TrioDSPyError, match=message):
        shop.load(path)
    assert shop.dump_state() == before  # all or nothing: triage is untouched too


def test_a_wrong_typed_value_in_a_single_predictor_dspy_file_is_named_from_its_root(
    tmp_path: Path,
) -> None:
    document = json.loads((DATA / "dspy_predict.json").read_text())
    document["signature"]["instructions"] = {"text": "Answer."}
    path = tmp_path / "predict.json"
    path.write_text(json.dumps(document))
    with pytest.raises(TrioDSPyError, match=r"^signature\.instructions: expected a string"):
        td.Predict(QA).load(path)


async def test_a_lone_surrogate_in_a_dspy_file_loads_as_a_replacement_character(
    tmp_path: Path,
) -> None:
    document = json.loads((DATA / "dspy_predict.json").read_text())
    document["signature"]["instructions"] = "Answer in one word \ud800."
    document["demos"][0]["answer"] = "Par\udc80is"
    path = tmp_path / "surrogate.json"
    # json.dumps writes each lone surrogate as its escape (\ud800), as a file may hold it.
    path.write_text(json.dumps(document), encoding="utf-8")
    predict = td.Predict(QA)
    predict.load(path)
    assert predict.signature.instructions == "Answer in one word \ufffd."
    assert predict.demos[0]["answer"] == "Par\ufffdis"
    (messages,) = await wire(predict, question="Capital of Peru?")  # the request is sent
    assert messages[0]["content"].endswith("Answer in one word \ufffd.")
    assert "[[ ## answer ## ]]\nPar\ufffdis" in messages[2]["content"]


def test_dspys_allow_pickle_is_refused_saying_pickles_are_never_read(tmp_path: Path) -> None:
    program = td.ChainOfThought("question -> answer")
    program.save(tmp_path / "program.json")
    with pytest.raises(td.errors.TrioDSPyError, match="pickled saves are never read"):
        program.load(tmp_path / "program.json", allow_pickle=True)
    program.load(tmp_path / "program.json", allow_pickle=False)
