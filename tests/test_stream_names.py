"""``td.StreamListener`` and ``td.StatusMessageProvider``: DSPy's streaming objects."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

import trio_dspy as td
from trio_dspy.messages import LMResponse, ToolCall
from trio_dspy.testing import DummyLM


class TwoDrafts(td.Module):
    """Two predictors with the same output field."""

    def __init__(self) -> None:
        self.first = td.Predict("question -> answer")
        self.second = td.ChainOfThought("question -> answer")

    async def forward(self, question: str) -> td.Prediction:
        await self.first(question=question)
        return await self.second(question=question)


def check_menu(item: str) -> str:
    """Look up an item on the menu."""
    return f"{item} is on the menu"


def tool_turn(*calls: ToolCall) -> LMResponse:
    return LMResponse(text="", tool_calls=calls, finish_reason="tool_calls")


async def run(program: Any, lm: DummyLM, **options: Any) -> list[Any]:
    with td.context(lm=lm):
        async with td.streamify(program, **options)(question="q") as stream:
            return [item async for item in stream]


def chunks(items: list[Any]) -> set[tuple[str, str]]:
    return {(i.predictor, i.field) for i in items if isinstance(i, td.StreamResponse)}


def lm() -> DummyLM:
    return DummyLM([{"answer": "one"}, {"reasoning": "think", "answer": "two"}], stream_chunk=2)


async def test_a_stream_listener_for_a_field_streams_it_from_every_predictor(
    autojump_clock: trio.abc.Clock,
) -> None:
    items = await run(TwoDrafts(), lm(), stream_listeners=[td.StreamListener("answer")])
    assert chunks(items) == {("first", "answer"), ("second.predict", "answer")}


async def test_a_stream_listener_naming_its_predictor_streams_only_that_one(
    autojump_clock: trio.abc.Clock,
) -> None:
    program = TwoDrafts()
    by_object = [td.StreamListener("answer", predict=program.second.predict)]
    assert chunks(await run(program, lm(), stream_listeners=by_object)) == {
        ("second.predict", "answer")
    }
    by_name = [td.StreamListener("answer", predict_name="first")]
    assert chunks(await run(program, lm(), stream_listeners=by_name)) == {("first", "answer")}


def test_a_stream_listener_for_an_unknown_predictor_or_field_is_refused() -> None:
    with pytest.raises(ValueError, match="names predictor 'third'; the program's are first"):
        td.streamify(
            TwoDrafts(), stream_listeners=[td.StreamListener("answer", predict_name="third")]
        )
    with pytest.raises(ValueError, match="'colour'"):
        td.streamify(TwoDrafts(), stream_listeners=[td.StreamListener("colour")])
    with pytest.raises(TypeError, match="not both"):
        td.streamify(TwoDrafts(), listen=["answer"], stream_listeners=[td.StreamListener("answer")])
    with pytest.raises(TypeError, match="include_final_prediction_in_output_stream=: the"):
        td.streamify(TwoDrafts(), include_final_prediction_in_output_stream=False)


class Provider(td.StatusMessageProvider):
    def tool_start_status_message(self, instance: Any, inputs: dict[str, Any]) -> str:
        return f"Looking up {inputs['item']} with {instance.name}..."

    def tool_end_status_message(self, outputs: Any) -> str:
        return f"Found: {outputs}"

    def module_start_status_message(self, instance: Any, inputs: dict[str, Any]) -> str | None:
        return f"Starting {type(instance).__name__}" if isinstance(instance, td.ReAct) else None


async def test_a_status_message_provider_writes_the_status_lines(
    autojump_clock: trio.abc.Clock,
) -> None:
    model = DummyLM(
        [
            tool_turn(ToolCall("c1", "check_menu", json.dumps({"item": "latte"}))),
            tool_turn(ToolCall("c2", "finish", json.dumps({"answer": "yes"}))),
        ],
        supports_tools=True,
    )
    agent = td.ReAct("question -> answer", tools=[check_menu])
    items = await run(agent, model, listen=[], status_message_provider=Provider())
    assert [i.text for i in items if isinstance(i, td.StatusMessage)] == [
        "Starting ReAct",
        "Looking up latte with check_menu...",
        "Found: latte is on the menu",
    ]
    assert isinstance(items[-1], td.Prediction) and items[-1].answer == "yes"


async def test_the_default_provider_keeps_the_usual_tool_lines(
    autojump_clock: trio.abc.Clock,
) -> None:
    model = DummyLM(
        [
            tool_turn(ToolCall("c1", "check_menu", json.dumps({"item": "latte"}))),
            tool_turn(ToolCall("c2", "finish", json.dumps({"answer": "yes"}))),
        ],
        supports_tools=True,
    )
    agent = td.ReAct("question -> answer", tools=[check_menu])
    items = await run(agent, model, status_message_provider=td.StatusMessageProvider())
    assert [i.text for i in items if isinstance(i, td.StatusMessage)] == [
        "Calling tool check_menu",
        "Tool finished",
    ]
