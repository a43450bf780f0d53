"""Every Python block of the README and of the documentation site runs, as written.

So no page can silently rot. Each page runs in a child process of its own
(so ``td.configure`` and files touch nothing here), in a temporary working
directory; its blocks run in page order in one namespace (later blocks use
what earlier ones define, as a reader would). A block with a top-level
``await`` or ``async with`` is compiled with ``PyCF_ALLOW_TOP_LEVEL_AWAIT``;
evaluating it gives a coroutine, which runs under ``trio.run``.

A block that cannot run here says so on the page, in its visible title:
````python title="Not run: needs a Redis server"````. It is left out, and
its reason must be given. Pages that include another file
(``--8<-- "CONTRIBUTING.md"``) are read with the file in place.

The environment points the models at a simulated server running in this
process: ``OPENAI_BASE_URL`` (so ``td.LM("openai/gpt-4o-mini")`` reaches it),
``ANTHROPIC_BASE_URL``, ``OPENAI_API_KEY`` and ``ANTHROPIC_API_KEY``. An OTLP
receiver listens on ``127.0.0.1:4318`` (the telemetry page's endpoint) when
that port is free.

Reference pages show fragments that assume names a program would already
have; :data:`PRELUDES` gives them, per page, before its first block.
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
from typing import Any, NamedTuple

import pytest
import trio

ROOT = Path(__file__).resolve().parent.parent

_QA = """
import functools, json, types
from pathlib import Path

program = td.Predict("question -> answer")
trainset = [
    td.Example(question=f"What is {i} + {i}?", answer=str(2 * i)).with_inputs("question")
    for i in range(3)
]


def metric(example, prediction, trace=None):
    return example.answer == prediction.answer


requests = [functools.partial(program, question=f"Is {i} even?") for i in range(3)]
"""

#: Pages whose fragments use the coffee shop's ``Mood`` and ``HandleCustomer``:
#: the first block of the signatures page defines them, and runs first.
SHOP_PAGE = "docs/concepts/signatures.md"

_SHOP = '''
import types


def check_menu() -> str:
    """What the shop sells today."""
    return "latte, cappuccino, mocha, tea"


agent = td.ReAct(HandleCustomer, tools=[check_menu])
customers = [
    types.SimpleNamespace(text="A large latte", mood=Mood.happy),
    types.SimpleNamespace(text="This coffee is terrible!", mood=Mood.upset),
]
'''

_DEV = """
Path("dev.jsonl").write_text(
    "".join(json.dumps({"question": f"What is {i} + 1?", "answer": str(i + 1)}) + "\\n"
            for i in range(4))
)
"""

_MCP = """
import importlib.util, shutil
shutil.copy(importlib.util.find_spec("tests.mcp_server").origin, "mcp_server.py")
"""

#: What every reference page assumes (the pages say so): ``td`` is trio_dspy,
#: with a model configured.
#: Getting started, the tutorials and the README assume nothing.
BASE_PRELUDE = """
import trio
import trio_dspy as td

td.configure(lm=td.LM("openai/gpt-4o-mini"))
"""


def complete(page: str) -> bool:
    """Whether the page's blocks must run as written, with nothing assumed."""
    return page in ("README.md", "docs/getting-started.md") or page.startswith("docs/tutorials/")


#: What each page's fragments assume besides, run before its first block.
PRELUDES: dict[str, str] = {
    "docs/concepts/modules.md": _SHOP,
    "docs/concepts/agents.md": _SHOP,
    "docs/concepts/guardrails.md": _QA,
    "docs/concepts/evaluation.md": _QA + _DEV,
    "docs/concepts/concurrency.md": _SHOP,
    "docs/concepts/telemetry.md": _QA,
    "docs/how-to/opentelemetry.md": _QA,
    "docs/how-to/retrieval.md": _QA,
    "docs/how-to/redis.md": _QA,
    "docs/how-to/mcp.md": _MCP,
}

#: Files a page's blocks write in the working directory, as written.
WRITES: dict[str, tuple[str, ...]] = {
    "docs/concepts/telemetry.md": ("spans.jsonl",),
    "docs/concepts/evaluation.md": ("dev.csv", "compiled.json"),
}

_FENCE = re.compile(r"^```python([^\n]*)\n(.*?)^```", re.S | re.M)
_NOT_RUN = re.compile(r'title="Not run: ([^"]*)"')
_SNIPPET = re.compile(r'^--8<-- "([^"]+)"$', re.M)


class Block(NamedTuple):
    """A ```python block: the line it starts on, its code, and why it is not run."""

    line: int
    source: str
    not_run: str | None


def pages() -> list[str]:
    """The README and every page of the site, as paths from the repository root."""
    site = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").rglob("*.md"))
    return ["README.md", *site]


def page_text(page: str) -> str:
    """The page as the site shows it: included files (``--8<--``) in place."""
    text = (ROOT / page).read_text(encoding="utf-8")
    return _SNIPPET.sub(lambda m: (ROOT / m.group(1)).read_text(encoding="utf-8"), text)


def python_blocks(text: str) -> list[Block]:
    """Each ```python block of ``text``, with its line and its not-run reason if any."""
    blocks = []
    for match in _FENCE.finditer(text):
        reason = _NOT_RUN.search(match.group(1))
        line = text.count("\n", 0, match.start()) + 2
        blocks.append(Block(line, match.group(2), reason.group(1) if reason else None))
    return blocks


def run_blocks(page: str) -> None:
    """Run the page's blocks in order (in the child process)."""
    # A module of its own, as a script would be, so that classes defined in
    # the blocks find their module's names (signatures resolve annotations so).
    module = types.ModuleType("page")
    sys.modules["page"] = module
    namespace = module.__dict__
    if not complete(page):
        prelude = BASE_PRELUDE
        if PRELUDES.get(page) is _SHOP:
            prelude += python_blocks(page_text(SHOP_PAGE))[0].source
        prelude += PRELUDES.get(page, "")
        exec(compile(prelude, "prelude", "exec", dont_inherit=True), namespace)
    for block in python_blocks(page_text(page)):
        if block.not_run is not None:
            continue
        # dont_inherit: the blocks run without this file's __future__ imports.
        flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        code = compile(block.source, f"{page}:{block.line}", "exec", flags=flags, dont_inherit=True)
        result = eval(code, namespace)
        if inspect.iscoroutine(result):
            trio.run(_await, result)
        print(f"{page}:{block.line} ran", flush=True)


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
            # If something else has the port, the telemetry page's exporter meets it.
            with contextlib.suppress(OSError):
                await nursery.start(_serve_http, serve_http, otlp)
            started.extend([sim.root_url, trio.lowlevel.current_trio_token(), nursery])
            ready.set()

    thread = threading.Thread(target=trio.run, args=(serve,), daemon=True)
    thread.start()
    assert ready.wait(10)
    root_url, token, nursery = started
    try:
        yield root_url
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


RUNNABLE = [
    page for page in pages() if any(b.not_run is None for b in python_blocks(page_text(page)))
]


@pytest.mark.parametrize("page", RUNNABLE)
def test_every_python_block_of_the_page_runs(servers: str, tmp_path: Path, page: str) -> None:
    blocks = [b for b in python_blocks(page_text(page)) if b.not_run is None]
    env = {
        **os.environ,
        "OPENAI_BASE_URL": servers + "/v1",
        "ANTHROPIC_BASE_URL": servers,
        "OPENAI_API_KEY": "sk-docs-test",
        "ANTHROPIC_API_KEY": "sk-ant-docs-test",
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [sys.executable, __file__, page],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    ran = [line for line in result.stdout.splitlines() if line.endswith(" ran")]
    assert ran == [f"{page}:{b.line} ran" for b in blocks]
    for name in WRITES.get(page, ()):
        assert (tmp_path / name).exists(), name


def test_the_site_teaches_with_code_that_runs() -> None:
    # Guards against the runner finding nothing: a renamed fence, a moved folder.
    assert "README.md" in RUNNABLE
    for section in ("docs/tutorials/", "docs/concepts/", "docs/how-to/"):
        assert sum(page.startswith(section) for page in RUNNABLE) >= 5, section
    assert set(WRITES) <= set(RUNNABLE) and set(PRELUDES) <= set(RUNNABLE)
    assert not any(complete(page) for page in PRELUDES)


def test_every_tutorial_is_a_complete_program_that_runs() -> None:
    tutorials = [p for p in pages() if p.startswith("docs/tutorials/") and "index" not in p]
    assert len(tutorials) >= 7
    for page in tutorials:
        blocks = python_blocks(page_text(page))
        assert complete(page) and page not in PRELUDES, page  # nothing assumed
        assert blocks and all(b.not_run is None for b in blocks), page
        assert "trio.run(main)" in blocks[-1].source, page


def test_a_block_left_out_says_why_on_the_page() -> None:
    for page in pages():
        for block in python_blocks(page_text(page)):
            if block.not_run is not None:
                assert len(block.not_run.strip()) >= 10, f"{page}:{block.line}"


def test_no_python_block_escapes_the_runner() -> None:
    # A fence the runner does not read (```py, an indented ```python inside a
    # list or an admonition) would never run: the pages use ```python only,
    # at the start of a line.
    for page in pages():
        text = page_text(page)
        stray = re.findall(r"^\s*```(py|python3|pycon|Python)\b", text, re.M)
        indented = re.findall(r"^[ \t]+```python", text, re.M)
        assert not stray and not indented, page


def test_blocks_are_found_with_their_lines_and_reasons() -> None:
    text = (
        "intro\n```python\nx = 1\n```\ntext\n```bash\nls\n```\n"
        '```python title="Not run: needs a Redis server"\ny = 2\n```\n'
    )
    assert python_blocks(text) == [
        Block(3, "x = 1\n", None),
        Block(10, "y = 2\n", "needs a Redis server"),
    ]


if __name__ == "__main__":
    run_blocks(sys.argv[1])
