"""Fuzzing stored conversation turns: whatever a session store holds, reading
it gives a usable ``td.History`` or a ``SessionCorruptError``, and a
``td.chat`` turn over it ends in a prediction or a ``td.errors`` type, in
bounded time.

Most examples drive the one decoder every store uses; fewer go through a
SQLite file or a whole ``td.chat`` turn.
"""

from __future__ import annotations

import json
import sqlite3
import time

import pytest
import trio
from hypothesis import event, given
from hypothesis import strategies as st

import trio_dspy as td
from trio_dspy.errors import SessionCorruptError
from trio_dspy.sessions import MemorySession, SQLiteSession, decode_turn, encode_turn
from trio_dspy.testing import DummyLM

from .hostile import fuzz_settings, mutated

DOCUMENT = json.loads(
    encode_turn(
        {"question": "Capital of France?", "context": ["Paris is", 1, None]},
        {"answer": "Paris", "confidence": 0.9},
    )
)
valid_turns = st.builds(
    lambda q, a: encode_turn({"question": q}, {"answer": a}).encode(),
    st.text(max_size=30),
    st.text(max_size=30),
)
hostile_turns = st.one_of(mutated(DOCUMENT), st.binary(max_size=300), valid_turns)
DECODE_BOUND = 2.0
CALL_BOUND = 10.0


def check_message(message: object) -> None:
    """A message a session could give: a dict of JSON-like values, UTF-8 clean."""
    assert isinstance(message, dict)
    json.dumps(message, ensure_ascii=False).encode("utf-8")  # no lone surrogate
    td.History([message])


@fuzz_settings(300)
@given(raw=hostile_turns)
def test_a_stored_turn_reads_back_as_a_message_or_a_corrupt_session(raw: bytes) -> None:
    start = time.monotonic()
    for stored in (raw, raw.decode("utf-8", "replace")):  # Redis gives bytes, SQLite text
        try:
            message = decode_turn(stored, store="fuzz", session_id="s", index=0)
        except SessionCorruptError:
            event("corrupt")
            continue
        event("read")
        check_message(message)
    assert time.monotonic() - start < DECODE_BOUND


def test_the_unspoiled_document_is_read_back_as_stored() -> None:
    assert decode_turn(json.dumps(DOCUMENT), store="fuzz", session_id="s", index=0) == {
        **DOCUMENT["inputs"],
        **DOCUMENT["outputs"],
    }


@fuzz_settings(30)
@given(raw=hostile_turns)
async def test_a_sqlite_session_reads_any_row_as_history_or_a_corrupt_session(
    raw: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "chats.db"
    session = SQLiteSession(path, "s")
    await session.clear()
    conn = sqlite3.connect(path)
    try:
        conn.execute(
            "INSERT INTO trio_dspy_session_turns (session_id, turn, created_at) VALUES (?, ?, 0)",
            ("s", raw),  # bytes: a BLOB, as another program might store it
        )
        conn.commit()
    finally:
        conn.close()
    with trio.fail_after(CALL_BOUND):
        try:
            history = await session.history()
        except SessionCorruptError:
            event("corrupt")
            return
    event("read")
    (message,) = history.messages
    check_message(message)


@fuzz_settings(40)
@given(raw=hostile_turns)
async def test_a_chat_turn_over_any_stored_turn_ends_in_a_prediction_or_a_typed_error(
    raw: bytes,
) -> None:
    session = MemorySession()
    session._turns.append(raw.decode("utf-8", "replace"))
    lm = DummyLM([{"answer": "ok"}])
    with trio.fail_after(CALL_BOUND), td.context(lm=lm):
        try:
            prediction = await td.chat(td.Predict("question, history: History -> answer"), session)(
                question="Next?"
            )
        except td.errors.TrioDSPyError as exc:
            event(type(exc).__name__)
            assert len(lm.history) == 0
            return
    event("answered")
    assert prediction.answer == "ok"
    assert (await session.history()).messages[-1] == {"question": "Next?", "answer": "ok"}


def test_a_hostile_but_readable_turn_is_read_under_the_text_policy() -> None:
    raw = '{"inputs": {"question": "\\ud800' + "x" * 10 + '"}, "outputs": {"answer": 1e400}}'
    message = decode_turn(raw, store="fuzz", session_id="s", index=0)
    assert message == {"question": "\ufffd" + "x" * 10, "answer": float("inf")}
