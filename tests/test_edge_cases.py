"""Edge cases found in review: each test pins a behaviour that once went wrong."""

from __future__ import annotations

import enum
import functools
import json
from pathlib import Path
from typing import Any, Literal, Optional

import attrs
import pytest

import trio_dspy as td
from trio_dspy import types
from trio_dspy.errors import (
    AdapterParseError,
    LMBadRequestError,
    SignatureError,
    StructuringError,
    ToolArgumentError,
    TrioDSPyError,
)
from trio_dspy.messages import LMRequest, LMResponse, ToolCall
from trio_dspy.testing import DummyLM


class Flavour(str, enum.Enum):  # noqa: UP042 - the (str, Enum) form users write
    vanilla = "vanilla"
    mocha = "mocha"


class Level(enum.IntEnum):
    low = 1
    high = 2


def test_str_and_int_enums_are_checked_as_enums() -> None:
    assert types.structure("Mocha", Flavour) is Flavour.mocha
    assert types.structure("2", Level) is Level.high
    with pytest.raises(StructuringError, match="'enormous' is not one of vanilla, mocha"):
        types.structure("enormous", Flavour)
    with pytest.raises(StructuringError, match="7 is not one of 1, 2"):
        types.structure(7, Level)


def test_text_fields_keep_the_text_as_written() -> None:
    assert types.parse_text("1.10", Optional[str]) == "1.10"  # noqa: UP045
    assert types.parse_text("1e5", str | None) == "1e5"
    assert types.parse_text("null", str | None) is None
    sig = td.make_signature("q -> version: Optional[str], zip: str")
    assert td.JSONAdapter().parse(sig, '{"version": "1.10", "zip": "1e3"}') == {
        "version": "1.10",
        "zip": "1e3",
    }


def test_choices_that_look_like_json_and_numbers_with_commas() -> None:
    assert types.parse_text("true", Literal["true", "false"]) == "true"
    assert types.structure("1,234.5", float) == 1234.5
    with pytest.raises(StructuringError, match="expected a number"):
        types.structure("1,5", float)  # a decimal comma is not silently 15


@attrs.frozen
class A:
    x: int


@attrs.frozen
class B:
    x: int
    y: int


@attrs.frozen
class Box:
    items: list[A | B]


def test_json_inside_prose_for_optional_and_list_types() -> None:
    assert types.parse_text('Here it is: {"x": 1}', Optional[A]) == A(1)  # noqa: UP045
    assert types.parse_text('Here: [{"x": 1}, {"x": 2}]', list[A]) == [A(1), A(2)]
    sig = td.make_signature("q -> answer: int")
    assert td.JSONAdapter().parse(sig, 'Format {like this}: {"answer": 1}') == {"answer": 1}


def test_untagged_union_prefers_the_class_covering_every_key() -> None:
    assert types.structure([{"x": 1, "y": 2}, {"x": 3}], list[A | B]) == [B(1, 2), A(3)]


async def test_dummy_lm_tags_nested_union_members() -> None:
    lm = DummyLM([{"box": Box([B(1, 2), A(3)])}])
    sig = td.make_signature("q -> box: Box", custom_types={"Box": Box})
    with td.context(lm=lm):
        pred = await td.Predict(sig)(q="?")
    assert pred.box == Box([B(1, 2), A(3)])


@pytest.mark.parametrize(
    "spec",
    [
        "a -> b: dict[int]",
        "a -> b: list[int, str]",
        "a -> b: Optional[int, str]",
        "a -> b: str[int]",
    ],
)
def test_malformed_string_types_fail_at_definition(spec: str) -> None:
    with pytest.raises(SignatureError, match="'b'"):
        td.make_signature(spec)


def test_load_reports_malformed_files_as_trio_dspy_errors(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    for payload in (
        {"format": "trio_dspy.module/1"},
        {"format": "trio_dspy.module/1", "predictors": {"self": {"demos": [], "fields": [1]}}},
    ):
        path.write_text(json.dumps(payload))
        with pytest.raises(TrioDSPyError):
            td.Predict("a -> b").load(path)


def test_setting_usage_on_a_prediction_sets_the_usage() -> None:
    pred = td.Prediction(answer="x")
    pred.usage = td.Usage(1, 2, 3)
    assert pred.usage.total_tokens == 3
    assert dict(pred) == {"answer": "x"}


async def test_an_answer_cut_off_at_the_token_limit_is_not_accepted() -> None:
    cut = LMResponse(text="[[ ## a ## ]]\n12", finish_reason="length")
    lm = DummyLM([cut, {"a": "123"}])
    with td.context(lm=lm):
        pred = await td.Predict("q -> a: int")(q="?")
    assert pred.a == 123
    assert lm.requests[1].response_format is not None  # re-asked in structured-output mode
    # Re-asked in the chat format, the model is told why.
    lm = DummyLM([cut, {"a": "123"}])
    with td.context(lm=lm, adapter=td.ChatAdapter(use_json_adapter_fallback=False)):
        pred = await td.Predict("q -> a: int")(q="?")
    assert pred.a == 123
    assert "cut off at the token limit" in lm.requests[1].messages[-1].content
    with td.context(lm=DummyLM([cut]), max_parse_retries=0), pytest.raises(AdapterParseError):
        await td.Predict("q -> a: int")(q="?")


async def test_tools_resolve_local_types_and_refuse_what_they_cannot_check() -> None:
    @attrs.frozen
    class Order:  # local to this test, under `from __future__ import annotations`
        drink: str

    calls: list[Any] = []

    def place(order: Order, n: int) -> str:
        """Place an order."""
        calls.append((order, n))
        return "ok"

    tool = td.Tool(place)
    assert tool.parameters["properties"]["order"]["properties"] == {"drink": {"type": "string"}}
    with pytest.raises(ToolArgumentError):
        await tool.acall({"order": "garbage", "n": "not-an-int"})
    assert calls == []

    def add(a: int, b: int = 0, /) -> int:
        return a + b

    with pytest.raises(SignatureError, match="positional-only"):
        td.Tool(add)

    def scale(x: int, factor: int) -> int:
        """Scale x."""
        return x * factor

    double = td.Tool(functools.partial(scale, factor=2))
    assert list(double.parameters["properties"]) == ["x"]
    assert await double.acall({"x": 4}) == 8
    rewrapped = td.Tool(td.Tool(scale, timeout=3, blocking=False), name="s")
    assert (rewrapped.timeout, rewrapped.blocking, rewrapped.name) == (3, False, "s")


def test_max_tool_concurrency_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_tool_concurrency"):
        td.ReAct("q -> a", tools=[], max_tool_concurrency=0)


async def test_as_completed_gives_back_the_callers_own_exception() -> None:
    async def one() -> int:
        return 1

    with pytest.raises(KeyError, match="body"):
        async with td.as_completed(one) as results:
            async for _ in results:
                raise KeyError("body")


async def test_a_late_bad_request_does_not_switch_the_agent_to_text_mode() -> None:
    def script(request: LMRequest) -> Any:
        if len(request.messages) > 2:  # the second native turn
            raise LMBadRequestError("invalid tool_call_id in messages", status_code=400)
        return LMResponse(tool_calls=[ToolCall("c1", "noop", "{}")])

    def noop() -> str:
        """Nothing."""
        return "done"

    lm = DummyLM(script, supports_tools=True)
    agent = td.ReAct("q -> a", tools=[noop])
    with td.context(lm=lm), pytest.raises(LMBadRequestError):
        await agent(q="?")
    assert lm not in agent._refused_tools
