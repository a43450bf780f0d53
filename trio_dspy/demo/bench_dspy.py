"""DSPy's side of ``trio-dspy bench --compare-dspy`` (runs under a Python with dspy).

It starts the same simulated server (through the trio_dspy Python given by
``--trio-dspy-python``, in its own process), runs the same workload with
``dspy.Predict("question -> answer").acall`` under ``asyncio.gather``, and
prints its rows as JSON on standard output. It imports nothing from trio_dspy,
so it runs in an environment that has only dspy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import subprocess
import sys
import time
from typing import Any


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


async def _workload(base_url: str, sizes: list[int]) -> list[dict[str, Any]]:
    import dspy

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    lm = dspy.LM("openai/sim-model", api_base=base_url, api_key="bench-key", cache=False)
    dspy.configure(lm=lm, adapter=dspy.ChatAdapter())
    predict = dspy.Predict("question -> answer")

    async def call(i: int) -> float:
        start = time.perf_counter()
        await predict.acall(question=f"What is {i} + {i}?")
        return time.perf_counter() - start

    await call(-1)  # warm up
    rows = []
    for n in sizes:
        cpu0, t0 = time.process_time(), time.perf_counter()
        results = await asyncio.gather(*(call(i) for i in range(n)), return_exceptions=True)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        durations = [r for r in results if isinstance(r, float)]
        rows.append(
            {
                "mode": "dspy",
                "n": n,
                "wall": wall,
                "ideal": max(durations, default=math.nan),
                "cpu_per_request_ms": cpu / n * 1000,
                "p50": _percentile(durations, 0.5),
                "p99": _percentile(durations, 0.99),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "errors": len(results) - len(durations),
                "estimated": False,
                "dspy_version": getattr(dspy, "__version__", "?"),
            }
        )
        print(f"  dspy measured N={n}", file=sys.stderr, flush=True)
    return rows


def main() -> int:
    """Start the server, run the workload, print JSON rows."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", default="0.5")
    parser.add_argument("--sizes", default="1,4,16,64,256,1024")
    parser.add_argument("--trio-dspy-python", required=True)
    args = parser.parse_args()
    # litellm would otherwise fetch its model price list from the internet.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    cmd = [args.trio_dspy_python, "-m", "trio_dspy.cli", "serve-sim", "--port", "0"]
    cmd += ["--latency", args.latency, "--seed", "1"]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().strip()
        sizes = [int(s) for s in args.sizes.split(",")]
        rows = asyncio.run(_workload(base_url, sizes))
    finally:
        server.terminate()
        server.wait(timeout=10)
    json.dump(rows, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
