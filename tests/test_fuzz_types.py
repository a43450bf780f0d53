"""Fuzzing the readers of td.Code, td.Reasoning, td.ToolCalls, td.Audio and td.File.

What a model writes for these outputs (in each adapter's format, or as native
tool calls) and what a saved file holds for them is untrusted: hostile values
from ``tests/hostile.py``, runs of backticks, calls with broken arguments.
Each example ends in typed values or in one of trio_dspy's errors
(:class:`~trio_dspy.errors.AdapterParseError` holding the raw text,
:class:`~trio_dspy.errors.StructuringError`), within a wall-clock bound, and
every string it gives can be sent on as UTF-8.
"""

from __future__ import annotations

import json
import time
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

import trio_dspy as td
from trio_dspy.errors import AdapterParseError, StructuringError
from trio_dspy.messages import LMResponse, ToolCall
from trio_dspy.types import loads_json, structure, unstructure
from trio_dspy.types.code import filter_code

from .hostile import fuzz_settings, hostile_values, mutated

WALL_CLOCK_BOUND = 5.0  # seconds for one parse of at most a few hundred kB


class Typed(td.Signature):
    """Everything at once."""

    q: str = td.InputField()
    tools: list[td.Tool] = td.InputField()
    reasoning: td.Reasoning = td.OutputField()
    code: td.Code = td.OutputField()
    calls: td.ToolCalls = td.OutputField()


ADAPTERS = [td.ChatAdapter(), td.JSONAdapter(), td.XMLAdapter()]
VALID_CALLS = {"tool_calls": [{"name": "search", "args": {"query": "x"}}]}
SECTIONS = [
    "[[ ## reasoning ## ]]",
    "[[ ## code ## ]]",
    "[[ ## calls ## ]]",
    "[[ ## completed ## ]]",
]
TAGS = ["<reasoning>", "</reasoning>", "<code>", "</code>", "<calls>", "</calls>"]
fragments = st.one_of(
    st.text(max_size=30),
    hostile_values,
    st.sampled_from([*SECTIONS, *TAGS, "```", "```python\n", "`" * 5000, "\n", '{"calls": ']),
)


def _sendable(values: dict[str, Any]) -> None:
    json.dumps(unstructure(values, dict[str, Any]), ensure_ascii=False).encode("utf-8")


def _parse(adapter: td.Adapter, response: LMResponse) -> None:
    started = time.monotonic()
    try:
        values = adapter.parse_response(Typed, response)
    except AdapterParseError as exc:
        assert exc.completion is not None
    else:
        # With native calls made, text that does not parse leaves the rest None (as DSPy).
        loose = (type(None),) if response.tool_calls else ()
        assert isinstance(values["reasoning"], (td.Reasoning, *loose))
        assert isinstance(values["code"], (td.Code, *loose))
        assert isinstance(values["calls"], td.ToolCalls)
        _sendable(values)
    assert time.monotonic() - started < WALL_CLOCK_BOUND


@fuzz_settings(60)
@given(st.sampled_from(ADAPTERS), st.lists(fragments, max_size=12))
def test_hostile_answers_end_in_typed_values_or_a_parse_error(
    adapter: td.Adapter, pieces: list[str]
) -> None:
    _parse(adapter, LMResponse("".join(pieces)))


@fuzz_settings(60)
@given(mutated({"reasoning": "r", "code": "```py\nx = 1\n```", "calls": VALID_CALLS}))
def test_mutated_json_answers_end_in_typed_values_or_a_parse_error(raw: bytes) -> None:
    _parse(
        td.JSONAdapter(use_native_function_calling=False),
        LMResponse(raw.decode("utf-8", "replace")),
    )


@fuzz_settings(60)
@given(
    st.lists(
        st.tuples(st.text(max_size=10), st.one_of(hostile_values, st.text(max_size=20))),
        max_size=4,
    ),
    st.one_of(st.just(""), st.text(max_size=40), hostile_values),
)
def test_native_calls_with_hostile_arguments_end_in_calls_or_a_parse_error(
    calls: list[tuple[str, str]], text: str
) -> None:
    made = tuple(ToolCall(f"c{i}", name or "f", args) for i, (name, args) in enumerate(calls))
    _parse(td.JSONAdapter(), LMResponse(text, tool_calls=made))


def _read(value: Any, tp: Any) -> None:
    started = time.monotonic()
    try:
        result = structure(value, tp)
    except StructuringError:
        pass
    else:
        assert isinstance(result, tp)
        json.dumps(unstructure(result), ensure_ascii=False).encode("utf-8")
    assert time.monotonic() - started < WALL_CLOCK_BOUND


@fuzz_settings(80)
@given(hostile_values, st.sampled_from([td.ToolCalls, td.Code, td.Reasoning, td.Audio, td.File]))
def test_saved_values_of_any_shape_load_or_fail_typed(token: str, tp: Any) -> None:
    try:
        value = loads_json(token)
    except ValueError:
        return  # refused before it reaches a type
    _read(value, tp)
    _read({"tool_calls": value, "data": value, "audio_format": value, "file_data": value}, tp)


@fuzz_settings(60)
@given(
    st.lists(st.sampled_from(["`", "```", "\n", "a", " ", "python"]), max_size=40),
    st.integers(0, 200_000),
)
def test_finding_the_code_takes_linear_time_on_runs_of_backticks(
    pieces: list[str], run: int
) -> None:
    text = "".join(pieces) + "`" * run
    started = time.monotonic()
    code = filter_code(text)
    assert time.monotonic() - started < 0.5
    assert len(code) <= len(text)
