"""A small MCP server written with the official SDK, for the tests of ``td.mcp``.

Run as a script it serves over stdio; ``--http`` serves streamable HTTP on a
free loopback port instead, printing its URL on the first line of stdout
once the socket listens (so a client may connect as soon as it reads it).

Its tools: ``add`` (a number), ``fail`` (a tool error), ``refuse`` (an MCP
protocol error), ``slow`` (sleeps, and counts the calls cancelled while it
slept), ``stats`` (structured content), ``logo`` (an image), ``environ``
(reads an environment variable), ``progress`` (reports progress, then finishes), ``busy`` (an MCP error with the code
-32000, which the SDK also uses for a closed connection) and ``header`` (a
digest of an HTTP request header). ``tools/list`` answers in pages of two, so
a client must follow the cursors to see them all.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import sys
from typing import Any

import anyio
import mcp.types as types
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context, Image, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError

PAGE = 2
# A 1x1 PNG.
PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)

counts = {"started": 0, "cancelled": 0}


async def paginate(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """Serve ``tools/list`` in pages of :data:`PAGE`, the cursor being the next index."""
    result = await call_next(ctx)
    if ctx.method != "tools/list" or not isinstance(result, types.ListToolsResult):
        return result
    start = int((ctx.params or {}).get("cursor") or 0)
    end = start + PAGE
    more = end < len(result.tools)
    return types.ListToolsResult(
        tools=result.tools[start:end], next_cursor=str(end) if more else None
    )


server = MCPServer("trio-dspy-test", log_level="WARNING", middleware=[paginate])


@server.tool()
def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


@server.tool()
def fail(reason: str) -> str:
    """Always fails, with the reason given."""
    raise ToolError(f"cannot do that: {reason}")


@server.tool()
def refuse() -> str:
    """Answers with an MCP protocol error instead of a result."""
    raise MCPError(code=types.INVALID_PARAMS, message="refused by the server")


@server.tool()
def busy() -> str:
    """Answers with a server error coded -32000."""
    raise MCPError(code=-32000, message="the kitchen is busy")


@server.tool()
async def slow(seconds: float) -> str:
    """Sleep for a while, then say so."""
    counts["started"] += 1
    try:
        await anyio.sleep(seconds)
    except anyio.get_cancelled_exc_class():
        counts["cancelled"] += 1
        raise
    return f"slept {seconds:g}s"


@server.tool()
async def progress(reports: int, every: float, ctx: Context) -> str:
    """Report progress ``reports`` times, ``every`` seconds apart, then finish."""
    for i in range(reports):
        await anyio.sleep(every)
        await ctx.report_progress(i + 1, reports)
    return f"done after {reports} reports"


@server.tool()
def stats() -> dict[str, int]:
    """How many slow calls started, and how many were cancelled."""
    return dict(counts)


@server.tool()
def logo() -> Image:
    """The shop's logo."""
    return Image(data=PIXEL, format="png")


@server.tool()
def environ(name: str) -> str:
    """The value of an environment variable of the server (empty if unset)."""
    return os.environ.get(name, "")


@server.tool()
def header(name: str, ctx: Context) -> str:
    """The SHA-256 of an HTTP request header's value (of "" over stdio).

    A digest, so that a test can check a secret arrived without it showing.
    """
    value = str((ctx.headers or {}).get(name.lower(), ""))
    return hashlib.sha256(value.encode()).hexdigest()


def serve_http() -> None:
    """Listen on a free loopback port, print the endpoint's URL, then serve."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    app = server.streamable_http_app()
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    print(f"http://127.0.0.1:{port}/mcp", flush=True)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--http", action="store_true", help="serve streamable HTTP")
    if parser.parse_args().http:
        serve_http()
    else:
        server.run("stdio")
    sys.exit(0)
