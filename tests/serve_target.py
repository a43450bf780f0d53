"""What ``trio-dspy serve`` serves in the tests: ``tests.serve_target:programs`` and ``:app``."""

from __future__ import annotations

import trio_dspy as td
from trio_dspy.demo.coffee_shop import CoffeeShopAgent

programs = {"shop": CoffeeShopAgent(), "qa": td.Predict("question -> answer, confidence: float")}
app = td.serving.app(programs, max_concurrency=8)
