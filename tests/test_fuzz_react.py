"""Fuzzing ReAct's tool-argument path: whatever arguments a model writes,
the agent ends in a prediction or a ``td.errors`` type, in bounded time.

Hostile arguments (huge and non-finite numbers, deep nesting, lone
surrogates, wrong JSON types at every position, truncations, invalid UTF-8
read as text) go to a typed tool, to ``finish``, and through text mode. Each
example runs in its own trio run on an autojump clock, under a deadline; a
run that ends leaves no task behind (trio.run returns only when all are done).
"""

from __future__ import annotations

import json
from typing import Any

import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

import trio_dspy as td
from trio_dspy.messages import LMResponse, ToolCall
from trio_dspy.testing import DummyLM

from .hostile import fuzz_settings, hostile_values, mutated

VALID_ARGS = {"name": "latte", "shots": 2, "extras": ["oat", "ice"], "note": {"text": "hi"}}

# Arguments as the model writes them: a mutated valid object, or any value.
arguments = st.one_of(
    mutated(VALID_ARGS).map(lambda raw: raw.decode("utf-8", "replace")),
    hostile_values,
)


async def make_drink(name: str, shots: int, extras: list[str], note: dict[str, str]) -> str:
    """Make a drink."""
    # Async, so it runs on the autojump clock (a sync tool runs in a worker
    # thread, whose real time the mock clock would jump past).
    return f"made {name} x{shots} with {', '.join(extras)} ({len(note)} notes)"


class Order(td.Signature):
    """Serve the customer."""

    request: str = td.InputField()
    reply: str = td.OutputField()
    shots: int = td.OutputField()


def run_agent(lm: DummyLM) -> td.Prediction | td.errors.TrioDSPyError:
    """Run the agent once, on an autojump clock, within a deadline of model time."""

    async def main() -> td.Prediction | td.errors.TrioDSPyError:
        with trio.fail_after(60), td.context(lm=lm):
            try:
                agent = td.ReAct(Order, tools=[make_drink], max_iters=3)
                return await agent(request="a latte")
            except td.errors.TrioDSPyError as exc:
                return exc

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def native_turn(name: str, raw: str) -> LMResponse:
    return LMResponse(tool_calls=(ToolCall("c", name, raw),), finish_reason="tool_calls")


@fuzz_settings(80)
@given(raw=arguments)
def test_hostile_tool_arguments_end_in_a_result_or_a_typed_error(raw: str) -> None:
    finish = json.dumps({"reply": "ok", "shots": 2})
    lm = DummyLM(
        [native_turn("make_drink", raw), native_turn("finish", finish)], supports_tools=True
    )
    outcome = run_agent(lm)
    assert isinstance(outcome, (td.Prediction, td.errors.TrioDSPyError))
    if isinstance(outcome, td.Prediction):
        # The observation went back to the model in a request that encodes.
        for request in lm.requests:
            for message in request.messages:
                message.text.encode("utf-8")


@fuzz_settings(60)
@given(raw=arguments)
def test_hostile_finish_arguments_end_in_a_result_or_a_typed_error(raw: str) -> None:
    lm = DummyLM([native_turn("finish", raw)], supports_tools=True, cycle=True)
    outcome = run_agent(lm)
    assert isinstance(outcome, (td.Prediction, td.errors.TrioDSPyError))


@fuzz_settings(60)
@given(raw=arguments)
def test_hostile_text_mode_arguments_end_in_a_result_or_a_typed_error(raw: str) -> None:
    step: dict[str, Any] = {"next_thought": "t", "next_tool_name": "make_drink"}
    text = "".join(f"[[ ## {k} ## ]]\n{v}\n\n" for k, v in step.items())
    text += f"[[ ## next_tool_args ## ]]\n{raw}\n\n[[ ## completed ## ]]"
    finish = {"next_thought": "t", "next_tool_name": "finish", "next_tool_args": {}}
    extract = {"reasoning": "r", "reply": "ok", "shots": 2}
    lm = DummyLM([text, finish, extract])
    outcome = run_agent(lm)
    assert isinstance(outcome, (td.Prediction, td.errors.TrioDSPyError))
