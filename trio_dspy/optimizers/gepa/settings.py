"""What a GEPA run reads of its optimizer: the settings and the stats it fills.

The search and its iterations read these through :class:`GEPASettings`
rather than the :class:`~trio_dspy.optimizers.gepa.GEPA` class itself, so the
modules that run a compile do not import the module that starts it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from ...evaluate.evaluate import Metric
    from ...lm.base import BaseLM
    from ..stats import OptimizerStats

__all__ = ["GEPASettings", "Selection"]

#: How a parent is chosen: from the per-example Pareto front, or the best.
Selection = Literal["pareto", "current_best"]


class GEPASettings(Protocol):
    """A :class:`~trio_dspy.optimizers.gepa.GEPA` as its search sees it."""

    metric: Metric
    reflection_lm: BaseLM
    reflection_minibatch_size: int
    candidate_selection_strategy: Selection
    use_merge: bool
    max_merge_invocations: int
    skip_perfect_score: bool
    perfect_score: float
    failure_score: float
    limit: int
    proposals: int
    seed: int
    stats: OptimizerStats
