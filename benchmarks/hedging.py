"""Hedged requests against a long tail: p50/p99 latency with and without hedging.

Run: python benchmarks/hedging.py [--calls 1000] [--concurrency 50] [--median 0.1]
     [--hedge-after 0.15,0.3] [--seed 0]

The simulated server runs in its own process (this script, started again
with ``--serve``) over loopback HTTP. Its latency is ``median`` times a
uniform draw in [0.8, 1.2] for 99 % of the answers and ``20 * median`` for
the slowest 1 %, so the median is ``median`` and the p99 sits at the tail.

Two ``td.LM`` clients (separate connection pools) point at that one server.
Without hedging every call goes through the first; with
``td.FallbackLM(first, second, hedge_after=h)`` a call that has not answered
after ``h`` seconds is sent to the second as well, the first answer wins and
the other request is cancelled (its connection closed). For each setting the
script sends ``--calls`` calls, at most ``--concurrency`` at a time, and
prints p50, p90, p99 and max latency, and the extra requests hedging cost
(requests sent beyond one per call, and how many of them were cancelled).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager, suppress
from typing import Any

import trio

import trio_dspy as td
from trio_dspy.demo.bench import url_process
from trio_dspy.lm import BaseLM, FallbackLM, LMRequest, LMResponse, Message

TAIL_SHARE = 0.01
TAIL_FACTOR = 20.0


def tail_latency(median: float, seed: int) -> Any:
    """A function of the request body: ``median`` +-20 %, or ``20 * median`` for 1 %."""
    rng = random.Random(seed)

    def latency(body: Mapping[str, Any]) -> float:
        if rng.random() < TAIL_SHARE:
            return TAIL_FACTOR * median
        return median * rng.uniform(0.8, 1.2)

    return latency


async def serve(median: float, seed: int) -> None:
    """The server process: print the base URL, then serve until terminated."""
    from trio_dspy.testing.sim_config import SimConfig
    from trio_dspy.testing.sim_server import serve_sim

    config = SimConfig(latency=tail_latency(median, seed), seed=seed)
    async with serve_sim(config) as sim:
        print(sim.base_url, flush=True)
        await trio.sleep_forever()


def server_process(median: float, seed: int) -> AbstractAsyncContextManager[str]:
    """Start this script with ``--serve`` in a child process; yields its base URL."""
    cmd = [sys.executable, __file__, "--serve", "--median", str(median), "--seed", str(seed)]
    return url_process(cmd)


class Counted(BaseLM):
    """Sends through ``inner`` and counts the requests started and cancelled."""

    def __init__(self, inner: BaseLM) -> None:
        super().__init__(inner.model)
        self.inner = inner
        self.started = self.cancelled = 0

    async def send(self, request: LMRequest) -> LMResponse:
        self.started += 1
        try:
            return await self.inner.send(request)
        except trio.Cancelled:
            self.cancelled += 1
            raise


async def measure(lm: BaseLM, calls: int, concurrency: int) -> list[float]:
    """Seconds each of ``calls`` calls took, at most ``concurrency`` at a time."""
    limiter = trio.CapacityLimiter(concurrency)
    durations: list[float] = []

    async def one(i: int) -> None:
        async with limiter:
            request = LMRequest(messages=(Message("user", f"What is {i} + {i}?"),))
            t0 = time.perf_counter()
            await lm.request(request)
            durations.append(time.perf_counter() - t0)

    async with trio.open_nursery() as nursery:
        for i in range(calls):
            nursery.start_soon(one, i)
    return durations


def row(name: str, durations: list[float], calls: int, clients: list[Counted]) -> str:
    cuts = statistics.quantiles(durations, n=100, method="inclusive")
    started = sum(c.started for c in clients)
    cancelled = sum(c.cancelled for c in clients)
    extra = started - calls
    return (
        f"{name:<22} {cuts[49] * 1000:7.0f} {cuts[89] * 1000:7.0f} {cuts[98] * 1000:7.0f} "
        f"{max(durations) * 1000:7.0f}   {extra:5d} ({100 * extra / calls:4.1f} %)  {cancelled:5d}"
    )


async def run(args: argparse.Namespace) -> None:
    hedges = [float(h) for h in args.hedge_after.split(",") if h]
    print(
        f"{args.calls} calls, {args.concurrency} at a time; server latency: median "
        f"{args.median * 1000:.0f} ms +-20 %, slowest {TAIL_SHARE:.0%} at "
        f"{TAIL_FACTOR:.0f}x = {TAIL_FACTOR * args.median * 1000:.0f} ms"
    )
    print(
        f"{'':<22} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7}   "
        f"{'extra requests':>14}  {'cancelled':>9}"
    )
    async with server_process(args.median, args.seed) as base_url:
        settings: list[tuple[str, float | None]] = [("no hedging", None)]
        settings += [(f"hedge_after={h * 1000:.0f} ms", h) for h in hedges]
        for name, hedge in settings:
            first, second = (
                td.LM(
                    "openai/sim-model",
                    base_url=base_url,
                    api_key="bench-key",
                    max_retries=0,
                    max_concurrency=args.concurrency,
                )
                for _ in range(2)
            )
            async with first, second:
                clients = [Counted(first), Counted(second)]
                lm: BaseLM = (
                    clients[0] if hedge is None else FallbackLM(*clients, hedge_after=hedge)
                )
                await measure(clients[0], args.concurrency, args.concurrency)  # warm up
                await measure(clients[1], args.concurrency, args.concurrency)
                for client in clients:
                    client.started = client.cancelled = 0
                durations = await measure(lm, args.calls, args.concurrency)
                print(row(name, durations, args.calls, clients), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--median", type=float, default=0.1, help="median latency, seconds")
    parser.add_argument(
        "--hedge-after", default="0.15,0.3", help="comma-separated hedge delays, seconds"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        with suppress(KeyboardInterrupt):  # Ctrl-C reaches the whole process group
            trio.run(serve, args.median, args.seed)
        return 0
    trio.run(run, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
