"""The shared sleep queue behind the simulated server's latency."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from trio_dspy.testing.sim_timer import SleepQueue


async def _record(queue: SleepQueue, seconds: float, woke: list[tuple[float, float]]) -> None:
    start = trio.current_time()
    await queue.sleep(seconds)
    woke.append((seconds, trio.current_time() - start))


async def test_sleepers_wake_on_time_in_order_even_when_earlier_ones_come_later(
    autojump_clock: Any,
) -> None:
    queue = SleepQueue(resolution=0.01)
    woke: list[tuple[float, float]] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(queue.run)
        async with trio.open_nursery() as sleepers:
            for seconds in (5.0, 0.25, 2.0, 0.25, 0.0):  # the 0.25 s sleeps arrive after 5 s
                sleepers.start_soon(_record, queue, seconds, woke)
        nursery.cancel_scope.cancel()
    assert [s for s, _ in woke] == [0.0, 0.25, 0.25, 2.0, 5.0]
    for asked, slept in woke:
        assert asked <= slept < asked + 0.01 + 1e-9


async def test_a_cancelled_sleeper_stops_at_once_and_others_still_wake(
    autojump_clock: Any,
) -> None:
    queue = SleepQueue()
    woke: list[tuple[float, float]] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(queue.run)
        start = trio.current_time()
        with trio.move_on_after(1.0) as scope:
            await queue.sleep(100.0)
        assert scope.cancelled_caught
        assert trio.current_time() - start == pytest.approx(1.0)
        await _record(queue, 3.0, woke)
        nursery.cancel_scope.cancel()
    assert woke[0][0] == 3.0 and 3.0 <= woke[0][1] < 3.002


async def test_without_a_running_timer_it_falls_back_to_trio_sleep(autojump_clock: Any) -> None:
    queue = SleepQueue()
    start = trio.current_time()
    await queue.sleep(2.5)
    assert trio.current_time() - start == pytest.approx(2.5)
