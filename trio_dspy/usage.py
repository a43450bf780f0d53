"""Token accounting scoped to a block of code and the tasks it spawns."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

from .primitives import Usage

__all__ = ["record_usage", "track_usage"]

# Every tracker active for the calling task, innermost last. A child task
# copies its spawner's context, so it records into the same tracker objects.
_trackers: contextvars.ContextVar[tuple[Usage, ...]] = contextvars.ContextVar(
    "trio_dspy.usage", default=()
)


@contextmanager
def track_usage() -> Iterator[Usage]:
    """Sum the tokens of every LM call made inside the block, child tasks included.

    ::

        with td.track_usage() as usage:
            await td.gather(*(partial(agent, request=r) for r in requests))
        print(usage.total_tokens)

    Trackers nest: a call counts toward every enclosing tracker. Child tasks
    spawned inside the block keep counting into it until they finish, so read
    the totals after the nursery that ran them has closed.
    """
    usage = Usage()
    token = _trackers.set((*_trackers.get(), usage))
    try:
        yield usage
    finally:
        _trackers.reset(token)


def record_usage(usage: Usage, *, requests: int = 0) -> None:
    """Add ``usage`` (and ``requests`` model calls) to every tracker active for the calling task."""
    for tracker in _trackers.get():
        tracker.add(usage)
        tracker.requests += requests
