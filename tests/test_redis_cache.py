"""The response cache in Redis, in one process: two LMs stand for two worker processes."""

from __future__ import annotations

from typing import Any

import pytest
import structlog
import trio

import trio_dspy as td
from trio_dspy.lm import LMRequest, LMResponse, Message
from trio_dspy.lm.redis_conn import RedisConnector
from trio_dspy.testing import Fault, SimConfig, SimServer, serve_sim

from .redis_fixture import free_port, namespace

REQUEST = LMRequest([Message("user", "What is the capital of France?")])


def worker_lm(sim: SimServer, cache: td.RedisCache) -> Any:
    return td.LM("openai/sim", base_url=sim.base_url, api_key="secret-key", cache=cache)


async def test_a_second_worker_gets_the_first_ones_answer_without_a_call(redis_url: str) -> None:
    ns = namespace()
    async with serve_sim(SimConfig(latency=0.0)) as sim:
        first = await worker_lm(sim, td.RedisCache(redis_url, namespace=ns)).request(REQUEST)
        second = await worker_lm(sim, td.RedisCache(redis_url, namespace=ns)).request(REQUEST)
        assert sim.stats.requests == 1
    assert not first.cached and second.cached
    assert second.text == first.text
    assert second.usage.total_tokens == 0


async def test_identical_calls_in_flight_in_two_workers_share_one_call(redis_url: str) -> None:
    ns = namespace()
    answers: list[LMResponse] = []
    async with serve_sim(SimConfig(latency=0.3)) as sim:

        async def call() -> None:
            lm = worker_lm(sim, td.RedisCache(redis_url, namespace=ns))
            answers.append(await lm.request(REQUEST))

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(call)
        assert sim.stats.requests == 1
    assert sorted(a.cached for a in answers) == [False, True, True]


async def test_the_lock_of_a_vanished_worker_expires(redis_url: str) -> None:
    ns = namespace()
    async with serve_sim(SimConfig(latency=0.0)) as sim:
        cache = td.RedisCache(redis_url, namespace=ns, lock_ttl=0.3)
        lm = worker_lm(sim, cache)
        key = td.lm.cache.cache_key("openai", "sim", lm.base_url, REQUEST)
        # A worker killed mid-call leaves its lock behind, with nobody to release it.
        async with RedisConnector(redis_url).client() as client:
            await client.set(f"{ns}:cache-lock:{key}", "dead", px=300)
        with trio.fail_after(3):
            response = await lm.request(REQUEST)
        assert not response.cached and sim.stats.requests == 1


async def test_a_failed_leader_lets_the_next_worker_call(redis_url: str) -> None:
    ns = namespace()
    async with serve_sim(SimConfig(latency=0.2, faults=[Fault("context_length", first=1)])) as sim:
        outcomes: list[str] = []

        async def call() -> None:
            lm = worker_lm(sim, td.RedisCache(redis_url, namespace=ns))
            try:
                outcomes.append((await lm.request(REQUEST)).text)
            except td.errors.ContextWindowExceededError:
                outcomes.append("failed")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call)
            await trio.sleep(0.05)
            nursery.start_soon(call)
        assert sim.stats.requests == 2
    assert outcomes[0] == "failed" and outcomes[1] != "failed"


async def test_ttl_expires_answers(redis_url: str) -> None:
    ns = namespace()
    async with serve_sim(SimConfig(latency=0.0)) as sim:
        lm = worker_lm(sim, td.RedisCache(redis_url, namespace=ns, ttl=0.2))
        await lm.request(REQUEST)
        assert (await lm.request(REQUEST)).cached
        await trio.sleep(0.3)
        assert not (await lm.request(REQUEST)).cached
        assert sim.stats.requests == 2


async def test_unreachable_redis_means_uncached_calls_and_one_warning() -> None:
    cache = td.RedisCache(f"redis://:pw@127.0.0.1:{free_port()}/0", retry_interval=0)
    async with serve_sim(SimConfig(latency=0.0)) as sim:
        lm = worker_lm(sim, cache)
        with structlog.testing.capture_logs() as logs:
            for _ in range(3):
                assert not (await lm.request(REQUEST)).cached
        assert sim.stats.requests == 3
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [e["event"] for e in warnings] == ["lm.redis_cache_unavailable"]
    assert "pw" not in repr(logs).replace("pw@", "")  # never the password


def test_cache_settings_are_checked_and_the_repr_hides_the_password() -> None:
    with pytest.raises(ValueError, match="ttl"):
        td.RedisCache("redis://localhost", ttl=0)
    with pytest.raises(ValueError, match="retry_interval"):
        td.RedisCache("redis://localhost", retry_interval=-1)
    cache = td.RedisCache("redis://user:hunter2@localhost:6379/0")
    assert "hunter2" not in repr(cache) and "user:***@localhost:6379" in repr(cache)


async def poison(redis_url: str, ns: str, key: str, value: str | bytes) -> None:
    """Store ``value`` under the cache's own key for ``key``, as another program might."""
    async with RedisConnector(redis_url).client() as client:
        await client.set(f"{ns}:cache:{key}", value)


@pytest.mark.parametrize(
    "value",
    ["[" * 100_000, '{"text": 5}', '{"usage": {"total_tokens": 1e400}}', b'{"text": "\xff"}'],
    ids=["deep nesting", "wrong type", "non-finite count", "invalid UTF-8"],
)
async def test_a_poisoned_cache_entry_is_a_miss_and_is_replaced(
    redis_url: str, value: str | bytes
) -> None:
    ns = namespace()
    async with serve_sim(SimConfig(latency=0.0)) as sim:
        lm = worker_lm(sim, td.RedisCache(redis_url, namespace=ns))
        await poison(
            redis_url, ns, td.lm.cache.cache_key("openai", "sim", lm.base_url, REQUEST), value
        )
        with structlog.testing.capture_logs() as logs:
            first = await lm.request(REQUEST)
            second = await lm.request(REQUEST)
        assert sim.stats.requests == 1
    assert not first.cached and second.cached and second.text == first.text
    warnings = [e["event"] for e in logs if e["log_level"] == "warning"]
    assert warnings == ["lm.cache_entry_unreadable"]


async def test_a_poisoned_redis_entry_is_logged_once_however_often_it_is_read(
    redis_url: str,
) -> None:
    ns = namespace()
    # Every call fails, so the bad entry is never replaced.
    async with serve_sim(SimConfig(latency=0.0, faults=[Fault("context_length")])) as sim:
        lm = worker_lm(sim, td.RedisCache(redis_url, namespace=ns))
        key = td.lm.cache.cache_key("openai", "sim", lm.base_url, REQUEST)
        await poison(redis_url, ns, key, "[" * 100_000)
        with structlog.testing.capture_logs() as logs:
            for _ in range(5):
                with pytest.raises(td.errors.ContextWindowExceededError):
                    await lm.request(REQUEST)
        assert sim.stats.requests == 5
    warnings = [e["event"] for e in logs if e["log_level"] == "warning"]
    assert warnings == ["lm.cache_entry_unreadable"]
