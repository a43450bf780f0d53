"""Durable runs: a journal of a run's model and tool steps, replayed after a crash.

``async with td.durable(run_id, journal) as run:`` records every model request
and every agent tool call made inside the block under ``run_id``; entering the
same ``run_id`` again returns the recorded results instead of calling the
model or the tool, and runs live from the first step not recorded. A tool
made with ``requires_approval=True`` stops the run with
:class:`~trio_dspy.errors.ApprovalRequired` until a decision is recorded with
``journal.decide(...)``, from any process.

* :class:`~trio_dspy.journal.sqlite.Journal`: a SQLite file (the default).
* :class:`~trio_dspy.journal.redis.RedisJournal`: Redis, for many workers.
* :class:`~trio_dspy.journal.store.JournalStore`: the protocol both follow.

The names load on first use (``import trio_dspy`` does not pay for them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "ApprovalRequest",
    "Decision",
    "DurableRun",
    "Journal",
    "JournalStore",
    "RedisJournal",
    "RunRecord",
    "StepRecord",
    "durable",
]

_NAMES = {
    "ApprovalRequest": ".store",
    "Decision": ".store",
    "JournalStore": ".store",
    "RunRecord": ".store",
    "StepRecord": ".store",
    "DurableRun": ".run",
    "durable": ".run",
    "Journal": ".sqlite",
    "RedisJournal": ".redis",
}

if TYPE_CHECKING:
    from .redis import RedisJournal
    from .run import DurableRun, durable
    from .sqlite import Journal
    from .store import ApprovalRequest, Decision, JournalStore, RunRecord, StepRecord
else:

    def __getattr__(name: str) -> Any:
        try:
            module = _NAMES[name]
        except KeyError:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
        import importlib

        value = getattr(importlib.import_module(module, __name__), name)
        globals()[name] = value
        return value
