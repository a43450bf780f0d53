"""DSPy's side of optimizer_wall_time.py: runs under a Python that has dspy.

Runs dspy.BootstrapFewShotWithRandomSearch on the shared arithmetic task
against the given OpenAI-compatible server (cache off) and prints one JSON
object per run: wall time, LM calls, the chosen program's valset score.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import dspy
from arithmetic_task import examples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--train", type=int, default=16)
    parser.add_argument("--val", type=int, default=32)
    parser.add_argument("--candidates", type=int, default=6)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    lm = dspy.LM("openai/sim-model", api_base=args.base_url, api_key="bench", cache=False)
    dspy.configure(lm=lm, adapter=dspy.ChatAdapter())
    trainset = [dspy.Example(**e).with_inputs("question") for e in examples(args.train, 1)]
    valset = [dspy.Example(**e).with_inputs("question") for e in examples(args.val, 2)]

    def metric(example, pred, trace=None):  # type: ignore[no-untyped-def]
        return pred.answer == example.answer

    runs = []
    for _ in range(args.repeat):
        lm.history.clear()
        optimizer = dspy.BootstrapFewShotWithRandomSearch(
            metric=metric,
            max_bootstrapped_demos=4,
            max_labeled_demos=4,
            num_candidate_programs=args.candidates,
            num_threads=args.threads,
        )
        start = time.perf_counter()
        compiled = optimizer.compile(
            dspy.Predict("question -> answer"), trainset=trainset, valset=valset
        )
        wall = time.perf_counter() - start
        calls = len(lm.history)
        score = dspy.Evaluate(devset=valset, metric=metric, num_threads=args.threads)(compiled)
        runs.append({"wall": wall, "calls": calls, "score": float(getattr(score, "score", score))})
    print(
        json.dumps(
            {
                "wall": statistics.median(r["wall"] for r in runs),
                "calls": statistics.median(r["calls"] for r in runs),
                "score": runs[0]["score"],
                "runs": runs,
                "dspy": dspy.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
