"""The package's metadata and examples say what is true."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

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


def test_quickstart_says_how_many_calls_run_at_once() -> None:
    path = ROOT / "examples" / "quickstart.py"
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    assert "each serving two concurrent calls" in doc
    result = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=60, check=True
    )
    summaries = [line for line in result.stdout.splitlines() if "requests in" in line]
    # Two adapters, each gathering two calls of 0.5 s together, in less than
    # the 1 s they would take one after the other.
    assert len(summaries) == 2
    for line in summaries:
        assert ": 2 requests in " in line
        seconds = float(line.split(" requests in ")[1].split("s,")[0])
        assert 0.5 <= seconds < 0.9
