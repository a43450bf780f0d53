"""What ``benchmarks/serving.py`` serves with ``trio-dspy serve``: the coffee shop, and one step.

``qa`` (``question -> answer``) is the program both servers run, so the
comparison with DSPy's FastAPI recipe (benchmarks/serving_dspy_app.py) is
like for like; ``shop`` is the coffee-shop agent (several model calls and
tool calls per request).
"""

from __future__ import annotations

import trio_dspy as td
from trio_dspy.demo.coffee_shop import CoffeeShopAgent

programs = {"shop": CoffeeShopAgent(), "qa": td.Predict("question -> answer")}
