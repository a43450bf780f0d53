"""Every Python block of the README runs, as written, against the simulated server.

So a snippet can never silently rot. The blocks run in README order, in one
namespace (later blocks use what earlier ones define, as a reader would), in
a child process (so ``td.configure`` and files touch nothing here) whose
working directory is a temporary one. A block with a top-level ``await`` or
``async with`` is compiled with ``PyCF_ALLOW_TOP_LEVEL_AWAIT``; evaluating it
gives a coroutine, which runs under ``trio.run``.

The environment points the models at a simulated server running in this
process: ``OPENAI_BASE_URL`` (so ``td.LM("openai/gpt-4o-mini")`` reaches it),
``OPENAI_API_KEY`` and ``ANTHROPIC_API_KEY``. An OTLP receiver listens on
``127.0.0.1:4318`` (the README's endpoint) when that port is free.

The README assumes a few names it never defines; :data:`PRELUDE` provides
them, right after the first block (which defines ``Mood``):

* ``check_menu``: a second tool for the agent;
* ``program``, ``trainset`` and ``metric``: a question-answering program,
  three training examples and an exact-match metric, for Evaluate and the
  optimizers; ``dev.jsonl`` in the working directory is the devset;
* ``requests``: three zero-argument calls, for ``td.gather``;
* ``customers``: two customers with ``.text`` and ``.mood``;
* ``mcp_server.py`` in the working directory: the tests' MCP server.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import os
import re
import subprocess
import sys
import threading
import types
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

ROOT = Path(__file__).resolve().parent.parent

PRELUDE = '''
import functools, json, types
from pathlib import Path


def check_menu() -> str:
    """What the shop sells today."""
    return "latte, cappuccino, mocha, tea"


program = td.Predict("question -> answer")
trainset = [
    td.Example(question=f"What is {i} + {i}?", answer=str(2 * i)).with_inputs("question")
    for i in range(3)
]


def metric(example, prediction, trace=None):
    return example.answer == prediction.answer


Path("dev.jsonl").write_text(
    "".join(json.dumps({"question": f"What is {i} + 1?", "answer": str(i + 1)}) + "\\n"
            for i in range(4))
)
requests = [functools.partial(program, question=f"Is {i} even?") for i in range(3)]
customers = [
    types.SimpleNamespace(text="A large latte", mood=Mood.happy),
    types.SimpleNamespace(text="This coffee is terrible!", mood=Mood.upset),
]
import importlib.util, shutil
shutil.copy(importlib.util.find_spec("tests.mcp_server").origin, "mcp_server.py")
'''


def python_blocks(readme: str) -> list[tuple[int, str]]:
    """Each ```python block of ``readme`` with the line it starts on."""
    return [
        (readme.count("\n", 0, match.start()) + 2, match.group(1))
        for match in re.finditer(r"^```python\n(.*?)^```", readme, re.S | re.M)
    ]


def run_blocks(readme_path: str) -> None:
    """Run the README's blocks in order (in the child process)."""
    # A module of its own, as a script would be, so that classes defined in
    # the blocks find their module's names (signatures resolve annotations so).
    module = types.ModuleType("readme")
    sys.modules["readme"] = module
    namespace = module.__dict__
    blocks = python_blocks(Path(readme_path).read_text(encoding="utf-8"))
    for index, (line, source) in enumerate(blocks):
        # dont_inherit: the blocks run without this file's __future__ imports.
        flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        code = compile(source, f"README.md:{line}", "exec", flags=flags, dont_inherit=True)
        result = eval(code, namespace)
        if inspect.iscoroutine(result):
            trio.run(_await, result)
        if index == 0:
            exec(compile(PRELUDE, "prelude", "exec", dont_inherit=True), namespace)
        print(f"README.md:{line} ran", flush=True)


async def _await(coroutine: Awaitable[object]) -> None:
    await coroutine


@pytest.fixture(scope="module")
def servers() -> Iterator[str]:
    """A simulated server (and, if the port is free, an OTLP receiver on 4318) in a thread."""
    from trio_dspy.testing import SimConfig, serve_sim
    from trio_dspy.testing.http_server import Request, Response, serve_http

    started: list[Any] = []
    ready = threading.Event()

    async def otlp(request: Request) -> Response:
        return Response.from_json({})

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            sim = await nursery.start(_serve_sim, serve_sim, SimConfig(seed=7))
            # If something else has the port, the README's exporter meets it.
            with contextlib.suppress(OSError):
                await nursery.start(_serve_http, serve_http, otlp)
            started.extend([sim.base_url, trio.lowlevel.current_trio_token(), nursery])
            ready.set()

    thread = threading.Thread(target=trio.run, args=(serve,), daemon=True)
    thread.start()
    assert ready.wait(10)
    base_url, token, nursery = started
    try:
        yield base_url
    finally:
        trio.from_thread.run_sync(nursery.cancel_scope.cancel, trio_token=token)
        thread.join(10)


async def _serve_sim(serve_sim: Any, config: Any, *, task_status: Any) -> None:
    async with serve_sim(config) as sim:
        task_status.started(sim)
        await trio.sleep_forever()


async def _serve_http(serve_http: Any, handler: Any, *, task_status: Any) -> None:
    async with serve_http(handler, port=4318) as server:
        task_status.started(server)
        await trio.sleep_forever()


def test_every_python_block_of_the_readme_runs(servers: str, tmp_path: Path) -> None:
    readme = ROOT / "README.md"
    blocks = python_blocks(readme.read_text(encoding="utf-8"))
    assert len(blocks) >= 8
    env = {
        **os.environ,
        "OPENAI_BASE_URL": servers,
        "OPENAI_API_KEY": "sk-readme-test",
        "ANTHROPIC_API_KEY": "sk-ant-readme-test",
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [sys.executable, __file__, str(readme)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    ran = [line for line in result.stdout.splitlines() if line.endswith(" ran")]
    assert ran == [f"README.md:{line} ran" for line, _ in blocks]
    # What the blocks wrote, in the working directory as written.
    for name in ("spans.jsonl", "dev.csv", "compiled.json"):
        assert (tmp_path / name).exists(), name


def test_blocks_are_found_with_their_lines() -> None:
    text = "intro\n```python\nx = 1\n```\ntext\n```bash\nls\n```\n```python\ny = 2\n```\n"
    assert python_blocks(text) == [(3, "x = 1\n"), (10, "y = 2\n")]


if __name__ == "__main__":
    run_blocks(sys.argv[1])
