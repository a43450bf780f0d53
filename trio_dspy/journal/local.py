"""The in-process half of holding a run: one task of this process at a time.

A journal's cross-process hold (a POSIX lock, a Redis key) cannot tell two
tasks of one process apart, so tasks queue here first, in arrival order
(trio's locks are fair), and only the first of them takes the outer hold.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager

import attrs
import trio

from ..runlocal import RunLocal

__all__ = ["local_hold"]


@attrs.define
class _Waiting:
    lock: trio.Lock = attrs.Factory(trio.Lock)
    users: int = 0


# An entry goes when its last user leaves: only runs in progress keep one.
_HOLDS: RunLocal[dict[Hashable, _Waiting]] = RunLocal(dict, name="trio_dspy.journal.holds")


@asynccontextmanager
async def local_hold(
    key: Hashable, deadline: float, busy: Callable[[], Exception]
) -> AsyncIterator[None]:
    """Hold ``key`` in this process for the block, waiting until ``deadline`` (trio time).

    Raises:
        Exception: ``busy()``, when ``key`` was still held at ``deadline``.
    """
    holds = _HOLDS.get()
    entry = holds.setdefault(key, _Waiting())
    entry.users += 1
    try:
        with trio.move_on_at(deadline):
            await entry.lock.acquire()
        if (
            not entry.lock.locked()
            or entry.lock.statistics().owner is not trio.lowlevel.current_task()
        ):
            raise busy()
        try:
            yield
        finally:
            entry.lock.release()
    finally:
        entry.users -= 1
        if not entry.users:
            del holds[key]
