"""Programs served over HTTP: wall time, p50/p99 latency and server CPU per request.

Run: python benchmarks/serving.py [--clients 1,100,1000] [--latency 0.5]
     [--requests 2] [--programs shop,qa] [--dspy-python PYTHON]

Three processes: the simulated model server (``trio-dspy serve-sim``, every
answer after ``--latency`` seconds), the server under test, and this
script's clients (``httpx`` on trio, one connection each). For each row, N
clients send ``--requests`` requests one after another, all N at once; the
row reports the wall time, the latency percentiles of every request, the
failed requests, the server process's CPU time (user + system, read from
``/proc``) divided by the requests, and the CPU seconds the simulated model
server and the clients spent (on a 2-core machine they share the cores with
the server, so they bound what it can show).

Servers:

* ``trio-dspy serve benchmarks.serving_target:programs`` (hypercorn's trio
  worker): ``shop`` is the coffee-shop agent (a ReAct agent: several model
  calls and tool calls per request), ``qa`` one ``Predict("question -> answer")``.
* with ``--dspy-python`` (a Python that has dspy, fastapi and uvicorn, not
  this one): DSPy's recipe, FastAPI + ``dspy.asyncify`` under uvicorn
  (benchmarks/serving_dspy_app.py), serving the same ``qa`` program.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio

from trio_dspy.http.transport import H11Transport

ROOT = Path(__file__).resolve().parent.parent
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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@asynccontextmanager
async def server_process(
    cmd: Sequence[str], env: dict[str, str], ready_url: str | None = None
) -> AsyncIterator[tuple[str, int]]:
    """Run a server; yield its base URL and pid.

    The URL is the first line it prints, or ``ready_url`` once that answers.
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
                    while True:
                        try:
                            await client.get(url + "/docs")
                            break
                        except httpx.TransportError:
                            await trio.sleep(0.2)
        yield url, proc.pid
    finally:
        proc.terminate()
        with trio.move_on_after(10):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()


async def run_row(
    url: str, pid: int, sim_pid: int, program: str, clients: int, requests: int
) -> dict[str, Any]:
    """``clients`` clients at once, each sending ``requests`` requests in turn."""
    latencies: list[float] = []
    failures: dict[str, int] = {}
    # The clients use trio_dspy's own h11 transport: httpx's default one cost
    # many times the client CPU per request here (1.6 s against 0.1 s for 200
    # requests), and the clients share the machine's two cores with the servers.
    transport = H11Transport(max_connections=clients + 8)
    async with httpx.AsyncClient(base_url=url, transport=transport, timeout=600) as http:

        async def client() -> None:
            for _ in range(requests):
                start = time.perf_counter()
                try:
                    reply = await http.post(f"/programs/{program}", json=BODIES[program])
                    ok = reply.status_code == 200
                    key = str(reply.status_code)
                except httpx.HTTPError as exc:
                    ok, key = False, type(exc).__name__
                if ok:
                    latencies.append(time.perf_counter() - start)
                else:
                    failures[key] = failures.get(key, 0) + 1

        await client()  # warm up: a connection, the imports, the first call
        latencies.clear()
        failures.clear()
        cpu0, sim0, own0 = cpu_seconds(pid), cpu_seconds(sim_pid), time.process_time()
        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(clients):
                nursery.start_soon(client)
        wall = time.perf_counter() - t0
        cpu = cpu_seconds(pid) - cpu0
        sim_cpu = cpu_seconds(sim_pid) - sim0
        own_cpu = time.process_time() - own0
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
        "server_cpu_ms_per_request": cpu / total * 1000,
        "sim_cpu_s": sim_cpu,
        "client_cpu_s": own_cpu,
    }


def format_row(server: str, row: dict[str, Any]) -> str:
    failed = ",".join(f"{k}x{v}" for k, v in row["failures"].items()) or "-"
    return (
        f"{server:<14} {row['program']:<5} {row['clients']:>6} {row['requests']:>7} "
        f"{row['wall_s']:>8.2f} {row['p50_s']:>7.2f} {row['p99_s']:>7.2f} "
        f"{row['server_cpu_ms_per_request']:>9.2f} {row['sim_cpu_s']:>7.1f} "
        f"{row['client_cpu_s']:>7.1f}  {failed}"
    )


HEADER = (
    f"{'server':<14} {'prog':<5} {'clients':>6} {'requests':>7} {'wall s':>8} "
    f"{'p50 s':>7} {'p99 s':>7} {'cpu ms/rq':>9} {'sim cpu':>7} {'clients':>7}  failed"
)


async def main(args: argparse.Namespace) -> None:
    clients = [int(c) for c in args.clients.split(",")]
    programs = args.programs.split(",")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    print(HEADER, flush=True)
    sim = [sys.executable, "-m", "trio_dspy.cli", "serve-sim", "--port", "0"]
    sim += ["--latency", str(args.latency), "--seed", "1"]
    async with server_process(sim, env) as (sim_url, sim_pid):
        serve = [
            sys.executable,
            "-m",
            "trio_dspy.cli",
            "serve",
            "benchmarks.serving_target:programs",
        ]
        serve += ["--port", "0", "--lm", "openai/sim-model", "--lm-base-url", sim_url]
        async with server_process(serve, env) as (url, pid):
            for program in programs:
                for n in clients:
                    row = await run_row(url, pid, sim_pid, program, n, args.requests)
                    print(format_row("trio-dspy", row), flush=True)
        if args.dspy_python and "qa" in programs:
            port = args.dspy_port
            uvicorn = [args.dspy_python, "-m", "uvicorn", "serving_dspy_app:app"]
            uvicorn += ["--app-dir", str(ROOT / "benchmarks"), "--port", str(port)]
            uvicorn += ["--log-level", "warning", "--no-access-log"]
            dspy_env = {**os.environ, "SIM_URL": sim_url}
            async with server_process(uvicorn, dspy_env, f"http://127.0.0.1:{port}") as (url, pid):
                for n in clients:
                    row = await run_row(url, pid, sim_pid, "qa", n, args.requests)
                    print(format_row("dspy+fastapi", row), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1,100,1000")
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--requests", type=int, default=2, help="requests per client, in turn")
    parser.add_argument("--programs", default="shop,qa")
    parser.add_argument("--dspy-python", default=None)
    parser.add_argument("--dspy-port", type=int, default=8765)
    trio.run(main, parser.parse_args())
