"""How many metric calls a GEPA run may make, and how they are reserved.

DSPy 3.4 turns ``auto="light" | "medium" | "heavy"`` into a metric-call
budget with :func:`auto_budget` (constants inherited from MIPROv2), and
``max_full_evals`` into ``max_full_evals * (len(trainset) + len(valset))``.
We use the same formulas, so a budget means the same in both libraries.

Several proposals run at once here, so calls are *reserved* before they are
made: an iteration reserves what it may cost when it starts (the parent's
and the child's minibatch runs, plus a full valset evaluation should the
child be accepted) and gives back what it did not need when it ends. An
iteration that cannot reserve its cost does not start, so the calls made
never exceed the budget, whatever finishes first.
"""

from __future__ import annotations

import math
from typing import Literal

import attrs

__all__ = ["AUTO_CANDIDATES", "Auto", "Ledger", "auto_budget", "resolve_budget"]

Auto = Literal["light", "medium", "heavy"]

AUTO_CANDIDATES: dict[str, int] = {"light": 6, "medium": 12, "heavy": 18}
"""DSPy's ``AUTO_RUN_SETTINGS[auto]["n"]``."""


def auto_budget(
    num_predictors: int,
    num_candidates: int,
    valset_size: int,
    *,
    minibatch_size: int = 35,
    full_eval_steps: int = 5,
) -> int:
    """DSPy's ``GEPA.auto_budget``: the metric calls a MIPROv2-sized search would make.

    ``trials = int(max(4 * P * log2(n), 1.5 * n))``; the budget is one valset
    evaluation, ``5 n`` bootstrapping calls, ``trials`` minibatches of 35 and
    ``(trials + 1) // 5 + 1`` (plus one if ``trials < 5``) valset evaluations.
    """
    trials = int(max(2 * (num_predictors * 2) * math.log2(num_candidates), 1.5 * num_candidates))
    total = valset_size + num_candidates * 5 + trials * minibatch_size
    if trials == 0:
        return total
    periodic = (trials + 1) // full_eval_steps + 1
    extra = 1 if trials < full_eval_steps else 0
    return total + (periodic + extra) * valset_size


def resolve_budget(
    *,
    auto: Auto | None,
    max_metric_calls: int | None,
    max_full_evals: int | None,
    num_predictors: int,
    trainset_size: int,
    valset_size: int,
    valset_given: bool,
) -> int:
    """The metric-call budget from whichever of the three settings is given.

    Raises:
        ValueError: not exactly one is given, or it is out of range.
    """
    given = [
        n
        for n, v in (
            ("auto", auto),
            ("max_metric_calls", max_metric_calls),
            ("max_full_evals", max_full_evals),
        )
        if v is not None
    ]
    if len(given) != 1:
        raise ValueError(
            "give exactly one of auto, max_metric_calls and max_full_evals to bound the run"
            + (f" (got {' and '.join(given)})" if given else "")
        )
    if auto is not None:
        if auto not in AUTO_CANDIDATES:
            raise ValueError(f"auto must be 'light', 'medium' or 'heavy', got {auto!r}")
        return auto_budget(max(num_predictors, 1), AUTO_CANDIDATES[auto], valset_size)
    if max_full_evals is not None:
        if max_full_evals < 1:
            raise ValueError(f"max_full_evals must be at least 1, got {max_full_evals}")
        # As DSPy: the valset counts only when one was given.
        return max_full_evals * (trainset_size + (valset_size if valset_given else 0))
    assert max_metric_calls is not None
    if max_metric_calls < 1:
        raise ValueError(f"max_metric_calls must be at least 1, got {max_metric_calls}")
    return max_metric_calls


@attrs.define
class Ledger:
    """Reservations against a metric-call budget.

    ``reserve`` and ``refund`` are called in iteration order, so the same run
    reserves the same amounts at the same points whatever the timing.
    """

    budget: int
    reserved: int = 0

    @property
    def available(self) -> int:
        """Calls not reserved yet."""
        return self.budget - self.reserved

    def reserve(self, calls: int) -> bool:
        """Reserve ``calls`` if that many are available; whether it was."""
        if calls > self.available:
            return False
        self.reserved += calls
        return True

    def refund(self, calls: int) -> None:
        """Give back ``calls`` reserved but not needed."""
        self.reserved -= calls
