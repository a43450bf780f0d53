"""``SQLiteSession``: conversations in a SQLite file, shared by the processes that open it.

The file holds two tables beside any of the application's own, so a
session may live in the application's database:

* ``trio_dspy_session_meta(key, value)``: ``('schema', '1')``, the version of
  the layout below. A file of a later version is refused, never rewritten.
* ``trio_dspy_session_turns(id INTEGER PRIMARY KEY, session_id, turn,
  created_at)``: one row per turn, its JSON in ``turn``
  (:func:`~trio_dspy.sessions.base.encode_turn`), in ``id`` order.

Each call runs in a worker thread (``trio.to_thread``), so the event loop
never waits on the disk, with a connection that no other call uses at the
same time. Connections are kept for the next call (a few per file, for the
files used last): closing the last connection to a WAL file
checkpoints it, which cost about 20 ms per call when each call closed its
own. The file is in WAL mode with ``synchronous=NORMAL``, so readers never
wait for the writer and a commit costs no ``fsync``; a turn survives the
process being killed, and a power cut may lose the latest turns but never
damages the file. A writer waits up to ``timeout`` seconds for another's
write. An append is one ``INSERT``, so processes appending to one session
at once lose no turn. A cancelled call waits for its statement to finish
(at most ``timeout``): a turn is either stored or not, never half.
"""

from __future__ import annotations

import collections
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import trio

from ..errors import SessionCorruptError, SessionError, SessionUnavailableError
from ..types import History
from .base import check_max_turns, check_session_id, decode_turn, encode_turn, latest, turn_lock

__all__ = ["SCHEMA_VERSION", "SQLiteSession"]

T = TypeVar("T")

#: The version of the layout this module reads and writes.
SCHEMA_VERSION = 1
META = "trio_dspy_session_meta"
TURNS = "trio_dspy_session_turns"
_CREATE = (
    f"CREATE TABLE IF NOT EXISTS {META} (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    f"CREATE TABLE IF NOT EXISTS {TURNS} (id INTEGER PRIMARY KEY, "
    "session_id TEXT NOT NULL, turn TEXT NOT NULL, created_at REAL NOT NULL)",
    f"CREATE INDEX IF NOT EXISTS {TURNS}_by_session ON {TURNS} (session_id, id)",
    f"INSERT OR IGNORE INTO {META} (key, value) VALUES ('schema', '{SCHEMA_VERSION}')",
)
# SQLite's result codes for a file that is not a (sound) database, or whose
# tables of these names are not the ones above: SQLITE_ERROR (a missing
# column), SQLITE_CORRUPT, SQLITE_FORMAT, SQLITE_NOTADB. Every other failure
# (busy, locked, cannot open, read-only, disk full, I/O) means the file could
# not be used now.
_NOT_SESSIONS = frozenset({1, 11, 24, 26})
_BUSY = 5  # SQLITE_BUSY


def _busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == _BUSY


#: Idle connections kept per file for the next calls, and files kept so.
MAX_IDLE = 4
MAX_FILES = 8


class _Idle:
    """The idle connections to one file, for whichever worker thread needs one."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connections: list[sqlite3.Connection] = []
        self.dropped = False
        # A forked child must not use its parent's connections (SQLite's rule).
        self.pid = os.getpid()

    def take(self) -> sqlite3.Connection | None:
        with self.lock:
            if self.pid != os.getpid():
                self.connections, self.pid = [], os.getpid()
            return self.connections.pop() if self.connections else None

    def give(self, conn: sqlite3.Connection) -> None:
        with self.lock:
            if not self.dropped and self.pid == os.getpid() and len(self.connections) < MAX_IDLE:
                self.connections.append(conn)
                return
        conn.close()

    def drop(self) -> None:
        with self.lock:
            self.dropped = True
            idle, self.connections = self.connections, []
        for conn in idle:
            conn.close()


# The files used most recently: a process that opens many files (one per
# customer, or a test suite) keeps connections open to a few of them only.
_IDLE: collections.OrderedDict[str, _Idle] = collections.OrderedDict()
_IDLE_LOCK = threading.Lock()


def _idle(path: str) -> _Idle:
    with _IDLE_LOCK:
        idle = _IDLE.get(path)
        if idle is None:
            idle = _IDLE[path] = _Idle()
        _IDLE.move_to_end(path)
        oldest = _IDLE.popitem(last=False)[1] if len(_IDLE) > MAX_FILES else None
    if oldest is not None:
        oldest.drop()
    return idle


class SQLiteSession:
    """A conversation in a SQLite file: survives restarts, shared by every
    process that opens the same file.

    ::

        session = td.sessions.SQLiteSession("chats.db", customer_id, max_turns=20)

    Args:
        path: the database file (created if missing; its directory must exist).
        session_id: which conversation; any number live in one file.
        max_turns: how many of the latest turns :meth:`history` gives
            (``None``: all); every turn is kept.
        timeout: seconds a write waits for another process's write.

    Raises:
        TypeError: ``session_id`` is not a string.
        ValueError: ``session_id`` is empty, ``path`` is empty or
            ``":memory:"`` (each call has its own connection: use
            :class:`~trio_dspy.sessions.MemorySession`), or ``max_turns`` or
            ``timeout`` is out of range.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        session_id: str,
        *,
        max_turns: int | None = None,
        timeout: float = 5.0,
    ) -> None:
        path = os.fspath(path)
        if path in ("", ":memory:"):
            raise ValueError(
                "SQLiteSession needs a file (each call opens its own connection): "
                "use td.sessions.MemorySession() for a conversation in memory"
            )
        if not math.isfinite(timeout) or timeout < 0:
            raise ValueError(f"timeout must be >= 0 seconds, got {timeout!r}")
        self.path = path
        self._file = os.path.abspath(path)  # one pool of connections per file
        self.session_id = check_session_id(session_id)
        self.max_turns = check_max_turns(max_turns)
        self.timeout = timeout

    async def history(self) -> History:
        """The latest ``max_turns`` turns (all if ``None``), oldest first.

        Raises:
            SessionCorruptError: the file is not a SQLite database, is damaged,
                or a stored turn cannot be read; the file is left as it was.
            SessionUnavailableError: the file cannot be opened, or stayed locked.
            SessionError: the file was written by a later version of this layout.
        """
        first, rows = await self._run(self._read)
        return History(
            [
                decode_turn(raw, store=self.path, session_id=self.session_id, index=first + i)
                for i, raw in enumerate(rows)
            ]
        )

    async def append(self, inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> None:
        """Store one turn (one ``INSERT``: stored whole or not at all).

        Raises:
            TypeError: a value is not JSON-like, or ``inputs``/``outputs`` are not dicts.
            ValueError: a field is both an input and an output.
            SessionCorruptError, SessionUnavailableError, SessionError: as for :meth:`history`.
        """
        raw = encode_turn(inputs, outputs)
        await self._run(self._insert, raw)

    async def clear(self) -> None:
        """Forget every turn of this conversation (the others in the file stay).

        Raises:
            SessionCorruptError, SessionUnavailableError, SessionError: as for :meth:`history`.
        """
        await self._run(self._delete)

    def turn(self) -> AbstractAsyncContextManager[None]:
        """Hold this conversation's lock in this process (``td.chat`` holds it
        around each turn). Sessions of the same path and id share it; other
        processes' turns are not held back (their appends are never lost)."""
        return turn_lock(("sqlite", self._file, self.session_id))

    def __repr__(self) -> str:
        return f"SQLiteSession({self.path!r}, {self.session_id!r}, max_turns={self.max_turns})"

    # ------------------------------------------------------------- in a thread
    async def _run(self, work: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(self._with_connection, work, *args)

    def _with_connection(self, work: Callable[..., T], *args: Any) -> T:
        idle = _idle(self._file)
        conn = idle.take()
        worked = False
        try:
            if conn is None:
                conn = self._connect()
            self._prepare(conn)
            result = work(conn, *args)
            worked = True
            return result
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        finally:
            if conn is not None and worked:
                idle.give(conn)
            elif conn is not None:  # a connection that failed is not trusted again
                conn.close()

    def _connect(self) -> sqlite3.Connection:
        # Handed from thread to thread, never used by two at once.
        conn = sqlite3.connect(self._file, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            conn.close()
            raise
        return conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """Create the tables if the file has none of them; check their version."""
        # Per call: a kept connection may have been opened by a session with another timeout.
        conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        found = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN (?, ?)",
            (META, TURNS),
        ).fetchone()[0]
        if found < 2:
            # Set before the transaction (it cannot change inside one); it
            # stays with the file.
            self._switch_to_wal(conn)
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _CREATE:
                    conn.execute(statement)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        row = conn.execute(f"SELECT value FROM {META} WHERE key = 'schema'").fetchone()
        if row is None or row[0] != str(SCHEMA_VERSION):
            raise SessionError(
                f"{self.path} holds sessions of layout {row[0] if row else 'unknown'}; "
                f"this version of trio_dspy reads layout {SCHEMA_VERSION}: upgrade "
                "trio_dspy, or give this version a file of its own",
                store=self.path,
                session_id=self.session_id,
            )

    def _switch_to_wal(self, conn: sqlite3.Connection) -> None:
        """Put the file in WAL mode, waiting up to ``timeout`` for other connections.

        While other connections open a new file at the same moment (the first
        calls of a service), SQLite can refuse the switch with "database is
        locked" at once, without waiting ``busy_timeout``: so wait here as a
        writer would, a little longer each time, until ``timeout`` is spent.
        """
        deadline = time.monotonic() + self.timeout
        pause = 0.001
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                left = deadline - time.monotonic()
                if not _busy(exc) or left <= 0:
                    raise
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.05)

    def _read(self, conn: sqlite3.Connection) -> tuple[int, list[str]]:
        # One read transaction: the count and the rows are of the same snapshot.
        conn.execute("BEGIN")
        try:
            (count,) = conn.execute(
                f"SELECT count(*) FROM {TURNS} WHERE session_id = ?", (self.session_id,)
            ).fetchone()
            first = latest(count, self.max_turns)
            rows = conn.execute(
                f"SELECT turn FROM {TURNS} WHERE session_id = ? ORDER BY id LIMIT -1 OFFSET ?",
                (self.session_id, first),
            ).fetchall()
        finally:
            conn.execute("COMMIT")
        return first, [self._text(raw) for (raw,) in rows]

    @staticmethod
    def _text(raw: object) -> str:
        # Another program may have stored bytes (or a number) in the column.
        if isinstance(raw, bytes):
            return raw.decode("utf-8", "replace")
        return raw if isinstance(raw, str) else repr(raw)

    def _insert(self, conn: sqlite3.Connection, raw: str) -> None:
        conn.execute(
            f"INSERT INTO {TURNS} (session_id, turn, created_at) VALUES (?, ?, ?)",
            (self.session_id, raw, time.time()),
        )

    def _delete(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"DELETE FROM {TURNS} WHERE session_id = ?", (self.session_id,))

    def _error(self, exc: sqlite3.Error) -> SessionError:
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in _NOT_SESSIONS:
            return SessionCorruptError(
                f"{self.path} is not a SQLite database of sessions ({exc}); it was left "
                "as it was: restore it from a backup or give the session another file",
                store=self.path,
                session_id=self.session_id,
            )
        return SessionUnavailableError(
            f"could not use the session file {self.path} ({exc}): check that its "
            "directory exists and is writable, and that no other process holds it "
            f"locked for longer than timeout={self.timeout:g} s",
            store=self.path,
            session_id=self.session_id,
        )
