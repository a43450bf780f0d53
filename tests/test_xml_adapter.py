"""td.XMLAdapter: DSPy's ``<name>...</name>`` wire format, formatted, parsed and streamed."""

from __future__ import annotations

import enum
from typing import Any, Literal

import attrs
import pytest

import trio_dspy as td
from trio_dspy.adapters.streaming import XMLFieldParser
from trio_dspy.errors import AdapterParseError
from trio_dspy.testing import DummyLM, SimConfig, SimReply, keyword_script, serve_sim


class Size(enum.Enum):
    small = "small"
    large = "large"


@attrs.frozen
class Item:
    name: str
    qty: int


@attrs.frozen
class Order:
    customer: str
    items: list[Item]
    rush: bool = False


@attrs.frozen
class Refund:
    amount: float


@attrs.frozen
class Escalate:
    team: str


class Everything(td.Signature):
    """Fill every field."""

    question: str = td.InputField(desc="what is asked")
    context: list[str] = td.InputField()
    answer: str = td.OutputField(desc="the answer")
    count: int = td.OutputField()
    score: float = td.OutputField()
    done: bool = td.OutputField()
    size: Size = td.OutputField()
    tone: Literal["warm", "dry"] = td.OutputField()
    tags: list[str] = td.OutputField()
    order: Order = td.OutputField()
    note: str | None = td.OutputField()
    lookup: dict[str, int] = td.OutputField()
    action: Refund | Escalate = td.OutputField()
    maybe: list[int] | None = td.OutputField()


VALUES: dict[str, Any] = {
    "answer": "Tom & Jerry <3 cheese",
    "count": 3,
    "score": 0.25,
    "done": True,
    "size": Size.large,
    "tone": "dry",
    "tags": ["a", "b & c"],
    "order": Order("Ann", [Item("latte", 2), Item("scone <big>", 1)], rush=True),
    "note": None,
    "lookup": {"one": 1, "two words": 2},
    "action": Escalate("billing"),
    "maybe": [1, 2],
}

XML = td.XMLAdapter()


def test_the_system_prompt_lays_out_fields_as_dspy_does() -> None:
    prompt = XML.system_prompt(Everything)
    assert prompt.startswith("Your input fields are:\n1. `question` (str): what is asked\n")
    assert "<question>\n{question}\n</question>\n\n<context>\n{context}\n</context>" in prompt
    assert "<count>\n{count}        # note: the value you produce must be a single int value\n" in (
        prompt
    )
    # Lists, dicts and classes are laid out as nested XML (DSPy 3.4).
    assert "<tags><item>...</item></tags>" in prompt
    assert (
        "<order><customer>...</customer><items><item><name>...</name><qty>...</qty>"
        "</item></items><rush>...</rush></order>" in prompt
    )
    # A union of classes stays JSON, with its schema in the note.
    assert "<action>\n{action}        # note: the value you produce must adhere to the JSON" in (
        prompt
    )
    assert prompt.endswith("your objective is: \n        Fill every field.")
    assert "[[ ##" not in prompt


def test_the_user_turn_asks_for_xml_tags_and_shows_the_nested_structure() -> None:
    messages = XML.format(Everything, [], {"question": "Why?", "context": ["x", "y"]})
    last = messages[-1].content
    assert isinstance(last, str)
    assert last.startswith('<question>\nWhy?\n</question>\n\n<context>\n["x", "y"]\n</context>')
    assert "Respond with the corresponding output fields wrapped in XML tags `<answer>`, then " in (
        last
    )
    assert " Use this nested XML structure: <tags><item>...</item></tags> <order>" in last


def test_every_kind_of_value_round_trips_through_a_demo_answer() -> None:
    text = XML.format_outputs(Everything, VALUES)
    assert "<answer>\nTom &amp; Jerry &lt;3 cheese\n</answer>" in text
    assert "<tags><item>a</item><item>b &amp; c</item></tags>" in text
    assert '<entry key="two words">2</entry>' in text
    assert XML.parse(Everything, text) == VALUES


def test_a_demo_shows_inputs_and_outputs_and_says_what_is_missing() -> None:
    demo = {"question": "q", "context": [], "answer": "a"}
    messages = XML.format(Everything, [demo], {"question": "Why?", "context": []})
    assert [m.role for m in messages] == ["system", "user", "assistant", "user"]
    assistant = messages[2].content
    assert isinstance(assistant, str)
    assert assistant.startswith("<answer>\na\n</answer>\n\n<count>\nNot supplied")


def test_json_inside_the_tags_is_read_for_nested_types_too() -> None:
    text = XML.format_outputs(Everything, VALUES)
    text = text.replace(
        "<tags><item>a</item><item>b &amp; c</item></tags>", '<tags>["a", "b & c"]</tags>'
    )
    assert XML.parse(Everything, text)["tags"] == ["a", "b & c"]


def test_prose_around_elements_and_any_case_are_tolerated() -> None:
    sig = td.make_signature("q -> answer, n: int")
    completion = "Sure! Here you go:\n<ANSWER>  yes & no </ANSWER>\nthen <n>4</n>\nBye."
    assert XML.parse(sig, completion) == {"answer": "yes & no", "n": 4}


def test_an_empty_element_is_none_or_an_empty_list() -> None:
    sig = td.make_signature("q -> tags: list[str], maybe: Optional[list[int]], note: Optional[str]")
    assert XML.parse(sig, "<tags/><maybe />\n<note>\n</note>") == {
        "tags": [],
        "maybe": None,
        "note": None,
    }


def test_a_missing_field_is_an_adapter_parse_error_with_the_raw_text() -> None:
    sig = td.make_signature("q -> answer, n: int")
    completion = "<answer>yes</answer> and no n at all"
    with pytest.raises(AdapterParseError, match="missing output field") as info:
        XML.parse(sig, completion)
    assert info.value.completion == completion
    assert info.value.adapter == "XMLAdapter"


def test_an_element_never_closed_is_missing_and_says_so() -> None:
    sig = td.make_signature("q -> answer, n: int")
    with pytest.raises(AdapterParseError, match="never closed"):
        XML.parse(sig, "<answer>yes</answer><n>4")


def test_garbage_inside_a_tag_is_an_adapter_parse_error_naming_the_field() -> None:
    sig = td.make_signature("q -> answer, n: int")
    completion = "<answer>yes</answer><n>four-ish</n>"
    with pytest.raises(AdapterParseError, match="n: ") as info:
        XML.parse(sig, completion)
    assert info.value.completion == completion


def test_a_nested_value_with_a_wrong_leaf_is_an_adapter_parse_error() -> None:
    class Sig(td.Signature):
        q: str = td.InputField()
        order: Order = td.OutputField()

    bad = "<order><customer>Ann</customer><items><item><name>x</name><qty>lots</qty></item></items></order>"
    with pytest.raises(AdapterParseError, match="order") as info:
        XML.parse(Sig, bad)
    assert info.value.completion == bad


def test_a_whole_answer_in_json_is_read_as_the_chat_adapter_reads_one() -> None:
    sig = td.make_signature("q -> answer, n: int")
    assert XML.parse(sig, '{"answer": "yes", "n": 2}') == {"answer": "yes", "n": 2}


def test_the_stream_parser_gives_what_parse_gives_however_the_text_is_split() -> None:
    sig = td.make_signature("q -> reasoning, answer, n: int")
    completion = (
        "<reasoning>\n  Tom &amp; Jerry say <answer> is a tag &#65;&#x42; </reasoning>\n"
        "<answer attr='x'> the <b>end</b> &lt;3  </answer><n>1</n>"
    )
    whole = XML.parse(sig, completion)
    for size in (1, 2, 3, 7, len(completion)):
        parser = XML.stream_parser(sig, ["reasoning", "answer"])
        assert isinstance(parser, XMLFieldParser)
        pieces = []
        for i in range(0, len(completion), size):
            pieces += parser.feed(completion[i : i + size])
        pieces += parser.finish()
        for field in ("reasoning", "answer"):
            assert "".join(c for f, c in pieces if f == field) == whole[field], (size, field)
    assert whole["reasoning"] == "Tom & Jerry say <answer> is a tag AB"
    assert whole["answer"] == "the <b>end</b> <3"


async def test_streamify_streams_xml_fields_as_they_arrive() -> None:
    answer = "<answer>\nA long and streamed answer &amp; more\n</answer>\n\n<n>\n2\n</n>"
    lm = DummyLM([answer], stream_chunk=4)
    program = td.Predict("q -> answer, n: int")
    stream_program = td.streamify(program)
    chunks: list[str] = []
    with td.context(lm=lm, adapter=XML):
        async with stream_program(q="hi") as stream:
            async for item in stream:
                if isinstance(item, td.StreamResponse):
                    chunks.append(item.chunk)
                elif isinstance(item, td.Prediction):
                    pred = item
    assert len(chunks) > 3
    assert "".join(chunks) == pred.answer == "A long and streamed answer & more"


async def test_predict_with_a_dummy_lm_answering_in_xml() -> None:
    lm = DummyLM([{"answer": "Tom & Jerry", "tags": ["x", "y"], "order": VALUES["order"]}])
    with td.context(lm=lm, adapter=td.XMLAdapter()):
        pred = await td.Predict(OrderSig)(q="hi")
    assert pred.order == VALUES["order"]
    assert pred.answer == "Tom & Jerry"
    assert len(lm.requests) == 1


class OrderSig(td.Signature):
    q: str = td.InputField()
    answer: str = td.OutputField()
    tags: list[str] = td.OutputField()
    order: Order = td.OutputField()


async def test_an_answer_that_does_not_parse_is_re_asked_in_structured_mode() -> None:
    lm = DummyLM(["<answer>yes</answer> <n>many</n>", '{"answer": "yes", "n": 3}'])
    with td.context(lm=lm, adapter=td.XMLAdapter()):
        pred = await td.Predict("q -> answer, n: int")(q="hi")
    assert pred.n == 3
    assert [r.response_format is not None for r in lm.requests] == [False, True]
    # The fresh structured request says why the first answer was refused.
    last = lm.requests[1].messages[-1].content
    assert isinstance(last, str) and "An earlier answer could not be used: n:" in last


async def test_without_the_fallback_the_re_ask_shows_the_error_in_xml_terms() -> None:
    lm = DummyLM(["<answer>yes</answer>", "<answer>yes</answer><n>3</n>"])
    with td.context(lm=lm, adapter=td.XMLAdapter(use_json_adapter_fallback=False)):
        pred = await td.Predict("q -> answer, n: int")(q="hi")
    assert pred.n == 3
    retry = lm.requests[1].messages
    assert retry[-2].role == "assistant" and retry[-2].content == "<answer>yes</answer>"
    assert "wrapped in XML tags `<answer>`, then `<n>`" in str(retry[-1].content)


async def test_td_configure_takes_the_xml_adapter() -> None:
    lm = DummyLM([{"answer": "ok"}])
    td.configure(lm=lm, adapter=td.XMLAdapter())
    pred = await td.Predict("q -> answer")(q="hi")
    assert pred.answer == "ok"
    assert "wrapped in XML tags" in str(lm.requests[0].messages[-1].content)


async def test_the_simulated_server_answers_an_xml_request_in_xml() -> None:
    async with serve_sim(SimConfig()) as sim:
        lm = td.LM("openai/sim-model", base_url=sim.base_url, api_key="k")
        async with lm:
            with td.context(lm=lm, adapter=td.XMLAdapter()):
                preds = [await td.Predict(SimSig)(q=f"question {i}") for i in range(8)]
        bodies = list(sim.requests)
    assert len(bodies) == 8  # every answer parsed the first time: no re-ask
    text = bodies[0]["messages"][-1]["content"]
    assert "wrapped in XML tags" in text
    for pred in preds:
        assert isinstance(pred.n, int) and isinstance(pred.score, float)
        assert isinstance(pred.size, Size) and isinstance(pred.done, bool)
        assert all(isinstance(t, int) for t in pred.tags)
        assert isinstance(pred.lookup, dict)
        assert pred.lines and all(isinstance(line, Item) for line in pred.lines)
        assert isinstance(pred.answer, str) and pred.answer


class SimSig(td.Signature):
    q: str = td.InputField()
    answer: str = td.OutputField()
    n: int = td.OutputField()
    score: float = td.OutputField()
    size: Size = td.OutputField()
    done: bool = td.OutputField()
    tags: list[int] = td.OutputField()
    lookup: dict[str, int] = td.OutputField()
    lines: list[Item] = td.OutputField()


async def test_the_simulated_server_renders_scripted_outputs_in_xml() -> None:
    script = keyword_script({"weather": SimReply(outputs={"answer": "Sun & rain", "n": 4})})
    async with serve_sim(SimConfig(script=script)) as sim:
        lm = td.LM("openai/sim-model", base_url=sim.base_url, api_key="k")
        async with lm:
            with td.context(lm=lm, adapter=td.XMLAdapter()):
                pred = await td.Predict("q -> answer, n: int")(q="the weather")
    assert (pred.answer, pred.n) == ("Sun & rain", 4)


@pytest.mark.parametrize("adapter", [td.XMLAdapter(), td.ChatAdapter()], ids=repr)
def test_a_lone_surrogate_escaped_in_json_after_prose_becomes_the_replacement_character(
    adapter: td.Adapter,
) -> None:
    sig = td.make_signature("q -> tags: tuple[str, ...]")
    body = 'tags: ["\\ud800"]'  # JSON found inside prose, not the whole text
    completion = (
        f"<tags>\n{body}\n</tags>"
        if isinstance(adapter, td.XMLAdapter)
        else f"[[ ## tags ## ]]\n{body}"
    )
    assert adapter.parse(sig, completion) == {"tags": ("\ufffd",)}


def test_pydantic_models_are_nested_xml_as_in_dspy() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Pet(pydantic.BaseModel):  # type: ignore[name-defined,misc]
        name: str
        age: int

    class Owner(pydantic.BaseModel):  # type: ignore[name-defined,misc]
        owner: str
        pets: list[Pet]
        best: Pet | None = None

    sig = td.make_signature("q -> out: Owner", custom_types={"Owner": Owner})
    assert (
        "<out><owner>...</owner><pets><item><name>...</name><age>...</age></item></pets>"
        "<best><name>...</name><age>...</age></best></out>" in XML.system_prompt(sig)
    )
    value = Owner(owner="A & B", pets=[Pet(name="x", age=2)])
    text = XML.format_outputs(sig, {"out": value})
    assert text == (
        "<out><owner>A &amp; B</owner><pets><item><name>x</name><age>2</age></item></pets>"
        "<best /></out>"
    )
    assert XML.parse(sig, text) == {"out": value}
