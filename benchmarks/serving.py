"""Programs served over HTTP: wall time, p50/p99 latency and server CPU per request.

Run: python benchmarks/serving.py [--clients 1,100,1000] [--latency 0.5]
     [--requests 2] [--programs shop,qa] [--runs 3] [--workers 1,2]
     [--servers hypercorn,h11] [--dspy-python PYTHON]

Three processes: the simulated model server (``trio-dspy serve-sim``, every
answer after ``--latency`` seconds), the server under test, and this
script's clients (benchmarks/serving_client.py: raw HTTP/1.1 on trio, one
keep-alive connection each, so they take little of the CPU). For each row, N
clients send ``--requests`` requests one after another, all N at once; the
row reports the wall time, the latency percentiles of every request, the
failed requests, the server's CPU time (user + system of the server process
and its workers, read from ``/proc``) divided by the requests, ``busiest``
the share of that CPU its busiest process spent (1/N: evenly spread over N
workers), and the CPU seconds the simulated model server and the clients
spent (on a 2-core machine they share the cores with
the server, so they bound what it can show). ``others`` is the CPU every
other process on the machine spent during the row (``/proc/stat``), and
``cores`` the cores the three processes had on average (their CPU seconds
over the wall time): on a shared machine that, not the server, is often the
bound. ``load`` is the machine's one-minute load average at the row's end.
``--runs N`` repeats each row and ends with each figure's median.

Servers:

* ``trio-dspy serve benchmarks.serving_target:programs --server S --workers N``
  for each S of ``--servers`` (``hypercorn``: hypercorn's trio worker, the
  default; ``h11``: the lean HTTP/1.1 server) and each N of ``--workers`` (N
  processes on one socket), side by side in one run:
  ``shop`` is the coffee-shop agent (a ReAct agent: several model calls and
  tool calls per request), ``qa`` one ``Predict("question -> answer")``.
* with ``--dspy-python`` (a Python that has dspy, fastapi and uvicorn, not
  this one): DSPy's recipe, FastAPI + ``dspy.asyncify`` under uvicorn
  (benchmarks/serving_dspy_app.py), serving the same programs (``shop``
  ported to DSPy: the same signature, tools and ``max_iters``).

``calls`` is the model calls per request (the simulated server's count): a
ReAct agent's trajectory depends on the answers it gets, and DSPy's prompts
differ from trio-dspy's in their bytes, so the two agents may take a
different number of steps; compare time per call as well as per request.
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from serving_client import Results, prepare, run_client  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
BODIES = {
    "shop": {"request": "A large oat latte, please", "mood": "happy"},
    "qa": {"question": "What is 2 + 2?"},
}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` and its reaped children, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return (utime + stime + cutime + cstime) / TICKS


def tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of process ``pid`` and of each of its living children, by pid."""
    cpu = {pid: cpu_seconds(pid)}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(stat[1]) == pid:
                    cpu[int(entry.name)] = cpu_seconds(int(entry.name))
            except (OSError, IndexError):
                continue  # a process that ended meanwhile
    return cpu


CORES = os.cpu_count() or 1


def machine_busy_seconds() -> float:
    """CPU seconds every process on the machine has spent, all cores (``/proc/stat``)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / TICKS


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@asynccontextmanager
async def server_process(
    cmd: Sequence[str],
    env: dict[str, str],
    ready_url: str | None = None,
    ready_route: str = "/programs/qa",
) -> AsyncIterator[tuple[str, int]]:
    """Run a server; yield its base URL and pid.

    The URL is the first line it prints, or ``ready_url`` once its OpenAPI
    document lists ``ready_route`` (so a stranger's server on the port is
    never measured in its place).
    """
    proc = await trio.lowlevel.open_process(
        list(cmd), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=ROOT
    )
    try:
        assert proc.stdout is not None
        if ready_url is None:
            line = b""
            with trio.fail_after(60):
                while not line.endswith(b"\n"):
                    chunk = await proc.stdout.receive_some(1)
                    if not chunk:
                        raise RuntimeError(f"{cmd[0]} exited before printing its URL")
                    line += chunk
            url = line.decode().strip()
        else:
            url = ready_url
            with trio.fail_after(60):
                async with httpx.AsyncClient() as client:
                    while not await _serves(client, url, ready_route):
                        if proc.poll() is not None:
                            raise RuntimeError(f"{cmd[0]} exited before serving {url}")
                        await trio.sleep(0.2)
        yield url, proc.pid
    finally:
        proc.terminate()
        with trio.move_on_after(10):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()


async def _serves(client: httpx.AsyncClient, url: str, route: str) -> bool:
    """Whether the server at ``url`` is up and its OpenAPI document has ``route``."""
    try:
        reply = await client.get(url + "/openapi.json")
        return reply.status_code == 200 and route in reply.json().get("paths", {})
    except (httpx.TransportError, ValueError, AttributeError):
        return False


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick), for a server that cannot bind 0."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def model_calls(sim_url: str) -> int:
    """The completions the simulated model server has answered so far."""
    async with httpx.AsyncClient() as client:
        calls: int = (await client.get(sim_url + "/sim/stats")).json()["ok"]
        return calls


async def run_row(
    url: str, pid: int, sim: tuple[str, int], program: str, clients: int, requests: int
) -> dict[str, Any]:
    """``clients`` clients at once, each sending ``requests`` requests in turn."""
    sim_url, sim_pid = sim
    host, port, request = prepare(url, f"/programs/{program}", BODIES[program])
    warm = Results()
    await run_client(host, port, request, requests, warm)  # a connection, the imports, a call
    if warm.failures:
        raise RuntimeError(f"the server at {url} failed the warm-up requests: {warm.failures}")
    results = Results()
    calls0 = await model_calls(sim_url)
    tree0, sim0, own0 = tree_cpu(pid), cpu_seconds(sim_pid), time.process_time()
    machine0 = machine_busy_seconds()
    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(clients):
            nursery.start_soon(run_client, host, port, request, requests, results)
    wall = time.perf_counter() - t0
    tree = tree_cpu(pid)
    spent = {p: tree[p] - tree0.get(p, 0.0) for p in tree}
    cpu = sum(spent.values())
    sim_cpu = cpu_seconds(sim_pid) - sim0
    own_cpu = time.process_time() - own0
    others = machine_busy_seconds() - machine0 - cpu - sim_cpu - own_cpu
    calls = await model_calls(sim_url) - calls0
    latencies, failures = results.latencies, results.failures
    total = clients * requests
    return {
        "program": program,
        "clients": clients,
        "requests": total,
        "ok": len(latencies),
        "failures": failures,
        "wall_s": wall,
        "p50_s": percentile(latencies, 0.5),
        "p99_s": percentile(latencies, 0.99),
        "calls_per_request": calls / total,
        "server_cpu_ms_per_request": cpu / total * 1000,
        "sim_cpu_s": sim_cpu,
        "client_cpu_s": own_cpu,
        "others_cpu_s": max(0.0, others),
        "cores_ours": (cpu + sim_cpu + own_cpu) / wall if wall else math.nan,
        "busiest": max(spent.values()) / cpu if cpu else math.nan,
        "load": os.getloadavg()[0],
    }


def format_row(server: str, row: dict[str, Any]) -> str:
    failed = ",".join(f"{k}x{v}" for k, v in row["failures"].items()) or "-"
    return (
        f"{server:<14} {row['program']:<5} {row['clients']:>6} {row['requests']:>7} "
        f"{row['wall_s']:>8.2f} {row['p50_s']:>7.2f} {row['p99_s']:>7.2f} "
        f"{row['calls_per_request']:>5.1f} "
        f"{row['server_cpu_ms_per_request']:>9.2f} {row['sim_cpu_s']:>7.1f} "
        f"{row['client_cpu_s']:>7.1f} {row['others_cpu_s']:>7.1f} {row['cores_ours']:>6.2f} "
        f"{row['busiest']:>7.2f} {row['load']:>5.1f}  "
        f"{failed}"
    )


HEADER = (
    f"{'server':<14} {'prog':<5} {'clients':>6} {'requests':>7} {'wall s':>8} "
    f"{'p50 s':>7} {'p99 s':>7} {'calls':>5} {'cpu ms/rq':>9} {'sim cpu':>7} {'clients':>7} "
    f"{'others':>7} {'cores':>6} {'busiest':>7} {'load':>5}  failed"
)

_NUMBERS = (
    "wall_s",
    "p50_s",
    "p99_s",
    "calls_per_request",
    "server_cpu_ms_per_request",
    "sim_cpu_s",
    "client_cpu_s",
    "others_cpu_s",
    "cores_ours",
    "busiest",
    "load",
)


def median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each number's median over ``rows`` (runs of one row); failures summed."""
    failures: dict[str, int] = {}
    for row in rows:
        for key, count in row["failures"].items():
            failures[key] = failures.get(key, 0) + count
    medians = {key: statistics.median(row[key] for row in rows) for key in _NUMBERS}
    return {**rows[0], **medians, "failures": failures}


async def measure(
    server: str, url: str, pid: int, sim: tuple[str, int], program: str, args: argparse.Namespace
) -> list[str]:
    """Every row of ``program`` on one server, ``--runs`` times; the median rows' lines."""
    lines = []
    for n in [int(c) for c in args.clients.split(",")]:
        runs = []
        for _ in range(args.runs):
            runs.append(await run_row(url, pid, sim, program, n, args.requests))
            print(format_row(server, runs[-1]), flush=True)
        lines.append(format_row(server, median_row(runs)))
    return lines


async def main(args: argparse.Namespace) -> None:
    programs = args.programs.split(",")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    print(f"load average {os.getloadavg()[0]:.1f} on {CORES} cores", flush=True)
    print(HEADER, flush=True)
    medians: list[str] = []
    sim_command = [sys.executable, "-m", "trio_dspy.cli", "serve-sim", "--port", "0"]
    sim_command += ["--latency", str(args.latency), "--seed", "1"]
    async with server_process(sim_command, env) as sim:
        sim_url = sim[0]
        serve = [
            sys.executable,
            "-m",
            "trio_dspy.cli",
            "serve",
            "benchmarks.serving_target:programs",
        ]
        serve += ["--port", "0", "--lm", "openai/sim-model", "--lm-base-url", sim_url]
        for server in args.servers.split(","):
            for workers in [int(w) for w in args.workers.split(",")]:
                name = server if workers == 1 else f"{server} x{workers}"
                command = [*serve, "--server", server, "--workers", str(workers)]
                async with server_process(command, env) as (url, pid):
                    for program in programs:
                        medians += await measure(name, url, pid, sim, program, args)
        if args.dspy_python:
            port = args.dspy_port or free_port()
            uvicorn = [args.dspy_python, "-m", "uvicorn", "serving_dspy_app:app"]
            uvicorn += ["--app-dir", str(ROOT / "benchmarks"), "--port", str(port)]
            uvicorn += ["--log-level", "warning", "--no-access-log"]
            dspy_env = {**os.environ, "SIM_URL": sim_url}
            ready = f"http://127.0.0.1:{port}"
            async with server_process(uvicorn, dspy_env, ready, f"/programs/{programs[0]}") as (
                url,
                pid,
            ):
                for program in programs:
                    medians += await measure("dspy+fastapi", url, pid, sim, program, args)
    if args.runs > 1:
        print(f"\nmedians of {args.runs} runs, load average {os.getloadavg()[0]:.1f}")
        print(HEADER)
        print("\n".join(medians), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1,100,1000")
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--requests", type=int, default=2, help="requests per client, in turn")
    parser.add_argument("--programs", default="shop,qa")
    parser.add_argument("--runs", type=int, default=1, help="runs of each row; medians at the end")
    parser.add_argument(
        "--workers",
        default="1",
        help="trio-dspy serve's --workers; a list (1,2) measures each in turn",
    )
    parser.add_argument(
        "--servers",
        default="hypercorn",
        help="trio-dspy serve's --server; a list (hypercorn,h11) measures each in turn",
    )
    parser.add_argument("--dspy-python", default=None)
    parser.add_argument(
        "--dspy-port", type=int, default=None, help="uvicorn's port (default: a free one)"
    )
    trio.run(main, parser.parse_args())
