from __future__ import annotations

import json

import pytest

import trio_dspy as td
from trio_dspy.errors import AdapterParseError

from .story import Drink, HandleCustomer, MakeDrink, Mood, Refund, Size

INPUTS = {"request": "Large iced latte with oat milk", "mood": Mood.happy}


def test_chat_system_prompt_follows_dspy_layout() -> None:
    system = td.ChatAdapter().format(HandleCustomer, [], INPUTS)[0]
    assert system.role == "system"
    text = system.content
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
    assert user.content.startswith(
        "[[ ## request ## ]]\nLarge iced latte with oat milk\n\n[[ ## mood ## ]]\nhappy\n\n"
    )
    assert user.content.endswith(
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
    assert adapter.parse(HandleCustomer, messages[2].content) == {
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
