"""Worker processes sharing limits and answers through Redis.

The simulated server runs in this process (so its counters can be read);
the workers are ``tests/redis_worker.py`` processes. Real time: each test
takes a few seconds.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import structlog
import trio

import trio_dspy as td
from trio_dspy.errors import LimitsUnavailableError
from trio_dspy.lm import LMRequest, Message
from trio_dspy.testing import SimConfig, SimServer, serve_sim

from .redis_fixture import RedisProcess, namespace
from .redis_worker import run_workers

pytestmark = pytest.mark.slow

WORKER = str(Path(__file__).with_name("redis_worker.py"))
REQUEST = LMRequest([Message("user", "What is the capital of France?")])


def worker_cmd(sim: SimServer, redis_url: str, ns: str, *options: str) -> list[str]:
    base = [sys.executable, WORKER, "--base-url", sim.base_url, "--redis", redis_url]
    return [*base, "--namespace", ns, *options]


async def until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` every 50 ms until it holds."""
    while not condition():  # noqa: ASYNC110 - SimStats has no event to wait on
        await trio.sleep(0.05)


def lm_for(sim: SimServer, **options: Any) -> Any:
    return td.LM("openai/sim", base_url=sim.base_url, api_key="worker-key", **options)


async def test_four_workers_never_have_more_than_max_concurrency_in_flight(
    redis_url: str,
) -> None:
    ns = namespace()
    async with serve_sim(SimConfig(latency=0.2)) as sim:
        cmds = [
            worker_cmd(
                sim, redis_url, ns, "--worker", str(i), "--calls", "12", "--max-concurrency", "8"
            )
            for i in range(4)
        ]
        reports = await run_workers(cmds)
        assert [r["ok"] for r in reports] == [12] * 4
        assert sim.stats.max_in_flight == 8  # each worker alone would fill all 8


async def test_four_workers_share_one_rpm_budget(redis_url: str) -> None:
    ns = namespace()
    # 20 per minute: the whole minute's 20 at once, then one every 3 s.
    async with serve_sim(SimConfig(latency=0.0)) as sim:
        cmds = [
            worker_cmd(
                sim,
                redis_url,
                ns,
                "--worker",
                str(i),
                "--calls",
                "8",
                "--rpm",
                "20",
                "--deadline",
                "5",
            )
            for i in range(4)
        ]
        start = time.monotonic()
        reports = await run_workers(cmds)
        elapsed = time.monotonic() - start
        # 32 asked; 20 plus what refilled while the workers ran may be sent.
        assert 20 <= sim.stats.requests <= 20 + int(elapsed / 3) + 1, reports
        assert sum(r["ok"] for r in reports) == sim.stats.requests


async def test_a_worker_killed_mid_call_frees_its_slot_within_the_ttl(redis_url: str) -> None:
    ns = namespace()
    async with serve_sim(SimConfig(latency=30.0)) as sim:
        cmd = worker_cmd(sim, redis_url, ns, "--max-concurrency", "1", "--lease-ttl", "1")
        proc = await trio.lowlevel.open_process(cmd, stdout=subprocess.DEVNULL)
        try:
            with trio.fail_after(20):
                await until(lambda: sim.stats.in_flight >= 1)
            here = lm_for(sim, max_concurrency=1, limits=td.RedisLimits(redis_url, namespace=ns))
            assert here._limits is not None
            with trio.move_on_after(1.5) as waited:  # past the TTL: still renewed
                async with here._limits.acquire():
                    pass
            assert waited.cancelled_caught
            proc.kill()
            await proc.wait()
            with trio.fail_after(1.0 + 1.0):  # the TTL, and a margin
                async with here._limits.acquire():
                    pass
        finally:
            proc.kill()
            await proc.wait()


async def test_a_second_process_gets_the_first_ones_answer(redis_url: str) -> None:
    ns = namespace()
    async with serve_sim(SimConfig(latency=0.0)) as sim:
        cmd = worker_cmd(sim, redis_url, ns, "--cache", "--prompt", "the same question")
        [first] = await run_workers([cmd])
        [second] = await run_workers([cmd])
        assert (first["ok"], first["cached"]) == (1, 0)
        assert (second["ok"], second["cached"]) == (1, 1)
        assert sim.stats.requests == 1


async def test_redis_stopped_mid_run_fails_limits_and_bypasses_the_cache() -> None:
    redis = RedisProcess()
    redis.start()
    try:
        ns = namespace()
        async with serve_sim(SimConfig(latency=0.0)) as sim:
            limited = lm_for(sim, rpm=600, limits=td.RedisLimits(redis.url, namespace=ns))
            cached = lm_for(sim, cache=td.RedisCache(redis.url, namespace=ns))
            await limited.request(REQUEST)
            await cached.request(REQUEST)
            assert (await cached.request(REQUEST)).cached
            redis.stop()
            with pytest.raises(LimitsUnavailableError):
                await limited.request(REQUEST)
            sent = sim.stats.requests
            with structlog.testing.capture_logs() as logs:
                first = await cached.request(REQUEST)
                second = await cached.request(REQUEST)
            assert not first.cached and not second.cached
            assert sim.stats.requests == sent + 2
            assert [e["event"] for e in logs if e["log_level"] == "warning"] == [
                "lm.redis_cache_unavailable"
            ]
            redis.start()  # back on the same port: the limits work again
            assert (await limited.request(REQUEST)).text
    finally:
        redis.stop()
