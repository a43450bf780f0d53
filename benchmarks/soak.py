"""Soak: many calls through one td.LM against a faulty simulated server, with random cancellations.

Run: python benchmarks/soak.py [--calls 10000] [--concurrency 64] [--cancel 0.1] [--seed 0]

The simulated server runs in its own process (``trio-dspy serve-sim`` on
loopback) and injects faults at random: 429 with Retry-After, 500, 503,
connection resets, stalls, malformed JSON and truncated answers. The client
sends ``--calls`` typed ``Predict`` calls through one ``td.LM``, at most
``--concurrency`` at a time; a random ``--cancel`` share of them runs under
``trio.move_on_after`` with a random deadline. It prints:

* calls lost: calls that ended neither in a result, nor in a typed error
  (``td.errors.TrioDSPyError``), nor in a cancellation this script caused;
  an untyped exception counts as lost and is named. Must be 0.
* errors by type, and the cancellations;
* open sockets and file descriptors of this process before the LM was made
  and after it was closed (``/proc/self/fd``): the difference must be 0;
* resident memory (``/proc/self/statm``) after each thousand calls: the
  first thousand against the last shows whether memory stays flat.

Bounded: the run stops after ``--max-seconds`` (default 900) whatever happens,
and the exit status is 1 when a call was lost or a socket leaked.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import sys
import time

import trio

import trio_dspy as td
from trio_dspy.demo.bench import sim_process

FAULTS = (
    "rate_limit:probability=0.03,retry_after=0.02",
    "server_error:probability=0.03",
    "unavailable:probability=0.02,retry_after=0.02",
    "reset:probability=0.02",
    "stall:probability=0.01,stall=30",
    "malformed:probability=0.02",
    "truncate:probability=0.02",
)


def open_fds() -> tuple[int, int]:
    """(sockets, all file descriptors) this process holds open."""
    sockets = total = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # the descriptor listdir itself used, now closed
            continue
        total += 1
        sockets += target.startswith("socket:")
    return sockets, total


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class Tally:
    def __init__(self) -> None:
        self.ok = 0
        self.cancelled = 0
        self.errors: collections.Counter[str] = collections.Counter()
        self.untyped: collections.Counter[str] = collections.Counter()

    @property
    def ended(self) -> int:
        return self.ok + self.cancelled + sum(self.errors.values())


async def soak(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    tally = Tally()
    rss: list[float] = []
    predict = td.Predict("question -> answer")
    async with sim_process(args.latency, args.seed, FAULTS, quiet=True) as base_url:
        sockets_before, fds_before = open_fds()
        lm = td.LM(
            "openai/sim-model",
            base_url=base_url,
            api_key="soak-key",
            max_retries=2,
            read_timeout=args.read_timeout,
            timeout=args.call_timeout,
        )
        limiter = trio.CapacityLimiter(args.concurrency)

        async def one(i: int, deadline: float | None) -> None:
            async with limiter:
                try:
                    if deadline is None:
                        await predict(question=f"What is {i} + {i}?")
                        tally.ok += 1
                        return
                    with trio.move_on_after(deadline) as scope:
                        await predict(question=f"What is {i} + {i}?")
                        tally.ok += 1
                    if scope.cancelled_caught:
                        tally.cancelled += 1
                except td.errors.TrioDSPyError as exc:
                    tally.errors[type(exc).__name__] += 1
                except Exception as exc:  # lost: not a typed error
                    tally.untyped[f"{type(exc).__module__}.{type(exc).__qualname__}"] += 1

        start = time.perf_counter()
        with trio.move_on_after(args.max_seconds) as overall:
            async with lm:
                with td.context(lm=lm):
                    for first in range(0, args.calls, 1000):
                        async with trio.open_nursery() as nursery:
                            for i in range(first, min(first + 1000, args.calls)):
                                cancel = rng.random() < args.cancel
                                deadline = rng.uniform(0.0, args.max_cancel_after)
                                nursery.start_soon(one, i, deadline if cancel else None)
                        rss.append(rss_mb())
                        done = min(first + 1000, args.calls)
                        if sys.stderr.isatty():
                            print(f"\r{done}/{args.calls}", end="", file=sys.stderr, flush=True)
        if sys.stderr.isatty():
            print(file=sys.stderr)
        elapsed = time.perf_counter() - start
        sockets_after, fds_after = open_fds()

    lost = args.calls - tally.ended
    print(f"calls: {args.calls} in {elapsed:.1f}s ({args.concurrency} at a time)")
    if overall.cancelled_caught:
        print(f"STOPPED at --max-seconds {args.max_seconds}: the rest never ran")
    print(f"ok: {tally.ok}")
    print(f"cancelled by us: {tally.cancelled}")
    print(f"typed errors: {sum(tally.errors.values())}")
    for name, count in tally.errors.most_common():
        print(f"  {name}: {count}")
    print(f"calls lost: {lost}")
    for name, count in tally.untyped.most_common():
        print(f"  untyped {name}: {count}")
    print(f"open sockets: {sockets_before} before the LM, {sockets_after} after closing it")
    print(f"open file descriptors: {fds_before} before, {fds_after} after")
    if len(rss) >= 2:
        print(
            f"RSS after the first thousand calls: {rss[0]:.1f} MB; "
            f"after the last: {rss[-1]:.1f} MB ({rss[-1] - rss[0]:+.1f} MB)"
        )
        print("RSS per thousand: " + " ".join(f"{mb:.1f}" for mb in rss))
    leaked = sockets_after - sockets_before
    return 1 if lost or leaked or overall.cancelled_caught else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--calls", type=int, default=10_000, help="how many calls")
    parser.add_argument("--concurrency", type=int, default=64, help="calls in flight at most")
    parser.add_argument("--cancel", type=float, default=0.1, help="share of calls cancelled")
    parser.add_argument(
        "--max-cancel-after", type=float, default=0.05, help="latest random deadline, seconds"
    )
    parser.add_argument("--latency", default="uniform:0.001,0.02", help="server latency")
    parser.add_argument("--read-timeout", type=float, default=1.0, help="LM read timeout")
    parser.add_argument("--call-timeout", type=float, default=10.0, help="LM timeout per call")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="bound of the whole run")
    parser.add_argument("--seed", type=int, default=0, help="seed of faults and cancellations")
    args = parser.parse_args(argv)
    return trio.run(soak, args)


if __name__ == "__main__":
    sys.exit(main())
