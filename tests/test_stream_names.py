"""``td.StreamListener`` and ``td.StatusMessageProvider``: DSPy's streaming objects."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
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
    streamed: Callable[..., AbstractAsyncContextManager[Any]] = td.streamify(program, **options)
    with td.context(lm=lm):
        async with streamed(question="q") as stream:
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


class Twice(td.Module):
    """One predictor called twice, as an agent's steps are."""

    def __init__(self) -> None:
        self.draft = td.Predict("question -> answer")

    async def forward(self, question: str) -> td.Prediction:
        await self.draft(question=question)
        return await self.draft(question=question)


def twice_lm() -> DummyLM:
    return DummyLM([{"answer": "first draft"}, {"answer": "second draft"}], stream_chunk=3)


async def test_stream_items_answer_to_dspys_names_and_mark_the_last_chunk(
    autojump_clock: trio.abc.Clock,
) -> None:
    listeners = [td.StreamListener("answer", allow_reuse=True)]
    items = await run(Twice(), twice_lm(), stream_listeners=listeners)
    pieces = [i for i in items if isinstance(i, td.streaming.StreamResponse)]
    assert {(p.predict_name, p.signature_field_name) for p in pieces} == {("draft", "answer")}
    assert "".join(p.chunk for p in pieces) == "first draftsecond draft"
    # One last chunk per call, each ending its value, never an empty one.
    lasts = [i for i, p in enumerate(pieces) if p.is_last_chunk]
    assert len(lasts) == 2 and lasts[-1] == len(pieces) - 1
    assert "".join(p.chunk for p in pieces[: lasts[0] + 1]) == "first draft"
    assert all(p.chunk for p in pieces)
    assert td.StatusMessage("Calling tool x").message == "Calling tool x"


async def test_a_listener_without_allow_reuse_streams_only_the_first_call(
    autojump_clock: trio.abc.Clock,
) -> None:
    once = await run(Twice(), twice_lm(), stream_listeners=[td.StreamListener("answer")])
    assert "".join(i.chunk for i in once if isinstance(i, td.StreamResponse)) == "first draft"
    assert isinstance(once[-1], td.Prediction) and once[-1].answer == "second draft"
    reused = [td.StreamListener("answer", allow_reuse=True)]
    again = await run(Twice(), twice_lm(), stream_listeners=reused)
    assert "".join(i.chunk for i in again if isinstance(i, td.StreamResponse)) == (
        "first draftsecond draft"
    )


class LMLines(td.StatusMessageProvider):
    def lm_start_status_message(self, instance: Any, inputs: dict[str, Any]) -> str:
        return f"Calling {instance.model} with {len(inputs['messages'])} messages"

    def lm_end_status_message(self, outputs: Any) -> str:
        return f"LM answered {len(outputs)} output(s)"


async def test_a_status_message_provider_writes_lm_start_and_end_lines(
    autojump_clock: trio.abc.Clock,
) -> None:
    items = await run(Twice(), twice_lm(), listen=[], status_message_provider=LMLines())
    assert [i.message for i in items if isinstance(i, td.StatusMessage)] == [
        "Calling dummy with 2 messages",
        "LM answered 1 output(s)",
    ] * 2


async def test_react_streams_its_thought_in_native_mode(autojump_clock: trio.abc.Clock) -> None:
    model = DummyLM(
        [
            LMResponse(
                text="I should check the menu.",
                tool_calls=(ToolCall("c1", "check_menu", json.dumps({"item": "latte"})),),
                finish_reason="tool_calls",
            ),
            LMResponse(
                text="It is there.",
                tool_calls=(ToolCall("c2", "finish", json.dumps({"answer": "yes"})),),
                finish_reason="tool_calls",
            ),
        ],
        supports_tools=True,
        stream_chunk=4,
    )
    agent = td.ReAct("question -> answer", tools=[check_menu])
    listeners = [td.StreamListener("next_thought", allow_reuse=True)]
    items = await run(agent, model, stream_listeners=listeners)
    thoughts = [i for i in items if isinstance(i, td.StreamResponse)]
    assert {i.predict_name for i in thoughts} == {"react"}
    assert "".join(i.chunk for i in thoughts) == "I should check the menu.It is there."
    assert [i.chunk for i in thoughts if i.is_last_chunk] == ["enu.", "ere."]
    assert isinstance(items[-1], td.Prediction) and items[-1].answer == "yes"


def test_streamify_without_async_streaming_gives_a_plain_generator() -> None:
    td.configure(lm=twice_lm())
    stream_predict = td.streamify(
        Twice(), stream_listeners=[td.StreamListener("answer")], async_streaming=False
    )
    threads = threading.active_count()
    output = stream_predict(question="q")
    program_output = None
    pieces = []
    for chunk in output:
        if isinstance(chunk, td.streaming.StreamResponse):
            pieces.append(chunk.chunk)
        elif isinstance(chunk, td.Prediction):
            program_output = chunk
    assert "".join(pieces) == "first draft"
    assert program_output is not None and program_output.answer == "second draft"
    assert threading.active_count() == threads


def test_a_plain_generator_left_early_stops_the_run_and_its_thread() -> None:
    td.configure(lm=DummyLM([{"answer": "x" * 400}], stream_chunk=1))
    threads = threading.active_count()
    output = td.streamify(td.Predict("question -> answer"), async_streaming=False)(question="q")
    first = next(output)
    assert isinstance(first, td.StreamResponse)
    output.close()  # as a `break` out of the loop, then the generator collected
    assert threading.active_count() == threads


def test_a_plain_generator_raises_the_programs_error() -> None:
    td.configure(lm=DummyLM([]))
    output = td.streamify(td.Predict("question -> answer"), async_streaming=False)(question="q")
    with pytest.raises(td.errors.ConfigurationError):
        list(output)


class Doubler(td.Module):
    """A tool called from forward itself, as DSPy's streaming tutorial does."""

    def __init__(self) -> None:
        self.tool = td.Tool(lambda x: 2 * x, name="double_the_number")
        self.predict = td.Predict("num1, num2 -> sum")

    async def forward(self, num: int) -> td.Prediction:
        num2 = await self.tool(x=num)
        return await self.predict(num1=num, num2=num2)


class ToolLines(td.StatusMessageProvider):
    def tool_start_status_message(self, instance: Any, inputs: dict[str, Any]) -> str:
        return f"Calling Tool {instance.name} with inputs {inputs}..."

    def tool_end_status_message(self, outputs: Any) -> str:
        return f"Tool finished with output: {outputs}!"


@pytest.mark.filterwarnings("ignore:tool double_the_number:UserWarning")  # DSPy's untyped lambda
async def test_a_tool_called_from_forward_sends_the_providers_tool_lines(
    autojump_clock: trio.abc.Clock,
) -> None:
    with td.context(lm=DummyLM([{"sum": "9"}], cycle=True)):
        stream_program = td.streamify(Doubler(), listen=[], status_message_provider=ToolLines())
        async with stream_program(num=3) as stream:
            items = [item async for item in stream]
        # Without a provider, or outside a stream, a direct call says nothing.
        async with td.streamify(Doubler(), listen=[])(num=3) as quiet:
            assert not [i async for i in quiet if isinstance(i, td.StatusMessage)]
    assert [i.message for i in items if isinstance(i, td.StatusMessage)] == [
        "Calling Tool double_the_number with inputs {'x': 3}...",
        "Tool finished with output: 6!",
    ]
