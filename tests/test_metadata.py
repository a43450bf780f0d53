"""The package's metadata and examples say what is true."""

from __future__ import annotations

import ast
import importlib.util
import sys
import tomllib
from pathlib import Path

import pytest
import trio
import trio.testing

ROOT = Path(__file__).resolve().parent.parent


def test_pyproject_describes_the_project_for_a_package_index() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    classifiers = set(project["classifiers"])
    for version in ("3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {version}" in classifiers
    assert "Operating System :: OS Independent" in classifiers
    assert any(c.startswith("Development Status :: ") for c in classifiers)
    assert "trio" in project["keywords"] and "llm" in project["keywords"]
    assert project["optional-dependencies"]["plot"] == ["matplotlib>=3.7"]


def test_the_readme_lists_the_optional_extras() -> None:
    readme = (ROOT / "README.md").read_text()
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    head = readme.split("\n## ", 1)[0]  # the install section at the top
    for extra in extras:
        assert f"`{extra}`" in head, extra


def test_the_readme_has_no_relative_links() -> None:
    # On a package index page a relative link points nowhere.
    readme = (ROOT / "README.md").read_text()
    targets = [part.split(")", 1)[0] for part in readme.split("](")[1:]]
    assert targets and all(t.startswith(("http://", "https://", "#")) for t in targets), targets


def test_quickstart_says_how_many_calls_run_at_once(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = ROOT / "examples" / "quickstart.py"
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    assert "each serving two concurrent calls" in doc
    spec = importlib.util.spec_from_file_location("quickstart_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "quickstart_example", module)
    spec.loader.exec_module(module)
    # On the autojump clock the model's 0.5 s latency is exact: two calls
    # gathered together take 0.5 s, where one after the other take 1 s.
    trio.run(module.main, clock=trio.testing.MockClock(autojump_threshold=0))
    summaries = [line for line in capsys.readouterr().out.splitlines() if "requests in" in line]
    assert [line.split(",")[0] for line in summaries] == [
        "ChatAdapter: 2 requests in 0.50s",
        "JSONAdapter: 2 requests in 0.50s",
    ]
