"""MCP servers that misbehave: silent, malformed, erroring, or leaving processes behind.

The server is ``tests/mcp_scripted_server.py`` in a child process, which
answers each call of its ``reply`` tool with the raw JSON-RPC members the
call carries, so a test says what the server sends.

The timeout tests run on the autojump clock, so the documented default
bounds are what they measure. A real child process is involved, though, and
trio sees a task waiting on its pipe as idle: at the default threshold of 0
the clock would jump past a deadline while the server is still starting.
They therefore set a threshold of :data:`IDLE` real seconds, longer than the
server needs to answer, so the clock jumps only once nothing more can come.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import trio_dspy as td
from trio_dspy.errors import ConfigurationError, ToolError, ToolTimeoutError

from .hostile import process_alive

SERVER = str(Path(__file__).with_name("mcp_scripted_server.py"))
# Real seconds of idleness before the autojump clock jumps (see above).
IDLE = 1.0
# Seconds (real, or virtual on the autojump clock) any test may take.
BOUND = 60
NEVER = '""'  # the reply the server never sends


@asynccontextmanager
async def reply_tool(*options: str, **bounds: Any) -> AsyncIterator[td.Tool]:
    """The scripted server's ``reply`` tool, over stdio; ``bounds`` are ``stdio``'s timeouts."""
    async with td.mcp.stdio(sys.executable, [SERVER, *options], **bounds) as tools:
        (tool,) = tools
        yield tool


def members(**fields: object) -> str:
    """JSON-RPC response members as the server writes them: ``"result": {...}``."""
    return ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in fields.items())


# ----------------------------------------------------------------- timeouts
def test_defaults_are_documented_values() -> None:
    import inspect

    for opener in (td.mcp.stdio, td.mcp.http):
        params = inspect.signature(opener).parameters
        assert params["handshake_timeout"].default == 60.0
        assert params["call_timeout"].default == 300.0
        assert params["handshake_timeout"].kind is inspect.Parameter.KEYWORD_ONLY
        assert params["call_timeout"].kind is inspect.Parameter.KEYWORD_ONLY


async def test_a_server_that_never_answers_the_handshake_fails_after_the_default(
    autojump_clock: trio.testing.MockClock,
) -> None:
    autojump_clock.autojump_threshold = IDLE
    start = trio.current_time()
    with trio.fail_after(10 * BOUND), pytest.raises(ConfigurationError) as info:
        async with reply_tool("--silent"):
            pass
    assert trio.current_time() - start == pytest.approx(60, abs=5)
    message = str(info.value)
    assert "did not answer the MCP handshake within 60s" in message
    assert repr(sys.executable) in message  # which server
    assert "handshake_timeout=" in message  # how to wait longer


async def test_a_result_the_sdk_cannot_read_fails_the_call_after_the_default(
    autojump_clock: trio.testing.MockClock,
) -> None:
    autojump_clock.autojump_threshold = IDLE
    with trio.fail_after(10 * BOUND):
        async with reply_tool() as reply:
            start = trio.current_time()
            with pytest.raises(ToolTimeoutError) as info:
                await reply(raw=members(result="string"))
            assert trio.current_time() - start == pytest.approx(300, abs=5)
            assert info.value.tool == "reply"
            message = str(info.value)
            assert "reply" in message and repr(sys.executable) in message
            assert "call_timeout=" in message
            # The session is still usable.
            assert await reply(raw=members(result={"content": []})) == ""


async def test_both_bounds_can_be_set_for_the_block_and_the_call_per_tool(
    autojump_clock: trio.testing.MockClock,
) -> None:
    autojump_clock.autojump_threshold = IDLE
    with trio.fail_after(10 * BOUND):
        start = trio.current_time()
        with pytest.raises(ConfigurationError, match="within 2s"):
            async with reply_tool("--silent", handshake_timeout=2):
                pass
        assert trio.current_time() - start == pytest.approx(2, abs=IDLE * 2)
        async with reply_tool(call_timeout=5) as reply:
            start = trio.current_time()
            with pytest.raises(ToolTimeoutError, match="5s"):
                await reply(raw=NEVER)
            assert trio.current_time() - start == pytest.approx(5, abs=IDLE * 2)
            # Per tool, longer than the block's.
            patient = td.Tool(reply, timeout=30)
            start = trio.current_time()
            with pytest.raises(ToolTimeoutError, match="30s"):
                await patient(raw=NEVER)
            assert trio.current_time() - start == pytest.approx(30, abs=IDLE * 2)


# ----------------------------------------------------------- server errors
async def test_a_server_error_coded_32000_reaches_the_user_with_its_message() -> None:
    error = {"code": -32000, "message": "the pantry is locked"}
    with trio.fail_after(BOUND):
        async with reply_tool() as reply:
            with pytest.raises(ToolError, match="^MCP error -32000: the pantry is locked$"):
                await reply(raw=members(error=error))
            assert await reply(raw=members(result={"content": []})) == ""


async def test_a_server_that_exits_mid_call_is_reported_as_a_closed_connection() -> None:
    with trio.fail_after(BOUND):
        async with reply_tool() as reply:
            with pytest.raises(ToolError, match="the MCP server's connection is closed"):
                await reply(raw="exit")


@pytest.mark.parametrize(
    "result",
    [
        {"content": [{"type": "nonsense"}]},
        {"content": [{"type": "text"}]},
        {"content": [{"type": "text", "text": 7}]},
        {"content": "not a list"},
        {"content": [], "isError": "perhaps"},
        {"content": [{"type": "image", "data": "x"}]},
        {},
    ],
)
async def test_a_malformed_result_is_a_tool_error_naming_the_tool(result: object) -> None:
    with trio.fail_after(BOUND):
        async with reply_tool() as reply:
            with pytest.raises(ToolError, match="reply") as info:
                await reply(raw=members(result=result))
            assert type(info.value) is ToolError and info.value.tool == "reply"
            assert "MCP server" in str(info.value)


async def test_lone_surrogates_in_a_result_become_replacement_characters() -> None:
    text = '"result": {"content": [{"type": "text", "text": "tea \\ud800"}]}'
    structured = '"result": {"content": [], "structuredContent": {"\\udfff": ["\\ud83d"]}}'
    failed = '"result": {"content": [{"type": "text", "text": "no \\udc80"}], "isError": true}'
    with trio.fail_after(BOUND):
        async with reply_tool() as reply:
            assert await reply(raw=text) == "tea \ufffd"
            assert await reply(raw=structured) == {"\ufffd": ["\ufffd"]}
            with pytest.raises(ToolError, match="^no \ufffd$"):
                await reply(raw=failed)


# ------------------------------------------------------------- processes
@pytest.mark.skipif(sys.platform == "win32", reason="process groups are POSIX")
@pytest.mark.parametrize("exit", ["normal", "error", "cancelled"])
async def test_a_grandchild_of_a_stdio_server_ends_with_the_block(
    tmp_path: Path, exit: str
) -> None:
    pidfile = tmp_path / "grandchild.pid"
    with trio.fail_after(BOUND):
        with (
            trio.CancelScope() as scope,
            pytest.raises(KeyError) if exit == "error" else nullcontext(),
        ):
            async with reply_tool("--grandchild", str(pidfile)) as reply:
                pid = int(pidfile.read_text())
                assert process_alive(pid)
                await reply(raw=members(result={"content": []}))
                if exit == "error":
                    raise KeyError("mine")
                if exit == "cancelled":
                    scope.cancel()
                    await trio.sleep_forever()
        assert scope.cancelled_caught == (exit == "cancelled")
    assert not process_alive(pid)
