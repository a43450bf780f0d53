"""Scaling out: 1, 2 and 4 worker processes with limits kept locally or in Redis.

Run: python benchmarks/scale_out.py [--workers 1,2,4] [--calls 40] [--latency 0.05]
     [--cap 16] [--redis redis://...]

The simulated server runs in its own process; each worker is a process
running ``tests/redis_worker.py``, which sends ``--calls`` calls at once and
reports each call's duration. Redis is a ``redis-server`` this script starts
on a free loopback port (or ``--redis URL``). Two workloads, each with limits
kept in each process (``local``) and in Redis (``redis``):

Limits in Redis are measured twice: each call connecting for itself
(``redis``), and each worker's calls sharing one pool opened by
``async with shared.connected()`` (``redis+pool``).

First, in this process, ``--sequential`` calls one at a time per mode: the
difference of the medians is what the Redis round trips cost one call.
Then, in worker processes:

* ``overhead``: limits that never bind (``max_concurrency`` and ``rpm`` far
  above the load), all calls of a worker at once: the difference of the
  medians adds the CPU the Redis clients of concurrent calls compete for;
* ``shared cap``: ``max_concurrency=--cap``. Local limits give each process
  its own ``cap`` (throughput grows with the workers); Redis limits hold the
  cap for all of them together (throughput stays at ``cap / latency``).

Each worker makes one call before its clock starts (imports, first
connections). Aggregate throughput is all calls over the time from the first
worker's start to the last one's end (process start-up excluded).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import trio

import trio_dspy as td
from trio_dspy.demo.bench import sim_process
from trio_dspy.lm import LMRequest, Message

#: limits in each process; in Redis, connecting per call; in Redis through one
#: pool per worker (``async with shared.connected()``).
MODES = ("local", "redis", "redis+pool")
ROOT = Path(__file__).resolve().parent.parent
WORKER = str(ROOT / "tests" / "redis_worker.py")
sys.path.insert(0, str(ROOT))  # the worker script's module, for run_workers
from tests.redis_worker import run_workers  # noqa: E402


@asynccontextmanager
async def redis_server(url: str | None) -> AsyncIterator[str]:
    """``url``, or a redis-server started on a free loopback port for the block."""
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed: apt-get install redis-server, or --redis")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = await trio.lowlevel.open_process(cmd, stdout=subprocess.DEVNULL)
    try:
        with trio.fail_after(10):
            while True:
                try:
                    stream = await trio.open_tcp_stream("127.0.0.1", port)
                    await stream.aclose()
                    break
                except OSError:
                    await trio.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        await proc.wait()


async def measure(
    base_url: str, redis_url: str, workers: int, mode: str, options: list[str], calls: int
) -> dict[str, float]:
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    cmds = []
    for i in range(workers):
        cmd = [sys.executable, WORKER, "--base-url", base_url, "--redis", redis_url]
        cmd += ["--namespace", namespace, "--worker", str(i), "--calls", str(calls), "--warmup"]
        cmd += options
        cmd += {"local": ["--local"], "redis": [], "redis+pool": ["--connected"]}[mode]
        cmds.append(cmd)
    reports = await run_workers(cmds)
    ok = sum(r["ok"] for r in reports)
    errors = sum(len(r["errors"]) for r in reports)
    span = max(r["ended"] for r in reports) - min(r["started"] for r in reports)
    durations = [d for r in reports for d in r["durations"]]
    return {
        "calls": ok,
        "errors": errors,
        "throughput": ok / span,
        "median_ms": statistics.median(durations) * 1000,
    }


async def per_call_cost(base_url: str, redis_url: str, calls: int) -> dict[str, float]:
    """Median duration of ``calls`` calls one after another, per mode, in this process."""
    medians = {}
    for mode in MODES:
        shared = td.RedisLimits(redis_url, namespace=f"bench-{uuid.uuid4().hex[:8]}")
        lm = td.LM(
            "openai/sim",
            base_url=base_url,
            api_key="bench-key",
            max_concurrency=100000,
            rpm=1e8,
            limits=None if mode == "local" else shared,
        )
        durations = []
        async with AsyncExitStack() as stack:
            if mode == "redis+pool":
                await stack.enter_async_context(shared.connected())
            for i in range(calls + 1):
                began = time.perf_counter()
                await lm.request(LMRequest([Message("user", f"sequential {i}")]))
                if i:  # the first imports and connects
                    durations.append(time.perf_counter() - began)
        medians[mode] = statistics.median(durations) * 1000
    return medians


async def main(args: argparse.Namespace) -> None:
    counts = [int(n) for n in args.workers.split(",")]
    workloads = {
        "overhead": ["--max-concurrency", "100000", "--rpm", "100000000"],
        "shared cap": ["--max-concurrency", str(args.cap)],
    }
    print(f"latency {args.latency:g} s, {args.calls} calls per worker, cap {args.cap}")
    header = (
        f"{'workload':<11} {'workers':>7} {'limits':<10} "
        f"{'calls/s':>8} {'median ms':>9} {'errors':>6}"
    )
    async with redis_server(args.redis) as redis_url, sim_process(str(args.latency)) as base_url:
        cost = await per_call_cost(base_url, redis_url, args.sequential)
        print(f"one call at a time ({args.sequential} calls), median ms: ", end="")
        print(", ".join(f"{mode} {ms:.2f}" for mode, ms in cost.items()))
        for mode in MODES[1:]:
            print(f"  {mode} adds {cost[mode] - cost['local']:.2f} ms a call")
        print(header)
        print("-" * len(header))
        for name, options in workloads.items():
            medians: dict[str, list[float]] = {mode: [] for mode in MODES}
            for workers in counts:
                for mode in MODES:
                    row = await measure(base_url, redis_url, workers, mode, options, args.calls)
                    medians[mode].append(row["median_ms"])
                    print(
                        f"{name:<11} {workers:>7} {mode:<10} {row['throughput']:>8.1f} "
                        f"{row['median_ms']:>9.1f} {int(row['errors']):>6}",
                        flush=True,
                    )
            if name == "overhead":
                for mode in MODES[1:]:
                    extra = statistics.median(
                        r - loc for r, loc in zip(medians[mode], medians["local"])
                    )
                    print(f"  {mode} adds {extra:.1f} ms to the median call of a burst")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", default="1,2,4", help="comma-separated process counts")
    parser.add_argument("--calls", type=int, default=40, help="calls per worker, all at once")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per answer")
    parser.add_argument("--cap", type=int, default=16, help="max_concurrency of 'shared cap'")
    parser.add_argument("--sequential", type=int, default=100, help="calls one at a time")
    parser.add_argument("--redis", default=None, help="a Redis URL instead of a new server")
    trio.run(main, parser.parse_args())
