"""Concurrency and rate limits shared by every task using one LM."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest
import trio

from trio_dspy.errors import LMBadRequestError
from trio_dspy.lm import Limits, LMRequest, Message
from trio_dspy.lm.limits import TokenBucket
from trio_dspy.lm.params import COMPLETION_ESTIMATE

from .test_lm_support import Scripted, ok

REQUEST = LMRequest([Message("user", "hi")])


class Meter:
    """A mock server that takes ``latency`` seconds and measures concurrency."""

    def __init__(self, latency: float = 1.0, usage: tuple[int, int] = (10, 5)) -> None:
        self.latency = latency
        self.usage = usage
        self.in_flight = 0
        self.peak = 0
        self.started: list[float] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.started.append(trio.current_time())
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await trio.sleep(self.latency)
        finally:
            self.in_flight -= 1
        return ok(usage=self.usage)


async def run_many(lm: Any, n: int) -> None:
    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(lm.request, REQUEST)


async def test_max_concurrency_bounds_requests_in_flight(autojump_clock: Any) -> None:
    meter = Meter(latency=1.0)
    lm = Scripted(meter).lm(max_concurrency=3)
    start = trio.current_time()
    await run_many(lm, 10)
    assert meter.peak == 3
    assert trio.current_time() - start == pytest.approx(math.ceil(10 / 3))


async def test_without_limits_everything_runs_at_once(autojump_clock: Any) -> None:
    meter = Meter(latency=1.0)
    lm = Scripted(meter).lm()
    start = trio.current_time()
    await run_many(lm, 50)
    assert meter.peak == 50
    assert trio.current_time() - start == pytest.approx(1.0)


async def test_separate_lms_have_separate_limits(autojump_clock: Any) -> None:
    meter = Meter(latency=1.0)
    server = Scripted(meter)
    a, b = server.lm(max_concurrency=1), server.lm(max_concurrency=1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_many, a, 2)
        nursery.start_soon(run_many, b, 2)
    assert meter.peak == 2


async def test_waiting_for_a_slot_is_cancellable(autojump_clock: Any) -> None:
    meter = Meter(latency=10.0)
    lm = Scripted(meter).lm(max_concurrency=1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lm.request, REQUEST)  # holds the only slot for 10 s
        await trio.sleep(0.1)
        with trio.move_on_after(1) as scope:
            await lm.request(REQUEST)
        assert scope.cancelled_caught
        assert trio.current_time() == pytest.approx(1.1)
    assert len(meter.started) == 1  # the cancelled waiter never sent anything
    await lm.request(REQUEST)  # and it did not keep the slot


async def test_rpm_spaces_requests_after_the_burst(autojump_clock: Any) -> None:
    meter = Meter(latency=0.0)
    lm = Scripted(meter).lm(rpm=2)
    start = trio.current_time()
    await run_many(lm, 5)
    offsets = sorted(t - start for t in meter.started)
    assert offsets == pytest.approx([0, 0, 30, 60, 90])


async def test_tpm_charges_real_usage_after_each_call(autojump_clock: Any) -> None:
    meter = Meter(latency=0.0, usage=(900, 100))  # each call really costs 1000 tokens
    server = Scripted(meter)
    lm = server.lm(tpm=1000, max_tokens=100)  # 1000 per minute: 60 s per 1000 tokens
    start = trio.current_time()
    for _ in range(3):
        await lm.request(REQUEST)
    offsets = [t - start for t in meter.started]
    # The prompt at about 4 bytes a token, plus the completion's max_tokens.
    estimate = len(server.requests[0].content) // 4 + 100
    per_token = 60 / 1000
    # The first call reserves its estimate; charging its real 1000 tokens
    # empties the bucket, so the second waits for its estimate to refill; the
    # third then waits for the second's full 1000 tokens.
    assert offsets[0] == 0
    assert offsets[1] == pytest.approx(estimate * per_token)
    assert offsets[2] - offsets[1] == pytest.approx(1000 * per_token)


async def test_tpm_reserves_the_completion_so_a_burst_stays_within_budget(
    autojump_clock: Any,
) -> None:
    meter = Meter(latency=1.0, usage=(10, 800))
    server = Scripted(meter)
    lm = server.lm(tpm=6000, max_tokens=800)
    await run_many(lm, 12)
    estimate = len(server.requests[0].content) // 4 + 800
    burst = [t for t in meter.started if t - meter.started[0] < 0.01]
    # Only what the budget holds goes out at once, not all 12 as when the
    # completion was left out of the reservation.
    assert len(burst) == 6000 // estimate == 7
    assert len(burst) * 810 <= 6000  # what the burst really cost


async def test_tpm_without_max_tokens_reserves_the_documented_estimate(
    autojump_clock: Any,
) -> None:
    meter = Meter(latency=0.0, usage=(0, 0))  # no usage reported: the estimate stays
    server = Scripted(meter)
    lm = server.lm(tpm=60_000)
    await run_many(lm, 3)
    estimate = len(server.requests[0].content) // 4 + COMPLETION_ESTIMATE
    assert meter.started[1] == meter.started[0]
    assert meter.started[2] == meter.started[0]
    bucket_level = 60_000 - 3 * estimate
    assert bucket_level > 0


async def test_a_failed_call_gives_back_its_completion_reservation(autojump_clock: Any) -> None:
    failing = Scripted(httpx.Response(400, json={"error": {"message": "bad"}}))
    lm = failing.lm(tpm=2000, max_tokens=1500)
    start = trio.current_time()
    for _ in range(3):
        with pytest.raises(LMBadRequestError):
            await lm.request(REQUEST)
    # Each keeps only its prompt share (tens of tokens): no call waited for a refill.
    assert trio.current_time() == start


async def test_token_bucket_refills_on_the_trio_clock(autojump_clock: Any) -> None:
    bucket = TokenBucket(per_minute=60)  # one per second, burst of 60
    assert await bucket.take(60) == 60
    start = trio.current_time()
    await bucket.take(3)
    assert trio.current_time() - start == pytest.approx(3.0)
    assert await bucket.take(500) == 60  # clamped to the capacity, so it cannot wait forever
    bucket.adjust(-1000)  # giving back never exceeds the capacity
    assert bucket.level == 60


def test_limits_validate_their_values() -> None:
    for bad in ({"max_concurrency": 0}, {"rpm": -1}, {"tpm": float("nan")}):
        with pytest.raises(ValueError):
            Limits(**bad)
    assert not Limits().active and Limits(rpm=5).active
