"""One worker process of the multi-process tests (and benchmarks/scale_out.py).

Run as a script, it makes ``--calls`` concurrent calls to ``--base-url``
with its limits (or cache) in Redis and prints one JSON line: ``{"ok": n,
"cached": n, "errors": [...], "seconds": s, ...}`` (also when it started and
ended, and each call's duration). ``--deadline`` cancels the calls still
waiting after that many seconds. :func:`run_workers` starts several workers
and collects their reports.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from contextlib import AsyncExitStack
from typing import Any

import trio

import trio_dspy as td
from trio_dspy.lm import LMRequest, Message


async def work(args: argparse.Namespace) -> dict[str, object]:
    limits = None
    if args.redis and not args.local:
        limits = td.RedisLimits(args.redis, namespace=args.namespace, lease_ttl=args.lease_ttl)
    cache = td.RedisCache(args.redis, namespace=args.namespace) if args.cache else False
    lm = td.LM(
        "openai/sim",
        base_url=args.base_url,
        api_key="worker-key",
        max_retries=0,
        max_concurrency=args.max_concurrency,
        rpm=args.rpm,
        limits=limits,
        cache=cache,
    )
    counts = {"ok": 0, "cached": 0}
    errors: list[str] = []
    durations: list[float] = []

    async def call(i: int) -> None:
        prompt = args.prompt if args.prompt else f"question {args.worker}-{i}"
        began = time.perf_counter()
        try:
            response = await lm.request(LMRequest([Message("user", prompt)]))
        except td.errors.TrioDSPyError as exc:
            errors.append(repr(exc))
            return
        durations.append(time.perf_counter() - began)
        counts["ok"] += 1
        counts["cached"] += response.cached

    async with AsyncExitStack() as stack:
        if args.connected:  # one connection pool for all the calls
            for shared in (limits, cache):
                if isinstance(shared, td.RedisLimits | td.RedisCache):
                    await stack.enter_async_context(shared.connected())
        if args.warmup:  # import and connect before the clock starts
            await lm.request(LMRequest([Message("user", f"warm-up {args.worker}")]))
        started, start = time.time(), time.perf_counter()
        with trio.move_on_after(args.deadline if args.deadline else math.inf):
            async with trio.open_nursery() as nursery:
                for i in range(args.calls):
                    nursery.start_soon(call, i)
    seconds = time.perf_counter() - start
    return {
        **counts,
        "errors": errors,
        "seconds": seconds,
        "started": started,  # wall clock, to line workers up
        "ended": started + seconds,
        "durations": durations,
    }


async def run_workers(cmds: list[list[str]]) -> list[dict[str, Any]]:
    """Run worker processes at once; their JSON reports, in order.

    Raises:
        subprocess.CalledProcessError: a worker failed.
    """
    reports: list[dict[str, Any]] = [{} for _ in cmds]

    async def run(i: int) -> None:
        done = await trio.run_process(cmds[i], capture_stdout=True, check=True)
        reports[i] = json.loads(done.stdout.decode().strip().splitlines()[-1])

    async with trio.open_nursery() as nursery:
        for i in range(len(cmds)):
            nursery.start_soon(run, i)
    return reports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--redis", default="")
    parser.add_argument("--namespace", default="trio_dspy")
    parser.add_argument("--worker", type=int, default=0)
    parser.add_argument("--calls", type=int, default=1)
    parser.add_argument("--prompt", default="")
    parser.add_argument("--max-concurrency", type=int, default=None)
    parser.add_argument("--rpm", type=float, default=None)
    parser.add_argument("--lease-ttl", type=float, default=10.0)
    parser.add_argument("--deadline", type=float, default=0.0)
    parser.add_argument("--warmup", action="store_true", help="one call before the clock starts")
    parser.add_argument("--cache", action="store_true", help="share answers in Redis")
    parser.add_argument("--local", action="store_true", help="limits in this process only")
    parser.add_argument("--connected", action="store_true", help="one Redis pool for all calls")
    args = parser.parse_args()
    print(json.dumps(trio.run(work, args)), flush=True)


if __name__ == "__main__":
    main()
