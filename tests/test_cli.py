"""The ``trio-dspy`` command as a person meets it: version, help, pipes, width, files."""

from __future__ import annotations

import importlib.metadata
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from trio_dspy.cli import main, plain_text
from trio_dspy.demo import bench
from trio_dspy.demo.runner import run_demo
from trio_dspy.demo.story import customers

CLI = [sys.executable, "-m", "trio_dspy.cli"]


def _run(*args: str, cwd: Path | None = None, columns: int | None = None) -> Any:
    env = dict(os.environ)
    env.pop("COLUMNS", None)
    if columns is not None:
        env["COLUMNS"] = str(columns)
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=60, check=False
    )


def test_version() -> None:
    result = _run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"trio-dspy {importlib.metadata.version('trio_dspy')}"


@pytest.mark.parametrize("command", [[], ["demo"], ["bench"], ["serve-sim"]])
def test_help_is_plain_text(command: list[str]) -> None:
    result = _run(*command, "--help")
    assert result.returncode == 0
    assert "``" not in result.stdout and "**" not in result.stdout
    assert "(default: None)" not in result.stdout
    assert "(default: False)" not in result.stdout


def test_help_shows_the_defaults() -> None:
    bench_help = " ".join(_run("bench", "--help").stdout.split())
    for default in ("1,4,16,64,256,1024", "0.5", "64", "3", "h11", "bench-results"):
        assert f"(default: {default})" in bench_help
    assert bench_help.count("(default") == 8  # every option that has one, once
    demo_help = " ".join(_run("demo", "--help").stdout.split())
    assert "how many customers (default: 4)" in demo_help
    sim_help = " ".join(_run("serve-sim", "--help").stdout.split())
    assert "(default: 127.0.0.1)" in sim_help


def test_plain_text_removes_markup() -> None:
    doc = "``trio-dspy demo``: **sequential** and :func:`~trio_dspy.gather`\n"
    assert plain_text(doc) == "trio-dspy demo: sequential and trio_dspy.gather"


def test_a_closed_stdout_ends_the_demo_quietly() -> None:
    # What `trio-dspy demo | head -8` does once head has its lines: the
    # reading end of the pipe closes and the next write fails.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [*CLI, "demo", "--time-scale", "0"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert result.stderr == ""
    assert result.returncode == 141  # as if killed by SIGPIPE, like other tools


def test_other_errors_are_not_hidden_as_broken_pipes() -> None:
    def fails(args: object) -> int:
        raise ExceptionGroup("nursery", [BrokenPipeError(), ValueError("real")])

    from trio_dspy.cli import exit_quietly_on_broken_pipe

    with pytest.raises(ExceptionGroup):
        exit_quietly_on_broken_pipe(fails, None)  # type: ignore[arg-type]


def test_the_demo_fits_a_narrow_terminal_and_wraps_instead_of_cutting(tmp_path: Path) -> None:
    result = _run("demo", "--time-scale", "0", "--customers", "6", cwd=tmp_path, columns=70)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 70
    assert "…" not in result.stdout
    words = set(result.stdout.split())
    for person in customers(6):
        assert set(person.request.split()) <= words  # generated customers whole
    for person in customers(4):  # the story's replies whole
        assert set(person.reply.replace("{observation}", "").split()) <= words
    assert "knowing you!" in result.stdout  # the end of the longest reply
    # No span file appears unasked; the output says how to get one.
    assert list(tmp_path.iterdir()) == []
    assert "--spans PATH" in result.stdout


def test_the_demo_writes_spans_where_asked(tmp_path: Path) -> None:
    spans = tmp_path / "out" / "spans.jsonl"
    spans.parent.mkdir()
    result = _run("demo", "--time-scale", "0", "--spans", str(spans), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"spans written to {spans} (0 dropped)" in " ".join(result.stdout.split())
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert spans.read_text().count("\n") > 20


async def test_a_wide_table_is_only_as_wide_as_its_cells() -> None:
    out = io.StringIO()
    await run_demo(count=4, time_scale=0.0, out=out, width=300)
    widest = max(len(line) for line in out.getvalue().splitlines())
    assert widest < 200
    assert "One large iced latte with oat milk, coming right up!" in out.getvalue()


# --- trio-dspy bench's report ----------------------------------------------


def _row(mode: str, n: int, wall: float, estimated: bool = False) -> bench.Row:
    return bench.Row(mode, n, wall, 0.5, 1.0, 0.5, 0.5, 40.0, 0, estimated=estimated)


def test_the_estimate_footnote_appears_only_with_an_estimate() -> None:
    measured = [_row("sequential", 4, 2.0), _row("nursery", 4, 0.5)]
    assert "estimated" not in bench.format_table(measured)
    estimated = bench._estimate_sequential([*measured, _row("nursery", 16, 0.6)])
    table = bench.format_table(estimated)
    assert table.splitlines()[-1].startswith("* estimated")


def test_without_sequential_runs_the_table_shows_dashes_not_nan() -> None:
    # --max-sequential 0: nothing to compare the nursery with.
    table = bench.format_table([_row("nursery", 4, 0.5), _row("limit=2", 4, 1.0)])
    assert "nan" not in table
    nursery = next(line for line in table.splitlines() if "nursery" in line)
    assert nursery.split()[3] == "-"  # speedup
    assert nursery.split()[4] == "1.00"  # efficiency still applies
    sequential = bench.format_table([_row("sequential", 1, 0.5)])
    assert "nan" not in sequential and sequential.splitlines()[1].split()[4] == "-"


def test_bench_names_every_file_and_says_how_to_get_the_png(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def fake_run_bench(**kwargs: Any) -> list[bench.Row]:
        return [_row("sequential", 1, 0.5), _row("nursery", 1, 0.5)]

    monkeypatch.setattr(bench, "run_bench", fake_run_bench)
    monkeypatch.setattr(bench, "plot", lambda *args: False)
    out = tmp_path / "results"
    assert main(["bench", "--sizes", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}/nursery_vs_sequential.json, .txt\n" in printed
    assert "install trio_dspy[plot] for a PNG" in printed
    assert (out / "nursery_vs_sequential.txt").exists()

    monkeypatch.setattr(bench, "plot", lambda *args: True)
    assert main(["bench", "--sizes", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}/nursery_vs_sequential.json, .txt and .png" in printed
    assert "trio_dspy[plot]" not in printed
