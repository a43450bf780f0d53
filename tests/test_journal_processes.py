"""Durable runs across processes: a worker killed (SIGKILL) mid-run and started
again with the same run id, and an approval decided by another process.

The simulated server runs in this process, so the requests it saw can be
compared; the workers are ``tests/journal_worker.py`` processes importing this
checkout's ``trio_dspy``. Each test runs on the SQLite journal and on the real
Redis server. Real time: a few seconds each.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import trio

from trio_dspy.testing import SimConfig, SimReply, SimServer, SimToolCall, serve_sim

from .redis_fixture import namespace

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SLOW = 600.0  # seconds a held answer waits: far longer than any test runs


@pytest.fixture(params=["sqlite", "redis"])
def journal_spec(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[str]]:
    """The worker options naming a fresh journal of each kind."""
    if request.param == "sqlite":
        yield ["--journal", f"sqlite:{tmp_path / 'runs.db'}"]
    else:
        pytest.importorskip("coredis")  # the redis extra; the floors run has none
        url: str = request.getfixturevalue("redis_url")
        yield ["--journal", f"redis:{url}", "--namespace", namespace()]


def worker_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def command(kind: str, sim: SimServer | None, *options: str) -> list[str]:
    base = [sys.executable, "-m", "tests.journal_worker", kind]
    return [*base, *(["--base-url", sim.base_url] if sim else []), *options]


async def run_worker(cmd: list[str]) -> dict[str, Any]:
    """Run a worker to its end; its report."""
    with trio.fail_after(60):
        done = await trio.run_process(
            cmd, cwd=ROOT, env=worker_env(), capture_stdout=True, capture_stderr=True, check=False
        )
    assert done.returncode == 0, done.stderr.decode()
    report: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return report


async def kill_when(cmd: list[str], ready: Callable[[], bool]) -> None:
    """Start a worker, and SIGKILL it once ``ready()`` holds."""
    process = await trio.lowlevel.open_process(
        cmd, cwd=ROOT, env=worker_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        with trio.fail_after(60):
            while not ready():
                assert process.poll() is None, "the worker ended before it was killed"
                await trio.sleep(0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        with trio.CancelScope(shield=True):
            await process.wait()


def bodies(sim: SimServer) -> list[str]:
    return [json.dumps(b, sort_keys=True) for b in sim.requests]


# --------------------------------------------------------------------- the agent
class AgentScript:
    """Look the order up, refund it, finish: by the tool results the request carries.

    While ``hold_final`` is set, the last turn's answer is held (the worker is
    killed while waiting for it).
    """

    def __init__(self) -> None:
        self.hold_final = False

    def __call__(self, body: Mapping[str, Any]) -> SimReply:
        results = sum(1 for m in body["messages"] if m.get("role") == "tool")
        if results == 0:
            return SimReply(tool_calls=[SimToolCall("lookup", {"order_id": "A1"})])
        if results == 1:
            return SimReply(tool_calls=[SimToolCall("refund", {"order_id": "A1"})])
        done = SimToolCall("finish", {"answer": "Order A1 was refunded."})
        return SimReply(tool_calls=[done], latency=SLOW if self.hold_final else None)


def effects(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def test_a_killed_agent_resumes_without_repeating_a_recorded_call_or_refund(
    journal_spec: list[str], tmp_path: Path
) -> None:
    script = AgentScript()
    done, killed = tmp_path / "uninterrupted.txt", tmp_path / "killed.txt"
    async with serve_sim(SimConfig(script=script, latency=0.0)) as sim:
        uninterrupted = await run_worker(
            command("react", sim, *journal_spec, "--run-id", "whole", "--effects", str(done))
        )
        sim.clear()
        script.hold_final = True
        cmd = command("react", sim, *journal_spec, "--run-id", "crash", "--effects", str(killed))
        # Killed while the third request (after the refund) waits for its answer.
        await kill_when(cmd, lambda: sim.stats.requests == 3)
        before = bodies(sim)
        assert effects(killed) == ["refund A1"]
        script.hold_final = False
        sim.clear()
        resumed = await run_worker(cmd)
        after = bodies(sim)
    assert resumed["answer"] == uninterrupted["answer"] == "Order A1 was refunded."
    assert resumed["steps"] == uninterrupted["steps"]
    assert effects(killed) == effects(done) == ["refund A1"]  # the refund ran once
    # Only the request that had no answer when the worker died was sent again.
    assert after == before[2:]
    assert (resumed["replayed"], resumed["live"]) == (4, 1)


async def test_an_approval_decided_by_another_process_resumes_the_agent(
    journal_spec: list[str], tmp_path: Path
) -> None:
    script = AgentScript()
    refunds = tmp_path / "refunds.txt"
    async with serve_sim(SimConfig(script=script, latency=0.0)) as sim:
        options = [*journal_spec, "--run-id", "ticket-7", "--effects", str(refunds), "--approval"]
        stopped = await run_worker(command("react", sim, *options))
        assert sim.stats.requests == 2 and effects(refunds) == []
        (request,) = stopped["approval"]["requests"]
        assert stopped["approval"]["run_id"] == "ticket-7"
        assert request["tool"] == "refund" and request["arguments"] == {"order_id": "A1"}
        decide = ["--run-id", "ticket-7", "--call-id", request["call_id"], "--approved", "1"]
        await run_worker(command("decide", None, *journal_spec, *decide))
        resumed = await run_worker(command("react", sim, *options))
        assert sim.stats.requests == 3  # only the turn after the refund was new
    assert resumed["answer"] == "Order A1 was refunded."
    assert ["refund", "refunded A1", True] in resumed["steps"]
    assert effects(refunds) == ["refund A1"]


# ----------------------------------------------------------------- the evaluation
class EvalScript:
    """Answer ``qN`` with ``aN`` (wrong for every third); hold ``q8`` on while ``hold`` is set."""

    def __init__(self) -> None:
        self.hold = False

    def __call__(self, body: Mapping[str, Any]) -> SimReply:
        text = str(body["messages"][-1]["content"])
        index = int(text.rsplit("q", 1)[1].split()[0].strip(".,"))
        answer = f"a{index}" if index % 3 else "wrong"
        held = self.hold and index >= 8
        return SimReply(outputs={"answer": answer}, latency=SLOW if held else None)


async def test_a_killed_evaluation_resumes_paying_only_for_unfinished_examples(
    journal_spec: list[str],
) -> None:
    script = EvalScript()
    async with serve_sim(SimConfig(script=script, latency=0.0)) as sim:
        whole = await run_worker(command("evaluate", sim, *journal_spec, "--run-id", "whole"))
        sim.clear()
        script.hold = True
        cmd = command("evaluate", sim, *journal_spec, "--run-id", "crash")
        # Four at a time: q0-q7 answered and recorded, q8-q11 waiting when killed.
        await kill_when(cmd, lambda: sim.stats.requests == 12)
        before = bodies(sim)
        script.hold = False
        sim.clear()
        resumed = await run_worker(cmd)
        after = bodies(sim)
    assert resumed["score"] == whole["score"] and resumed["answers"] == whole["answers"]
    assert len(after) == 4 and set(after) <= set(before)
    answered_before = {b for b in before if not any(f"q{i}" in b for i in range(8, 12))}
    assert len(answered_before) == 8 and not answered_before & set(after)
    assert (resumed["replayed"], resumed["live"]) == (8, 4)


async def test_two_workers_entering_one_run_at_once_take_turns_never_interleaving(
    journal_spec: list[str],
) -> None:
    reports: list[dict[str, Any]] = []
    # Each answer takes a while, so the second worker starts while the first runs.
    async with serve_sim(SimConfig(script=EvalScript(), latency=0.3)) as sim:
        cmd = command("evaluate", sim, *journal_spec, "--run-id", "shared")

        async def worker() -> None:
            reports.append(await run_worker(cmd))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker)
            nursery.start_soon(worker)
        assert sim.stats.requests == 12  # every step was called once, by one of them
    first, second = sorted(reports, key=lambda r: -int(r["live"]))
    assert (first["live"], first["replayed"]) == (12, 0)
    assert (second["live"], second["replayed"]) == (0, 12)
    assert first["answers"] == second["answers"] and first["score"] == second["score"]
