"""Token accounting scoped to a block of code and the tasks it spawns."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

from .primitives import Usage

__all__ = ["count_usage", "record_usage", "track_usage", "wants_cost"]

# Every tracker active for the calling task, innermost last. A child task
# copies its spawner's context, so it records into the same tracker objects.
_trackers: contextvars.ContextVar[tuple[Usage, ...]] = contextvars.ContextVar(
    "trio_dspy.usage", default=()
)
# Whether a tracker the user holds is active: only then are calls priced
# (pricing costs a table lookup per call; the library's own trackers count
# tokens and never read a cost).
_costed: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "trio_dspy.usage.costed", default=False
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
    costed = _costed.set(True)
    try:
        with count_usage() as usage:
            yield usage
    finally:
        _costed.reset(costed)


class count_usage:  # named as the function it was: ``with count_usage() as usage``
    """:func:`track_usage` for the library's own bookkeeping (agents, request scopes,
    optimizer stats): it counts the same calls, but asks for no cost, so calls
    are priced only when a user's tracker or budget is there to read it.

    A class rather than a generator-based context manager: every served
    request and agent call opens one, and the generator's machinery cost
    more than the bookkeeping.
    """

    __slots__ = ("_token", "usage")

    def __init__(self) -> None:
        self.usage = Usage()

    def __enter__(self) -> Usage:
        self._token = _trackers.set((*_trackers.get(), self.usage))
        return self.usage

    def __exit__(self, *exc_info: object) -> None:
        _trackers.reset(self._token)


def wants_cost() -> bool:
    """Whether a :func:`track_usage` block is active for the calling task."""
    return _costed.get()


def record_usage(usage: Usage, *, requests: int = 0) -> None:
    """Add ``usage`` (and ``requests`` model calls) to every tracker active for the calling task."""
    for tracker in _trackers.get():
        tracker.add(usage)
        tracker.requests += requests
