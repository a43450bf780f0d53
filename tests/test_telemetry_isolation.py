"""Each exporter has its own buffer, drain task and counters; a hung one bounds the exit."""

from __future__ import annotations

import array
import fcntl
import os
import termios
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import trio

from trio_dspy.telemetry import (
    InMemoryExporter,
    JsonlExporter,
    OtlpHttpExporter,
    Span,
    collect,
    read_jsonl,
    start_span,
)
from trio_dspy.testing.http_server import Request, Response, serve_http


class _Stalled:
    """An exporter whose export never returns (a hung backend)."""

    async def export(self, spans: Sequence[Span]) -> None:
        await trio.sleep_forever()

    async def aclose(self) -> None:
        pass


async def _never_answers(request: Request) -> Response:
    await trio.sleep_forever()
    raise AssertionError("unreachable")


async def _unavailable(request: Request) -> Response:
    return Response.from_json({}, status=503)


async def _emit(count: int) -> None:
    for i in range(count):
        with start_span(f"s{i}"):
            pass
        await trio.sleep(0.01)


async def _wait_until(condition: Callable[[], bool]) -> None:
    """Poll once a (virtual) second: for progress made in worker threads."""
    for _ in range(10**6):
        if condition():
            return
        await trio.sleep(1)
    raise AssertionError("the condition never held")


@pytest.mark.parametrize("handler", [_never_answers, _unavailable], ids=["silent", "503"])
async def test_jsonl_gets_every_span_beside_a_broken_otlp_endpoint(
    handler: object, tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    path = tmp_path / "spans.jsonl"
    async with serve_http(handler) as server:  # type: ignore[arg-type]
        otlp = OtlpHttpExporter(server.base_url, timeout=2, max_retries=2, backoff=0.5)
        async with collect(JsonlExporter(path), otlp, drain_timeout=5) as collector:
            await _emit(600)
            jsonl_stats, otlp_stats = collector.stats.exporters
            # The JSONL lane catches up on its own, whatever the OTLP lane does.
            await _wait_until(lambda: jsonl_stats.exported == 600)
            exit_started = trio.current_time()
        exit_took = trio.current_time() - exit_started
    assert len(read_jsonl(path)) == 600
    assert (jsonl_stats.exporter, jsonl_stats.exported, jsonl_stats.dropped) == (
        "JsonlExporter",
        600,
        0,
    )
    assert jsonl_stats.export_failures == jsonl_stats.failed == 0
    assert otlp_stats.exporter == "OtlpHttpExporter"
    assert otlp_stats.exported == 0
    assert otlp_stats.dropped + otlp_stats.failed == 600
    if handler is _unavailable:
        assert otlp_stats.export_failures >= 1 and otlp_stats.failed >= 100
    # The aggregate: emitted once, the fewest exported, the most dropped.
    stats = collector.stats
    assert stats.emitted == 600
    assert stats.exported == 0 and stats.dropped == otlp_stats.dropped
    assert stats.export_failures == otlp_stats.export_failures
    assert "JsonlExporter(exported=600, dropped=0" in repr(stats)
    # At most the drain deadline, then the deadline of closing. (Under the
    # autojump clock, time jumps while the JSONL file closes in its thread.)
    assert exit_took <= 2 * 5


async def test_a_full_buffer_drops_only_for_its_own_exporter(
    autojump_clock: trio.abc.Clock,
) -> None:
    mem = InMemoryExporter()
    async with collect(_Stalled(), mem, buffer=10, batch_size=5, drain_timeout=2) as collector:
        await _emit(200)
        stalled_stats, mem_stats = collector.stats.exporters
        # The stalled lane holds one batch of 5 in export and 10 in its buffer.
        assert stalled_stats.dropped == 200 - 5 - 10
        assert mem_stats.dropped == 0
        exit_started = trio.current_time()
    assert trio.current_time() - exit_started == pytest.approx(2)
    assert [s.name for s in mem.spans] == [f"s{i}" for i in range(200)]
    assert (mem_stats.exported, mem_stats.dropped) == (200, 0)
    assert (stalled_stats.exported, stalled_stats.dropped) == (0, 200)


async def test_a_span_after_the_block_is_dropped_by_every_exporter() -> None:
    first, second = InMemoryExporter(), InMemoryExporter()
    async with collect(first, second) as collector:
        pass
    collector.submit(Span(name="late", trace_id="0" * 32, span_id="0" * 16))
    assert collector.stats.emitted == 1
    assert [s.dropped for s in collector.stats.exporters] == [1, 1]
    assert collector.stats.dropped == 1 and collector.stats.exported == 0


async def test_without_exporters_the_aggregate_still_adds_up() -> None:
    async with collect() as collector:
        with start_span("op"):
            pass
    collector.submit(Span(name="late", trace_id="0" * 32, span_id="0" * 16))
    stats = collector.stats
    assert (stats.emitted, stats.exported, stats.dropped, stats.export_failures) == (2, 1, 1, 0)
    assert stats.exporters == ()


async def test_a_file_hung_in_a_thread_does_not_hold_the_exit(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    # A FIFO whose reader never reads: once its 64 KiB buffer is full the
    # JSONL exporter's worker thread hangs in write(), as on a stalled mount.
    fifo = tmp_path / "spans.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        mem = InMemoryExporter()
        async with collect(JsonlExporter(fifo), mem, drain_timeout=2) as collector:
            for i in range(100):
                with start_span(f"s{i}", attributes={"pad": "x" * 1000}):
                    pass
            await _wait_until(lambda: _pending(reader) >= 65536)  # stuck in write()
            exit_started = trio.current_time()
        # The drain deadline abandons the thread; closing does not wait for it.
        assert trio.current_time() - exit_started == pytest.approx(2)
        assert len(mem.spans) == 100
        jsonl_stats = collector.stats.exporters[0]
        assert jsonl_stats.exported == 0 and jsonl_stats.dropped == 100
        # The abandoned write lands once someone reads, and the file is then
        # closed behind it (the reader sees end of file).
        flags = fcntl.fcntl(reader, fcntl.F_GETFL)
        fcntl.fcntl(reader, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
        chunks = []
        while chunk := os.read(reader, 1 << 16):
            chunks.append(chunk)
    finally:
        os.close(reader)
    assert b"".join(chunks).count(b"\n") == 100


def _pending(fd: int) -> int:
    """Bytes waiting in a pipe."""
    size = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, size)
    return size[0]
