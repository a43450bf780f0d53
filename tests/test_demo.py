"""The demo and the benchmark's bookkeeping (the measurements themselves are not tests)."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

from trio_dspy.cli import main
from trio_dspy.demo.bench import Row, _estimate_sequential, format_table
from trio_dspy.demo.runner import run_demo
from trio_dspy.demo.story import customers


async def test_demo_serves_every_customer_both_ways_and_writes_spans(tmp_path: Path) -> None:
    out = io.StringIO()
    spans = tmp_path / "spans.jsonl"
    numbers = await run_demo(count=6, time_scale=0.0, spans=spans, out=out, width=300)
    text = out.getvalue()
    assert text.count("MakeDrink(large iced latte") == 2  # once per pass
    assert text.count("RefundOrder(A17, $5.25)") == 2
    assert "error" not in text
    for person in customers(6):
        assert text.count(person.request[:25]) == 2
    assert set(numbers) == {"sequential", "concurrent", "speedup", "slowest", "cost"}
    lines = spans.read_text().splitlines()
    assert len(lines) > 6 * 2 * 3  # request, agent and chat spans per customer and pass
    # One trace per customer and pass: the six, and the abusive one.
    assert len({json.loads(line)["trace_id"] for line in lines}) == 14


def test_cli_rejects_bad_customer_count() -> None:
    assert main(["demo", "--customers", "0"]) == 2


def test_sequential_is_estimated_beyond_the_measured_sizes() -> None:
    def row(mode: str, n: int, wall: float) -> Row:
        return Row(mode, n, wall, 0.5, 1.0, 0.5, 0.5, 40.0, 0)

    rows = _estimate_sequential(
        [row("sequential", 4, 2.0), row("nursery", 4, 0.5), row("nursery", 64, 0.6)]
    )
    estimate = next(r for r in rows if r.mode == "sequential" and r.n == 64)
    assert estimate.estimated and estimate.wall == 32.0
    assert math.isnan(estimate.cpu_per_request_ms)
    table = format_table(rows)
    assert "   64  sequential      32.00*" in table
    assert "   64  nursery          0.60      53.3x        0.83" in table
