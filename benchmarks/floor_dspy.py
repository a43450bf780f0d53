"""DSPy's side of floor.py: runs under a Python that has dspy (and no trio_dspy).

``dspy.Predict("question -> answer").acall`` with caches off, against the
servers floor.py started: client CPU per sequential call and the wall time
of ``--burst`` calls at once under ``asyncio.gather``, the median of
``--rounds`` rounds. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from typing import Any

# litellm would otherwise fetch its model price list from the internet.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy


async def workload(args: argparse.Namespace) -> dict[str, Any]:
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    seq = dspy.LM("openai/sim-model", api_base=args.seq_url, api_key="bench-key", cache=False)
    burst = dspy.LM("openai/sim-model", api_base=args.burst_url, api_key="bench-key", cache=False)
    dspy.configure(adapter=dspy.ChatAdapter())
    predict = dspy.Predict("question -> answer")

    async def call(lm: Any, i: int) -> None:
        with dspy.context(lm=lm):
            await predict.acall(question=f"What is {i} + {i}?")

    for i in range(10):  # warm up
        await call(seq, i)
    if args.burst:
        await asyncio.gather(*(call(burst, i) for i in range(args.burst)))
    cpu: list[float] = []
    walls: list[float] = []
    for _ in range(args.rounds):
        cpu0 = time.process_time()
        for i in range(args.calls):
            await call(seq, i)
        cpu.append((time.process_time() - cpu0) / args.calls * 1e6)
        if args.burst:
            t0 = time.perf_counter()
            await asyncio.gather(*(call(burst, i) for i in range(args.burst)))
            walls.append(time.perf_counter() - t0)
    result: dict[str, Any] = {
        "version": dspy.__version__,
        "cpu_us_per_call": statistics.median(cpu),
        "cpu_us_per_call_runs": cpu,
    }
    if walls:
        result["burst_wall_s"] = statistics.median(walls)
        result["burst_wall_s_runs"] = walls
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seq-url", required=True)
    parser.add_argument("--burst-url", required=True)
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(workload(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
