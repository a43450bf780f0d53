"""The JSONL, structlog and in-memory exporters."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
import structlog
import trio

from trio_dspy.telemetry import (
    InMemoryExporter,
    JsonlExporter,
    Span,
    SpanKind,
    StructlogExporter,
    collect,
    read_jsonl,
    span_to_dict,
    start_span,
)


async def _emit_two() -> None:
    with (
        start_span("agent", attributes={"gen_ai.agent.name": "qa"}),
        start_span("chat m", kind=SpanKind.CLIENT) as chat,
    ):
        chat.set_attribute("gen_ai.response.finish_reasons", ["stop"])
        chat.add_event("retry", {"attempt": 1})


async def test_jsonl_writes_one_json_span_per_line(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    mem = InMemoryExporter()
    async with collect(JsonlExporter(path), mem):
        await _emit_two()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    chat, agent = (json.loads(line) for line in lines)
    assert chat["name"] == "chat m" and chat["kind"] == "CLIENT"
    assert chat["parent_id"] == agent["span_id"] and agent["parent_id"] is None
    assert chat["attributes"] == {"gen_ai.response.finish_reasons": ["stop"]}
    assert chat["events"][0]["name"] == "retry"
    assert chat["events"][0]["attributes"] == {"attempt": 1}
    assert agent["status"] == {"code": "UNSET", "description": None}
    assert isinstance(agent["start_ns"], int) and agent["end_ns"] >= agent["start_ns"]
    # The file reads back into equal spans.
    assert [span_to_dict(s) for s in read_jsonl(path)] == [span_to_dict(s) for s in mem.spans]


async def test_jsonl_truncates_once_then_appends_after_close(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    path.write_text("stale\n", encoding="utf-8")
    exporter = JsonlExporter(path)
    for _ in range(2):  # aclose() between the two blocks closes the file
        async with collect(exporter):
            await _emit_two()
    assert len(read_jsonl(path)) == 4

    async with collect(JsonlExporter(path, append=True)):
        await _emit_two()
    assert len(read_jsonl(path)) == 6


async def test_jsonl_error_is_counted_not_raised(tmp_path: Path) -> None:
    exporter = JsonlExporter(tmp_path / "missing-dir" / "spans.jsonl")
    async with collect(exporter) as collector:
        await _emit_two()
    assert collector.stats.export_failures == 1
    assert collector.stats.exported == 0


async def test_structlog_exporter_logs_one_event_per_span() -> None:
    with structlog.testing.capture_logs() as logs:
        async with collect(StructlogExporter()):
            with pytest.raises(ValueError), start_span("tool") as tool:
                tool.set_attribute("gen_ai.tool.name", "search")
                raise ValueError("no results")
    (event,) = [e for e in logs if e["event"] == "span"]
    assert event["log_level"] == "info"
    assert event["span_name"] == "tool"
    assert event["trace_id"] == tool.trace_id and event["span_id"] == tool.span_id
    assert event["parent_id"] is None
    assert event["kind"] == "INTERNAL"
    assert event["status"] == "ERROR" and event["status_description"] == "no results"
    assert event["attributes"] == {"gen_ai.tool.name": "search", "error.type": "ValueError"}
    assert event["events"][0]["name"] == "exception"
    assert event["duration_ms"] >= 0


async def test_structlog_exporter_uses_the_given_logger_and_event_name() -> None:
    with structlog.testing.capture_logs() as logs:
        logger = structlog.get_logger("mine").bind(component="api")
        async with collect(StructlogExporter(logger, event="trace.span")):
            with start_span("op"):
                pass
    (event,) = [e for e in logs if e["event"] == "trace.span"]
    assert event["component"] == "api" and event["span_name"] == "op"


class _Failing:
    async def export(self, spans: Sequence[Span]) -> None:
        raise RuntimeError("down")

    async def aclose(self) -> None:
        pass


async def test_exporter_log_lines_do_not_claim_the_spawners_trace() -> None:
    # The drain task starts inside a span; what it logs is not part of that trace.
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as logs:
        async with collect(InMemoryExporter()):
            with start_span("outer"):
                async with collect(_Failing()):
                    with start_span("inner"):
                        pass
    (event,) = [e for e in logs if e.get("event") == "telemetry export failed"]
    assert "trace_id" not in event and "span_id" not in event


async def test_in_memory_exporter_clear() -> None:
    mem = InMemoryExporter()
    async with collect(mem):
        await _emit_two()
    assert len(mem.spans) == 2 and "spans=2" in repr(mem)
    mem.clear()
    assert mem.spans == []


def test_jsonl_exporter_across_trio_runs(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    exporter = JsonlExporter(path)

    async def main() -> None:
        async with collect(exporter):
            await _emit_two()

    trio.run(main)
    trio.run(main)
    assert len(read_jsonl(path)) == 4
