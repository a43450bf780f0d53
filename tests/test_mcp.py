"""Tools of MCP servers in agents: listed, called, cancelled, and closed with their block.

The server is ``tests/mcp_server.py``, written with the MCP SDK, in a child
process: over stdio one per test (the session owns the process), over
streamable HTTP one for the module. These tests do real I/O, so they run on
the real clock, each bounded by :data:`BOUND` seconds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, cast

import mcp.types as types
import pytest
import structlog
import trio
import trio.testing
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

import trio_dspy as td
from trio_dspy.errors import ConfigurationError, ToolArgumentError, ToolError, ToolTimeoutError
from trio_dspy.messages import ToolSpec
from trio_dspy.telemetry import InMemoryExporter, collect, span_to_dict
from trio_dspy.testing import SimConfig, SimReply, SimToolCall, serve_sim

SERVER = str(Path(__file__).with_name("mcp_server.py"))
TOOLS = ["add", "fail", "refuse", "busy", "slow", "progress", "stats", "logo", "environ", "header"]
ADD_SCHEMA = {
    "properties": {"a": {"title": "A", "type": "number"}, "b": {"title": "B", "type": "number"}},
    "required": ["a", "b"],
    "title": "addArguments",
    "type": "object",
}
TOKEN = "Bearer mcp-very-secret-token-42"
# Seconds any test may take; a call that is not really cancelled waits for
# `slow`'s hour and trips it.
BOUND = 60

Connect = Callable[[], AbstractAsyncContextManager[list[td.Tool]]]


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    """The test server over streamable HTTP, in a child process: its endpoint's URL."""
    proc = subprocess.Popen([sys.executable, SERVER, "--http"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()  # printed once the socket listens
        assert url.startswith("http://127.0.0.1:"), url
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(params=["stdio", "http"])
def connect(request: pytest.FixtureRequest, http_url: str) -> Connect:
    """Opens the test server's tools over stdio (a new process) or HTTP."""
    if request.param == "stdio":
        return lambda: td.mcp.stdio(sys.executable, args=[SERVER])
    return lambda: td.mcp.http(http_url, headers={"Authorization": TOKEN})


def by_name(tools: list[td.Tool]) -> dict[str, td.Tool]:
    return {tool.name: tool for tool in tools}


async def stats_until(stats: td.Tool, done: Callable[[Mapping[str, int]], bool]) -> Any:
    """Ask the server's ``stats`` until ``done`` says yes (each ask is a round trip)."""
    while not done(counts := await stats()):
        pass
    return counts


# ------------------------------------------------------------------ listing
async def test_tools_come_from_every_page_of_the_listing_with_the_servers_schemas(
    connect: Connect,
) -> None:
    with trio.fail_after(BOUND):
        async with connect() as tools:
            pass
    # The server lists two tools a page: all of them means every cursor was followed.
    assert [tool.name for tool in tools] == TOOLS
    add = by_name(tools)["add"]
    assert add.desc == "Add two numbers."
    assert add.spec() == ToolSpec("add", "Add two numbers.", ADD_SCHEMA)
    # Every schema is the server's (pydantic titles it), none read from a Python signature.
    assert all(t.parameters["title"] == f"{t.name}Arguments" for t in tools)


# ------------------------------------------------------------------ an agent
def agent_script(body: Mapping[str, Any]) -> SimReply:
    """First turn: three MCP tools at once; once their results are in: finish."""
    if any(message["role"] == "tool" for message in body["messages"]):
        return SimReply(tool_calls=[SimToolCall("finish", {"answer": "5"})])
    calls = [
        SimToolCall("add", {"a": 2, "b": 3}),
        SimToolCall("fail", {"reason": "no milk"}),
        SimToolCall("refuse", {}),
    ]
    return SimReply(tool_calls=calls)


async def test_an_agent_calls_mcp_tools_and_sees_their_errors_as_observations(
    connect: Connect,
) -> None:
    with trio.fail_after(BOUND):
        async with serve_sim(SimConfig(script=agent_script)) as sim, connect() as tools:
            lm = td.LM("openai/sim-model", base_url=sim.base_url, api_key="k")
            async with lm:
                with td.context(lm=lm):
                    pred = await td.ReAct("question -> answer", tools=tools)(question="2 + 3?")
    assert pred.answer == "5"
    assert pred.termination_reason == "finish"
    add, fail, refuse = pred.trajectory.steps[0].calls
    assert (add.ok, json.loads(add.observation)) == (True, {"result": 5.0})
    assert not fail.ok
    assert fail.observation == "Error: Error executing tool fail: cannot do that: no milk"
    assert not refuse.ok
    assert refuse.observation == "Error: MCP error -32602: refused by the server"
    # The model was offered the server's schemas.
    offered = {t["function"]["name"]: t["function"] for t in sim.requests[0]["tools"]}
    assert offered["add"]["parameters"] == ADD_SCHEMA
    assert offered["add"]["description"] == "Add two numbers."


async def test_a_live_servers_error_coded_32000_keeps_its_message(connect: Connect) -> None:
    with trio.fail_after(BOUND):
        async with connect() as tools:
            tool = by_name(tools)
            # -32000 is also the SDK's code for a closed connection: this one is not.
            with pytest.raises(ToolError, match="^MCP error -32000: the kitchen is busy$"):
                await tool["busy"]()
            assert await tool["add"](a=1, b=1) == {"result": 2.0}


async def test_results_are_structured_content_or_described_content(http_url: str) -> None:
    with trio.fail_after(BOUND):
        async with td.mcp.http(http_url) as tools:
            tool = by_name(tools)
            assert await tool["add"](a=1.5, b=2) == {"result": 3.5}
            assert await tool["logo"]() == "[image: image/png, 66 bytes]"
            counts = await tool["stats"]()
    assert set(counts) == {"started", "cancelled"}


# ------------------------------------------------------------ cancellation
async def test_cancelling_a_call_cancels_it_on_the_server_and_the_session_goes_on(
    connect: Connect,
) -> None:
    with trio.fail_after(BOUND):
        async with connect() as tools:
            tool = by_name(tools)
            before = await tool["stats"]()
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(tool["slow"].acall, {"seconds": 3600})
                    await stats_until(tool["stats"], lambda c: c["started"] > before["started"])
                    scope.cancel()
            assert scope.cancelled_caught
            after = await stats_until(tool["stats"], lambda c: c["cancelled"] > before["cancelled"])
            assert after["cancelled"] == before["cancelled"] + 1
            assert await tool["add"](a=1, b=1) == {"result": 2.0}
        # ...and the block closed without an error.


async def test_a_timeout_on_an_mcp_tool_cancels_the_call_on_the_server(http_url: str) -> None:
    with trio.fail_after(BOUND):
        async with td.mcp.http(http_url) as tools:
            tool = by_name(tools)
            before = await tool["stats"]()
            slow = td.Tool(tool["slow"], timeout=0.2)
            assert slow.name == "slow" and slow.parameters == tool["slow"].parameters
            with pytest.raises(ToolTimeoutError, match="slow timed out"):
                await slow(seconds=3600)
            await stats_until(tool["stats"], lambda c: c["cancelled"] > before["cancelled"])


async def test_a_tool_reporting_progress_runs_past_its_timeout(http_url: str) -> None:
    # Twelve reports 0.1 s apart: 1.2 s in all, never 0.5 s without news.
    with trio.fail_after(BOUND):
        async with td.mcp.http(http_url, call_timeout=0.5) as tools:
            result = await by_name(tools)["progress"](reports=12, every=0.1)
    assert result == {"result": "done after 12 reports"}


# -------------------------------------------------------------- lifetime
async def test_a_tool_called_after_its_block_ended_says_the_session_closed(
    http_url: str,
) -> None:
    with trio.fail_after(BOUND):
        async with td.mcp.http(http_url) as tools:
            pass
        with pytest.raises(ToolError, match="session has closed; call MCP tools inside"):
            await by_name(tools)["add"](a=1, b=2)


async def test_an_exception_in_the_block_comes_out_as_itself(http_url: str) -> None:
    with trio.fail_after(BOUND), pytest.raises(KeyError, match="mine"):
        async with td.mcp.http(http_url):
            raise KeyError("mine")


async def test_from_mcp_wraps_the_tools_of_a_session_of_ones_own(http_url: str) -> None:
    with trio.fail_after(BOUND):
        transport = streamable_http_client(http_url)
        async with transport as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            listed = (await session.list_tools()).tools
            add = td.Tool.from_mcp(session, listed[0])
            assert (add.name, add.parameters) == ("add", ADD_SCHEMA)
            assert await add(a=2, b=2) == {"result": 4.0}
        with pytest.raises(ToolError, match="connection is closed"):
            await add(a=1, b=1)


# ----------------------------------------------------------- configuration
async def test_a_stdio_server_gets_the_env_given_and_none_of_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRIO_DSPY_TEST_SECRET", "hidden")
    with trio.fail_after(BOUND):
        async with td.mcp.stdio(sys.executable, [SERVER], env={"SHOP": "open"}) as tools:
            environ = by_name(tools)["environ"]
            assert await environ(name="SHOP") == {"result": "open"}
            assert await environ(name="TRIO_DSPY_TEST_SECRET") == {"result": ""}


async def test_http_headers_reach_the_server_and_nothing_else(
    http_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    exporter = InMemoryExporter()
    sim_config = SimConfig(script=agent_script)
    with trio.fail_after(BOUND), structlog.testing.capture_logs() as logs:
        async with (
            serve_sim(sim_config) as sim,
            collect(exporter),
            td.mcp.http(http_url, headers={"Authorization": TOKEN}) as tools,
        ):
            digest = await by_name(tools)["header"](name="authorization")
            assert digest == {"result": hashlib.sha256(TOKEN.encode()).hexdigest()}
            lm = td.LM("openai/sim-model", base_url=sim.base_url, api_key="k")
            async with lm:
                with td.context(lm=lm, trace_content=True):
                    await td.ReAct("question -> answer", tools=tools)(question="2 + 3?")
            shown = repr(tools) + repr([vars(tool) for tool in tools])
    assert exporter.spans
    assert any(span.name == "execute_tool add" for span in exporter.spans)
    dumped = repr([span_to_dict(s) for s in exporter.spans]) + repr(logs) + caplog.text + shown
    assert "mcp-very-secret-token" not in dumped


async def test_a_token_in_the_url_stays_out_of_errors_reprs_spans_and_our_logs(
    http_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    exporter = InMemoryExporter()
    secret = "?key=mcp-query-secret-7"
    shown: list[str] = []
    with trio.fail_after(BOUND), structlog.testing.capture_logs() as logs:
        async with (
            serve_sim(SimConfig(script=agent_script)) as sim,
            collect(exporter),
            td.mcp.http(http_url + secret) as tools,
        ):
            lm = td.LM("openai/sim-model", base_url=sim.base_url, api_key="k")
            async with lm:
                with td.context(lm=lm, trace_content=True):
                    pred = await td.ReAct("question -> answer", tools=tools)(question="2 + 3?")
            shown += [repr(tools), repr([vars(tool) for tool in tools]), repr(pred)]
        # An endpoint that answers with an HTTP error, whose text holds the URL.
        wrong = http_url.replace("/mcp", "/nothing-here") + secret
        with pytest.raises(ConfigurationError, match="did not answer the MCP handshake") as info:
            async with td.mcp.http(wrong):
                pass
        shown += [str(info.value), repr(info.value)]
        with pytest.raises(ConfigurationError, match="URL is not valid") as info:
            async with td.mcp.http(f"http://[::1/mcp{secret}"):
                pass
        shown += [str(info.value), repr(info.value)]
    assert exporter.spans
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("trio_dspy")]
    dumped = repr([span_to_dict(s) for s in exporter.spans]) + repr(logs) + repr(ours)
    assert "mcp-query-secret" not in dumped + "".join(shown)
    # The SDK and httpx log whole URLs: that is why the README says to use headers=.


async def test_a_server_that_cannot_start_or_answer_is_a_configuration_error() -> None:
    with trio.fail_after(BOUND):
        with pytest.raises(ConfigurationError, match="cannot start the MCP server"):
            async with td.mcp.stdio("/nonexistent/mcp-server"):
                pass
        with pytest.raises(ConfigurationError, match="did not answer the MCP handshake"):
            async with td.mcp.stdio(sys.executable, ["-c", "pass"]):
                pass
        with socket.socket() as sock:  # a port nothing listens on
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        with pytest.raises(ConfigurationError, match="cannot open the MCP endpoint") as info:
            async with td.mcp.http(f"http://127.0.0.1:{port}/mcp?key=sekrit"):
                pass
    assert "sekrit" not in str(info.value)


def test_without_the_mcp_extra_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "mcp", None)  # `import mcp` fails as if not installed
    for name in ("trio_dspy.mcp", "trio_dspy.modules.mcp_call"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.delattr(td, "mcp", raising=False)
    # The module itself loads (so `from trio_dspy import *` works without the SDK) ...
    exported = {name: getattr(td, name) for name in td.__all__}
    assert exported["mcp"] is td.mcp
    # ... and opening a session says what to install.
    with pytest.raises(ImportError, match=r"pip install 'trio_dspy\[mcp\]'"):
        trio.run(_open_stdio)
    with pytest.raises(ImportError, match=r"pip install 'trio_dspy\[mcp\]'"):
        td.Tool.from_mcp(cast(Any, None), cast(Any, None))


async def _open_stdio() -> None:
    async with td.mcp.stdio(sys.executable):
        raise AssertionError("unreachable")  # pragma: no cover


# ------------------------------------------------ one tool, a scripted session
class ScriptedSession:
    """Stands in for a ClientSession: answers every call with ``result``."""

    def __init__(self, result: types.CallToolResult) -> None:
        self.result = result
        self.calls: list[tuple[str, Any]] = []

    async def call_tool(
        self, name: str, arguments: Any, progress_callback: Any = None
    ) -> types.CallToolResult:
        await trio.lowlevel.checkpoint()
        self.calls.append((name, arguments))
        return self.result


def scripted(
    result: types.CallToolResult, schema: Mapping[str, Any] | None = None
) -> tuple[td.Tool, ScriptedSession]:
    session = ScriptedSession(result)
    listed = types.Tool(
        name="shop.menu/lookup",
        title="Menu lookup",
        input_schema=dict(schema or {"type": "object"}),
    )
    return td.Tool.from_mcp(cast(ClientSession, session), listed), session


async def test_content_is_joined_as_text_with_other_kinds_described() -> None:
    blob = "aGVsbG8="  # b"hello"
    content: list[types.ContentBlock] = [
        types.TextContent(text="Latte: 4.50"),
        types.TextContent(text="Mocha: 5.00"),
        types.AudioContent(data=blob, mime_type="audio/wav"),
        types.ResourceLink(name="menu", uri="https://shop.example/menu"),
        types.EmbeddedResource(
            resource=types.TextResourceContents(uri="file:///specials", text="Specials: none")
        ),
        types.EmbeddedResource(
            resource=types.BlobResourceContents(uri="file:///logo", blob=blob, mime_type=None)
        ),
    ]
    tool, session = scripted(types.CallToolResult(content=content))
    assert await tool(item="latte") == "\n".join(
        [
            "Latte: 4.50",
            "Mocha: 5.00",
            "[audio: audio/wav, 5 bytes]",
            "[resource link: menu <https://shop.example/menu>]",
            "Specials: none",
            "[resource: file:///logo, binary, 5 bytes]",
        ]
    )
    # The model calls it by a name it can use; the server hears its own.
    assert tool.name == "shop_menu_lookup" and tool.desc == "Menu lookup"
    assert session.calls == [("shop.menu/lookup", {"item": "latte"})]


async def test_an_error_result_is_a_tool_error_with_the_servers_words() -> None:
    failed = types.CallToolResult(content=[types.TextContent(text="out of milk")], is_error=True)
    tool, _ = scripted(failed)
    with pytest.raises(ToolError, match="^out of milk$"):
        await tool()
    structured = types.CallToolResult(content=[], structured_content={"code": 7}, is_error=True)
    tool, _ = scripted(structured)
    with pytest.raises(ToolError, match='^{"code": 7}$'):
        await tool()


async def test_arguments_are_checked_against_what_the_schema_requires() -> None:
    schema = {
        "type": "object",
        "properties": {"item": {"type": "string", "description": "What to look up"}},
        "required": ["item"],
    }
    ok = types.CallToolResult(content=[types.TextContent(text="ok")])
    tool, session = scripted(ok, schema)
    assert tool.args["item"].desc == "What to look up"
    with pytest.raises(ToolArgumentError, match="missing required argument"):
        await tool.acall("{}")
    # Properties the schema does not forbid go to the server, which decides.
    assert await tool.acall({"item": "tea", "size": "large"}) == "ok"
    strict, _ = scripted(ok, {**schema, "additionalProperties": False})
    with pytest.raises(ToolArgumentError, match="unknown argument"):
        await strict.acall({"item": "tea", "size": "large"})
    assert session.calls == [("shop.menu/lookup", {"item": "tea", "size": "large"})]


class SilentSession:
    """Stands in for a ClientSession that never answers, or fails every call with ``error``."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error

    async def call_tool(
        self, name: str, arguments: Any, progress_callback: Any = None
    ) -> types.CallToolResult:
        if self.error is not None:
            await trio.lowlevel.checkpoint()
            raise self.error
        await trio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover


def silent_tool(error: Exception | None = None, **kwargs: Any) -> td.Tool:
    listed = types.Tool(name="lookup", input_schema={"type": "object"})
    return td.Tool.from_mcp(cast(ClientSession, SilentSession(error)), listed, **kwargs)


async def test_a_tool_of_ones_own_session_is_bounded_by_default(
    autojump_clock: trio.testing.MockClock,
) -> None:
    start = trio.current_time()
    with pytest.raises(ToolTimeoutError) as info:
        await silent_tool()()
    assert trio.current_time() - start == 300
    assert "timeout=SECONDS on Tool.from_mcp" in str(info.value)
    with trio.move_on_after(3600) as scope:
        await silent_tool(timeout=None)()  # no bound: waits until cancelled
    assert scope.cancelled_caught


async def test_code_32000_is_a_closed_connection_only_with_the_sdks_message() -> None:
    from mcp.shared.exceptions import MCPError

    busy = silent_tool(MCPError(code=-32000, message="the kitchen is busy"))
    with pytest.raises(ToolError, match="^MCP error -32000: the kitchen is busy$"):
        await busy()
    closed = silent_tool(MCPError(code=-32000, message="Connection closed"))
    with pytest.raises(ToolError, match="connection is closed"):
        await closed()
