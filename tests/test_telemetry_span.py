"""Spans: ids, parenthood across tasks, status on errors, log correlation."""

from __future__ import annotations

import re

import pytest
import structlog
import trio
import trio.lowlevel

from trio_dspy import telemetry
from trio_dspy.telemetry import (
    InMemoryExporter,
    SpanKind,
    StatusCode,
    collect,
    current_span,
    span_from_dict,
    span_to_dict,
    start_span,
)

TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
SPAN_ID = re.compile(r"^[0-9a-f]{16}$")


async def test_ids_are_lowercase_hex_nonzero_and_unique() -> None:
    mem = InMemoryExporter()
    async with collect(mem, policy="unbounded"):
        for _ in range(500):
            with start_span("op", new_trace=True):
                pass
    assert len(mem.spans) == 500
    for span in mem.spans:
        assert TRACE_ID.match(span.trace_id) and span.trace_id != "0" * 32
        assert SPAN_ID.match(span.span_id) and span.span_id != "0" * 16
    assert len({s.span_id for s in mem.spans}) == 500
    assert len({s.trace_id for s in mem.spans}) == 500


async def test_child_span_shares_trace_and_points_at_parent() -> None:
    mem = InMemoryExporter()
    async with collect(mem):
        with start_span("parent", kind=SpanKind.SERVER) as parent:
            assert current_span() is parent
            with start_span("child", kind=SpanKind.CLIENT) as child:
                assert current_span() is child
            assert current_span() is parent
        assert current_span() is None
    assert child.trace_id == parent.trace_id
    assert child.parent_id == parent.span_id
    assert parent.parent_id is None
    assert (parent.kind, child.kind) == (SpanKind.SERVER, SpanKind.CLIENT)
    # Finished spans arrive child first, with their times set.
    assert [s.name for s in mem.spans] == ["child", "parent"]
    assert parent.start_ns <= child.start_ns <= child.end_ns <= parent.end_ns  # type: ignore[operator]


async def test_new_trace_forces_a_fresh_root() -> None:
    mem = InMemoryExporter()
    async with collect(mem):
        with start_span("outer") as outer, start_span("request", new_trace=True) as req:
            pass
    assert req.parent_id is None
    assert req.trace_id != outer.trace_id


async def test_task_spawned_inside_span_is_its_child_in_any_nursery() -> None:
    mem = InMemoryExporter()
    async with collect(mem), trio.open_nursery() as outer_nursery:
        with start_span("root") as root:

            async def work() -> None:
                await trio.lowlevel.checkpoint()
                with start_span("in task"):
                    await trio.lowlevel.checkpoint()

            # Spawned into a nursery opened *before* the span: still a child.
            outer_nursery.start_soon(work)
    (task_span,) = [s for s in mem.spans if s.name == "in task"]
    assert task_span.parent_id == root.span_id
    assert task_span.trace_id == root.trace_id


async def test_exception_sets_error_status_type_and_event() -> None:
    mem = InMemoryExporter()
    async with collect(mem):
        with pytest.raises(KeyError), start_span("lookup"):
            raise KeyError("missing")
    (span,) = mem.spans
    assert span.status.code is StatusCode.ERROR
    assert span.attributes["error.type"] == "KeyError"
    assert span.status.description == "'missing'"
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "KeyError"
    assert "KeyError" in str(event.attributes["exception.stacktrace"])


async def test_cancellation_is_recorded_as_cancelled(autojump_clock: trio.abc.Clock) -> None:
    mem = InMemoryExporter()
    async with collect(mem):
        with trio.move_on_after(1), start_span("slow"):
            await trio.sleep_forever()
        # A nursery cancelled from outside raises a group of Cancelled.
        with trio.move_on_after(1), start_span("group"):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.sleep_forever)
                await trio.sleep_forever()
    by_name = {s.name: s for s in mem.spans}
    for name in ("slow", "group"):
        span = by_name[name]
        assert span.status.code is StatusCode.ERROR
        assert span.status.description == "cancelled"
        assert span.attributes["error.type"] == "cancelled"
        assert span.events == []


def test_error_type_of_groups() -> None:
    assert telemetry.error_type(ValueError()) == "ValueError"
    assert telemetry.error_type(ExceptionGroup("x", [ValueError()])) == "ExceptionGroup"


async def test_success_leaves_status_unset_unless_set() -> None:
    mem = InMemoryExporter()
    async with collect(mem):
        with start_span("plain"):
            pass
        with start_span("ok") as span:
            span.set_status(StatusCode.OK, "ignored for OK")
    plain, ok = mem.spans
    assert plain.status.code is StatusCode.UNSET
    assert ok.status.code is StatusCode.OK and ok.status.description is None


async def test_attributes_and_events() -> None:
    mem = InMemoryExporter()
    async with collect(mem):
        with start_span("op", attributes={"a": 1, "skip": None}) as span:
            span.set_attribute("reasons", ["stop", "length"])
            span.set_attribute("none", None)
            span.set_attributes({"b": True, "c": 0.5, "d": None})
            span.add_event("retry", {"attempt": 2, "x": None})
    (span,) = mem.spans
    assert span.attributes == {"a": 1, "reasons": ("stop", "length"), "b": True, "c": 0.5}
    (event,) = span.events
    assert event.name == "retry" and event.attributes == {"attempt": 2}
    assert span.start_ns <= event.time_ns <= span.end_ns  # type: ignore[operator]
    assert span.duration_ns == span.end_ns - span.start_ns  # type: ignore[operator]


async def test_no_collector_means_non_recording_and_nothing_bound() -> None:
    with start_span("op", attributes={"a": 1}) as span:
        assert not span.is_recording
        span.set_attribute("b", 2)
        span.attributes["c"] = 3
        span.add_event("e")
        assert current_span() is None
        assert "trace_id" not in structlog.contextvars.get_contextvars()
    assert span.attributes == {} and span.events == []
    with pytest.raises(ValueError, match="still raised"), start_span("op"):
        raise ValueError("still raised")


async def test_trace_and_span_ids_are_bound_for_structlog() -> None:
    structlog.contextvars.bind_contextvars(trace_id="outside")
    try:
        async with collect():
            with start_span("parent") as parent:
                bound = structlog.contextvars.get_contextvars()
                assert (bound["trace_id"], bound["span_id"]) == (parent.trace_id, parent.span_id)
                with start_span("child") as child:
                    bound = structlog.contextvars.get_contextvars()
                    assert bound["span_id"] == child.span_id
                assert structlog.contextvars.get_contextvars()["span_id"] == parent.span_id
            after = structlog.contextvars.get_contextvars()
            assert after.get("trace_id") == "outside" and "span_id" not in after
    finally:
        structlog.contextvars.unbind_contextvars("trace_id")


async def test_span_finished_in_worker_thread_is_collected() -> None:
    mem = InMemoryExporter()

    def blocking_tool() -> str:
        with start_span("tool") as span:
            return span.span_id

    async with collect(mem):
        with start_span("agent") as agent:
            tool_id = await trio.to_thread.run_sync(blocking_tool)
    (tool,) = [s for s in mem.spans if s.name == "tool"]
    assert tool.span_id == tool_id
    assert tool.parent_id == agent.span_id


async def test_dict_round_trip() -> None:
    mem = InMemoryExporter()
    async with collect(mem):
        with pytest.raises(RuntimeError), start_span("op", kind=SpanKind.CLIENT) as span:
            span.set_attributes({"model": "m", "reasons": ["stop"], "n": 2})
            raise RuntimeError("x")
    (span,) = mem.spans
    data = span_to_dict(span)
    assert data["kind"] == "CLIENT" and data["status"]["code"] == "ERROR"
    again = span_from_dict(data)
    assert span_to_dict(again) == data
    assert again.attributes["reasons"] == ("stop",)
    assert again.kind is SpanKind.CLIENT
