"""What a durable run's journal costs per step, next to what a model call costs.

Run: ``python benchmarks/journal.py [--steps N] [--redis redis://...]``

The simulated server runs in a child process (no added latency: a call costs
the HTTP round trip and the server's work, the cheapest a model call gets).
Reported, as medians (and p90) of N sequential steps, each with a prompt of
its own (no cache):

* ``lm call``: ``lm.request`` outside a durable run;
* ``lm call, recorded``: the same inside ``td.durable`` (the call, then the
  step written to the journal); the difference is the journal's cost per
  live step;
* ``replayed step``: the same requests entering the run again (answered from
  the journal, no call);
* ``journal.record``: the write alone (what a live step adds).

with ``td.Journal`` (SQLite in WAL mode on the disk of the temporary
directory) both with ``synchronous="full"`` (an ``fsync`` per step: its cost
depends on the disk, and is higher while the write-ahead log file grows) and
``"normal"``, and with ``td.RedisJournal`` (a ``redis-server`` started on
loopback without persistence, or ``--redis URL``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable
from pathlib import Path

import trio

import trio_dspy as td
from trio_dspy.demo.bench import sim_process
from trio_dspy.journal.store import JournalStore, StepRecord
from trio_dspy.lm import LMRequest, Message

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale_out import redis_server


def request(i: int, run: str) -> LMRequest:
    return LMRequest([Message("user", f"What is {i} doubled? ({run})")], params={"max_tokens": 16})


async def timed(step: Awaitable[object]) -> float:
    """The seconds ``await step`` took (the coroutine is made just before)."""
    start = time.perf_counter()
    await step
    return time.perf_counter() - start


async def measure(lm: td.LM, journal: JournalStore, n: int) -> dict[str, list[float]]:
    """Per-step seconds of each kind of step, ``n`` of each.

    Plain and recorded calls alternate in rounds of ten, so that the load of
    a shared machine weighs on both alike.
    """
    run = uuid.uuid4().hex[:8]
    results: dict[str, list[float]] = {"lm call": [], "lm call, recorded": []}
    for start in range(0, n, 10):
        steps = range(start, min(n, start + 10))
        for i in steps:
            results["lm call"].append(await timed(lm.request(request(i, "plain" + run))))
        async with td.durable(run, journal):
            for i in steps:
                results["lm call, recorded"].append(await timed(lm.request(request(i, run))))
    async with td.durable(run, journal):
        results["replayed step"] = [await timed(lm.request(request(i, run))) for i in range(n)]
    payload = '{"text": "' + "x" * 200 + '"}'
    results["journal.record"] = [
        await timed(journal.record(run + "-raw", f"k{i}", StepRecord("lm", "f", payload + str(i))))
        for i in range(n)
    ]
    return results


def report(kind: str, results: dict[str, list[float]]) -> None:
    for name, times in results.items():
        times = sorted(times)
        p90 = times[int(len(times) * 0.9)]
        median = statistics.median(times)
        print(f"{kind:12} {name:20} median {median * 1000:7.3f} ms   p90 {p90 * 1000:7.3f} ms")


async def main(args: argparse.Namespace) -> None:
    async with (
        sim_process("0", quiet=True) as base_url,
        redis_server(args.redis) as redis_url,
        td.LM("openai/sim-model", base_url=base_url, api_key="bench") as lm,
    ):
        await lm.request(request(-1, "warm-up"))
        for sync in ("full", "normal"):
            with tempfile.TemporaryDirectory() as tmp:
                sqlite = td.Journal(Path(tmp) / "runs.db", synchronous=sync)
                report(f"sqlite/{sync}", await measure(lm, sqlite, args.steps))
                await sqlite.aclose()
        redis = td.RedisJournal(redis_url, namespace=f"bench-{uuid.uuid4().hex[:8]}")
        async with redis.connected():
            report("redis", await measure(lm, redis, args.steps))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--redis", default=None, help="a Redis URL (default: start one)")
    trio.run(main, parser.parse_args())
