"""Spans produced by modules, LM calls and tools, collected across nurseries."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

import trio_dspy as td
from trio_dspy.messages import LMResponse, ToolCall
from trio_dspy.telemetry import InMemoryExporter, SpanKind, StatusCode, collect
from trio_dspy.testing import DummyLM


class Answer(td.Module):
    def __init__(self) -> None:
        self.qa = td.ChainOfThought("question -> answer")

    async def forward(self, **inputs: Any) -> td.Prediction:
        pred: td.Prediction = await self.qa(**inputs)
        return pred


async def test_fifty_concurrent_requests_make_fifty_correct_traces(
    autojump_clock: trio.testing.MockClock,
) -> None:
    lm = DummyLM([{"reasoning": "r", "answer": "a"}], cycle=True, latency=1.0)
    exporter = InMemoryExporter()
    module = Answer()
    async with collect(exporter) as collector:
        with td.context(lm=lm):
            async with trio.open_nursery() as nursery:
                for i in range(50):

                    async def handle(i: int = i) -> None:
                        with td.request_scope("customer", request_id=f"r{i}"):
                            await module(question=f"q{i}")

                    nursery.start_soon(handle)
    spans = exporter.spans
    assert collector.stats.dropped == 0
    traces: dict[str, list[Any]] = {}
    for span in spans:
        traces.setdefault(span.trace_id, []).append(span)
    assert len(traces) == 50
    for trace in traces.values():
        by_name = {s.name.split(" ")[0]: s for s in trace}
        root, agent, predict, chat = (
            by_name["customer"],
            by_name["invoke_agent"],
            by_name["ChainOfThought"],
            by_name["chat"],
        )
        assert root.parent_id is None and root.kind is SpanKind.SERVER
        assert agent.parent_id == root.span_id
        assert predict.parent_id == agent.span_id
        assert chat.parent_id == predict.span_id
        assert chat.kind is SpanKind.CLIENT
        assert chat.name == "chat dummy"
        assert chat.attributes["gen_ai.operation.name"] == "chat"
        assert chat.attributes["gen_ai.provider.name"] == "dummy"
        assert chat.attributes["gen_ai.usage.input_tokens"] > 0
        assert chat.attributes["gen_ai.usage.output_tokens"] > 0
        assert chat.attributes["gen_ai.response.finish_reasons"] == ("stop",)
        assert agent.attributes["gen_ai.agent.name"] == "Answer"
        assert root.attributes["trio_dspy.request.id"].startswith("r")
        assert chat.end_ns >= chat.start_ns


async def test_parse_failures_are_span_events_and_errors_set_status() -> None:
    lm = DummyLM(["nonsense", {"answer": "ok"}])
    exporter = InMemoryExporter()
    async with collect(exporter):
        with td.context(lm=lm):
            await td.Predict("question -> answer")(question="?")
            with pytest.raises(td.errors.ConfigurationError):
                await td.Predict("question -> answer")(question="?")
    predict_ok, predict_bad = [s for s in exporter.spans if s.name.startswith("Predict")]
    assert [e.name for e in predict_ok.events] == ["parse_error"]
    assert predict_ok.events[0].attributes["attempt"] == 1
    assert predict_bad.status.code is StatusCode.ERROR
    assert predict_bad.attributes["error.type"] == "ConfigurationError"


async def test_tool_calls_are_execute_tool_spans_under_the_agent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def lookup(item: str) -> str:
        """Look up an item."""
        await trio.sleep(0.5)
        return item

    calls = [
        ToolCall("c1", "lookup", json.dumps({"item": "latte"})),
        ToolCall("c2", "lookup", "{}"),
    ]
    lm = DummyLM(
        [
            LMResponse(tool_calls=calls),
            LMResponse(tool_calls=[ToolCall("c3", "finish", '{"answer": "x"}')]),
        ],
        supports_tools=True,
    )
    exporter = InMemoryExporter()
    async with collect(exporter):
        with td.context(lm=lm):
            await td.ReAct("question -> answer", tools=[lookup])(question="?")
    agent = next(s for s in exporter.spans if s.name == "invoke_agent ReAct")
    tools = [s for s in exporter.spans if s.name == "execute_tool lookup"]
    assert {s.attributes["gen_ai.tool.call.id"] for s in tools} == {"c1", "c2"}
    assert all(s.parent_id == agent.span_id for s in tools)
    failed = next(s for s in tools if s.attributes["gen_ai.tool.call.id"] == "c2")
    assert failed.status.code is StatusCode.ERROR
    chats = [s for s in exporter.spans if s.name.startswith("chat")]
    assert len(chats) == 2 and all(s.parent_id == agent.span_id for s in chats)


async def test_content_is_recorded_only_when_opted_in() -> None:
    lm = DummyLM([{"answer": "secret answer"}], cycle=True)
    exporter = InMemoryExporter()
    async with collect(exporter):
        with td.context(lm=lm):
            await td.Predict("question -> answer")(question="private question")
        with td.context(lm=lm, trace_content=True):
            await td.Predict("question -> answer")(question="private question")
    plain, opted = [s for s in exporter.spans if s.name.startswith("chat")]
    assert "private question" not in json.dumps(plain.attributes)
    assert "private question" in str(opted.attributes["gen_ai.input.messages"])
    assert "secret answer" in str(opted.attributes["gen_ai.output.messages"])


async def test_no_collector_means_no_spans_and_no_errors() -> None:
    lm = DummyLM([{"answer": "a"}])
    with td.context(lm=lm):
        assert (await td.Predict("question -> answer")(question="?")).answer == "a"
    assert td.telemetry.current_span() is None
