"""Cheap sleeps for many tasks at once, for the simulated server's latency.

``trio.sleep`` wakes each sleeper through its own cancel scope, which costs
tens of microseconds per sleep. A :class:`SleepQueue` keeps all sleepers in
one heap served by a single timer task: deadlines are rounded *up* to
``resolution`` seconds, so sleepers due in the same tick wake together and
each wake-up is a plain reschedule. A sleeper is still cancellable at any
time (its enclosing cancel scope aborts the wait).
"""

from __future__ import annotations

import heapq
import itertools
import math

import trio

__all__ = ["SleepQueue"]


class _Sleeper:
    __slots__ = ("task",)

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task: trio.lowlevel.Task | None = task


class SleepQueue:
    """Sleeps served by one timer task; run :meth:`run` in a nursery first.

    ``resolution`` (seconds) is how finely deadlines are kept: a sleep lasts
    at least what was asked and at most ``resolution`` longer.
    """

    def __init__(self, resolution: float = 0.001) -> None:
        self.resolution = resolution
        self._heap: list[tuple[float, int, _Sleeper]] = []
        self._order = itertools.count()
        self._timer: trio.CancelScope | None = None

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a checkpoint even for 0).

        Raises:
            trio.Cancelled: an enclosing cancel scope was cancelled meanwhile.
        """
        if seconds <= 0 or self._timer is None:
            await trio.sleep(max(seconds, 0))
            return
        now = trio.current_time()
        deadline = math.ceil((now + seconds) / self.resolution) * self.resolution
        sleeper = _Sleeper(trio.lowlevel.current_task())
        heapq.heappush(self._heap, (deadline, next(self._order), sleeper))
        if deadline < self._timer.deadline:
            self._timer.deadline = deadline

        def abort(_: object) -> trio.lowlevel.Abort:
            sleeper.task = None  # the timer skips it
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Wake sleepers as their deadlines pass, until cancelled.

        Start it with ``await nursery.start(queue.run)``; cancel it only after
        every task that may sleep here has finished.
        """
        heap = self._heap
        try:
            while True:
                with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as scope:
                    if self._timer is None:
                        task_status.started()
                    self._timer = scope
                    await trio.sleep_forever()
                now = trio.current_time()
                while heap and heap[0][0] <= now:
                    task = heapq.heappop(heap)[2].task
                    if task is not None:
                        trio.lowlevel.reschedule(task)
        finally:
            self._timer = None
