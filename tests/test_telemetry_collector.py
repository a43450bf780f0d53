"""The collector: routing, batching, drop/block policies, failures and shutdown."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest
import structlog
import trio
import trio.lowlevel

from trio_dspy.telemetry import (
    InMemoryExporter,
    Span,
    StatusCode,
    collect,
    start_span,
)


class StalledExporter:
    """An exporter whose export never returns (a hung backend)."""

    def __init__(self) -> None:
        self.calls = 0
        self.closed = False

    async def export(self, spans: Sequence[Span]) -> None:
        self.calls += 1
        await trio.sleep_forever()

    async def aclose(self) -> None:
        self.closed = True


class SlowExporter(InMemoryExporter):
    """Takes ``delay`` seconds per batch and remembers when each batch arrived."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.batches: list[tuple[float, int]] = []

    async def export(self, spans: Sequence[Span]) -> None:
        self.batches.append((trio.current_time(), len(spans)))
        await trio.sleep(self.delay)
        await super().export(spans)


class FailingExporter:
    def __init__(self) -> None:
        self.calls = 0

    async def export(self, spans: Sequence[Span]) -> None:
        self.calls += 1
        raise RuntimeError("backend down")

    async def aclose(self) -> None:
        raise OSError("close failed too")


async def test_fifty_concurrent_requests_make_fifty_correct_traces(
    autojump_clock: trio.abc.Clock,
) -> None:
    mem = InMemoryExporter()

    async def request(i: int) -> None:
        with start_span("request", new_trace=True) as root:
            root.set_attribute("i", i)
            await trio.sleep(i % 7 / 10)
            with start_span("llm call"):
                await trio.sleep(i % 3 / 10)
            async with trio.open_nursery() as nursery:
                for _ in range(2):
                    nursery.start_soon(tool)

    async def tool() -> None:
        await trio.sleep(0.05)
        with start_span("tool"):
            await trio.lowlevel.checkpoint()

    async with collect(mem, policy="unbounded", batch_size=16), trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(request, i)

    traces: dict[str, list[Span]] = {}
    for span in mem.spans:
        traces.setdefault(span.trace_id, []).append(span)
    assert len(traces) == 50
    seen = set()
    for spans in traces.values():
        (root,) = [s for s in spans if s.name == "request"]
        assert root.parent_id is None
        seen.add(root.attributes["i"])
        children = [s for s in spans if s is not root]
        assert sorted(s.name for s in children) == ["llm call", "tool", "tool"]
        assert all(s.parent_id == root.span_id for s in children)
    assert seen == set(range(50))


async def test_cancelled_body_still_exports_every_finished_span(
    autojump_clock: trio.abc.Clock,
) -> None:
    exporter = SlowExporter(delay=0.5)

    async def worker(w: int) -> None:
        for step in itertools.count():
            with start_span(f"w{w} step {step}"):
                await trio.sleep(1)

    with trio.move_on_after(5.5) as scope:
        # flush_interval is long: what is left at the cancel (a partial batch
        # and the spans the cancel itself ends) goes out in the shielded
        # drain on the way out, through an exporter that takes time.
        async with (
            collect(exporter, flush_interval=100, batch_size=7) as collector,
            trio.open_nursery() as nursery,
        ):
            for w in range(4):
                nursery.start_soon(worker, w)
    assert scope.cancelled_caught
    after_cancel = sum(n for t, n in exporter.batches if t >= 5.5)
    assert after_cancel >= 4  # at least the four cancelled spans
    names = {s.name: s for s in exporter.spans}
    for w in range(4):
        for step in range(5):
            assert names[f"w{w} step {step}"].status.code is StatusCode.UNSET
        cancelled = names[f"w{w} step 5"]
        assert cancelled.attributes["error.type"] == "cancelled"
    assert len(exporter.spans) == 24
    assert collector.stats.emitted == collector.stats.exported == 24
    assert collector.stats.dropped == 0


async def test_stalled_exporter_drops_spans_without_slowing_the_body(
    autojump_clock: trio.abc.Clock,
) -> None:
    stalled = StalledExporter()
    finished_at: list[float] = []

    async def worker() -> None:
        for _ in range(10):
            with start_span("step"):
                await trio.sleep(1)
        finished_at.append(trio.current_time())

    start = trio.current_time()
    async with collect(
        stalled, buffer=10, batch_size=5, flush_interval=0.1, drain_timeout=2
    ) as collector:
        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(worker)
        body_end = trio.current_time()
        # While the block runs, the overflow is already counted.
        assert collector.stats.emitted == 200
        assert collector.stats.dropped == 200 - 10 - 5
    # Every task ran at full speed: 10 steps of 1 s, no waiting on telemetry.
    assert finished_at == [start + 10] * 20
    assert body_end == start + 10
    # The exit waited drain_timeout for the hung exporter, then gave up.
    assert trio.current_time() == pytest.approx(body_end + 2)
    assert stalled.calls == 1 and stalled.closed
    assert collector.stats.exported == 0
    assert collector.stats.dropped == 200
    assert collector.stats.export_failures == 0


async def test_unbounded_policy_loses_nothing(autojump_clock: trio.abc.Clock) -> None:
    slow = SlowExporter(delay=1)
    async with collect(
        slow, policy="unbounded", buffer=1, batch_size=10, drain_timeout=1000
    ) as collector:
        for i in range(500):
            with start_span(f"s{i}"):
                pass
    assert [s.name for s in slow.spans] == [f"s{i}" for i in range(500)]
    assert collector.stats.dropped == 0
    assert collector.stats.exported == collector.stats.emitted == 500

    # The same load under the default policy overflows the one-span buffer.
    async with collect(SlowExporter(delay=1), buffer=1) as dropping:
        for i in range(500):
            with start_span(f"s{i}"):
                pass
    assert dropping.stats.dropped == 499


async def test_block_is_a_deprecated_name_of_unbounded() -> None:
    mem = InMemoryExporter()
    with pytest.warns(DeprecationWarning, match="unbounded"):
        async with collect(mem, policy="block", buffer=1) as collector:
            for i in range(50):
                with start_span(f"s{i}"):
                    pass
    assert collector.policy == "unbounded"
    assert collector.stats.dropped == 0 and len(mem.spans) == 50


async def test_exporter_failures_are_counted_and_do_not_affect_others(
    autojump_clock: trio.abc.Clock,
) -> None:
    failing, mem = FailingExporter(), InMemoryExporter()
    with structlog.testing.capture_logs() as logs:
        async with collect(failing, mem, batch_size=10) as collector:
            for _ in range(25):
                with start_span("op"):
                    pass
                await trio.lowlevel.checkpoint()
    assert len(mem.spans) == 25
    assert failing.calls == 3
    assert collector.stats.export_failures == 3
    # "exported" means every exporter took them; these only reached one.
    assert collector.stats.exported == 0 and collector.stats.dropped == 0
    failures = [e for e in logs if e["event"] == "telemetry export failed"]
    assert len(failures) == 3 and failures[0]["error"] == "backend down"
    assert any(e["event"] == "telemetry exporter close failed" for e in logs)


async def test_batches_by_size_and_by_flush_interval(autojump_clock: trio.abc.Clock) -> None:
    slow = SlowExporter(delay=0)
    async with collect(slow, batch_size=100, flush_interval=1.0, buffer=1000):
        start = trio.current_time()
        for _ in range(250):
            with start_span("burst"):
                pass
        await trio.sleep(5)
        with start_span("lonely"):
            pass
        await trio.sleep(5)
    times = [(round(t - start, 6), n) for t, n in slow.batches]
    # Two full batches at once, the remainder one flush interval later, and
    # a single span flushed one interval after it was finished.
    assert times == [(0, 100), (0, 100), (1.0, 50), (6.0, 1)]


async def test_nested_collect_takes_over_for_its_body() -> None:
    outer, inner = InMemoryExporter(), InMemoryExporter()
    async with collect(outer):
        with start_span("before"):
            pass
        async with collect(inner):
            with start_span("inside"):
                pass
        with start_span("after"):
            pass
    assert [s.name for s in outer.spans] == ["before", "after"]
    assert [s.name for s in inner.spans] == ["inside"]


async def test_body_exception_propagates_unwrapped_and_spans_are_exported() -> None:
    mem = InMemoryExporter()
    with pytest.raises(ValueError, match="bad input"):
        async with collect(mem):
            with start_span("op"):
                raise ValueError("bad input")
    assert [s.name for s in mem.spans] == ["op"]


async def test_span_finished_after_exit_is_counted_as_dropped(
    autojump_clock: trio.abc.Clock,
) -> None:
    mem = InMemoryExporter()

    async def outlives_the_block() -> None:
        await trio.sleep(1)
        with start_span("late"):
            pass

    async with trio.open_nursery() as nursery, collect(mem) as collector:
        nursery.start_soon(outlives_the_block)
    assert mem.spans == []
    assert collector.stats.emitted == collector.stats.dropped == 1


async def test_spans_are_not_recorded_after_the_block() -> None:
    async with collect():
        pass
    with start_span("op") as span:
        assert not span.is_recording


async def test_exporter_is_reusable_across_collect_blocks() -> None:
    mem = InMemoryExporter()
    for name in ("first", "second"):
        async with collect(mem):
            with start_span(name):
                pass
    assert [s.name for s in mem.spans] == ["first", "second"]


def test_collect_works_in_successive_trio_runs() -> None:
    mem = InMemoryExporter()

    async def main(name: str) -> None:
        async with collect(mem):
            with start_span(name):
                pass

    trio.run(main, "one")
    trio.run(main, "two")
    assert [s.name for s in mem.spans] == ["one", "two"]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"buffer": -1}, ValueError),
        ({"batch_size": 0}, ValueError),
        ({"flush_interval": 0}, ValueError),
        ({"drain_timeout": -1}, ValueError),
        ({"policy": "wait"}, ValueError),
    ],
)
async def test_bad_settings_are_rejected(kwargs: dict[str, object], error: type) -> None:
    with pytest.raises(error):
        async with collect(**kwargs):  # type: ignore[arg-type]
            pass


async def test_non_exporter_is_rejected() -> None:
    with pytest.raises(TypeError, match="not an exporter"):
        async with collect(object()):  # type: ignore[arg-type]
            pass
