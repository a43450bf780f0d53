"""What every session store shares: the :class:`Session` protocol, a turn as
JSON (written and read back), and the lock that serializes a session's turns.

A turn is stored as the JSON object ``{"inputs": {...}, "outputs": {...}}``
and read back as one ``td.History`` message, ``{**inputs, **outputs}``, the
form adapters show as a user turn and an assistant turn. Values are kept
JSON-like: records and pydantic models are unstructured to their JSON
objects when a turn is appended, and come back as those objects (dicts),
which adapters show as the model saw them. Strings read back pass through
the text policy (:func:`~trio_dspy.unicode.clean_json`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Hashable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol, runtime_checkable

import attrs
import trio

from ..errors import SessionCorruptError
from ..runlocal import RunLocal
from ..types import History, loads_json, unstructure
from ..unicode import clean_json, clean_text

__all__ = [
    "Session",
    "check_max_turns",
    "check_session_id",
    "decode_turn",
    "encode_turn",
    "latest",
    "turn_lock",
]


@runtime_checkable
class Session(Protocol):
    """A stored conversation: what ``td.chat`` reads before a turn and appends after it.

    :class:`~trio_dspy.sessions.MemorySession`,
    :class:`~trio_dspy.sessions.SQLiteSession` and
    :class:`~trio_dspy.sessions.RedisSession` implement it; so can any store.
    A Postgres one keeps the turns :func:`encode_turn` writes in a table and
    reads them back with :func:`decode_turn`::

        class PostgresSession:
            async def history(self) -> td.History:
                rows = await db.fetch("SELECT turn FROM turns WHERE sid = $1 ORDER BY id", sid)
                return td.History([decode_turn(r["turn"], store="postgres", session_id=sid,
                                               index=i) for i, r in enumerate(rows)])

            async def append(self, inputs, outputs) -> None:
                await db.execute("INSERT INTO turns (sid, turn) VALUES ($1, $2)",
                                 sid, encode_turn(inputs, outputs))

            async def clear(self) -> None:
                await db.execute("DELETE FROM turns WHERE sid = $1", sid)

    A store may also define ``turn()``, an async context manager that
    ``td.chat`` holds around each turn (history, call, append) so that turns
    of one conversation never overlap; the built-in stores do. Without it,
    ``td.chat`` serializes the turns of one session object in this process
    (:func:`turn_lock`); to serialize across processes, take a lock there
    (``pg_advisory_lock``).
    """

    async def history(self) -> History:
        """The stored turns, oldest first, one ``td.History`` message each."""
        ...

    async def append(self, inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> None:
        """Store one turn: its inputs (without the history) and its outputs."""
        ...

    async def clear(self) -> None:
        """Forget every turn of this conversation."""
        ...


def check_session_id(session_id: object) -> str:
    """``session_id`` as stored (lone surrogates as U+FFFD).

    Raises:
        TypeError: it is not a string.
        ValueError: it is empty.
    """
    if not isinstance(session_id, str):
        raise TypeError(f"a session id is a string, got {type(session_id).__name__}")
    if not session_id:
        raise ValueError("a session id must not be empty")
    return clean_text(session_id)


def check_max_turns(max_turns: object) -> int | None:
    """``max_turns`` if it is ``None`` or an integer of at least 0.

    Raises:
        ValueError: it is anything else.
    """
    if max_turns is None:
        return None
    if isinstance(max_turns, bool) or not isinstance(max_turns, int) or max_turns < 0:
        raise ValueError(f"max_turns must be None or an integer >= 0, got {max_turns!r}")
    return max_turns


def latest(count: int, max_turns: int | None) -> int:
    """The index of the first of the latest ``max_turns`` of ``count`` turns."""
    return 0 if max_turns is None else max(0, count - max_turns)


def encode_turn(inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> str:
    """One turn as the JSON text a store keeps: ``{"inputs": ..., "outputs": ...}``.

    Records, enums and pydantic models are unstructured to JSON-like data
    first (:func:`~trio_dspy.types.unstructure`); lone surrogates become U+FFFD.

    Raises:
        TypeError: ``inputs`` or ``outputs`` is not a dict with string keys, or
            a value is not JSON-like or nests deeper than
            :data:`~trio_dspy.types.text.MAX_JSON_DEPTH` (the message names the field).
        ValueError: a field is both an input and an output.
    """
    parts = {"inputs": _fields(inputs, "inputs"), "outputs": _fields(outputs, "outputs")}
    both = sorted(set(parts["inputs"]) & set(parts["outputs"]))
    if both:
        raise ValueError(f"a turn's field is an input or an output, not both: {', '.join(both)}")
    return json.dumps(parts, ensure_ascii=False, separators=(",", ":"))


def _fields(values: Mapping[str, Any], what: str) -> dict[str, Any]:
    if not isinstance(values, Mapping):
        raise TypeError(f"a turn's {what} are a dict of field values, got {type(values).__name__}")
    out: dict[str, Any] = {}
    for name, value in values.items():
        if not isinstance(name, str):
            raise TypeError(f"a turn's {what} are named by strings, got {type(name).__name__}")
        try:
            plain = clean_json(unstructure(value))
            # Checked field by field, so that the error names the field; read
            # back as the stores will read it (refusing hostile nesting).
            loads_json(json.dumps(plain, ensure_ascii=False))
        except (TypeError, ValueError, RecursionError) as exc:
            raise TypeError(
                f"a session stores JSON-like values (str, numbers, bool, None, lists, "
                f"dicts, records, pydantic models); {what} field {clean_text(name)!r} "
                f"holds {type(value).__name__}: {exc}"
            ) from None
        out[clean_text(name)] = plain
    return out


def decode_turn(raw: str | bytes, *, store: str, session_id: str, index: int) -> dict[str, Any]:
    """The ``td.History`` message (``{**inputs, **outputs}``) of a turn that
    :func:`encode_turn` wrote; strings pass through the text policy.

    Raises:
        SessionCorruptError: ``raw`` is not such a turn, or nests deeper than
            :data:`~trio_dspy.types.text.MAX_JSON_DEPTH` (it names the store,
            the session and the turn's ``index``).
    """
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    try:
        # Nesting deeper than MAX_JSON_DEPTH is refused here, before it can
        # reach code that recurses over values (the adapters).
        turn = loads_json(text)
    except ValueError as exc:
        raise _corrupt(store, session_id, index, f"it is not JSON ({exc})") from None
    if not (
        isinstance(turn, dict)
        and isinstance(turn.get("inputs"), dict)
        and isinstance(turn.get("outputs"), dict)
    ):
        raise _corrupt(store, session_id, index, 'it is not {"inputs": {...}, "outputs": {...}}')
    message: dict[str, Any] = clean_json({**turn["inputs"], **turn["outputs"]})
    return message


def _corrupt(store: str, session_id: str, index: int, why: str) -> SessionCorruptError:
    return SessionCorruptError(
        f"turn {index} of session {session_id!r} in {store} cannot be read: {why}. "
        "Another program wrote it, or it was damaged; clear() the session to start it over",
        store=store,
        session_id=session_id,
    )


@attrs.define
class _Waiting:
    lock: trio.Lock = attrs.Factory(trio.Lock)
    users: int = 0


# The locks of this run's sessions that have a turn running or waiting, by key:
# an entry goes when its last user leaves, so a server that sees millions of
# conversations keeps locks only for those in progress.
_LOCKS: RunLocal[dict[Hashable, _Waiting]] = RunLocal(dict, name="trio_dspy.sessions.locks")


@asynccontextmanager
async def turn_lock(key: Hashable) -> AsyncIterator[None]:
    """Hold the lock of conversation ``key`` in this process for the block:
    blocks with equal keys run one after another, in arrival order (trio's
    locks are fair); blocks with different keys run at once.

    Raises:
        RuntimeError: called outside a trio run.
    """
    locks = _LOCKS.get()
    entry = locks.setdefault(key, _Waiting())
    entry.users += 1
    try:
        async with entry.lock:
            yield
    finally:
        entry.users -= 1
        if not entry.users:
            del locks[key]
