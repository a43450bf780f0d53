"""``import trio_dspy`` loads what a program needs, not the test kit or extras."""

from __future__ import annotations

import subprocess
import sys

import pytest

import trio_dspy as td

OPTIONAL = ("pydantic", "mcp", "opentelemetry", "matplotlib", "dspy", "coredis")
ON_FIRST_USE = (
    "trio_dspy.testing",
    "trio_dspy.evaluate",
    "trio_dspy.optimizers",
    "trio_dspy.datasets",
    "trio_dspy.lm.client",
    "trio_dspy.telemetry.otlp",
    "trio_dspy.lm.redis_limits",
    "trio_dspy.lm.redis_cache",
    "httpx",
    "h11",
)


def _run(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout


def test_import_does_not_load_the_test_kit() -> None:
    _run("import sys, trio_dspy; assert 'trio_dspy.testing' not in sys.modules")


def test_import_does_not_load_evaluation_or_optimizers() -> None:
    loaded = _run(f"import sys, trio_dspy; print(sorted(set({ON_FIRST_USE!r}) & set(sys.modules)))")
    assert loaded.strip() == "[]"


def test_import_loads_no_optional_extra() -> None:
    loaded = _run(
        "import sys, trio_dspy\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({OPTIONAL!r})))"
    )
    assert loaded.strip() == "[]"


def test_lazy_names_are_attributes_and_importable() -> None:
    from trio_dspy import optimizers, testing
    from trio_dspy.evaluate import Evaluate

    assert td.testing is testing
    assert td.Evaluate is Evaluate
    assert td.BootstrapFewShot is optimizers.BootstrapFewShot
    _run("import trio_dspy as td; td.testing.DummyLM; td.Evaluate; td.COPRO; td.datasets")
    _run("from trio_dspy import testing, Evaluate, LabeledFewShot; testing.DummyLM")
    _run("from trio_dspy import *; Evaluate, BootstrapFewShot, testing, datasets")


def test_first_use_imports_the_module() -> None:
    # In this process the module may already be imported (and so an attribute
    # of the package); the package's __getattr__ is what imports it otherwise.
    getattr_ = td.__dict__["__getattr__"]
    assert getattr_("testing") is sys.modules["trio_dspy.testing"]
    assert getattr_("LabeledFewShot") is sys.modules["trio_dspy.optimizers"].LabeledFewShot


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        td.no_such_thing  # type: ignore[attr-defined]  # noqa: B018
    with pytest.raises(ImportError):
        exec("from trio_dspy import no_such_thing")


def test_the_http_clients_load_when_first_named() -> None:
    out = _run(
        "import sys, trio_dspy as td\n"
        "assert 'httpx' not in sys.modules\n"
        "from trio_dspy.lm import LM\n"
        "assert LM is td.LM and 'httpx' in sys.modules\n"
        "from trio_dspy.telemetry import OtlpHttpExporter\n"
        "print(OtlpHttpExporter.__module__)"
    )
    assert out.strip() == "trio_dspy.telemetry.otlp"


def test_redis_support_loads_coredis_only_when_used() -> None:
    out = _run(
        "import sys, trio_dspy as td\n"
        "limits, cache = td.RedisLimits('redis://localhost'), td.RedisCache('redis://localhost')\n"
        "td.LM('openai/m', base_url='http://127.0.0.1:1/v1', rpm=60, limits=limits, cache=cache)\n"
        "print('coredis' in sys.modules)"
    )
    assert out.strip() == "False"  # built, but nothing sent yet
