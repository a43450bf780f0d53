"""Limits shared through Redis: the Lua buckets, the leases and their queue, in one process.

Two :class:`RedisLimits` objects with the same namespace stand for two
worker processes; ``tests/test_redis_processes.py`` runs real ones. Redis
keeps real time, so these tests do too (each well under a second).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio

import trio_dspy as td
from trio_dspy.errors import LimitsUnavailableError
from trio_dspy.lm import Limits, LMRequest, Message
from trio_dspy.lm.redis_conn import RedisConnector
from trio_dspy.lm.redis_limits import SLOT, RedisLimiter, RedisLimits
from trio_dspy.testing import SimConfig, serve_sim

from .redis_fixture import free_port, namespace

REQUEST = LMRequest([Message("user", "hi")])


def limiter(url: str, ns: str, lease_ttl: float = 10.0, **limits: Any) -> RedisLimiter:
    return RedisLimits(url, namespace=ns, lease_ttl=lease_ttl).bind(Limits(**limits), "m@u")


async def zcard(url: str, key: str) -> int:
    async with RedisConnector(url).client() as client:
        return await client.zcard(key)


async def level(url: str, key: str) -> float:
    async with RedisConnector(url).client() as client:
        return float(await client.hget(key, "level") or "nan")


class Holders:
    """Counts the slots held at once through any limiter, and the most ever."""

    def __init__(self) -> None:
        self.held = self.peak = 0

    async def call(self, lim: RedisLimiter, duration: float) -> None:
        async with lim.acquire():
            self.held += 1
            self.peak = max(self.peak, self.held)
            await trio.sleep(duration)
            self.held -= 1


async def test_workers_sharing_redis_never_exceed_max_concurrency(redis_url: str) -> None:
    ns = namespace()
    workers = [limiter(redis_url, ns, max_concurrency=3) for _ in range(2)]
    holders = Holders()
    async with trio.open_nursery() as nursery:
        for i in range(12):
            nursery.start_soon(holders.call, workers[i % 2], 0.02)
    assert holders.peak == 3


async def test_waiters_get_slots_in_the_order_they_asked(redis_url: str) -> None:
    ns = namespace()
    order: list[int] = []
    queue_key = f"{ns}:limits:m@u:queue"

    async def call(i: int, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with limiter(redis_url, ns, max_concurrency=1).acquire():
            order.append(i)
            task_status.started()
            await trio.sleep(0.01)

    async def queued(n: int) -> None:
        while True:
            if await zcard(redis_url, queue_key) >= n:
                return
            await trio.sleep(0.005)

    async with trio.open_nursery() as nursery, limiter(redis_url, ns, max_concurrency=1).acquire():
        for i in range(5):
            nursery.start_soon(call, i)
            await queued(i + 1)  # each waiter has its ticket before the next asks
    assert order == [0, 1, 2, 3, 4]


async def test_a_cancelled_waiter_takes_nothing(redis_url: str) -> None:
    ns = namespace()
    lim = limiter(redis_url, ns, max_concurrency=1, rpm=600)
    prefix = f"{ns}:limits:m@u:"
    async with lim.acquire():
        with trio.move_on_after(0.1) as scope:
            async with lim.acquire():
                pytest.fail("admitted past max_concurrency=1")
        assert scope.cancelled_caught
        assert await zcard(redis_url, prefix + "queue") == 0
        assert await zcard(redis_url, prefix + "tickets") == 0
        assert await zcard(redis_url, prefix + "leases") == 1
    assert await zcard(redis_url, prefix + "leases") == 0
    with trio.fail_after(1):
        async with lim.acquire():
            pass


async def test_a_lease_nobody_renews_frees_its_slot_after_the_ttl(redis_url: str) -> None:
    ns = namespace()
    keys = [f"{ns}:limits:m@u:{k}" for k in ("leases", "queue", "tickets", "counter")]
    # What a worker killed mid-call leaves behind: a lease, never renewed or released.
    async with RedisConnector(redis_url).client() as client:
        assert await client.eval(SLOT, keys=keys, args=["dead", "1", "300"]) == -1
    lim = limiter(redis_url, ns, lease_ttl=0.3, max_concurrency=1)
    with trio.fail_after(2):
        async with lim.acquire(), RedisConnector(redis_url).client() as client:
            assert await client.zscore(keys[0], "dead") is None


async def test_a_running_call_keeps_its_slot_past_the_ttl(redis_url: str) -> None:
    ns = namespace()
    lim = limiter(redis_url, ns, lease_ttl=0.15, max_concurrency=1)
    holders = Holders()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(holders.call, lim, 0.5)  # renewed every 0.05 s
        await trio.sleep(0.05)
        nursery.start_soon(holders.call, lim, 0.0)
    assert holders.peak == 1


async def bucket_wait(url: str, ns: str, per_minute: float, amount: float) -> float:
    lim = limiter(url, ns, rpm=per_minute)
    async with RedisConnector(url).client() as client:
        return await lim._bucket(client, lim.rpm_key, per_minute, amount)


async def test_the_rpm_budget_is_shared_by_workers(redis_url: str) -> None:
    ns = namespace()
    waits = [await bucket_wait(redis_url, ns, 20, 1) for _ in range(20)]
    assert waits == [0.0] * 20  # the bucket starts full: a minute's budget at once
    # The 21st request, from another worker, waits for the refill: 3 s at 20/min.
    assert 2.5 < await bucket_wait(redis_url, ns, 20, 1) <= 3.0
    # Giving it back (a cancelled waiter) lets the next one wait as long, not twice as long.
    await bucket_wait(redis_url, ns, 20, -1)
    assert 2.5 < await bucket_wait(redis_url, ns, 20, 1) <= 3.0


async def test_tpm_reserves_the_estimate_and_settles_to_the_real_usage(redis_url: str) -> None:
    ns = namespace()
    lim = limiter(redis_url, ns, tpm=6000)
    async with lim.acquire(estimated_tokens=1000) as permit:
        assert 5000 <= await level(redis_url, lim.tpm_key) < 5010
        permit.settle(200)
    assert 5800 <= await level(redis_url, lim.tpm_key) < 5820


async def test_unreachable_redis_fails_the_call_before_sending(autojump_clock: Any) -> None:
    shared = td.RedisLimits(f"redis://127.0.0.1:{free_port()}/0")
    async with serve_sim(SimConfig(latency=0.0)) as sim:
        lm = td.LM("openai/sim", base_url=sim.base_url, api_key="k", max_concurrency=2)
        lm_shared = td.LM(
            "openai/sim", base_url=sim.base_url, api_key="k", max_concurrency=2, limits=shared
        )
        assert (await lm.request(REQUEST)).text
        with pytest.raises(LimitsUnavailableError, match="cannot be reached"):
            await lm_shared.request(REQUEST)
        assert sim.stats.requests == 1


async def test_an_lm_with_redis_limits_answers_like_one_without(redis_url: str) -> None:
    shared = td.RedisLimits(redis_url, namespace=namespace())
    async with serve_sim(SimConfig(latency=0.0)) as sim:
        lm = td.LM(
            "openai/sim", base_url=sim.base_url, api_key="k", rpm=600, tpm=10**6, limits=shared
        )
        response = await lm.request(REQUEST)
        assert response.text and response.usage.total_tokens > 0


def test_lm_without_any_limit_ignores_the_store() -> None:
    lm = td.LM("openai/sim", base_url="http://127.0.0.1:1/v1", limits=td.RedisLimits("redis://x"))
    assert lm._limits is None


def test_bad_settings_are_refused_and_reprs_hide_the_password() -> None:
    with pytest.raises(ValueError, match="redis://"):
        td.RedisLimits("http://localhost:6379")
    with pytest.raises(ValueError, match="lease_ttl"):
        td.RedisLimits("redis://localhost", lease_ttl=0)
    shared = td.RedisLimits("redis://:hunter2@localhost:6379/0", namespace="ns")
    lim = shared.bind(Limits(rpm=5), "m@u")
    assert "hunter2" not in repr(shared) + repr(lim)
    assert "localhost:6379" in repr(shared)
    for url in ("redis://localhost/0?password=hunter2", "unix:///tmp/r.sock?db=1&password=hunter2"):
        shared = td.RedisLimits(url)
        assert "hunter2" not in repr(shared), repr(shared)
        assert "password=***" in repr(shared)


async def test_an_unreachable_redis_never_shows_a_password_from_the_query(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = "redis://127.0.0.1:9/0?password=hunter2"  # nothing listens on port 9
    lm = td.LM(
        "openai/m",
        base_url="http://127.0.0.1:9/v1",
        api_key="k",
        rpm=60,
        limits=td.RedisLimits(url),
        cache=td.RedisCache(url),
        max_retries=0,
    )
    with caplog.at_level(logging.DEBUG), pytest.raises(td.errors.LMError) as info:
        await lm.request(LMRequest([Message("user", "hi")]))
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in caplog.text


async def test_calls_inside_connected_share_one_client(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = td.RedisLimits(redis_url, namespace=namespace())
    opened = 0
    new_client = shared.connector._new_client

    def counting() -> Any:
        nonlocal opened
        opened += 1
        return new_client()

    monkeypatch.setattr(shared.connector, "_new_client", counting)
    async with serve_sim(SimConfig(latency=0.0)) as sim:
        lm = td.LM("openai/sim", base_url=sim.base_url, api_key="k", rpm=600, limits=shared)
        async with shared.connected():
            async with trio.open_nursery() as nursery:
                for _ in range(5):
                    nursery.start_soon(lm.request, REQUEST)
            assert opened == 1
        await lm.request(REQUEST)  # after the block: a client of its own
        assert opened == 2
