"""``import trio_dspy`` loads what a program needs, not the test kit or extras."""

from __future__ import annotations

import subprocess
import sys

import pytest

import trio_dspy as td

OPTIONAL = ("pydantic", "mcp", "opentelemetry", "matplotlib", "dspy")


def _run(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout


def test_import_does_not_load_the_test_kit() -> None:
    _run("import sys, trio_dspy; assert 'trio_dspy.testing' not in sys.modules")


def test_import_loads_no_optional_extra() -> None:
    loaded = _run(
        "import sys, trio_dspy\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({OPTIONAL!r})))"
    )
    assert loaded.strip() == "[]"


def test_testing_is_still_an_attribute_and_importable() -> None:
    from trio_dspy import testing

    assert td.testing is testing
    assert testing.DummyLM is td.testing.DummyLM
    _run("import trio_dspy as td; td.testing.DummyLM")
    _run("from trio_dspy import testing; testing.DummyLM")


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        td.no_such_thing  # type: ignore[attr-defined]  # noqa: B018
