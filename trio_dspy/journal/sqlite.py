"""``td.Journal``: durable runs in a SQLite file (the embedded default).

The file holds these tables beside any of the application's own:

* ``trio_dspy_journal_meta(key, value)``: ``('schema', '1')``, the version of
  the layout. A file of another version is refused and never written.
* ``trio_dspy_journal_runs(run_id, created_at, updated_at, completed)``.
* ``trio_dspy_journal_steps(run_id, key, kind, fingerprint, blob)``: a step's
  result is the ``data`` of ``trio_dspy_journal_blobs(hash, data)``, stored
  once by its SHA-256 however many steps share it.
* ``trio_dspy_journal_approvals(run_id, call_id, request, seq, approved, note)``.

Every call runs in a worker thread (``trio.to_thread``), so the event loop
never waits on the disk. The file is in WAL mode and each step is one
transaction, committed before the step's result is returned. With
``synchronous="full"`` (the default) the commit is flushed to the disk, so a
step survives the process being killed or the machine losing power; with
``"normal"`` it survives the process being killed, and a power cut may lose
the latest steps (never damaging the file).

A run id is held by one holder at a time: within a process by a trio lock,
across processes by a POSIX lock on one byte of ``{path}.runs-lock`` (the
byte picked by the run id's hash), which the system releases when a process
dies, so a killed worker's run can be entered at once.
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import math
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal, TypeVar

import trio

from ..errors import JournalCorrupt, JournalError, JournalUnavailable
from .local import local_hold
from .store import (
    ApprovalRequest,
    Decision,
    JournalStore,
    RunRecord,
    StepRecord,
    blob_hash,
    busy,
    check_run_id,
    seconds,
    unknown_request,
)

__all__ = ["SCHEMA_VERSION", "Journal"]

T = TypeVar("T")

#: The version of the layout this module reads and writes.
SCHEMA_VERSION = 1
_P = "trio_dspy_journal"
_TABLES = (f"{_P}_meta", f"{_P}_runs", f"{_P}_steps", f"{_P}_blobs", f"{_P}_approvals")
_CREATE = (
    f"CREATE TABLE IF NOT EXISTS {_P}_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    f"CREATE TABLE IF NOT EXISTS {_P}_runs (run_id TEXT PRIMARY KEY, created_at REAL NOT NULL, "
    "updated_at REAL NOT NULL, completed INTEGER NOT NULL DEFAULT 0)",
    f"CREATE TABLE IF NOT EXISTS {_P}_steps (run_id TEXT NOT NULL, key TEXT NOT NULL, "
    "kind TEXT NOT NULL, fingerprint TEXT NOT NULL, blob TEXT NOT NULL, "
    "PRIMARY KEY (run_id, key))",
    f"CREATE TABLE IF NOT EXISTS {_P}_blobs (hash TEXT PRIMARY KEY, data TEXT NOT NULL)",
    f"CREATE TABLE IF NOT EXISTS {_P}_approvals (run_id TEXT NOT NULL, call_id TEXT NOT NULL, "
    "request TEXT NOT NULL, seq INTEGER NOT NULL, approved INTEGER, note TEXT, "
    "PRIMARY KEY (run_id, call_id))",
    f"INSERT OR IGNORE INTO {_P}_meta (key, value) VALUES ('schema', '{SCHEMA_VERSION}')",
)
_TOUCH = (
    f"INSERT INTO {_P}_runs (run_id, created_at, updated_at) VALUES (?, ?, ?) "
    "ON CONFLICT (run_id) DO UPDATE SET updated_at = excluded.updated_at"
)
_GC_BLOBS = f"DELETE FROM {_P}_blobs WHERE hash NOT IN (SELECT blob FROM {_P}_steps)"
# SQLite's result codes for a file that is not a (sound) database: SQLITE_ERROR
# (tables of these names but other columns), CORRUPT, FORMAT, NOTADB.
_NOT_A_JOURNAL = frozenset({1, 11, 24, 26})
# One descriptor per lock file per process, never closed: closing any
# descriptor of a file drops every POSIX lock the process holds on it.
_LOCK_FILES: dict[str, int] = {}
_LOCK_FILES_GUARD = threading.Lock()


class Journal(JournalStore):
    """Durable runs in the SQLite file at ``path`` (created when missing).

    ::

        journal = td.Journal("runs.db")
        async with td.durable("order-1234", journal) as run:
            ...

    Args:
        path: the file; several processes may use it at once.
        timeout: seconds a write waits for another process's write.
        synchronous: ``"full"`` (the default): each step is flushed to the disk
            (``fsync``) before its result is returned, so it survives a power
            cut. ``"normal"``: a step survives the process being killed (it is
            in the operating system's hands) but the latest steps may be lost
            to a power cut or an operating-system crash; the file is never
            damaged. ``benchmarks/journal.py`` measures both.

    Raises:
        ValueError: ``timeout`` is not a positive number, or ``synchronous``
            is neither ``"full"`` nor ``"normal"``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float = 30.0,
        synchronous: Literal["full", "normal"] = "full",
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if synchronous not in ("full", "normal"):
            raise ValueError(f"synchronous is 'full' or 'normal', got {synchronous!r}")
        self.synchronous = synchronous
        self.path = os.fspath(path)
        self.where = self.path
        self._lock_name = os.path.abspath(self.path) + ".runs-lock"
        self.timeout = timeout
        self._conn: sqlite3.Connection | None = None
        self._guard = threading.Lock()

    def __repr__(self) -> str:
        return f"Journal({self.path!r})"

    # ------------------------------------------------------------- holding
    @asynccontextmanager
    async def hold(self, run_id: str, wait: float | None = None) -> AsyncIterator[None]:
        """Hold ``run_id`` in this process and across processes for the block.

        Raises:
            JournalBusy: it was still held by another after ``wait`` seconds.
            JournalUnavailable: the lock file cannot be opened.
        """
        check_run_id(run_id)
        deadline = trio.current_time() + (math.inf if wait is None else wait)
        key = ("journal", self._lock_name, run_id)
        async with local_hold(key, deadline, lambda: busy(self, run_id, wait or 0.0)):
            fd = await trio.to_thread.run_sync(self._lock_file)
            digest = hashlib.sha256(run_id.encode("utf-8", "surrogatepass")).digest()
            offset = int.from_bytes(digest[:7], "big")  # one byte of a sparse 2**56 range
            delay = 0.002
            while not _try_lock(fd, offset):
                if trio.current_time() >= deadline:
                    raise busy(self, run_id, wait or 0.0)
                await trio.sleep(min(delay, max(0.0, deadline - trio.current_time())))
                delay = min(delay * 2, 0.05)
            try:
                yield
            finally:
                fcntl.lockf(fd, fcntl.LOCK_UN, 1, offset, os.SEEK_SET)

    def _lock_file(self) -> int:
        name = self._lock_name
        with _LOCK_FILES_GUARD:
            fd = _LOCK_FILES.get(name)
            if fd is None:
                try:
                    fd = os.open(name, os.O_RDWR | os.O_CREAT, 0o600)
                except OSError as exc:
                    raise JournalUnavailable(
                        f"could not open the lock file {name} ({exc}): check that its "
                        "directory exists and is writable",
                        journal=self.path,
                    ) from None
                _LOCK_FILES[name] = fd
            return fd

    # --------------------------------------------------------------- steps
    async def load(self, run_id: str) -> RunRecord:
        """Every recorded step of ``run_id`` and whether it completed."""
        return await self._run(self._load, check_run_id(run_id))

    def _load(self, conn: sqlite3.Connection, run_id: str) -> RunRecord:
        conn.execute("BEGIN")
        try:
            row = conn.execute(
                f"SELECT completed FROM {_P}_runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            rows = conn.execute(
                f"SELECT s.key, s.kind, s.fingerprint, s.blob, b.data FROM {_P}_steps s "
                f"LEFT JOIN {_P}_blobs b ON b.hash = s.blob WHERE s.run_id = ?",
                (run_id,),
            ).fetchall()
        finally:
            conn.execute("COMMIT")
        steps: dict[str, StepRecord] = {}
        for key, kind, fingerprint, digest, data in rows:
            if not all(isinstance(v, str) for v in (key, kind, fingerprint, data)):
                raise self._corrupt(f"a step of run {run_id!r} is missing or not text", run_id)
            # A payload is stored under its hash: one that no longer matches was
            # damaged, and replaying it would give the run an answer nobody gave.
            if blob_hash(data) != digest:
                raise self._corrupt(f"step {key} of run {run_id!r} does not match its hash", run_id)
            steps[key] = StepRecord(kind, fingerprint, data)
        return RunRecord(steps, bool(row and row[0]))

    async def record(self, run_id: str, key: str, step: StepRecord) -> None:
        """Store ``step`` under ``key`` of ``run_id``; on disk when this returns."""
        await self._run(self._record, run_id, key, step)

    def _record(self, conn: sqlite3.Connection, run_id: str, key: str, step: StepRecord) -> None:
        digest = blob_hash(step.payload)
        with _transaction(conn):
            conn.execute(
                f"INSERT OR IGNORE INTO {_P}_blobs (hash, data) VALUES (?, ?)",
                (digest, step.payload),
            )
            conn.execute(
                f"INSERT OR REPLACE INTO {_P}_steps (run_id, key, kind, fingerprint, blob) "
                "VALUES (?, ?, ?, ?, ?)",
                (run_id, key, step.kind, step.fingerprint, digest),
            )
            now = time.time()
            conn.execute(_TOUCH, (run_id, now, now))

    async def complete(self, run_id: str) -> None:
        """Mark ``run_id`` completed."""
        await self._run(self._complete, run_id)

    def _complete(self, conn: sqlite3.Connection, run_id: str) -> None:
        with _transaction(conn):
            now = time.time()
            conn.execute(_TOUCH, (run_id, now, now))
            conn.execute(f"UPDATE {_P}_runs SET completed = 1 WHERE run_id = ?", (run_id,))

    # ----------------------------------------------------------- approvals
    async def request_approval(self, run_id: str, requests: Sequence[ApprovalRequest]) -> None:
        """Record that ``run_id`` waits for decisions on ``requests``."""
        await self._run(self._request, run_id, list(requests))

    def _request(
        self, conn: sqlite3.Connection, run_id: str, requests: list[ApprovalRequest]
    ) -> None:
        with _transaction(conn):
            (seq,) = conn.execute(
                f"SELECT coalesce(max(seq), 0) FROM {_P}_approvals WHERE run_id = ?", (run_id,)
            ).fetchone()
            for i, request in enumerate(requests, start=seq + 1):
                conn.execute(
                    f"INSERT OR IGNORE INTO {_P}_approvals (run_id, call_id, request, seq) "
                    "VALUES (?, ?, ?, ?)",
                    (run_id, request.call_id, request.to_json(), i),
                )
            now = time.time()
            conn.execute(_TOUCH, (run_id, now, now))

    async def pending(self, run_id: str) -> list[ApprovalRequest]:
        """The requests of ``run_id`` without a decision, in the order recorded."""
        rows = await self._run(
            lambda conn: conn.execute(
                f"SELECT request FROM {_P}_approvals WHERE run_id = ? AND approved IS NULL "
                "ORDER BY seq",
                (check_run_id(run_id),),
            ).fetchall()
        )
        try:
            return [ApprovalRequest.from_json(raw) for (raw,) in rows]
        except ValueError as exc:
            raise self._corrupt(f"an approval request of run {run_id!r}: {exc}", run_id) from None

    async def decide(
        self, run_id: str, call_id: str, *, approved: bool, note: str | None = None
    ) -> None:
        """Record the decision on ``call_id`` of ``run_id``.

        Raises:
            JournalError: ``run_id`` has no request ``call_id``.
        """
        changed = await self._run(self._decide, check_run_id(run_id), call_id, approved, note)
        if not changed:
            raise unknown_request(self, run_id, call_id)

    def _decide(
        self, conn: sqlite3.Connection, run_id: str, call_id: str, approved: bool, note: str | None
    ) -> bool:
        with _transaction(conn):
            cursor = conn.execute(
                f"UPDATE {_P}_approvals SET approved = ?, note = ? "
                "WHERE run_id = ? AND call_id = ?",
                (int(bool(approved)), note, run_id, call_id),
            )
            now = time.time()
            conn.execute(_TOUCH, (run_id, now, now))
        return cursor.rowcount > 0

    async def decision(self, run_id: str, call_id: str) -> Decision | None:
        """The decision recorded on ``call_id`` of ``run_id``, or ``None``."""
        row = await self._run(
            lambda conn: conn.execute(
                f"SELECT approved, note FROM {_P}_approvals WHERE run_id = ? AND call_id = ?",
                (run_id, call_id),
            ).fetchone()
        )
        if row is None or row[0] is None:
            return None
        return Decision(bool(row[0]), row[1] if isinstance(row[1], str) else None)

    # ----------------------------------------------------------- retention
    async def delete(self, run_id: str) -> None:
        """Forget ``run_id`` and the payloads no other run uses."""
        await self._run(self._delete, [check_run_id(run_id)])

    async def prune(self, *, older_than: float | datetime.timedelta) -> int:
        """Delete the runs not written to for ``older_than``; return how many."""
        cutoff = time.time() - seconds(older_than)

        def old(conn: sqlite3.Connection) -> int:
            rows = conn.execute(
                f"SELECT run_id FROM {_P}_runs WHERE updated_at < ?", (cutoff,)
            ).fetchall()
            return self._delete(conn, [r[0] for r in rows])

        return await self._run(old)

    def _delete(self, conn: sqlite3.Connection, run_ids: list[str]) -> int:
        with _transaction(conn):
            for table in ("runs", "steps", "approvals"):
                conn.executemany(
                    f"DELETE FROM {_P}_{table} WHERE run_id = ?", [(r,) for r in run_ids]
                )
            conn.execute(_GC_BLOBS)
        return len(run_ids)

    async def aclose(self) -> None:
        """Close the connection (the next call opens another)."""
        await trio.to_thread.run_sync(self._close)

    def _close(self) -> None:
        with self._guard:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # ---------------------------------------------------------- in a thread
    async def _run(self, work: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(self._locked, work, *args)

    def _locked(self, work: Callable[..., T], *args: Any) -> T:
        with self._guard:
            try:
                if self._conn is None:
                    self._conn = self._open()
                return work(self._conn, *args)
            except sqlite3.Error as exc:
                if self._conn is not None:  # a failed connection is not trusted again
                    self._conn.close()
                    self._conn = None
                raise self._error(exc) from None

    def _open(self) -> sqlite3.Connection:
        # Used by one worker thread at a time (under self._guard).
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            self._prepare(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """Check the layout's version before anything is written; create the tables if none."""
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if f"{_P}_meta" in names:
            row = conn.execute(f"SELECT value FROM {_P}_meta WHERE key = 'schema'").fetchone()
            if row is None or row[0] != str(SCHEMA_VERSION):
                raise self._corrupt(
                    f"it holds a journal of layout {row[0] if row else 'unknown'} and this "
                    f"version of trio_dspy reads layout {SCHEMA_VERSION}: upgrade trio_dspy",
                    None,
                )
        conn.execute("PRAGMA journal_mode = WAL")  # stays with the file
        conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
        if not names.issuperset(_TABLES):
            with _transaction(conn):
                for statement in _CREATE:
                    conn.execute(statement)

    def _corrupt(self, why: str, run_id: str | None) -> JournalCorrupt:
        return JournalCorrupt(
            f"{self.path} cannot be read as a journal: {why}; it was left as it was",
            journal=self.path,
            run_id=run_id,
        )

    def _error(self, exc: sqlite3.Error) -> JournalError:
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in _NOT_A_JOURNAL:
            return self._corrupt(
                f"not a SQLite database of this layout ({exc}); restore a backup or use "
                "another file",
                None,
            )
        return JournalUnavailable(
            f"could not use the journal file {self.path} ({exc}): check that its directory "
            f"exists and is writable, and that no process holds it locked for longer than "
            f"timeout={self.timeout:g} s",
            journal=self.path,
        )


class _transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error) on a connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")


def _try_lock(fd: int, offset: int) -> bool:
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset, os.SEEK_SET)
    except (BlockingIOError, PermissionError):
        return False
    return True
