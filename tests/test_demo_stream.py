"""``trio-dspy demo --stream``: each customer's tool status and reply, printed as they arrive."""

from __future__ import annotations

import io
import itertools
import os
import subprocess
import sys
from pathlib import Path

from trio_dspy.demo.live import run_stream_demo
from trio_dspy.demo.story import customers


def test_the_streamed_demo_shows_each_customers_progress_then_the_table(tmp_path: Path) -> None:
    spans = tmp_path / "spans.jsonl"
    command = ["demo", "--stream", "--time-scale", "0", "--spans", str(spans)]
    result = subprocess.run(
        [sys.executable, "-m", "trio_dspy.cli", *command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for number, person in enumerate(customers(4), start=1):
        mine = [line.split(None, 2)[1:] for line in lines if line.startswith(f"#{number} ")]
        kinds = [kind for kind, _ in mine]
        # The tool starts and finishes, the reply comes, then the customer is done.
        assert kinds[:2] == ["status", "status"] and kinds[-1] == "done", mine
        assert mine[0][1] == f"Calling tool {person.tool}"
        # The reply grows line by line, a chunk at a time, to the whole of it.
        replies = [text for kind, text in mine if kind == "reply"]
        assert len(replies) > 2
        assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(replies))
        assert replies[-1].startswith(person.reply.split("{")[0].strip())
    assert "Streamed: every customer a child task of one nursery" in result.stdout
    assert spans.read_text().count("\n") > 4 * 3  # request, agent and chat spans each


async def test_generated_customers_are_served_streamed_too() -> None:
    out = io.StringIO()
    await run_stream_demo(count=6, time_scale=0.0, out=out, width=300)
    text = out.getvalue()
    assert text.count(" done ") == 6
    assert "error" not in text
    for number in range(1, 7):
        assert f"#{number:<2} reply " in text
