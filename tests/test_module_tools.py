"""A module as a tool: a coordinator agent delegating to specialist agents."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
import trio.testing

import trio_dspy as td
from trio_dspy.errors import ToolArgumentError
from trio_dspy.messages import LMRequest, LMResponse, ToolCall
from trio_dspy.telemetry import InMemoryExporter, collect
from trio_dspy.testing import DummyLM


class Forecast(td.Signature):
    """Forecast the weather of a city."""

    city: str = td.InputField(desc="the city to forecast")
    days: int = td.InputField(desc="how many days ahead")
    forecast: str = td.OutputField()
    confidence: float = td.OutputField()


def test_a_modules_inputs_are_the_tools_parameters() -> None:
    tool = td.Tool(td.Predict(Forecast), name="weather")
    assert tool.name == "weather"
    assert tool.desc == "Forecast the weather of a city."
    assert tool.parameters == {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "the city to forecast"},
            "days": {"type": "integer", "description": "how many days ahead"},
        },
        "required": ["city", "days"],
        "additionalProperties": False,
    }
    assert td.Tool(td.Predict(Forecast)).name == "Predict"
    assert td.Tool(td.Predict(Forecast), desc="other").desc == "other"


async def test_a_module_tool_returns_its_output_fields_and_checks_arguments() -> None:
    tool = td.Tool(td.Predict(Forecast), name="weather")
    lm = DummyLM([{"forecast": "sunny", "confidence": 0.9}])
    with td.context(lm=lm):
        result = await tool.acall('{"city": "Oslo", "days": 2}')
        with pytest.raises(ToolArgumentError, match="days"):
            await tool.acall({"city": "Oslo", "days": "soon"})
    assert result == {"forecast": "sunny", "confidence": 0.9}
    assert len(lm.requests) == 1


def call(id: str, tool: str, /, **args: Any) -> ToolCall:
    return ToolCall(id, tool, json.dumps(args))


def turn(*calls: ToolCall) -> LMResponse:
    return LMResponse("", tool_calls=calls, finish_reason="tool_calls", usage=td.Usage(10, 5, 15))


def script(request: LMRequest) -> LMResponse:
    """The coordinator delegates to both specialists at once, then finishes; each specialist
    finishes at once."""
    offered = {t.name for t in request.tools}
    if "weather" in offered:  # the coordinator
        if request.messages[-1].role == "tool":
            return turn(call("f", "finish", answer="pack an umbrella"))
        return turn(call("w", "weather", city="Oslo"), call("n", "news", topic="Oslo"))
    if "topic" in request.messages[-1].content:
        return turn(call("x", "finish", headlines=["rain expected"]))
    return turn(call("y", "finish", forecast="rain"))


async def test_a_coordinator_delegates_to_two_specialists_concurrently(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def lookup(query: str) -> str:
        """Look something up."""
        return query

    weather = td.ReAct("city -> forecast", tools=[lookup])
    news = td.ReAct("topic -> headlines: list[str]", tools=[lookup])
    coordinator = td.ReAct(
        "question -> answer",
        tools=[td.Tool(weather, name="weather"), td.Tool(news, name="news")],
    )
    lm = DummyLM(script, latency=1.0, supports_tools=True)
    exporter = InMemoryExporter()
    async with collect(exporter):
        with td.context(lm=lm), td.track_usage() as usage:
            start = trio.current_time()
            pred = await coordinator(question="what should I pack for Oslo?")
            elapsed = trio.current_time() - start
    assert pred.answer == "pack an umbrella"
    calls = pred.trajectory.steps[0].calls
    assert [c.name for c in calls] == ["weather", "news"]
    assert json.loads(calls[0].observation) == {"forecast": "rain"}
    assert json.loads(calls[1].observation) == {"headlines": ["rain expected"]}
    # Two specialists in one turn ran at once: 1 s + 1 s (both) + 1 s, not 4 s.
    assert elapsed == pytest.approx(3.0)
    # Four calls in all; the coordinator's usage includes its specialists'.
    assert usage.requests == len(lm.requests) == 4
    assert usage.total_tokens == pred.usage.total_tokens == 4 * 15
    # Each specialist's run is nested under the coordinator's tool call.
    by_id = {s.span_id: s for s in exporter.spans}
    for tool_name in ("weather", "news"):
        tool_span = next(s for s in exporter.spans if s.name == f"execute_tool {tool_name}")
        inner = [s for s in exporter.spans if s.parent_id == tool_span.span_id]
        assert [s.name for s in inner] == ["invoke_agent ReAct"]
        assert by_id[tool_span.parent_id or ""].trace_id == tool_span.trace_id
