"""What a ``with start_span(...)`` costs, with and without a collector.

Run: ``.venv/bin/python benchmarks/telemetry_overhead.py [--spans N] [--runs R]``

Each case opens and closes N spans in chunks of 500, yielding to trio
between chunks so the drain task keeps up (the time spent while yielding,
where the drain task exports, is not counted: it is off the request path).
Reported: nanoseconds per span, median (and min / max) over R runs.
"empty loop" (no span) and "bare `with`" (a do-nothing context manager) are
the floor to compare with.

``--otel`` runs every case inside a current OpenTelemetry span (which root
spans then join): the cost of the trace join (needs the ``otel`` extra).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import trio

from trio_dspy.telemetry import InMemoryExporter, Span, SpanKind, collect, start_span

CHUNK = 500


class NullExporter:
    """Accepts and forgets every batch: measures the pipeline, not the sink."""

    async def export(self, spans: Sequence[Span]) -> None:
        pass

    async def aclose(self) -> None:
        pass


def _plain() -> None:
    with start_span("op"):
        pass


def _attributes() -> None:
    with start_span(
        "chat model", SpanKind.CLIENT, {"gen_ai.operation.name": "chat", "n": 1}
    ) as span:
        if span.is_recording:
            span.set_attribute("gen_ai.usage.output_tokens", 42)


def _nested() -> None:
    with start_span("parent"), start_span("child"):
        pass


def _empty() -> None:
    pass


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NOTHING = _Nothing()


def _bare_with() -> None:
    with _NOTHING:
        pass


async def _measure(body: Callable[[], None], spans: int) -> float:
    """ns per call of ``body``, counting only the synchronous chunks."""
    elapsed = 0
    for _ in range(spans // CHUNK):
        start = time.perf_counter_ns()
        for _ in range(CHUNK):
            body()
        elapsed += time.perf_counter_ns() - start
        for _ in range(4):  # let the drain task take a few batches
            await trio.lowlevel.checkpoint()
    return elapsed / (spans // CHUNK * CHUNK)


async def _case(body: Callable[[], None], spans: int, collector: str | None) -> float:
    if collector is None:
        return await _measure(body, spans)
    exporter = NullExporter() if collector == "null" else InMemoryExporter()
    async with collect(exporter, buffer=4 * CHUNK, batch_size=CHUNK) as c:
        result = await _measure(body, spans)
    assert c.stats.dropped == 0, c.stats
    return result


async def main(spans: int, runs: int) -> None:
    cases: list[tuple[str, Callable[[], None], str | None, int]] = [
        ("empty loop", _empty, None, 1),
        ("bare `with` on a do-nothing object", _bare_with, None, 1),
        ("no collector", _plain, None, 1),
        ("no collector, attributes", _attributes, None, 1),
        ("collector (null exporter)", _plain, "null", 1),
        ("collector, attributes", _attributes, "null", 1),
        ("collector, parent+child (per span)", _nested, "null", 2),
        ("collector (in-memory exporter)", _plain, "memory", 1),
    ]
    print(f"{spans} spans per run, {runs} runs; ns per span (median, min, max)")
    print(f"{'case':<38}{'median':>9}{'min':>9}{'max':>9}")
    for name, body, collector, per_call in cases:
        samples = [await _case(body, spans, collector) / per_call for _ in range(runs)]
        print(
            f"{name:<38}{statistics.median(samples):>9.0f}{min(samples):>9.0f}{max(samples):>9.0f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--otel", action="store_true", help="inside an OpenTelemetry span")
    args = parser.parse_args()
    if not args.otel:
        trio.run(main, args.spans, args.runs)
    else:
        from opentelemetry import trace

        caller = trace.SpanContext(1, 1, is_remote=True, trace_flags=trace.TraceFlags(1))
        with trace.use_span(trace.NonRecordingSpan(caller)):
            trio.run(main, args.spans, args.runs)
