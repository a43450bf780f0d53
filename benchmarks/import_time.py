"""How long ``import trio_dspy`` takes in a fresh interpreter.

Run: ``.venv/bin/python benchmarks/import_time.py [--runs N] [--module NAME] [--budget S]``

Each run starts a new interpreter (the same one that runs this script), which
times ``import trio_dspy`` with :func:`time.perf_counter` around the import
and prints the seconds. Reported: the median (and min / max) over N runs, and
the same for an empty import (``import sys``, already loaded) as the floor.
Interpreter start-up itself is not counted in either number.

``--budget S`` exits with status 1 when the median is above S seconds, so the
script can guard the number. ``--top K`` also prints the K modules that cost
most (self time, from ``-X importtime``) to say where the time goes.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys

CHILD = "import time\nt0 = time.perf_counter()\nimport {module}\nprint(time.perf_counter() - t0)\n"


def time_import(module: str, runs: int) -> list[float]:
    """Seconds that ``import module`` took in each of ``runs`` fresh interpreters."""
    times = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", CHILD.format(module=module)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        times.append(float(out.strip()))
    return times


def top_modules(module: str, k: int) -> list[tuple[float, float, str]]:
    """The ``k`` modules with the largest self time: (self ms, cumulative ms, name)."""
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        check=True,
        capture_output=True,
        text=True,
    ).stderr
    rows = []
    for line in err.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|\s*(\S+)", line)
        if m:
            rows.append((int(m.group(1)) / 1000, int(m.group(2)) / 1000, m.group(3)))
    return sorted(rows, reverse=True)[:k]


def _line(label: str, times: list[float]) -> str:
    return (
        f"{label:<22} median {statistics.median(times) * 1000:7.1f} ms"
        f"  (min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}, n={len(times)})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--module", default="trio_dspy")
    parser.add_argument("--budget", type=float, default=None, help="fail above this median (s)")
    parser.add_argument("--top", type=int, default=0, help="show the K costliest modules")
    args = parser.parse_args(argv)

    floor = time_import("sys", args.runs)
    times = time_import(args.module, args.runs)
    print(_line("empty import", floor))
    print(_line(f"import {args.module}", times))
    if args.top:
        print("\ncostliest modules (self ms, cumulative ms), one -X importtime run:")
        for self_ms, cum_ms, name in top_modules(args.module, args.top):
            print(f"  {self_ms:7.1f} {cum_ms:8.1f}  {name}")
    median = statistics.median(times)
    if args.budget is not None and median > args.budget:
        print(f"over budget: median {median:.3f} s > {args.budget:.3f} s")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
