"""Conversation sessions: a conversation's turns kept in a store, and ``td.chat``.

``td.chat(program, session)`` turns a program with a ``td.History`` input
into one that carries a conversation: each call reads the session's earlier
turns, sends them as user and assistant messages, and stores the new turn.

* :class:`MemorySession`: in this process's memory.
* :class:`SQLiteSession`: in a SQLite file, shared by the processes that open it.
* :class:`RedisSession` (the ``redis`` extra): in Redis, turns serialized
  across processes.
* :class:`Session`: the protocol, for a store of your own.

Errors: :class:`~trio_dspy.errors.SessionUnavailableError` (the store cannot
be reached) and :class:`~trio_dspy.errors.SessionCorruptError` (it holds
something that is not a session), both :class:`~trio_dspy.errors.SessionError`.
"""

from .base import Session, decode_turn, encode_turn, turn_lock
from .conversation import Chat, chat
from .memory import MemorySession
from .redis import RedisSession
from .sqlite import SQLiteSession

__all__ = [
    "Chat",
    "MemorySession",
    "RedisSession",
    "SQLiteSession",
    "Session",
    "chat",
    "decode_turn",
    "encode_turn",
    "turn_lock",
]
