from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs
import pytest

import trio_dspy as td
from trio_dspy.adapters import markers
from trio_dspy.adapters.base import FINISH_TOOL, Adapter
from trio_dspy.errors import AdapterParseError
from trio_dspy.messages import LMResponse, ToolCall, ToolSpec

from .story import Drink, HandleCustomer, MakeDrink, Mood, Refund, Size

INPUTS = {"request": "Large iced latte with oat milk", "mood": Mood.happy}


def test_chat_system_prompt_follows_dspy_layout() -> None:
    system = td.ChatAdapter().format(HandleCustomer, [], INPUTS)[0]
    assert system.role == "system"
    text = system.text
    assert text.startswith(
        "Your input fields are:\n"
        "1. `request` (str): what the customer said\n"
        "2. `mood` (Mood): how the customer feels\n"
        "Your output fields are:\n"
        "1. `action` (MakeDrink | Refund): what to do\n"
        "2. `confidence` (float): between 0 and 1\n\n"
        "All interactions will be structured in the following way, "
        "with the appropriate values filled in.\n\n"
        "[[ ## request ## ]]\n{request}\n\n[[ ## mood ## ]]\n{mood}\n\n[[ ## action ## ]]\n{action}"
    )
    assert "{confidence}        # note: the value you produce must be a single float value" in text
    assert text.endswith(
        "[[ ## completed ## ]]\n\nIn adhering to this structure, your objective is: "
        "\n        Decide what the coffee shop should do for the customer."
    )


def test_chat_user_message_has_inputs_and_output_requirements() -> None:
    user = td.ChatAdapter().format(HandleCustomer, [], INPUTS)[-1]
    assert user.role == "user"
    assert user.text.startswith(
        "[[ ## request ## ]]\nLarge iced latte with oat milk\n\n[[ ## mood ## ]]\nhappy\n\n"
    )
    assert user.text.endswith(
        "then `[[ ## confidence ## ]]` (must be formatted as a valid Python float), "
        "and then ending with the marker for `[[ ## completed ## ]]`."
    )


@pytest.mark.parametrize("adapter", [td.ChatAdapter(), td.JSONAdapter()], ids=["chat", "json"])
def test_demos_render_as_user_assistant_turns_and_round_trip(adapter: td.Adapter) -> None:
    demo = td.Example(
        request="Refund order 7",
        mood=Mood.upset,
        action=Refund("7", 3.5),
        confidence=0.9,
    )
    messages = adapter.format(HandleCustomer, [demo], INPUTS)
    assert [m.role for m in messages] == ["system", "user", "assistant", "user"]
    assert "Refund order 7" in messages[1].content
    # What a demo shows the model is exactly what the adapter parses back.
    assert adapter.parse(HandleCustomer, messages[2].text) == {
        "action": Refund("7", 3.5),
        "confidence": 0.9,
    }


def test_demos_without_outputs_are_left_out() -> None:
    messages = td.ChatAdapter().format(HandleCustomer, [{"request": "hi"}], INPUTS)
    assert [m.role for m in messages] == ["system", "user"]


CHAT_ANSWER = (
    "[[ ## action ## ]]\n"
    '{"_type": "MakeDrink", "drink": {"name": "iced latte", "size": "large", "milk": "oat"}}\n\n'
    "[[ ## confidence ## ]]\n0.95\n\n[[ ## completed ## ]]"
)
EXPECTED = {"action": MakeDrink(Drink("iced latte", Size.large, "oat")), "confidence": 0.95}


@pytest.mark.parametrize(
    "completion",
    [
        CHAT_ANSWER,
        "Sure, here you go!\n\n" + CHAT_ANSWER,  # prose before the first marker
        CHAT_ANSWER.replace("\n\n[[ ## completed ## ]]", ""),  # no completed marker
        CHAT_ANSWER.replace("## action ##", "## Action ##").replace(
            "confidence ##", "CONFIDENCE ##"
        ),
        CHAT_ANSWER.replace('{"_type"', '```json\n{"_type"').replace("}}\n", "}}\n```\n"),
        "[[ ## action ## ]] "
        '{"_type": "MakeDrink", "drink": {"name": "iced latte", "size": "Large", "milk": "oat"}}'
        "\n[[ ## confidence ## ]] 0.95",
    ],
    ids=["plain", "prose", "no-completed", "case", "fenced", "inline"],
)
def test_chat_parse_is_tolerant(completion: str) -> None:
    assert td.ChatAdapter().parse(HandleCustomer, completion) == EXPECTED


def test_chat_parse_falls_back_to_json_object() -> None:
    completion = json.dumps(
        {
            "action": {"_type": "Refund", "order_id": "A9", "amount": 4},
            "confidence": "0.5",
        }
    )
    assert td.ChatAdapter().parse(HandleCustomer, completion) == {
        "action": Refund("A9", 4.0),
        "confidence": 0.5,
    }


def test_chat_parse_error_keeps_raw_completion_and_names_field() -> None:
    completion = CHAT_ANSWER.replace('"large"', '"huge"')
    with pytest.raises(AdapterParseError) as info:
        td.ChatAdapter().parse(HandleCustomer, completion)
    assert info.value.completion == completion
    assert "action.drink.size: 'huge' is not one of small, medium, large" in str(info.value)


def test_chat_parse_reports_missing_fields() -> None:
    with pytest.raises(AdapterParseError, match="missing output field.*confidence"):
        td.ChatAdapter().parse(HandleCustomer, "[[ ## action ## ]]\n{}")


def test_json_adapter_requests_strict_schema() -> None:
    fmt = td.JSONAdapter().response_format(HandleCustomer)
    assert fmt.type == "json_schema"
    assert fmt.strict is True
    assert fmt.schema is not None
    assert fmt.schema["required"] == ["action", "confidence"]
    assert fmt.schema["properties"]["action"]["anyOf"][1]["title"] == "Refund"


def test_json_adapter_prompt_carries_schema_for_servers_without_structured_output() -> None:
    system = td.JSONAdapter().format(HandleCustomer, [], INPUTS)[0].content
    assert "Outputs will be a JSON object" in system
    assert '"order_id": {"type": "string"}' in system


@pytest.mark.parametrize(
    "completion",
    [
        '{"action": {"_type": "Refund", "order_id": "1", "amount": 2}, "confidence": 1}',
        '```json\n{"Action": {"_type": "refund", "order_id": "1", "amount": 2}, "confidence": 1}\n```',
        'Here it is: {"action": {"_type": "Refund", "order_id": "1", "amount": "2"}, '
        '"confidence": "1.0"} -- done',
    ],
)
def test_json_parse_is_tolerant(completion: str) -> None:
    assert td.JSONAdapter().parse(HandleCustomer, completion) == {
        "action": Refund("1", 2.0),
        "confidence": 1.0,
    }


def test_json_parse_rejects_non_objects() -> None:
    with pytest.raises(AdapterParseError, match="expected a JSON object"):
        td.JSONAdapter().parse(HandleCustomer, "[1, 2]")


def test_markers_are_spelled_in_one_place() -> None:
    assert markers.field_header("answer") == "[[ ## answer ## ]]"
    assert markers.COMPLETED == "[[ ## completed ## ]]"
    assert markers.sections({"a": "1", "b": "2"}) == "[[ ## a ## ]]\n1\n\n[[ ## b ## ]]\n2"
    found = markers.HEADER_PATTERN.search("prose [[## Answer ##]] 4")
    assert found is not None and found.group(1) == "Answer"


@pytest.mark.parametrize("adapter", [td.ChatAdapter(), td.JSONAdapter()])
def test_format_request_without_tools_is_format_plus_response_format(adapter: Adapter) -> None:
    request = adapter.format_request(HandleCustomer, [], INPUTS, params={"temperature": 0})
    assert list(request.messages) == adapter.format(HandleCustomer, [], INPUTS)
    assert request.response_format == adapter.response_format(HandleCustomer)
    assert request.tools == () and request.params == {"temperature": 0}


WEATHER = ToolSpec("weather", "The weather in a city.", {"type": "object", "properties": {}})


@pytest.mark.parametrize("adapter", [td.ChatAdapter(), td.JSONAdapter()])
def test_format_request_with_tools_offers_them_and_finish(adapter: Adapter) -> None:
    request = adapter.format_request(HandleCustomer, [], INPUTS, tools=[WEATHER])
    assert [t.name for t in request.tools] == ["weather", FINISH_TOOL]
    finish = request.tools[-1].parameters
    assert list(finish["properties"]) == list(HandleCustomer.output_fields)
    assert request.response_format is None
    system, user = request.messages
    assert "call the `finish` tool" in system.content
    assert HandleCustomer.instructions in system.content
    assert user.text.startswith(markers.field_header("request"))
    assert "Large iced latte with oat milk" in user.content


def test_format_request_refuses_demos_with_tools_and_a_tool_named_finish() -> None:
    adapter = td.ChatAdapter()
    with pytest.raises(ValueError, match="demos"):
        adapter.format_request(HandleCustomer, [{"request": "hi"}], INPUTS, tools=[WEATHER])
    finish = ToolSpec(FINISH_TOOL, "mine", {"type": "object"})
    with pytest.raises(ValueError, match="reserved"):
        adapter.format_request(HandleCustomer, [], INPUTS, tools=[finish])


def test_tool_turns_are_read_and_answered_through_the_adapter() -> None:
    adapter = td.ChatAdapter()
    outputs = {
        "action": {"_type": "Refund", "order_id": "A17", "amount": 5.25},
        "confidence": 0.9,
    }
    calls = (
        ToolCall("a", "weather", "{}"),
        ToolCall("b", FINISH_TOOL, json.dumps(outputs)),
        ToolCall("c", "weather", '{"city": "Oslo"}'),
    )
    turn = adapter.parse_tool_turn(LMResponse(text="thinking", tool_calls=calls))
    assert not turn.answered
    assert [c.id for c in turn.calls] == ["a", "c"] and [c.id for c in turn.finish] == ["b"]
    assert adapter.parse_finish(HandleCustomer, turn.finish[0]) == {
        "action": Refund("A17", 5.25),
        "confidence": 0.9,
    }
    assistant, *results = adapter.format_tool_results(turn, [("a", "sunny"), ("c", "rain")])
    assert assistant.role == "assistant" and assistant.tool_calls == calls
    assert [(m.role, m.tool_call_id, m.content) for m in results] == [
        ("tool", "a", "sunny"),
        ("tool", "c", "rain"),
    ]
    assert adapter.parse_tool_turn(LMResponse(text="just words")).answered
    with pytest.raises(AdapterParseError, match="confidence"):
        adapter.parse_finish(HandleCustomer, ToolCall("d", FINISH_TOOL, '{"action": null}'))


def test_parse_response_refuses_a_cut_off_answer() -> None:
    adapter = td.JSONAdapter()
    text = '{"action": {"_type": "Refund", "order_id": "A1", "amount": 1}, "confidence": 1}'
    assert adapter.parse_response(HandleCustomer, LMResponse(text=text))["confidence"] == 1.0
    with pytest.raises(AdapterParseError, match="cut off"):
        adapter.parse_response(HandleCustomer, LMResponse(text=text, finish_reason="length"))


@pytest.mark.parametrize("adapter", [td.ChatAdapter(), td.JSONAdapter()])
def test_a_signature_changed_in_place_is_prompted_as_it_now_is(adapter: td.Adapter) -> None:
    class QA(td.Signature):
        """Answer briefly."""

        question: str = td.InputField()
        answer: str = td.OutputField()

    first = adapter.format(QA, [], {"question": "q"})
    assert "Answer briefly." in first[0].content
    QA.instructions = "Answer at length."
    QA.output_fields["answer"] = attrs.evolve(QA.output_fields["answer"], desc="in words")
    again = adapter.format(QA, [], {"question": "q"})
    assert "Answer at length." in again[0].content
    assert "in words" in again[0].content
    assert again[0].content == adapter.system_prompt(QA)


@pytest.mark.parametrize("adapter", [td.ChatAdapter(), td.JSONAdapter()])
def test_a_signature_whose_fields_are_reordered_in_place_is_prompted_in_the_new_order(
    adapter: td.Adapter,
) -> None:
    class Pair(td.Signature):
        first: str = td.InputField()
        second: str = td.InputField()
        answer: str = td.OutputField()

    values = {"first": "1", "second": "2"}
    before = adapter.format(Pair, [], values)
    assert before[-1].text.index("first") < before[-1].text.index("second")
    # Equal fields, another order: only the order tells the prompts apart.
    Pair.input_fields = dict(reversed(Pair.input_fields.items()))
    after = adapter.format(Pair, [], values)
    assert after[0].content == adapter.system_prompt(Pair) != before[0].content
    assert after[-1].text.index("second") < after[-1].text.index("first")


def test_an_output_renamed_in_place_is_asked_for_and_read_under_its_new_name() -> None:
    class QA(td.Signature):
        question: str = td.InputField()
        answer: str = td.OutputField()

    adapter = td.ChatAdapter()
    reply = LMResponse(text="[[ ## reply ## ]]\nyes\n\n[[ ## completed ## ]]")
    assert "`[[ ## answer ## ]]`" in adapter.format(QA, [], {"question": "q"})[-1].text
    QA.output_fields = {"reply": attrs.evolve(QA.output_fields["answer"], name="reply")}
    assert "`[[ ## reply ## ]]`" in adapter.format(QA, [], {"question": "q"})[-1].text
    assert adapter.parse_response(QA, reply) == {"reply": "yes"}


@pytest.mark.parametrize("adapter", [td.ChatAdapter(), td.JSONAdapter()])
def test_an_input_renamed_or_retyped_in_place_is_shown_as_it_now_is(adapter: td.Adapter) -> None:
    class Look(td.Signature):
        picture: str = td.InputField()
        answer: str = td.OutputField()

    url = "https://example.com/cat.png"
    assert adapter.format(Look, [], {"picture": url})[-1].content == adapter.format_inputs(
        Look, {"picture": url}
    ) + "\n\n" + adapter.output_requirements(Look)
    field = Look.input_fields["picture"]
    # The same text in a field now typed td.Image is refused: it would be sent as text.
    Look.input_fields["picture"] = attrs.evolve(field, annotation=td.Image)
    with pytest.raises(TypeError, match="needs a td.Image"):
        adapter.format(Look, [], {"picture": url})
    Look.input_fields = {"photo": attrs.evolve(field, name="photo")}
    both = {"picture": url, "photo": url}  # the old name's value is ignored
    assert adapter.format(Look, [], both)[-1].text.startswith("[[ ## photo ## ]]")


def test_a_subclass_formatting_inputs_its_own_way_is_shown_its_way() -> None:
    class Shouting(td.ChatAdapter):
        def format_inputs(self, signature: type[td.Signature], values: Mapping[str, Any]) -> str:
            return super().format_inputs(signature, values).upper()

    class QA(td.Signature):
        question: str = td.InputField()
        answer: str = td.OutputField()

    assert "WHY?" in Shouting().format(QA, [], {"question": "why?"})[-1].text


def test_chat_text_outputs_come_in_signature_order_as_written() -> None:
    completion = "[[ ## b ## ]]\n  second  \n\n[[ ## a ## ]]\nfirst\n\n[[ ## completed ## ]]"
    values = td.ChatAdapter().parse(td.make_signature("q -> a, b"), completion)
    assert list(values.items()) == [("a", "first"), ("b", "second")]


def test_chat_a_typed_output_beside_text_outputs_is_structured() -> None:
    completion = "[[ ## n ## ]]\n7\n\n[[ ## a ## ]]\nseven\n\n[[ ## completed ## ]]"
    values = td.ChatAdapter().parse(td.make_signature("q -> a, n: int"), completion)
    assert values == {"a": "seven", "n": 7}
    with pytest.raises(AdapterParseError, match="n"):
        td.ChatAdapter().parse(
            td.make_signature("q -> a, n: int"), "[[ ## n ## ]]\nx\n[[ ## a ## ]]\ny"
        )
