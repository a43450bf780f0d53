"""Fuzzing a durable run's journal: whatever a step's stored result or a stored
approval request holds, entering the run again ends in the run's result (the
step replayed, or run live once a mismatch is rerun) or one of ``td.errors``'
types, in bounded time, and never in a wrong answer from a damaged step.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import event, given
from hypothesis import strategies as st

import trio_dspy as td
from trio_dspy.errors import JournalCorrupt, TrioDSPyError
from trio_dspy.journal.store import ApprovalRequest
from trio_dspy.lm import LMResponse, ToolCall
from trio_dspy.lm.cache_codec import encode_response
from trio_dspy.testing import DummyLM

from .hostile import fuzz_settings, mutated

RESPONSE = json.loads(
    encode_response(LMResponse("[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]", model="m"))
)
TOOL_STEP = {"observation": "order A1: 12 EUR", "ok": True}
REQUEST = json.loads(ApprovalRequest("tool-1-0", "refund", {"order_id": "A1"}).to_json())
CALL_BOUND = 10.0


def lookup(order_id: str) -> str:
    """Look an order up."""
    return f"order {order_id}: 12 EUR"


def agent_lm() -> DummyLM:
    calls = (ToolCall("a", "lookup", json.dumps({"order_id": "A1"})),)
    finish = (ToolCall("b", "finish", json.dumps({"answer": "12 EUR"})),)
    return DummyLM(
        [LMResponse("", tool_calls=calls), LMResponse("", tool_calls=finish)],
        supports_tools=True,
    )


def store_raw(path: Path, sql: str, raw: bytes) -> None:
    """Write ``raw`` where ``sql`` says, as text when it decodes, else as a blob."""
    try:
        value: Any = raw.decode("utf-8")
    except UnicodeDecodeError:
        value = raw
    with sqlite3.connect(path) as conn:
        conn.execute(sql, (value,))
    conn.close()


@fuzz_settings(30)
@given(raw=st.one_of(mutated(RESPONSE), st.binary(max_size=200)))
async def test_a_damaged_model_step_replays_or_is_a_corrupt_journal(
    raw: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "runs.db"
    with td.context(lm=DummyLM([{"answer": "4"}])):
        async with td.durable("r", td.Journal(path)):
            await td.Predict("question -> answer")(question="2+2?")
    store_raw(path, "UPDATE trio_dspy_journal_blobs SET data = ?", raw)
    lm = DummyLM([])  # a live call would fail: only the journal can answer
    with trio.fail_after(CALL_BOUND), td.context(lm=lm):
        try:
            async with td.durable("r", td.Journal(path)):
                pred = await td.Predict("question -> answer")(question="2+2?")
        except JournalCorrupt:
            event("corrupt")
            return
        except TrioDSPyError as exc:  # a readable response whose text does not parse
            event(type(exc).__name__)
            return
    event("replayed")
    assert isinstance(pred.answer, str) and lm.requests == []


@fuzz_settings(30)
@given(raw=st.one_of(mutated(TOOL_STEP), st.binary(max_size=200)))
async def test_a_damaged_tool_step_replays_or_is_a_corrupt_journal(
    raw: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "runs.db"
    agent = td.ReAct("request -> answer", tools=[td.Tool(lookup, blocking=False)])
    with td.context(lm=agent_lm()):
        async with td.durable("r", td.Journal(path)):
            await agent(request="price of A1?")
    store_raw(
        path,
        "UPDATE trio_dspy_journal_blobs SET data = ? WHERE hash = (SELECT blob FROM "
        "trio_dspy_journal_steps WHERE kind = 'tool')",
        raw,
    )
    with trio.fail_after(CALL_BOUND), td.context(lm=DummyLM([], supports_tools=True)):
        try:
            async with td.durable("r", td.Journal(path)):
                pred = await agent(request="price of A1?")
        except JournalCorrupt:
            event("corrupt")
            return
    event("replayed")
    assert pred.answer == "12 EUR"
    assert isinstance(pred.trajectory.steps[0].calls[0].observation, str)


@fuzz_settings(30)
@given(raw=st.one_of(mutated(REQUEST), st.binary(max_size=200)))
async def test_a_damaged_approval_request_lists_or_is_a_corrupt_journal(
    raw: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "runs.db"
    journal = td.Journal(path)
    await journal.request_approval("r", [ApprovalRequest("tool-1-0", "refund", {"a": 1})])
    await journal.aclose()
    store_raw(path, "UPDATE trio_dspy_journal_approvals SET request = ?", raw)
    with trio.fail_after(CALL_BOUND):
        try:
            pending = await td.Journal(path).pending("r")
        except JournalCorrupt:
            event("corrupt")
            return
    event("listed")
    for request in pending:
        json.dumps(request.arguments, ensure_ascii=False).encode("utf-8")  # no lone surrogate
        assert isinstance(request.call_id, str) and isinstance(request.tool, str)
