"""examples/optimize_coffee_shop.py runs each new optimizer end to end on the simulated server."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "optimize_coffee_shop.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("optimize_coffee_shop", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("optimizer", ["gepa", "mipro", "simba"])
def test_the_example_compiles_with_the_optimizer_and_reports_its_cost(
    optimizer: str, capsys: pytest.CaptureFixture[str]
) -> None:
    example = load_example()
    assert example.main(["--optimizer", optimizer, "--budget", "40"]) == 0
    out = capsys.readouterr().out
    assert f"optimizer {optimizer}" in out
    assert "dev accuracy after:" in out
    calls = int(out.split("optimizer: ")[1].split(" LM calls")[0])
    assert calls > 0


def test_the_feedback_metric_names_the_right_decision() -> None:
    example = load_example()
    import trio_dspy as td
    from trio_dspy.demo.coffee_shop import CustomerMood

    gold = td.Example(
        request="My latte was cold", mood=CustomerMood.upset, decision=example.Decision.refund
    ).with_inputs("request", "mood")
    wrong = example.decision_feedback(gold, td.Prediction(decision=example.Decision.tell_joke))
    assert wrong.score == 0.0 and "the right decision is refund, not tell_joke" in wrong.feedback
    right = example.decision_feedback(gold, td.Prediction(decision=example.Decision.refund))
    assert right.score == 1.0
