"""What an MCP session and an MCP tool call cost, next to a plain ``td.Tool``.

Run: ``.venv/bin/python benchmarks/mcp_overhead.py [--sessions S] [--calls N]``

The server is ``tests/mcp_server.py`` (written with the MCP SDK). Reported,
as medians (and min / max) in one run:

* opening ``td.mcp.stdio(...)`` and listing its tools (the server process
  starts, imports the SDK, answers the handshake and every page of
  ``tools/list``), and closing it again, over S sessions;
* one call of its ``add`` tool, N times in a row: through ``td.mcp.stdio``,
  through ``td.mcp.http`` (the server in a child process on loopback), the
  SDK's own ``session.call_tool`` on the same stdio session (what the
  ``td.Tool`` wrapper adds is the difference), and a plain async ``td.Tool``
  doing the same sum in-process (the floor).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

import trio_dspy as td
from trio_dspy.demo.bench import url_process
from trio_dspy.modules.mcp_call import McpCall

SERVER = str(Path(__file__).resolve().parent.parent / "tests" / "mcp_server.py")


async def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


async def timed(call: Callable[[], Awaitable[object]], n: int) -> list[float]:
    """Seconds each of ``n`` calls of ``call`` took, one after the other."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        await call()
        times.append(time.perf_counter() - start)
    return times


async def sessions(n: int) -> tuple[list[float], list[float]]:
    """Seconds to open (and list) and to close ``n`` stdio sessions."""
    opens, closes = [], []
    for _ in range(n):
        start = time.perf_counter()
        async with td.mcp.stdio(sys.executable, [SERVER]) as tools:
            opened = time.perf_counter()
            assert tools
        closes.append(time.perf_counter() - opened)
        opens.append(opened - start)
    return opens, closes


async def calls(n: int) -> dict[str, list[float]]:
    """Per-call seconds of ``add`` by each route."""
    args = {"a": 1.0, "b": 2.0}
    results: dict[str, list[float]] = {}
    plain = td.Tool(add)
    results["plain async td.Tool"] = await timed(lambda: plain.acall(args), n)
    async with td.mcp.stdio(sys.executable, [SERVER]) as tools:
        tool = next(t for t in tools if t.name == "add")
        results["td.mcp.stdio tool"] = await timed(lambda: tool.acall(args), n)
        assert isinstance(tool.fn, McpCall)
        session = tool.fn._session
        assert session is not None
        results["SDK session.call_tool (stdio)"] = await timed(
            lambda: session.call_tool("add", args), n
        )
    async with (
        url_process([sys.executable, SERVER, "--http"]) as url,
        td.mcp.http(url) as tools,
    ):
        tool = next(t for t in tools if t.name == "add")
        results["td.mcp.http tool"] = await timed(lambda: tool.acall(args), n)
    return results


def row(name: str, times: list[float], unit: float, label: str) -> str:
    values = [t / unit for t in times]
    median, low, high = statistics.median(values), min(values), max(values)
    return f"{name:<34}{median:>10.3f}{low:>10.3f}{high:>10.3f}  {label}"


async def main(n_sessions: int, n_calls: int) -> None:
    print(f"{'case':<34}{'median':>10}{'min':>10}{'max':>10}")
    opens, closes = await sessions(n_sessions)
    print(row(f"stdio open + list ({n_sessions}x)", opens, 1.0, "s"))
    print(row(f"stdio close ({n_sessions}x)", closes, 1.0, "s"))
    for name, times in (await calls(n_calls)).items():
        print(row(f"{name} ({n_calls}x)", times, 1e-3, "ms"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=5, help="stdio sessions to open")
    parser.add_argument("--calls", type=int, default=300, help="calls per route")
    options = parser.parse_args()
    trio.run(main, options.sessions, options.calls)
