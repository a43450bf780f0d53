"""``import trio_dspy`` loads what a program needs, not the test kit or extras."""

from __future__ import annotations

import subprocess
import sys

import pytest

import trio_dspy as td

OPTIONAL = (
    "pydantic",
    "mcp",
    "opentelemetry",
    "matplotlib",
    "dspy",
    "coredis",
    "optuna",
    "hypercorn",
    "selenium",
    "genai_prices",
)
ON_FIRST_USE = (
    "trio_dspy.testing",
    "trio_dspy.evaluate",
    "trio_dspy.optimizers",
    "trio_dspy.datasets",
    "trio_dspy.lm.client",
    "trio_dspy.telemetry.otlp",
    "trio_dspy.telemetry.otel",
    "trio_dspy.lm.redis_limits",
    "trio_dspy.lm.redis_cache",
    # (sqlite3 itself is not listed: coverage, measuring child processes in
    # CI, loads it in every process before trio_dspy is imported.)
    "trio_dspy.sessions",
    "trio_dspy.adapters.xml",
    "trio_dspy.adapters.two_step",
    "trio_dspy.modules.saved_schema",
    "trio_dspy.serving",
    "httpx",
    "h11",
    "xml.etree.ElementTree",
    "xml.sax",
    "urllib.request",
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


def test_signatures_images_and_history_never_import_pydantic() -> None:
    out = _run(
        "import sys, attrs, trio_dspy as td\n"
        "@attrs.frozen\n"
        "class Item:\n"
        "    name: str\n"
        "class Look(td.Signature):\n"
        "    photo: td.Image = td.InputField()\n"
        "    history: td.History = td.InputField()\n"
        "    found: list[Item] | None = td.OutputField()\n"
        "td.JSONAdapter().format_request(Look, [], {'photo': td.Image.from_url('https://x.y/a.png'),"
        " 'history': td.History([{'found': None}])})\n"
        'td.ChatAdapter().parse(Look, \'[[ ## found ## ]]\\n[{"name": "a"}]\')\n'
        "print('pydantic' in sys.modules)"
    )
    assert out.strip() == "False"


def test_a_signature_with_a_pydantic_model_works_once_the_user_imports_pydantic() -> None:
    out = _run(
        "import sys, trio_dspy as td\n"
        "assert 'pydantic' not in sys.modules\n"
        "import pydantic\n"
        "class Item(pydantic.BaseModel):\n"
        "    name: str\n"
        "sig = td.make_signature('q -> item: Item', custom_types={'Item': Item})\n"
        "print(td.ChatAdapter().parse(sig, '[[ ## item ## ]]\\n{\"name\": \"a\"}')['item'])"
    )
    assert out.strip() == "name='a'"


def test_mcp_tools_load_the_sdk_only_when_a_session_opens() -> None:
    out = _run(
        "import sys, trio_dspy as td\n"
        "td.ReAct('q -> a', tools=[td.Tool(lambda: 'x', name='x')])\n"
        "from trio_dspy import *\n"
        "from trio_dspy import mcp\n"
        "assert td.mcp is mcp and 'mcp' not in sys.modules\n"
        "import trio_dspy.modules.mcp_call\n"  # what opening a session imports
        "print(mcp.stdio.__module__, 'mcp' in sys.modules)"
    )
    assert out.strip() == "trio_dspy.mcp True"


def test_telemetry_runs_without_loading_opentelemetry() -> None:
    out = _run(
        "import sys, trio\n"
        "from trio_dspy.telemetry import InMemoryExporter, collect, start_span\n"
        "from trio_dspy.telemetry.propagation import trace_headers\n"
        "async def main():\n"
        "    async with collect(InMemoryExporter()):\n"
        "        with start_span('root') as span:\n"
        "            print(span.parent_id, trace_headers()[0][1].endswith(span.span_id + '-01'))\n"
        "trio.run(main)\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    assert out.split() == ["None", "True", "[]"]


def test_the_opentelemetry_exporter_loads_the_sdk_when_first_named() -> None:
    out = _run(
        "import sys, trio_dspy as td\n"
        "assert 'opentelemetry' not in sys.modules\n"
        "exporter = td.telemetry.OpenTelemetryExporter\n"
        "print(exporter.__module__, 'opentelemetry.sdk.trace' in sys.modules)"
    )
    assert out.split() == ["trio_dspy.telemetry.otel", "True"]


def test_redis_support_loads_coredis_only_when_used() -> None:
    out = _run(
        "import sys, trio_dspy as td\n"
        "limits, cache = td.RedisLimits('redis://localhost'), td.RedisCache('redis://localhost')\n"
        "td.LM('openai/m', base_url='http://127.0.0.1:1/v1', rpm=60, limits=limits, cache=cache)\n"
        "td.chat(td.Predict('q, h: History -> a'), td.sessions.RedisSession('redis://h', 's'))\n"
        "print('coredis' in sys.modules)"
    )
    assert out.strip() == "False"  # built, but nothing sent yet


def test_import_runs_none_of_the_package_modules_until_a_name_is_used() -> None:
    out = _run(
        "import sys, trio_dspy as td\n"
        "print(sorted(m for m in sys.modules if m.startswith('trio_dspy.')))\n"
        "td.Predict\n"
        "print('trio_dspy.modules.predict' in sys.modules)"
    )
    assert out.split() == ["[]", "True"]


def test_usage_limits_stays_the_function_when_its_module_is_imported_first() -> None:
    out = _run(
        "import trio_dspy as td\n"
        "import trio_dspy.usage_limits\n"
        "from trio_dspy import usage_limits\n"
        "print(callable(td.usage_limits), callable(usage_limits), type(td.usage_limits).__name__)"
    )
    assert out.split() == ["True", "True", "function"]


def test_every_public_name_resolves() -> None:
    out = _run("import trio_dspy as td\nprint([n for n in td.__all__ if getattr(td, n) is None])")
    assert out.strip() == "[]"


def test_package_attributes_name_its_own_submodules() -> None:
    out = _run("import trio_dspy as td\nprint(td.types.__name__, td.errors.__name__)")
    assert out.split() == ["trio_dspy.types", "trio_dspy.errors"]
