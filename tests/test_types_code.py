"""td.Code fields: described as DSPy describes them, read without the fence, in every adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import trio_dspy as td
from trio_dspy.testing import DummyLM
from trio_dspy.types import json_schema, structure, unstructure


class Generate(td.Signature):
    """Write the code."""

    question: str = td.InputField()
    code: td.Code["java"] = td.OutputField()  # type: ignore[type-arg, name-defined]  # noqa: F821, UP037


def test_code_of_a_language_is_one_class_named_as_dspy_names_it() -> None:
    java_code: type[td.Code] = td.Code["java"]
    assert java_code is td.Code["java"] and java_code is not td.Code["python"]
    assert java_code.__name__ == "Code_java" and java_code.language == "java"
    assert td.Code.language == "python"
    assert issubclass(java_code, td.Code)
    with pytest.raises(TypeError, match="language name"):
        td.Code["java\n```"]


def test_the_prompt_describes_the_type_and_asks_for_no_schema() -> None:
    system = td.ChatAdapter().format(Generate, [], {"question": "q"})[0].text
    assert "1. `code` (Code_java): \n    Type description of Code_java: Code represented" in system
    assert "```java\n{code}\n```\nProgramming language: java" in system
    assert "{code}\n" in system and "JSON schema" not in system


@pytest.mark.parametrize(
    ("adapter", "completion"),
    [
        (td.ChatAdapter(), "[[ ## code ## ]]\n```java\nint x = 1;\n```\n[[ ## completed ## ]]"),
        (td.JSONAdapter(), json.dumps({"code": "```java\nint x = 1;\n```"})),
        (td.XMLAdapter(), "<code>\n```java\nint x = 1;\n```\n</code>"),
    ],
    ids=["chat", "json", "xml"],
)
def test_each_adapter_reads_the_code_without_its_fence(
    adapter: td.Adapter, completion: str
) -> None:
    values = adapter.parse(Generate, completion)
    assert values["code"] == td.Code["java"]("int x = 1;")
    assert str(values["code"]) == "int x = 1;"


async def test_a_predict_returns_code_and_an_input_shows_it_as_written() -> None:
    lm = DummyLM([{"code": "```java\nclass A {}\n```"}, {"review": "fine"}])
    with td.context(lm=lm):
        pred = await td.Predict(Generate)(question="?")
        assert pred.code.code == "class A {}"
        review = await td.Predict("code: td.Code -> review")(code=pred.code)
    assert review.review == "fine"
    user = lm.requests[-1].messages[-1].text
    assert "[[ ## code ## ]]\nclass A {}\n" in user


def test_structuring_takes_dspy_shapes_and_refuses_others() -> None:
    assert structure("print(1)", td.Code) == td.Code("print(1)")
    assert structure({"code": "```\nx\n```"}, td.Code) == td.Code("x")
    assert structure("text ```one``` more", td.Code) == td.Code("one")
    with pytest.raises(ValueError, match="code"):
        structure(3, td.Code)
    assert unstructure(td.Code("x = 1")) == "x = 1"
    assert json_schema(td.Code) == {"type": "string"}


def test_saved_demos_keep_code(tmp_path: Path) -> None:
    program = td.Predict(Generate)
    program.demos = [td.Example(question="q", code=td.Code["java"]("int y;"))]
    program.save(tmp_path / "p.json")
    assert json.loads((tmp_path / "p.json").read_text())
    loaded = td.Predict(Generate)
    loaded.load(tmp_path / "p.json")
    assert loaded.demos[0]["code"] == td.Code["java"]("int y;")


async def test_the_sim_server_reads_fields_listed_after_a_type_description() -> None:
    from trio_dspy.testing import serve_sim

    sig = td.make_signature("question -> code: td.Code, note: str")
    async with serve_sim() as sim, td.LM("openai/sim", base_url=sim.base_url, api_key="k") as lm:
        with td.context(lm=lm, adapter=td.ChatAdapter(use_json_adapter_fallback=False)):
            pred = await td.Predict(sig)(question="?")
    assert isinstance(pred.code, td.Code) and isinstance(pred.note, str) and pred.note
    assert len(sim.requests) == 1
