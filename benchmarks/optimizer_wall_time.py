"""Optimizers here and in DSPy, on one simulated server, side by side.

``--optimizer random-search`` (the default): BootstrapFewShotWithRandomSearch.
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

``--optimizer gepa``: GEPA on the instruction task (``td.testing.InstructionTask``,
``--phrases`` hidden phrases, each item answered right only when the
instructions hold its phrase), served for each seed ``s`` by a process that
plays ``InstructionTask(seed=s)`` (with the default 4 phrases it is exactly
``trio-dspy serve-sim --task instructions:s``). For each seed, each
``--threads`` value (trio_dspy's ``limit``, DSPy's ``num_threads``) and each
``--proposals`` value, trio_dspy's GEPA compiles the task's instructions-only
program with ``max_metric_calls=--budget`` and GEPA seed ``s``; DSPy's GEPA
(``optimizer_wall_time_dspy.py --optimizer gepa``, its own default
instruction proposer through JSONAdapter) does the same with the same
examples, metric and budget. LM calls (program and reflection) are counted by
a wrapper on each side; metric calls are those really made (with several
proposals, cancelled speculation's included; runs read back from the run's
journal are counted apart, as the budget charges them too); valset scores
are the returned instructions' accuracy on the valset. Medians over the
seeds, then every run. (Run from the repository root with ``PYTHONPATH=.``
to measure the checkout: the servers do.)

    PYTHONPATH=. python benchmarks/optimizer_wall_time.py --optimizer gepa --dspy-python PYTHON
    PYTHONPATH=. python benchmarks/optimizer_wall_time.py --optimizer gepa --threads 16 32 \\
        --proposals 1 2 4 8 --seeds 0 1 2 --budget 400 --dspy-python PYTHON

``--optimizer mipro``: MIPROv2, zero-shot (instructions only), on the same
task and servers as GEPA: ``--candidates`` proposed instructions (6),
``--trials`` trials (16) on minibatches of ``--minibatch`` valset examples
(10), trainset 30 and valset 40 by default; DSPy's side is
``optimizer_wall_time_dspy.py --optimizer mipro`` (needs optuna there).

    PYTHONPATH=. python benchmarks/optimizer_wall_time.py --optimizer mipro --threads 16 32 \\
        --dspy-python PYTHON
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import trio

import trio_dspy as td
from trio_dspy.messages import LMRequest, LMResponse
from trio_dspy.testing import InstructionTask
from trio_dspy.testing.sim_task import DEFAULT_PHRASES

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
            limit=args.threads[0],
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
                await td.Evaluate(valset, metric, limit=args.threads[0], progress=False)(compiled)
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


def random_search(args: argparse.Namespace) -> None:
    """The random-search comparison (at the first ``--threads`` value)."""
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
                    str(args.threads[0]),
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
        f"{args.train}, valset {args.val}, {args.threads[0]} in flight, latency {args.latency} s; "
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


# ---------------------------------------------------------------------- GEPA

# Beyond InstructionTask's four default phrases: a task whose seed scores low
# and needs several accepted candidates (each reflection names at most one
# phrase per minibatch example) before it is solved.
EXTRA_PHRASES = (
    "check the aisle map before answering",
    "use the ledger's newest entry",
    "write the digits without spaces",
    "ignore discontinued items",
    "count shelves from the floor up",
    "use capital letters only",
    "keep the dash between letter and digits",
    "give the code of the item itself, not its box",
)


def instruction_task(seed: int, phrases: int) -> InstructionTask:
    """The instruction task with its first ``phrases`` phrases (4: the default task)."""
    pool = DEFAULT_PHRASES + EXTRA_PHRASES
    if not 1 <= phrases <= len(pool):
        raise SystemExit(f"--phrases must be between 1 and {len(pool)}")
    return InstructionTask(phrases=pool[:phrases], seed=seed)


async def serve_task(task: InstructionTask, latency: float) -> None:
    """Run the simulated server playing ``task`` (as ``trio-dspy serve-sim --task`` does)."""
    from trio_dspy.testing import SimConfig, serve_sim

    async with serve_sim(SimConfig(latency=latency, script=task.script())) as sim:
        print(sim.base_url, flush=True)
        await trio.sleep_forever()


@contextmanager
def task_server(args: argparse.Namespace, seed: int) -> Iterator[str]:
    """A server process playing the instruction task of ``seed``; its base URL."""
    server = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve-task",
            str(seed),
            "--phrases",
            str(args.phrases),
            "--latency",
            str(args.latency),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(HERE.parent)},
    )
    try:
        assert server.stdout is not None
        yield server.stdout.readline().strip()
    finally:
        server.terminate()
        server.wait()


async def timed_compile(
    optimizer: Any,
    task: InstructionTask,
    lm: td.BaseLM,
    trainset: list[td.Example],
    valset: list[td.Example],
) -> tuple[float, str]:
    """Compile the task's instructions-only program; the wall time and the instructions."""
    student = td.Predict(td.make_signature("question -> answer", instructions=task.instructions))
    with td.context(lm=lm):
        start = time.perf_counter()
        compiled = await optimizer.compile(student, trainset=trainset, valset=valset)
        wall = time.perf_counter() - start
    return wall, compiled.predictors()[0].signature.instructions


async def gepa_once(
    base_url: str,
    task: InstructionTask,
    args: argparse.Namespace,
    threads: int,
    proposals: int,
    seed: int,
) -> dict[str, Any]:
    """One trio_dspy GEPA compile; what it cost and what it found."""
    trainset = task.examples(args.train)
    valset = task.examples(args.val, start=1000)
    async with td.LM(
        "openai/sim-model", base_url=base_url, api_key="bench", cache=False
    ) as http_lm:
        lm, reflection = CountingLM(http_lm), CountingLM(http_lm)
        optimizer = td.GEPA(
            task.metric,
            reflection_lm=reflection,
            max_metric_calls=args.budget,
            limit=threads,
            proposals=proposals,
            seed=seed,
        )
        wall, instructions = await timed_compile(optimizer, task, lm, trainset, valset)
    stats, result = optimizer.stats, optimizer.result
    assert result is not None
    return {
        "seed": seed,
        "wall": wall,
        "calls": lm.calls + reflection.calls,
        "reflections": reflection.calls,
        # really made (cancelled speculation's included); the budget bounds these
        "metric_calls": stats.metric_calls,
        "replayed": stats.metric_calls_replayed,
        "saved": stats.metric_calls_saved,
        "candidates": len(result.candidates) - 1,
        "merges": sum(len(parents) == 2 for parents in result.parents),
        "score": 100 * task.accuracy(instructions, range(1000, 1000 + args.val)),
        "instructions": instructions,
    }


def dspy_gepa(
    args: argparse.Namespace, base_url: str, task: InstructionTask, threads: int, seed: int
) -> dict[str, Any]:
    """One DSPy GEPA compile in DSPy's own Python; what it cost and what it found."""
    return _dspy_side(
        args,
        base_url,
        task,
        [
            "--optimizer",
            "gepa",
            "--budget",
            str(args.budget),
            "--threads",
            str(threads),
            "--seeds",
            str(seed),
        ],
    )


def _dspy_side(
    args: argparse.Namespace, base_url: str, task: InstructionTask, options: list[str]
) -> dict[str, Any]:
    """Run ``optimizer_wall_time_dspy.py`` with ``options`` on ``task``'s examples; its run."""
    items = {
        "train": range(args.train),
        "val": range(1000, 1000 + args.val),
    }
    data = {
        "instructions": task.instructions,
        **{
            split: [
                {"question": task.question(i), "answer": task.code(i), "phrase": task.phrase(i)}
                for i in ids
            ]
            for split, ids in items.items()
        },
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(data, f)
    try:
        out = subprocess.run(
            [
                args.dspy_python,
                str(HERE / "optimizer_wall_time_dspy.py"),
                "--base-url",
                base_url,
                "--task-file",
                f.name,
                *options,
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
    finally:
        os.unlink(f.name)
    if out.returncode != 0:
        raise SystemExit(f"DSPy's optimizer failed:\n{out.stderr[-4000:]}")
    report = json.loads(out.stdout.strip().splitlines()[-1])
    (run,) = report["runs"]
    run["dspy_score"] = run["score"]  # DSPy's own Evaluate of the program it returned
    run["score"] = 100 * task.accuracy(run["instructions"], items["val"])
    run["dspy"] = report["dspy"]
    return run


def _write_json(args: argparse.Namespace, rows: dict[tuple[int, str], list[Any]]) -> None:
    """Every run to ``--json``, if given."""
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                [{"threads": t, "label": k, "runs": v} for (t, k), v in rows.items()], indent=1
            )
        )


GEPA_COLUMNS = ("wall", "calls", "metric_calls", "replayed", "candidates", "score")


def _gepa_row(label: str, runs: list[dict[str, Any]]) -> str:
    wall, calls, metric, replayed, accepted, score = (_median(runs, k) for k in GEPA_COLUMNS)
    return (
        f"{label:28}{wall:8.2f}{calls:10.0f}{metric:14.0f}{replayed:10.0f}"
        f"{accepted:10.0f}{score:10.1f}"
    )


def gepa(args: argparse.Namespace) -> None:
    """The GEPA comparison: every seed, ``--threads`` value and ``--proposals`` value."""
    rows: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for seed in args.seeds:
        task = instruction_task(seed, args.phrases)
        with task_server(args, seed) as base_url:
            for threads in args.threads:
                for proposals in args.proposals:
                    run = trio.run(gepa_once, base_url, task, args, threads, proposals, seed)
                    rows.setdefault((threads, f"trio_dspy, proposals={proposals}"), []).append(run)
                    print(f"# {threads} in flight, proposals={proposals}: {run}", file=sys.stderr)
                if args.dspy_python:
                    run = dspy_gepa(args, base_url, task, threads, seed)
                    rows.setdefault((threads, "DSPy " + run["dspy"]), []).append(run)
                    print(f"# {threads} in flight, DSPy: {run}", file=sys.stderr)
    seed_score = 100 * statistics.median(
        instruction_task(s, args.phrases).accuracy(
            InstructionTask().instructions, range(1000, 1000 + args.val)
        )
        for s in args.seeds
    )
    print(
        f"GEPA: max_metric_calls {args.budget}, trainset {args.train}, valset {args.val}, "
        f"{args.phrases} phrases (seed program {seed_score:.1f}%), latency {args.latency} s; "
        f"median over seeds {args.seeds}"
    )
    for threads in args.threads:
        print(f"\n{threads} in flight")
        print(
            f"{'':28}{'wall s':>8}{'LM calls':>10}{'metric calls':>14}{'replayed':>10}"
            f"{'accepted':>10}{'valset %':>10}"
        )
        print(f"{'':28}{'':8}{'':10}{'made':>14}{'(journal)':>10}")
        mine = {k[1]: v for k, v in rows.items() if k[0] == threads}
        for label, runs in mine.items():
            print(_gepa_row(label, runs))
        dspy = next((v for k, v in mine.items() if k.startswith("DSPy")), None)
        if dspy is not None:
            for label, runs in mine.items():
                if label.startswith("trio_dspy"):
                    print(
                        f"{label}: {_median(dspy, 'wall') / _median(runs, 'wall'):.1f}x less "
                        "wall time than DSPy"
                    )
    print("\nevery run (seed: wall s, LM calls, metric calls, replayed, accepted, valset %)")
    for (threads, label), runs in rows.items():
        cells = "; ".join(
            f"{r['seed']}: {r['wall']:.2f}, {r['calls']}, {r['metric_calls']}, {r['replayed']}, "
            f"{r['candidates']} ({r['merges']} merges), {r['score']:.0f}"
            for r in runs
        )
        print(f"{threads:3} {label:26} {cells}")
    _write_json(args, rows)


# ---------------------------------------------------------------------- MIPROv2


async def mipro_once(
    base_url: str, task: InstructionTask, args: argparse.Namespace, threads: int, seed: int
) -> dict[str, Any]:
    """One trio_dspy MIPROv2 compile, zero-shot (instructions only); what it cost and found."""
    trainset = task.examples(args.train)
    valset = task.examples(args.val, start=1000)
    async with td.LM(
        "openai/sim-model", base_url=base_url, api_key="bench", cache=False
    ) as http_lm:
        lm = CountingLM(http_lm)
        optimizer = td.MIPROv2(
            task.metric,
            auto=None,
            num_candidates=args.candidates,
            num_trials=args.trials,
            max_bootstrapped_demos=0,
            max_labeled_demos=0,
            minibatch_size=args.minibatch,
            limit=threads,
            seed=seed,
        )
        wall, instructions = await timed_compile(optimizer, task, lm, trainset, valset)
    stats = optimizer.stats
    return {
        "seed": seed,
        "wall": wall,
        "calls": lm.calls,
        "metric_calls": stats.metric_calls,
        "trials": stats.trials,
        "full_evals": stats.full_evaluations,
        "most_in_flight": stats.most_trials_in_flight,
        "score": 100 * task.accuracy(instructions, range(1000, 1000 + args.val)),
        "instructions": instructions,
    }


def dspy_mipro(
    args: argparse.Namespace, base_url: str, task: InstructionTask, threads: int, seed: int
) -> dict[str, Any]:
    """One DSPy MIPROv2 compile (zero-shot) in DSPy's own Python; what it cost and found."""
    run = _dspy_side(
        args,
        base_url,
        task,
        [
            "--optimizer",
            "mipro",
            "--candidates",
            str(args.candidates),
            "--trials",
            str(args.trials),
            "--minibatch",
            str(args.minibatch),
            "--threads",
            str(threads),
            "--seeds",
            str(seed),
        ],
    )
    return run


MIPRO_COLUMNS = ("wall", "calls", "metric_calls", "score")


def mipro(args: argparse.Namespace) -> None:
    """The MIPROv2 comparison: every seed and ``--threads`` value, zero-shot, on the
    instruction task and servers :func:`gepa` uses, ``--trials`` trials of
    ``--minibatch`` valset examples over ``--candidates`` proposed instructions."""
    rows: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for seed in args.seeds:
        task = instruction_task(seed, args.phrases)
        with task_server(args, seed) as base_url:
            for threads in args.threads:
                run = trio.run(mipro_once, base_url, task, args, threads, seed)
                rows.setdefault((threads, "trio_dspy"), []).append(run)
                print(f"# {threads} in flight, trio_dspy: {run}", file=sys.stderr)
                if args.dspy_python:
                    run = dspy_mipro(args, base_url, task, threads, seed)
                    rows.setdefault((threads, "DSPy " + run["dspy"]), []).append(run)
                    print(f"# {threads} in flight, DSPy: {run}", file=sys.stderr)
    print(
        f"MIPROv2 (zero-shot): {args.candidates} candidates, {args.trials} trials of "
        f"{args.minibatch}, trainset {args.train}, valset {args.val}, {args.phrases} phrases, "
        f"latency {args.latency} s; median over seeds {args.seeds}"
    )
    for threads in args.threads:
        print(f"\n{threads} in flight")
        print(f"{'':28}{'wall s':>8}{'LM calls':>10}{'metric calls':>14}{'valset %':>10}")
        mine = {k[1]: v for k, v in rows.items() if k[0] == threads}
        for label, runs in mine.items():
            wall, calls, metric_calls, score = (_median(runs, k) for k in MIPRO_COLUMNS)
            print(f"{label:28}{wall:8.2f}{calls:10.0f}{metric_calls:14.0f}{score:10.1f}")
        dspy = next((v for k, v in mine.items() if k.startswith("DSPy")), None)
        if dspy is not None and "trio_dspy" in mine:
            ratio = _median(dspy, "wall") / _median(mine["trio_dspy"], "wall")
            print(f"trio_dspy: {ratio:.1f}x less wall time than DSPy")
    print("\nevery run (seed: wall s, LM calls, metric calls, valset %)")
    for (threads, label), runs in rows.items():
        cells = "; ".join(
            f"{r['seed']}: {r['wall']:.2f}, {r['calls']}, {r['metric_calls']}, {r['score']:.0f}"
            for r in runs
        )
        print(f"{threads:3} {label:26} {cells}")
    _write_json(args, rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--optimizer", choices=["random-search", "gepa", "mipro"], default="random-search"
    )
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--train", type=int, help="trainset size (16; gepa 30)")
    parser.add_argument("--val", type=int, help="valset size (32; gepa 20)")
    parser.add_argument(
        "--candidates", type=int, help="random-search candidates (6); MIPROv2's num_candidates (6)"
    )
    parser.add_argument("--trials", type=int, default=16, help="MIPROv2's num_trials")
    parser.add_argument("--minibatch", type=int, default=10, help="MIPROv2's minibatch_size")
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[16],
        help="calls in flight (random search: the first)",
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dspy-python", help="a Python with dspy installed")
    parser.add_argument("--budget", type=int, default=400, help="GEPA's max_metric_calls")
    parser.add_argument(
        "--proposals", type=int, nargs="+", default=[1, 4, 8], help="GEPA proposals"
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="task and GEPA seeds"
    )
    parser.add_argument("--phrases", type=int, default=12, help="the instruction task's phrases")
    parser.add_argument("--json", help="write every run to this file")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-task", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_task is not None:
        trio.run(serve_task, instruction_task(args.serve_task, args.phrases), args.latency)
        return 0
    if args.serve:
        trio.run(serve, args.latency)
        return 0
    if args.optimizer == "gepa":
        args.train = args.train or 30
        args.val = args.val or 20
        gepa(args)
    elif args.optimizer == "mipro":
        args.train = args.train or 30
        args.val = args.val or 40
        args.candidates = args.candidates or 6
        mipro(args)
    else:
        args.train = args.train or 16
        args.val = args.val or 32
        args.candidates = args.candidates or 6
        random_search(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
