"""DSPy's side of optimizer_wall_time.py: runs under a Python that has dspy.

``--optimizer random-search`` runs dspy.BootstrapFewShotWithRandomSearch on
the shared arithmetic task; ``--optimizer gepa`` (and ``mipro``) runs
dspy.GEPA (dspy.MIPROv2) on the instruction task, whose examples and
per-example phrases come in a JSON file written by optimizer_wall_time.py
(so this side needs no trio_dspy). Every run goes to the given
OpenAI-compatible server with caches off. Prints one JSON object: the
medians, and each run's wall time, LM calls, metric calls and the chosen
program's valset score.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import dspy


class CountingLM(dspy.LM):
    """A dspy.LM that counts the requests it sends (from any thread)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls = 0
        self._lock = threading.Lock()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.calls += 1
        return super().forward(*args, **kwargs)


def random_search(args: argparse.Namespace, lm: CountingLM) -> list[dict[str, Any]]:
    from arithmetic_task import examples

    trainset = [dspy.Example(**e).with_inputs("question") for e in examples(args.train, 1)]
    valset = [dspy.Example(**e).with_inputs("question") for e in examples(args.val, 2)]

    def metric(example, pred, trace=None):  # type: ignore[no-untyped-def]
        return pred.answer == example.answer

    runs = []
    for _ in range(args.repeat):
        lm.calls = 0
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
        calls = lm.calls
        score = dspy.Evaluate(devset=valset, metric=metric, num_threads=args.threads)(compiled)
        runs.append({"wall": wall, "calls": calls, "score": float(getattr(score, "score", score))})
    return runs


class InstructionTask:
    """The instruction task as read from optimizer_wall_time.py's JSON file."""

    def __init__(self, path: str) -> None:
        data = json.loads(Path(path).read_text())
        self.instructions: str = data["instructions"]
        self.phrase: dict[str, str] = {}
        self.sets: dict[str, list[dspy.Example]] = {}
        for split in ("train", "val"):
            self.sets[split] = []
            for item in data[split]:
                self.phrase[item["question"]] = item["phrase"]
                example = dspy.Example(question=item["question"], answer=item["answer"])
                self.sets[split].append(example.with_inputs("question"))
        self.metric_calls = 0
        self._lock = threading.Lock()

    def metric(self, gold, pred, trace=None, pred_name=None, pred_trace=None):  # type: ignore[no-untyped-def]
        """trio_dspy's InstructionTask.metric, word for word: 1.0 for the gold code, else
        0.0 with feedback naming the phrase the item needed. Counts the scoring calls."""
        if pred_name is None:  # DSPy scores with two arguments, asks feedback with five
            with self._lock:
                self.metric_calls += 1
        answer = str(getattr(pred, "answer", "")).strip()
        if answer == gold.answer:
            return dspy.Prediction(score=1.0, feedback="Correct.")
        return dspy.Prediction(
            score=0.0,
            feedback=(
                f"Wrong: the shelf code is {gold.answer}, not {answer or 'nothing'}. "
                f'The instructions should say "{self.phrase[gold.question]}".'
            ),
        )

    def score(self, program: dspy.Module, threads: int) -> float:
        """The program's valset accuracy, in percent (not counted as metric calls)."""
        result = dspy.Evaluate(
            devset=self.sets["val"],
            metric=lambda g, p, t=None: p.answer.strip() == g.answer,
            num_threads=threads,
        )(program)
        return float(getattr(result, "score", result))


def gepa(args: argparse.Namespace, lm: CountingLM) -> list[dict[str, Any]]:
    task = InstructionTask(args.task_file)
    reflection = CountingLM(
        "openai/sim-model", api_base=args.base_url, api_key="bench", cache=False
    )
    runs = []
    for seed in args.seeds:
        lm.calls = reflection.calls = task.metric_calls = 0
        optimizer = dspy.GEPA(
            metric=task.metric,
            reflection_lm=reflection,
            max_metric_calls=args.budget,
            num_threads=args.threads,
            seed=seed,
            track_stats=True,
        )
        student = dspy.Predict(dspy.Signature("question -> answer", task.instructions))
        start = time.perf_counter()
        compiled = optimizer.compile(student, trainset=task.sets["train"], valset=task.sets["val"])
        wall = time.perf_counter() - start
        runs.append(
            {
                "seed": seed,
                "wall": wall,
                "calls": lm.calls + reflection.calls,
                "reflections": reflection.calls,
                "metric_calls": task.metric_calls,
                "replayed": 0,
                "candidates": len(compiled.detailed_results.candidates) - 1,
                "merges": sum(len(p) == 2 for p in compiled.detailed_results.parents),
                "score": task.score(compiled, args.threads),
                "instructions": compiled.signature.instructions,
            }
        )
        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    return runs


def mipro(args: argparse.Namespace, lm: CountingLM) -> list[dict[str, Any]]:
    """dspy.MIPROv2 on the instruction task, zero-shot (instructions only), with
    ``--trials`` trials on minibatches; needs optuna in this Python."""
    task = InstructionTask(args.task_file)
    runs = []
    for seed in args.seeds:
        lm.calls = task.metric_calls = 0
        optimizer = dspy.MIPROv2(
            metric=lambda g, p, t=None: task.metric(g, p).score,
            auto=None,
            num_candidates=args.candidates,
            max_bootstrapped_demos=0,
            max_labeled_demos=0,
            num_threads=args.threads,
            seed=seed,
            verbose=False,
        )
        student = dspy.Predict(dspy.Signature("question -> answer", task.instructions))
        start = time.perf_counter()
        compiled = optimizer.compile(
            student,
            trainset=task.sets["train"],
            valset=task.sets["val"],
            num_trials=args.trials,
            minibatch_size=args.minibatch,
        )
        wall = time.perf_counter() - start
        runs.append(
            {
                "seed": seed,
                "wall": wall,
                "calls": lm.calls,
                "metric_calls": task.metric_calls,
                "score": task.score(compiled, args.threads),
                "instructions": compiled.signature.instructions,
            }
        )
        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--optimizer", choices=["random-search", "gepa", "mipro"], default="random-search"
    )
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--train", type=int, default=16)
    parser.add_argument("--val", type=int, default=32)
    parser.add_argument("--candidates", type=int, default=6)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--task-file", help="the instruction task's examples (gepa, mipro)")
    parser.add_argument("--budget", type=int, default=300, help="GEPA's max_metric_calls")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=10, help="MIPROv2's num_trials")
    parser.add_argument("--minibatch", type=int, default=35, help="MIPROv2's minibatch_size")
    args = parser.parse_args()

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    lm = CountingLM("openai/sim-model", api_base=args.base_url, api_key="bench", cache=False)
    dspy.configure(lm=lm, adapter=dspy.ChatAdapter())
    run = {"random-search": random_search, "gepa": gepa, "mipro": mipro}[args.optimizer]
    runs = run(args, lm)
    print(
        json.dumps(
            {
                "wall": statistics.median(r["wall"] for r in runs),
                "calls": statistics.median(r["calls"] for r in runs),
                "score": statistics.median(r["score"] for r in runs),
                "runs": runs,
                "dspy": dspy.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
