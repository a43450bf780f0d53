"""Fuzzing MCP tool results: whatever a server answers, a call ends in a value or a ToolError.

One server (``tests/mcp_scripted_server.py``) serves every example: it answers
each call of its ``reply`` tool with the bytes the example gives as the
response's ``result``: a valid result with a hostile value at any position
(wrong types, lone surrogates, deep nesting, huge numbers), truncated, or
spoiled with invalid UTF-8. Starting a process per example would make the
run slow, so the session lives in a trio loop of its own, in a thread, and
each example is one call into it.

That loop runs on a mock clock that jumps once nothing has happened for
:data:`IDLE` real seconds: an answer the SDK cannot read is never delivered,
so such a call ends in the ``call_timeout`` (a ``ToolTimeoutError``) at once
instead of after seconds of real time. The threshold is raised while the
server starts, since its real start-up looks idle to trio.
"""

from __future__ import annotations

import base64
import json
import queue
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given

import trio_dspy as td
from trio_dspy.errors import ToolError

from .hostile import fuzz_settings, mutated, process_alive

SERVER = str(Path(__file__).with_name("mcp_scripted_server.py"))
# A valid CallToolResult with a member of every kind, for mutated() to spoil.
RESULT = {
    "content": [
        {"type": "text", "text": "Latte: 4.50"},
        {"type": "image", "data": "aGk=", "mimeType": "image/png"},
        {"type": "resource", "resource": {"uri": "file:///menu", "text": "Mocha"}},
    ],
    "structuredContent": {"prices": [4.5, "5"], "open": True},
    "isError": False,
}
CALL_TIMEOUT = 5.0  # virtual seconds
IDLE = 0.05  # real seconds of idleness before the clock jumps, once the server is up
WALL_BOUND = 10.0  # real seconds any example may take


class Session:
    """The ``reply`` tool of one server, called from the test's thread."""

    def __init__(self, tool: td.Tool, token: trio.lowlevel.TrioToken, stop: trio.Event) -> None:
        self.tool, self.token, self.stop = tool, token, stop

    def call(self, payload: bytes) -> Any:
        """The result of answering a call with ``payload``, or the ToolError it raised."""
        raw = "base64:" + base64.b64encode(payload).decode()

        async def one() -> Any:
            with trio.fail_after(CALL_TIMEOUT * 4):
                try:
                    return await self.tool(raw=raw)
                except ToolError as exc:
                    return exc

        return trio.from_thread.run(one, trio_token=self.token)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    """A session with the scripted server, in a trio loop on a thread; the server is
    checked to be gone once the session has closed."""
    pidfile = tmp_path_factory.mktemp("mcp") / "server.pid"
    handed: queue.Queue[Session | BaseException] = queue.Queue()
    clock = trio.testing.MockClock(autojump_threshold=2.0)

    async def serve() -> None:
        stop = trio.Event()
        try:
            options = [SERVER, "--pidfile", str(pidfile)]
            async with td.mcp.stdio(sys.executable, options, call_timeout=CALL_TIMEOUT) as tools:
                clock.autojump_threshold = IDLE
                handed.put(Session(tools[0], trio.lowlevel.current_trio_token(), stop))
                await stop.wait()
                clock.autojump_threshold = 2.0
        except BaseException as exc:  # pragma: no cover - shown by the test that waits
            handed.put(exc)
            raise

    thread = threading.Thread(target=trio.run, args=(serve,), kwargs={"clock": clock})
    thread.start()
    opened = handed.get(timeout=60)
    if isinstance(opened, BaseException):  # pragma: no cover
        thread.join()
        raise opened
    try:
        yield opened
    finally:
        trio.from_thread.run_sync(opened.stop.set, trio_token=opened.token)
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert not process_alive(int(pidfile.read_text()))


@fuzz_settings(40)
@given(payload=mutated(RESULT))
def test_a_hostile_tool_result_ends_in_a_value_or_a_tool_error(
    session: Session, payload: bytes
) -> None:
    started = time.monotonic()
    outcome = session.call(payload)
    assert time.monotonic() - started < WALL_BOUND
    if isinstance(outcome, ToolError):
        assert outcome.tool == "reply"
        str(outcome).encode("utf-8")  # no lone surrogate in the message
    else:
        # Text that goes on to a model: every string encodes (lone surrogates were replaced).
        json.dumps(outcome, ensure_ascii=False).encode("utf-8")


def test_the_session_still_answers_after_the_fuzzing(session: Session) -> None:
    assert session.call(json.dumps(RESULT).encode()) == {"prices": [4.5, "5"], "open": True}
