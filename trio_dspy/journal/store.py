"""What a journal stores, and the protocol every journal follows.

A journal keeps, per run id:

* its **steps**: ``key -> StepRecord`` (``kind`` ``"lm"`` or ``"tool"``, the
  request's ``fingerprint`` and the result as JSON text). A payload is stored
  once by its SHA-256, however many steps or runs share it (an image a tool
  returns, the same answer in many runs);
* whether it **completed** (its ``td.durable`` block ended without an error);
* its **approvals**: the tool calls it stopped at and the decisions recorded
  for them.

:class:`JournalStore` is that protocol: implement its methods to keep runs in
another database (Postgres, say). ``td.Journal`` (SQLite) and
``td.RedisJournal`` implement it.
"""

from __future__ import annotations

import abc
import datetime
import hashlib
import json
import math
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import attrs

from ..errors import JournalBusy, JournalError
from ..types.text import loads_json
from ..unicode import clean_json, clean_text

__all__ = [
    "ApprovalRequest",
    "Decision",
    "JournalStore",
    "RunRecord",
    "StepRecord",
    "blob_hash",
    "busy",
    "check_run_id",
    "seconds",
    "unknown_request",
]

#: The longest run id accepted (it is part of keys and file rows).
MAX_RUN_ID = 512


@attrs.frozen
class StepRecord:
    """One recorded step: its kind, its request's fingerprint and its result (JSON text)."""

    kind: str
    fingerprint: str
    payload: str


@attrs.frozen
class ApprovalRequest:
    """A tool call waiting for a person's decision.

    ``call_id`` is what :meth:`JournalStore.decide` takes (unique in its run
    and the same every time the run is replayed), ``tool`` the tool's name and
    ``arguments`` what the model asked to call it with.
    """

    call_id: str
    tool: str
    arguments: dict[str, Any]

    def to_json(self) -> str:
        """The request as the JSON text a journal stores."""
        return json.dumps(attrs.asdict(self), ensure_ascii=False, default=repr)

    @classmethod
    def from_json(cls, raw: str | bytes) -> ApprovalRequest:
        """The request stored as ``raw``.

        Raises:
            ValueError: ``raw`` is not what :meth:`to_json` writes.
        """
        doc = loads_json(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw)
        if not isinstance(doc, dict):
            raise ValueError("an approval request is a JSON object")
        call_id, tool, arguments = doc.get("call_id"), doc.get("tool"), doc.get("arguments")
        if not (isinstance(call_id, str) and isinstance(tool, str) and isinstance(arguments, dict)):
            raise ValueError("an approval request has a call_id, a tool and arguments")
        return cls(clean_text(call_id), clean_text(tool), clean_json(arguments))


@attrs.frozen
class Decision:
    """A person's decision on an :class:`ApprovalRequest`, with an optional note."""

    approved: bool
    note: str | None = None

    @classmethod
    def of(cls, verdict: object) -> Decision:
        """What an approver returned as a decision: a :class:`Decision` as it
        is, anything else by its truth (``True`` approves). Raises nothing."""
        return verdict if isinstance(verdict, Decision) else cls(bool(verdict))


@attrs.frozen
class RunRecord:
    """What a journal holds of one run when it is entered."""

    steps: dict[str, StepRecord] = attrs.field(factory=dict)
    completed: bool = False


def blob_hash(payload: str) -> str:
    """The SHA-256 hex digest a payload is stored under."""
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


def check_run_id(run_id: object) -> str:
    """``run_id`` if it names a run.

    Raises:
        TypeError: it is not a string.
        ValueError: it is empty or longer than 512 characters.
    """
    if not isinstance(run_id, str):
        raise TypeError(f"a run id is a string, got {type(run_id).__name__}")
    if not run_id or len(run_id) > MAX_RUN_ID:
        raise ValueError(f"a run id has 1 to {MAX_RUN_ID} characters, got {len(run_id)}")
    return run_id


def busy(journal: JournalStore, run_id: str, wait: float) -> JournalBusy:
    """The error of a hold on ``run_id`` not taken within ``wait`` seconds."""
    return JournalBusy(
        f"run {run_id!r} is being run by another task or process and was still held "
        f"after {wait:g} s: wait longer, or check for a stuck worker",
        journal=journal.where,
        run_id=run_id,
    )


def unknown_request(journal: JournalStore, run_id: str, call_id: str) -> JournalError:
    """The error of a decision on ``call_id``, which ``run_id`` never asked about."""
    return JournalError(
        f"run {run_id!r} has no approval request {call_id!r}: take the call ids "
        "from ApprovalRequired.requests or journal.pending(run_id)",
        journal=journal.where,
        run_id=run_id,
    )


def seconds(older_than: float | datetime.timedelta) -> float:
    """``older_than`` in seconds.

    Raises:
        ValueError: it is negative or not finite.
    """
    value = older_than.total_seconds() if isinstance(older_than, datetime.timedelta) else older_than
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"older_than must be a non-negative duration, got {older_than!r}")
    return float(value)


class JournalStore(abc.ABC):
    """Where durable runs are recorded. Subclass it to keep them elsewhere.

    Each method raises :class:`~trio_dspy.errors.JournalUnavailable` when the
    store cannot be reached, and :class:`~trio_dspy.errors.JournalCorrupt`
    when it holds what this version cannot read. A method that writes
    returns only once the write is durable.
    """

    #: Where the journal lives, for messages (never a password).
    where: str = "journal"

    @abc.abstractmethod
    def hold(self, run_id: str, wait: float | None = None) -> AbstractAsyncContextManager[None]:
        """Hold ``run_id`` for the block: other holders (tasks or processes) wait.

        A holder that dies (killed) lets go within a bounded time.

        Raises:
            JournalBusy: ``run_id`` was still held by another after ``wait`` seconds.
        """

    @abc.abstractmethod
    async def load(self, run_id: str) -> RunRecord:
        """Every recorded step of ``run_id`` and whether it completed (empty if unknown)."""

    @abc.abstractmethod
    async def record(self, run_id: str, key: str, step: StepRecord) -> None:
        """Store ``step`` under ``key`` in ``run_id`` (replacing one there), durably."""

    @abc.abstractmethod
    async def complete(self, run_id: str) -> None:
        """Mark ``run_id`` completed."""

    @abc.abstractmethod
    async def request_approval(self, run_id: str, requests: Sequence[ApprovalRequest]) -> None:
        """Record that ``run_id`` waits for decisions on ``requests``."""

    @abc.abstractmethod
    async def pending(self, run_id: str) -> list[ApprovalRequest]:
        """The requests of ``run_id`` that have no decision yet, in the order recorded."""

    @abc.abstractmethod
    async def decide(
        self, run_id: str, call_id: str, *, approved: bool, note: str | None = None
    ) -> None:
        """Record the decision on the call ``call_id`` of ``run_id`` (from any process).

        The run applies it when it is entered again.

        Raises:
            KeyError: ``run_id`` has no request ``call_id``.
        """

    @abc.abstractmethod
    async def decision(self, run_id: str, call_id: str) -> Decision | None:
        """The decision recorded on ``call_id`` of ``run_id``, or ``None``."""

    @abc.abstractmethod
    async def delete(self, run_id: str) -> None:
        """Forget ``run_id``: its steps, approvals and payloads no other run uses."""

    @abc.abstractmethod
    async def prune(self, *, older_than: float | datetime.timedelta) -> int:
        """Delete the runs not written to for ``older_than`` (seconds); return how many."""

    async def aclose(self) -> None:
        """Release what the journal holds (connections); it reopens on next use."""
        return None
