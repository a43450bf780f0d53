"""About 4 KB of nested brackets ends in a typed outcome, never a bare RecursionError."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest

import trio_dspy as td
from trio_dspy.adapters import Adapter
from trio_dspy.errors import AdapterParseError, StructuringError, ToolArgumentError, TrioDSPyError
from trio_dspy.messages import ToolCall
from trio_dspy.signature import ensure_signature
from trio_dspy.testing import DummyLM
from trio_dspy.types import MAX_JSON_DEPTH, find_json, loads_json, structure

from .test_react import FINISH_ARGS, Order, Shop, call, turn

DEEP_LIST = "[" * 2000 + "]" * 2000
DEEP_OBJECT = '{"a":' * 1000 + "1" + "}" * 1000
HOSTILE = [DEEP_LIST, DEEP_OBJECT, "[" * 4000, '{"x": ' + DEEP_LIST + "}"]


def test_loads_json_refuses_deep_nesting_as_invalid_json() -> None:
    for text in HOSTILE:
        with pytest.raises(ValueError, match="nested deeper than|Expecting|Unterminated"):
            loads_json(text)
    just_fits = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert loads_json(just_fits) is not None
    with pytest.raises(ValueError, match="nested deeper"):
        loads_json("[" + just_fits + "]")


def test_find_json_skips_values_too_deep_and_stays_linear() -> None:
    too_deep = '{"a":' * (MAX_JSON_DEPTH + 1) + "1" + "}" * (MAX_JSON_DEPTH + 1)
    assert find_json(f'too deep {too_deep} then {{"ok": 1}}', "{") == {"ok": 1}
    assert find_json("[" * 100_000, "[") is None
    assert find_json(DEEP_LIST, "[") is None


@attrs.frozen
class Node:
    children: list[Node]


def test_structuring_a_too_deep_value_is_a_structuring_error() -> None:
    value: dict[str, object] = {"children": []}
    for _ in range(5000):
        value = {"children": [value]}
    with pytest.raises(StructuringError, match="nested too deeply"):
        structure(value, Node, path="tree")


@pytest.mark.parametrize("text", HOSTILE)
def test_tool_validate_raises_tool_argument_error(text: str) -> None:
    with pytest.raises(ToolArgumentError, match="invalid arguments for make_drink"):
        td.Tool(Shop().make_drink).validate(text)


@pytest.mark.parametrize("adapter", [td.ChatAdapter(), td.JSONAdapter()])
@pytest.mark.parametrize("text", HOSTILE)
def test_both_adapters_raise_adapter_parse_error(adapter: Adapter, text: str) -> None:
    sig = ensure_signature("q -> a: list[int], b: dict[str, int]")
    for completion in (
        text,
        f"[[ ## a ## ]]\n{text}\n\n[[ ## b ## ]]\n{text}",
        f'{{"a": {text}, "b": {text}}}',
        f"Here you go: {text}",
    ):
        with pytest.raises(AdapterParseError):
            adapter.parse(sig, completion)


async def test_native_tool_arguments_become_an_observation_and_the_run_goes_on() -> None:
    shop = Shop()
    lm = DummyLM(
        [
            turn(ToolCall("a", "make_drink", DEEP_LIST)),
            turn(ToolCall("b", "finish", '{"action": ' + DEEP_OBJECT + "}")),
            turn(call("c", "finish", **FINISH_ARGS)),
        ],
        supports_tools=True,
    )
    with td.context(lm=lm):
        pred = await td.ReAct(Order, tools=[shop.make_drink])(request="latte")
    bad_tool, bad_finish = (s.calls[0] for s in pred.trajectory.steps[:2])
    assert not bad_tool.ok and "nested deeper than" in bad_tool.observation
    assert bad_tool.arguments == DEEP_LIST  # kept as the text the model sent
    assert not bad_finish.ok and bad_finish.observation.startswith("Error: invalid finish")
    assert pred.termination_reason == "finish"
    assert shop.made == []


async def test_text_mode_next_tool_args_end_in_a_parse_error_termination() -> None:
    completion = (
        "[[ ## next_thought ## ]]\nhm\n\n[[ ## next_tool_name ## ]]\nmake_drink\n\n"
        f"[[ ## next_tool_args ## ]]\n{DEEP_OBJECT}\n\n[[ ## completed ## ]]"
    )
    lm = DummyLM([completion, completion, completion, {"reasoning": "r", **FINISH_ARGS}])
    with td.context(lm=lm):
        pred = await td.ReAct(Order, tools=[Shop().make_drink], mode="text")(request="x")
    assert pred.termination_reason == "parse_error"
    assert pred.reply == FINISH_ARGS["reply"]


def test_module_load_of_deep_json_is_a_trio_dspy_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    for text in [
        DEEP_LIST,
        json.dumps({"format": "trio_dspy.module/1"})[:-1] + ', "p": ' + DEEP_LIST + "}",
    ]:
        path.write_text(text, encoding="utf-8")
        with pytest.raises(TrioDSPyError, match="nested deeper than"):
            td.Predict("q -> a").load(path)
