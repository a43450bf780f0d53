"""Slots for program runs, handed out by priority rather than by arrival.

Optimizers bound the runs in flight with one limit shared by every
candidate. A plain :class:`trio.CapacityLimiter` serves waiters in arrival
order, which interleaves all candidates in lockstep; early stopping then
learns late who leads. :class:`PrioritySlots` serves the lowest priority
first, so the first candidate's runs go out before the second's, a leader's
final score is known early, and sure losers are cancelled before most of
their runs. Each caller gets a :class:`RankedSlots` view that numbers its own
requests, giving priority ``(rank, n)``.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any

import attrs
import trio

__all__ = ["PrioritySlots", "RankedSlots"]


@attrs.define(eq=False, order=False)
class _Waiter:
    priority: tuple[int, int]
    order: int
    token: object
    event: trio.Event = attrs.field(factory=trio.Event)
    active: bool = True

    def __lt__(self, other: _Waiter) -> bool:
        return (self.priority, self.order) < (other.priority, other.order)


class PrioritySlots:
    """``total`` slots, each given to the waiting request of lowest priority."""

    def __init__(self, total: int) -> None:
        if total < 1:
            raise ValueError(f"total must be at least 1, got {total}")
        self.total = total
        self._holders: set[object] = set()
        self._waiting: list[_Waiter] = []
        self._order = itertools.count()

    async def acquire(self, token: object, priority: tuple[int, int]) -> None:
        """Wait for a slot for ``token``. A checkpoint; cancellation leaves no slot taken."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if len(self._holders) < self.total and not self._waiting:
            self._holders.add(token)
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        waiter = _Waiter(priority, next(self._order), token)
        heapq.heappush(self._waiting, waiter)
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter.event.is_set():
                self.release(token)  # granted as we were cancelled: pass it on
            else:
                waiter.active = False
            raise

    def release(self, token: object) -> None:
        """Free ``token``'s slot and hand it to the next waiter by priority."""
        self._holders.remove(token)
        while self._waiting:
            waiter = heapq.heappop(self._waiting)
            if waiter.active:
                self._holders.add(waiter.token)
                waiter.event.set()
                return

    def view(self, rank: int) -> RankedSlots:
        """A limiter-like view whose requests all have priority ``(rank, n)``."""
        return RankedSlots(self, rank)


class RankedSlots:
    """What :func:`~trio_dspy.evaluate.evaluate.run_in_order` needs of a limiter."""

    def __init__(self, slots: PrioritySlots, rank: int) -> None:
        self.slots = slots
        self.rank = rank
        self._count = itertools.count()

    async def acquire_on_behalf_of(self, token: Any) -> None:
        """Wait for a slot, behind every request of a lower rank."""
        await self.slots.acquire(token, (self.rank, next(self._count)))

    def release_on_behalf_of(self, token: Any) -> None:
        """Free the slot taken for ``token``."""
        self.slots.release(token)
