"""``MemorySession``: a conversation kept in this process's memory."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import trio

from ..types import History
from .base import check_max_turns, decode_turn, encode_turn, latest, turn_lock

__all__ = ["MemorySession"]


class MemorySession:
    """A conversation in memory: for tests, scripts and single-process apps.

    ::

        session = td.sessions.MemorySession(max_turns=20)
        bot = td.chat(td.Predict("question, history: History -> answer"), session)
        await bot(question="Hi!")

    Turns are kept as the JSON a stored session writes (values are copied
    as JSON, so later changes to them do not change the conversation) and
    are gone when the process exits. The session may be used from any
    number of ``trio.run`` calls.

    Args:
        max_turns: how many of the latest turns :meth:`history` gives
            (``None``: all); every turn is kept.

    Raises:
        ValueError: ``max_turns`` is not ``None`` or an integer >= 0.
    """

    store = "memory"

    def __init__(self, *, max_turns: int | None = None) -> None:
        self.max_turns = check_max_turns(max_turns)
        self.session_id = f"memory-{id(self):x}"
        self._turns: list[str] = []

    async def history(self) -> History:
        """The latest ``max_turns`` turns (all if ``None``), oldest first."""
        await trio.lowlevel.checkpoint()
        first = latest(len(self._turns), self.max_turns)
        return History(
            [
                decode_turn(raw, store=self.store, session_id=self.session_id, index=first + i)
                for i, raw in enumerate(self._turns[first:])
            ]
        )

    async def append(self, inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> None:
        """Store one turn.

        Raises:
            TypeError: a value is not JSON-like, or ``inputs``/``outputs`` are not dicts.
            ValueError: a field is both an input and an output.
        """
        raw = encode_turn(inputs, outputs)
        await trio.lowlevel.checkpoint()
        self._turns.append(raw)

    async def clear(self) -> None:
        """Forget every turn."""
        await trio.lowlevel.checkpoint()
        self._turns.clear()

    def turn(self) -> AbstractAsyncContextManager[None]:
        """Hold this session's lock (``td.chat`` holds it around each turn)."""
        return turn_lock(self)

    def __repr__(self) -> str:
        return f"MemorySession(turns={len(self._turns)}, max_turns={self.max_turns})"
