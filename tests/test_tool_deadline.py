"""A tool call that reports progress has its timeout from each report, within a bound."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import trio_dspy as td
from trio_dspy.errors import ToolTimeoutError
from trio_dspy.modules.tool_deadline import MAX_EXTENSION, current_deadlines, extend


async def reporting(reports: int, every: float) -> str:
    """Work ``reports`` steps ``every`` seconds apart, reporting each (as MCP progress does)."""
    deadlines = current_deadlines()
    for _ in range(reports):
        await trio.sleep(every)
        extend(deadlines)
    return "done"


async def test_progress_gives_a_call_its_timeout_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tool = td.Tool(reporting, timeout=1.0)
    start = trio.current_time()
    assert await tool(reports=5, every=0.9) == "done"  # 4.5 s, never 1 s without news
    assert trio.current_time() - start == pytest.approx(4.5)


async def test_silence_longer_than_the_timeout_still_ends_the_call(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tool = td.Tool(reporting, timeout=1.0)
    start = trio.current_time()
    with pytest.raises(ToolTimeoutError, match="timed out after 1s"):
        await tool(reports=3, every=1.5)
    assert trio.current_time() - start == pytest.approx(1.0)


async def test_a_call_that_keeps_reporting_ends_at_the_bound(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tool = td.Tool(reporting, timeout=1.0)
    start = trio.current_time()
    with pytest.raises(ToolTimeoutError):
        await tool(reports=10_000, every=0.5)
    assert trio.current_time() - start == pytest.approx(1.0 * MAX_EXTENSION)


async def test_progress_pushes_back_every_tool_call_it_runs_inside(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A tool wrapping a tool: both bounds hear the report.
    outer = td.Tool(td.Tool(reporting, timeout=1.0), timeout=2.0)
    assert await outer(reports=6, every=0.9) == "done"
