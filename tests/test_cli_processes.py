"""``trio-dspy serve-sim`` and ``trio-dspy bench`` run end to end, as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest

from trio_dspy.cli import main
from trio_dspy.demo import bench

SERVE_SIM = [sys.executable, "-m", "trio_dspy.cli", "serve-sim"]


@pytest.fixture
def serve_sim_process() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``trio-dspy serve-sim --port 0`` in a child process, and the URL it printed."""
    proc = subprocess.Popen(
        [*SERVE_SIM, "--port", "0", "--api-key", "k"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


@pytest.mark.slow
def test_serve_sim_serves_until_sigterm_then_prints_its_counters(
    serve_sim_process: tuple[subprocess.Popen[str], str],
) -> None:
    proc, url = serve_sim_process
    body = {"model": "sim-model", "messages": [{"role": "user", "content": "hi"}]}
    reply = httpx.post(f"{url}/chat/completions", json=body, headers={"authorization": "Bearer k"})
    assert reply.status_code == 200
    assert reply.json()["choices"][0]["message"]["role"] == "assistant"
    assert httpx.post(f"{url}/chat/completions", json=body).status_code == 401

    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "served:" in err


@pytest.mark.slow
def test_serve_sim_on_a_busy_port_says_so_and_fails() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [*SERVE_SIM, "--port", str(port)], capture_output=True, text=True, timeout=30
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_no_command_prints_help_and_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "serve-sim" in capsys.readouterr().err


def _fake_dspy_python(tmp_path: Path, rows: list[dict[str, Any]], status: int = 0) -> str:
    """An executable that answers like ``bench_dspy.py`` would, without DSPy."""
    script = tmp_path / "python-with-dspy"
    script.write_text(
        "#!/bin/sh\n"
        f"cat <<'EOF'\n{json.dumps(rows)}\nEOF\n"
        "echo 'dspy: something went wrong' >&2\n"
        f"exit {status}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def _dspy_row(n: int) -> dict[str, Any]:
    return {
        "mode": "dspy",
        "n": n,
        "wall": 0.05,
        "ideal": 0.01,
        "cpu_per_request_ms": 2.0,
        "p50": 0.01,
        "p99": 0.02,
        "peak_rss_mb": 100.0,
        "errors": 0,
    }


@pytest.mark.slow
def test_a_short_bench_writes_its_results_and_compares_with_dspy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results"
    dspy_python = _fake_dspy_python(tmp_path, [_dspy_row(1), _dspy_row(2)])
    args = ["bench", "--sizes", "1,2", "--latency", "0.01", "--repeat", "1", "--limit", "1"]
    args += ["--max-sequential", "1", "--out", str(out)]
    args += ["--compare-dspy", "--dspy-python", dspy_python]
    assert main(args) == 0

    summary = json.loads((out / "nursery_vs_sequential.json").read_text())
    modes = {(r["mode"], r["n"]) for r in summary["rows"]}
    assert modes == {
        ("sequential", 1),
        ("nursery", 1),
        ("sequential", 2),  # estimated from N=1
        ("nursery", 2),
        ("limit=1", 2),
        ("dspy", 1),
        ("dspy", 2),
    }
    assert all(r["errors"] == 0 for r in summary["rows"])
    # A constant latency: the ideal is one request alone, for both clients.
    ideals = {r["ideal"] for r in summary["rows"] if r["mode"] != "sequential"}
    assert len(ideals) == 1
    assert "cpu per request, trio_dspy / dspy at N=2" in summary["ratios"]
    table = (out / "nursery_vs_sequential.txt").read_text()
    assert "dspy" in table and "limit=1" in table
    captured = capsys.readouterr()
    printed = captured.out
    assert "nursery wall / ideal at N=2" in printed
    assert f"wrote {out}/nursery_vs_sequential.json, .txt" in printed
    assert "measured N=" not in captured.err  # progress only on a terminal


@pytest.mark.slow
def test_a_random_latency_keeps_each_run_s_slowest_request_as_ideal(tmp_path: Path) -> None:
    out = tmp_path / "results"
    args = ["bench", "--sizes", "2", "--latency", "uniform:0.001,0.01", "--repeat", "1"]
    args += ["--transport", "httpcore", "--out", str(out)]
    assert main(args) == 0
    rows = json.loads((out / "nursery_vs_sequential.json").read_text())["rows"]
    nursery = next(r for r in rows if r["mode"] == "nursery")
    assert nursery["ideal"] == pytest.approx(max(nursery["p50"], nursery["p99"]))


def test_a_failed_dspy_run_reports_its_error_output(tmp_path: Path) -> None:
    dspy_python = _fake_dspy_python(tmp_path, [], status=1)
    with pytest.raises(RuntimeError, match="dspy: something went wrong"):
        bench.run_dspy(dspy_python, "0.5", (1,))


def test_the_plot_dashes_estimated_points_from_the_last_measured_one(tmp_path: Path) -> None:
    # matplotlib is not a dependency: a stand-in records what would be drawn.
    plt = mock.MagicMock()
    ax = mock.MagicMock()
    plt.subplots.return_value = (mock.MagicMock(), ax)
    ax.plot.return_value = [mock.MagicMock()]
    matplotlib = types.ModuleType("matplotlib")
    matplotlib.use = mock.MagicMock()  # type: ignore[attr-defined]
    matplotlib.pyplot = plt  # type: ignore[attr-defined]

    def row(mode: str, n: int, wall: float, estimated: bool = False) -> bench.Row:
        return bench.Row(mode, n, wall, 0.5, 1.0, 0.5, 0.5, 40.0, 0, estimated=estimated)

    rows = [row("sequential", 1, 0.5), row("sequential", 4, 2.0, estimated=True)]
    rows += [row("nursery", 1, 0.5), row("nursery", 4, 0.6)]
    modules = {"matplotlib": matplotlib, "matplotlib.pyplot": plt}
    with mock.patch.dict(sys.modules, modules):
        assert bench.plot(rows, [_dspy_row(4)], tmp_path / "plot.png")

    calls = ax.plot.call_args_list
    labels = [c.kwargs["label"] for c in calls]
    assert labels == ["sequential", "sequential (estimated)", "nursery", "dspy"]
    dashed = calls[1]
    assert dashed.args == ((1, 4), (0.5, 2.0)) and dashed.kwargs["linestyle"] == "--"
    plt.subplots.return_value[0].savefig.assert_called_once_with(tmp_path / "plot.png", dpi=120)


def test_without_matplotlib_there_is_no_plot(tmp_path: Path) -> None:
    with mock.patch.dict(sys.modules, {"matplotlib": None}):
        assert not bench.plot([], [], tmp_path / "plot.png")
    assert not os.path.exists(tmp_path / "plot.png")
