"""``trio-dspy bench``: sequential vs nursery vs nursery-with-limit over real HTTP.

The simulated OpenAI-compatible server runs in its own process (so the
client's CPU time is the client's alone); the client sends N typed ``Predict``
calls through one ``td.LM`` in three ways:

* **sequential**: one after another (measured up to ``--max-sequential``
  requests; beyond that its wall time is estimated as N x the mean latency
  measured at the largest N run, and marked so);
* **nursery**: every call a child task of one nursery;
* **limit**: a nursery whose concurrency is bounded by ``--limit``.

For each it reports wall time, speedup over sequential, efficiency against
the ideal (one request alone, for a constant latency; for a random latency
the slowest request of the run, which flatters), client CPU time per
request, p50/p99 request latency and peak RSS; it prints a table, writes
JSON, and draws a PNG when matplotlib is installed. ``--compare-dspy`` runs
DSPy's ``Predict.acall`` under asyncio on the same server and workload, in a
subprocess of the Python that has ``dspy`` (``--dspy-python``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

import trio_dspy as td

from .terminal import HelpFormatter, exit_quietly_on_broken_pipe, plain_text

__all__ = ["main", "run_bench"]

SIZES = (1, 4, 16, 64, 256, 1024)
SIGNATURE = "question -> answer"


@attrs.frozen
class Row:
    """One measurement: a mode at one N."""

    mode: str
    n: int
    wall: float
    # The ideal wall time: one request alone (constant latency), otherwise
    # the slowest request of the run (an upper bound, so efficiency flatters).
    ideal: float
    cpu_per_request_ms: float
    p50: float
    p99: float
    peak_rss_mb: float
    errors: int
    estimated: bool = False


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@asynccontextmanager
async def sim_process(
    latency: str, seed: int = 1, faults: Sequence[str] = (), *, quiet: bool = False
) -> Any:
    """Run ``trio-dspy serve-sim`` on loopback in a child process; yield its base URL.

    ``faults`` are ``--fault`` rules; ``quiet`` discards the server's stderr.
    """
    cmd = [sys.executable, "-m", "trio_dspy.cli", "serve-sim", "--host", "127.0.0.1"]
    cmd += ["--port", "0", "--latency", latency, "--seed", str(seed)]
    for fault in faults:
        cmd += ["--fault", fault]
    async with url_process(cmd, quiet=quiet) as base_url:
        yield base_url


@asynccontextmanager
async def url_process(cmd: Sequence[str], *, quiet: bool = False) -> Any:
    """Run ``cmd``, a server that prints its base URL first; yield that URL.

    The process is terminated (killed after 5 s) when the block ends.

    Raises:
        RuntimeError: the process exited before printing a line.
        trio.TooSlowError: no line within 30 s.
    """
    stderr = subprocess.DEVNULL if quiet else None
    proc = await trio.lowlevel.open_process(list(cmd), stdout=subprocess.PIPE, stderr=stderr)
    try:
        assert proc.stdout is not None
        line = b""
        with trio.fail_after(30):
            while not line.endswith(b"\n"):
                chunk = await proc.stdout.receive_some(1)
                if not chunk:
                    raise RuntimeError("the simulated server exited before printing its URL")
                line += chunk
        yield line.decode().strip()
    finally:
        proc.terminate()
        with trio.move_on_after(5):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()


async def _measure(
    mode: str, n: int, calls: list[Callable[[], Awaitable[float]]], limit: int | None
) -> Row:
    durations: list[float] = []
    errors = 0

    async def timed(call: Callable[[], Awaitable[float]]) -> None:
        nonlocal errors
        try:
            durations.append(await call())
        except td.errors.TrioDSPyError:
            errors += 1

    cpu0, t0 = time.process_time(), time.perf_counter()
    if mode == "sequential":
        for call in calls:
            await timed(call)
    else:
        limiter = trio.CapacityLimiter(limit or len(calls))

        async def bounded(call: Callable[[], Awaitable[float]]) -> None:
            async with limiter:
                await timed(call)

        async with trio.open_nursery() as nursery:
            for call in calls:
                nursery.start_soon(bounded, call)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    return Row(
        mode,
        n,
        wall,
        max(durations, default=math.nan),
        cpu / n * 1000,
        _percentile(durations, 0.5),
        _percentile(durations, 0.99),
        _peak_rss_mb(),
        errors,
    )


async def _median_of(
    repeat: int,
    mode: str,
    n: int,
    calls: list[Callable[[], Awaitable[float]]],
    limit: int | None,
) -> Row:
    runs = [await _measure(mode, n, calls, limit) for _ in range(max(1, repeat))]
    return sorted(runs, key=lambda r: r.wall)[len(runs) // 2]


async def run_bench(
    *,
    sizes: tuple[int, ...] = SIZES,
    latency: str = "0.5",
    limit: int = 64,
    max_sequential: int = 64,
    repeat: int = 3,
    transport: str = "h11",
) -> list[Row]:
    """Measure every mode at every N against a simulated server in a subprocess.

    The concurrent modes run ``repeat`` times and report the run with the
    median wall time (the first run of a size also opens its connections;
    the others reuse them, as a long-running service would).
    """
    rows: list[Row] = []
    async with sim_process(latency) as base_url:
        extra: dict[str, Any] = {}
        if transport == "httpcore":
            # httpx's own pool, unbounded, for comparison with the h11 transport.
            unbounded = httpx.Limits(max_connections=None, max_keepalive_connections=None)
            extra["transport"] = httpx.AsyncHTTPTransport(limits=unbounded)
        lm = td.LM(
            "openai/sim-model", base_url=base_url, api_key="bench-key", max_retries=2, **extra
        )
        predict = td.Predict(SIGNATURE)
        async with lm:
            with td.context(lm=lm):

                def make(i: int) -> Callable[[], Awaitable[float]]:
                    async def call() -> float:
                        start = time.perf_counter()
                        await predict(question=f"What is {i} + {i}?")
                        return time.perf_counter() - start

                    return call

                await make(-1)()  # warm up: imports, first connection
                single = statistics.median([await make(-2)() for _ in range(3)])
                for n in sizes:
                    calls = [make(i) for i in range(n)]
                    if n <= max_sequential:
                        rows.append(await _measure("sequential", n, calls, None))
                    rows.append(await _median_of(repeat, "nursery", n, calls, None))
                    if n > limit:
                        rows.append(await _median_of(repeat, f"limit={limit}", n, calls, limit))
                    if sys.stderr.isatty():  # progress for a person, not for a log file
                        print(f"  measured N={n}", file=sys.stderr, flush=True)
    rows = _estimate_sequential(rows)
    if _is_constant(latency):
        # Every request takes the same time alone: that is the ideal wall time.
        rows = [attrs.evolve(r, ideal=single) for r in rows]
    return rows


def _is_constant(latency: str) -> bool:
    try:
        float(latency)
    except ValueError:
        return False
    return True


def _estimate_sequential(rows: list[Row]) -> list[Row]:
    measured = [r for r in rows if r.mode == "sequential"]
    if not measured:
        return rows
    per_request = measured[-1].wall / measured[-1].n
    have = {r.n for r in measured}
    extra = []
    for r in rows:
        if r.mode == "nursery" and r.n not in have:
            extra.append(
                Row(
                    "sequential",
                    r.n,
                    per_request * r.n,
                    math.nan,
                    math.nan,
                    math.nan,
                    math.nan,
                    math.nan,
                    0,
                    estimated=True,
                )
            )
    return sorted(rows + extra, key=lambda r: (r.n, r.mode != "sequential", r.mode))


def _number(value: float, spec: str, suffix: str = "") -> str:
    """``value`` formatted, or "-" when there is none (not measured, nothing to compare)."""
    return "-" if math.isnan(value) else f"{value:{spec}}{suffix}"


def format_table(rows: list[Row], dspy_rows: list[dict[str, Any]] | None = None) -> str:
    """The results as an aligned text table ("-" where a figure does not apply)."""
    seq = {r.n: r.wall for r in rows if r.mode == "sequential"}
    lines = [
        f"{'N':>5}  {'mode':12}  {'wall s':>8}  {'speedup':>8}  {'efficiency':>10}  "
        f"{'cpu ms/req':>10}  {'p50 s':>7}  {'p99 s':>7}  {'rss MB':>7}  {'errors':>6}"
    ]
    all_rows = [attrs.asdict(r) for r in rows] + list(dspy_rows or [])
    for r in sorted(all_rows, key=lambda r: (r["n"], r["mode"] != "sequential", r["mode"])):
        sequential = r["mode"] == "sequential"
        speedup = 1.0 if sequential else seq.get(r["n"], math.nan) / r["wall"]
        efficiency = math.nan if sequential else r["ideal"] / r["wall"]
        wall = f"{r['wall']:.2f}" + ("*" if r.get("estimated") else " ")
        lines.append(
            f"{r['n']:>5}  {r['mode']:12}  {wall:>8}  {_number(speedup, '.1f', 'x'):>8}  "
            f"{_number(efficiency, '.2f'):>10}  {_number(r['cpu_per_request_ms'], '.3f'):>10}  "
            f"{_number(r['p50'], '.3f'):>7}  {_number(r['p99'], '.3f'):>7}  "
            f"{_number(r['peak_rss_mb'], '.1f'):>7}  {r['errors']:>6}"
        )
    if any(r.get("estimated") for r in all_rows):
        lines.append(
            "* estimated: N x the per-request wall time of the largest measured sequential run"
        )
    return "\n".join(lines)


def run_dspy(python: str, base_url_latency: str, sizes: tuple[int, ...]) -> list[dict[str, Any]]:
    """Run DSPy's async workload in a subprocess; return its rows (mode ``dspy``)."""
    script = Path(__file__).with_name("bench_dspy.py")
    cmd = [python, str(script), "--latency", base_url_latency, "--sizes", ",".join(map(str, sizes))]
    cmd += ["--trio-dspy-python", sys.executable]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"the DSPy run failed:\n{result.stderr[-2000:]}")
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def plot(rows: list[Row], dspy_rows: list[dict[str, Any]], path: Path) -> bool:
    """Draw wall time against N per mode; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    series: dict[str, list[tuple[int, float, bool]]] = {}
    for r in [attrs.asdict(r) for r in rows] + dspy_rows:
        series.setdefault(r["mode"], []).append((r["n"], r["wall"], bool(r.get("estimated"))))
    for mode, points in series.items():
        points.sort()
        measured = [(n, w) for n, w, est in points if not est]
        (line,) = ax.plot(*zip(*measured, strict=True), marker="o", label=mode)
        estimated = [(n, w) for n, w, est in points if est]
        if estimated:  # dashed, from the last measured point on
            tail = [measured[-1], *estimated]
            ax.plot(
                *zip(*tail, strict=True),
                linestyle="--",
                marker="o",
                mfc="none",
                color=line.get_color(),
                label=f"{mode} (estimated)",
            )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("concurrent requests (N)")
    ax.set_ylabel("wall time (s)")
    ax.set_title("trio_dspy: sequential vs nursery")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's command-line options."""
    parser.add_argument(
        "--sizes", default=",".join(map(str, SIZES)), help="N values, comma-separated"
    )
    parser.add_argument(
        "--latency",
        default="0.5",
        help="server latency: SECONDS, uniform:LO,HI or lognormal:MEDIAN,SIGMA",
    )
    parser.add_argument("--limit", type=int, default=64, help="concurrency of the limit mode")
    parser.add_argument(
        "--max-sequential", type=int, default=64, help="largest N measured sequentially"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per concurrent measurement (median kept)"
    )
    parser.add_argument(
        "--transport",
        choices=("h11", "httpcore"),
        default="h11",
        help="the HTTP transport under the LM: ours (h11) or httpx's own pool (httpcore)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="output folder")
    parser.add_argument("--compare-dspy", action="store_true", help="also run DSPy's acall")
    parser.add_argument(
        "--dspy-python",
        default=sys.executable,
        metavar="PYTHON",
        help="a Python with dspy installed (default: this one)",
    )


def run_from_args(args: argparse.Namespace) -> int:
    """Run the benchmark with parsed arguments; returns the exit status."""
    sizes = tuple(int(s) for s in args.sizes.split(","))
    start = time.perf_counter()
    rows = trio.run(
        lambda: run_bench(
            sizes=sizes,
            latency=args.latency,
            limit=args.limit,
            max_sequential=args.max_sequential,
            repeat=args.repeat,
            transport=args.transport,
        )
    )
    dspy_rows: list[dict[str, Any]] = []
    if args.compare_dspy:
        dspy_rows = run_dspy(args.dspy_python, args.latency, sizes)
        if _is_constant(args.latency) and rows:
            for d in dspy_rows:  # the same ideal for both clients
                d["ideal"] = rows[0].ideal
    args.out.mkdir(parents=True, exist_ok=True)
    table = format_table(rows, dspy_rows)
    print(table)
    summary = {
        "latency": args.latency,
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "rows": [attrs.asdict(r) for r in rows] + dspy_rows,
        "seconds": time.perf_counter() - start,
    }
    _ratios(rows, dspy_rows, summary)
    (args.out / "nursery_vs_sequential.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.out / "nursery_vs_sequential.txt").write_text(table + "\n")
    drew = plot(rows, dspy_rows, args.out / "nursery_vs_sequential.png")
    written = "nursery_vs_sequential.json, .txt" + (" and .png" if drew else "")
    print(f"\nwrote {args.out}/{written}")
    if not drew:
        print("no PNG: matplotlib is missing (install trio_dspy[plot] for a PNG)")
    for key, value in summary.get("ratios", {}).items():
        print(f"{key}: {value:.3f}")
    print(f"benchmark took {summary['seconds']:.0f}s")
    return 0


def _ratios(rows: list[Row], dspy_rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    ratios: dict[str, float] = {}
    nursery = {r.n: r for r in rows if r.mode == "nursery"}
    for n, r in nursery.items():
        ratios[f"nursery wall / ideal at N={n}"] = r.wall / r.ideal
    for d in dspy_rows:
        ours = nursery.get(d["n"])
        if ours is not None:
            ratios[f"cpu per request, trio_dspy / dspy at N={d['n']}"] = (
                ours.cpu_per_request_ms / d["cpu_per_request_ms"]
            )
    summary["ratios"] = ratios
    medians = [r.cpu_per_request_ms for r in nursery.values() if r.n >= 16]
    if medians:
        summary["median_cpu_per_request_ms"] = statistics.median(medians)


def main(argv: list[str] | None = None) -> int:
    """``python benchmarks/nursery_vs_sequential.py [options]``."""
    parser = argparse.ArgumentParser(
        description=plain_text(__doc__).splitlines()[0], formatter_class=HelpFormatter
    )
    add_arguments(parser)
    return exit_quietly_on_broken_pipe(run_from_args, parser.parse_args(argv))
