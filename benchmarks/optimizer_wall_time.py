"""BootstrapFewShotWithRandomSearch here and in DSPy, on one simulated server.

Both libraries compile ``Predict("question -> answer")`` on the same
arithmetic task (``arithmetic_task.py``) against the same simulated
OpenAI-compatible server, run in its own process with a constant latency
(0.5 s by default), caches off, the same trainset and valset sizes, the same
number of candidates and the same bound on calls in flight (DSPy's
``num_threads``). Reported: wall time and LM calls of each compile, the
chosen program's valset score; and here, the same compile without early
stopping, to show that early stopping saves calls and picks the same program.

    python benchmarks/optimizer_wall_time.py                       # trio_dspy only
    python benchmarks/optimizer_wall_time.py --dspy-python PYTHON  # and DSPy, side by side
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trio

import trio_dspy as td
from trio_dspy.messages import LMRequest, LMResponse

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from arithmetic_task import answer, examples  # noqa: E402


class CountingLM(td.BaseLM):
    """Counts the calls that reach the wrapped model."""

    def __init__(self, inner: td.BaseLM) -> None:
        super().__init__(inner.model)
        self.inner = inner
        self.calls = 0

    async def send(self, request: LMRequest) -> LMResponse:
        self.calls += 1
        return await self.inner.send(request)


def metric(example: td.Example, pred: td.Prediction, trace: Any = None) -> bool:
    return bool(pred.answer == example.answer)


async def serve(latency: float) -> None:
    """Run the simulated server whose answers follow ``arithmetic_task.answer``."""
    from trio_dspy.testing import SimConfig, serve_sim
    from trio_dspy.testing.sim_answers import SimReply

    def script(body: dict[str, Any]) -> SimReply:
        return SimReply(outputs={"answer": answer(body.get("messages", []))})

    async with serve_sim(SimConfig(latency=latency, script=script)) as sim:
        print(sim.base_url, flush=True)
        await trio.sleep_forever()


async def compile_once(base_url: str, args: argparse.Namespace, early: bool) -> dict[str, Any]:
    trainset = [td.Example(**e).with_inputs("question") for e in examples(args.train, 1)]
    valset = [td.Example(**e).with_inputs("question") for e in examples(args.val, 2)]
    async with td.LM("openai/sim-model", base_url=base_url, api_key="bench") as http_lm:
        lm = CountingLM(http_lm)
        optimizer = td.BootstrapFewShotWithRandomSearch(
            metric,
            num_candidate_programs=args.candidates,
            max_bootstrapped_demos=4,
            max_labeled_demos=4,
            limit=args.threads,
            early_stopping=early,
        )
        with td.context(lm=lm):
            start = time.perf_counter()
            compiled = await optimizer.compile(
                td.Predict("question -> answer"), trainset=trainset, valset=valset
            )
            wall = time.perf_counter() - start
            calls = lm.calls
            score = (
                await td.Evaluate(valset, metric, limit=args.threads, progress=False)(compiled)
            ).score
    assert optimizer.stats is not None
    return {
        "wall": wall,
        "calls": calls,
        "score": score,
        "program": compiled.dump_state(),
        "pruned": optimizer.stats.pruned,
        "runs_saved": optimizer.stats.example_runs_saved,
        "candidates": [(c.label, c.score, c.pruned) for c in optimizer.candidates],
    }


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--train", type=int, default=16)
    parser.add_argument("--val", type=int, default=32)
    parser.add_argument("--candidates", type=int, default=6)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dspy-python", help="a Python with dspy installed")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        trio.run(serve, args.latency)
        return 0

    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--latency", str(args.latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().strip()
        rows: dict[str, list[dict[str, Any]]] = {"early": [], "full": []}
        for _ in range(args.repeat):
            for mode in ("early", "full"):
                rows[mode].append(trio.run(compile_once, base_url, args, mode == "early"))
        dspy: dict[str, Any] | None = None
        if args.dspy_python:
            out = subprocess.run(
                [
                    args.dspy_python,
                    str(HERE / "optimizer_wall_time_dspy.py"),
                    "--base-url",
                    base_url,
                    "--train",
                    str(args.train),
                    "--val",
                    str(args.val),
                    "--candidates",
                    str(args.candidates),
                    "--threads",
                    str(args.threads),
                    "--repeat",
                    str(args.repeat),
                ],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "PYTHONWARNINGS": "ignore"},
            )
            dspy = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        server.terminate()
        server.wait()

    same = all(r["program"] == rows["full"][0]["program"] for r in rows["early"] + rows["full"])
    print(
        f"BootstrapFewShotWithRandomSearch: {args.candidates} + 3 candidates, trainset "
        f"{args.train}, valset {args.val}, {args.threads} in flight, latency {args.latency} s; "
        f"median of {args.repeat}"
    )
    print(f"{'':28}{'wall s':>8}{'LM calls':>10}{'valset %':>10}")
    for label, runs in (
        ("trio_dspy, early stopping", rows["early"]),
        ("trio_dspy, full search", rows["full"]),
    ):
        wall, calls = _median(runs, "wall"), _median(runs, "calls")
        print(f"{label:28}{wall:8.2f}{calls:10.0f}{runs[0]['score']:10.1f}")
    if dspy is not None:
        label = "DSPy " + dspy["dspy"]
        print(f"{label:28}{dspy['wall']:8.2f}{dspy['calls']:10.0f}{dspy['score']:10.1f}")
    early, full = rows["early"], rows["full"]
    print(
        f"early stopping: {_median(full, 'calls') / _median(early, 'calls'):.2f}x fewer calls, "
        f"{_median(early, 'pruned'):.0f} candidates cancelled, same program chosen: {same}"
    )
    if dspy is not None:
        print(
            f"wall time vs DSPy: {dspy['wall'] / _median(full, 'wall'):.1f}x less at "
            f"{_median(full, 'calls'):.0f} vs {dspy['calls']:.0f} calls (full search), "
            f"{dspy['wall'] / _median(early, 'wall'):.1f}x less with early stopping"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
