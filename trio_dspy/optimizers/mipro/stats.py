"""What a MIPROv2 run cost and found, beyond what every optimizer reports."""

from __future__ import annotations

import attrs

from ..stats import OptimizerStats

__all__ = ["MIPROStats"]


@attrs.define
class MIPROStats(OptimizerStats):
    """:class:`~trio_dspy.optimizers.OptimizerStats` plus MIPROv2's own counts.

    Attributes:
        demo_sets: demo sets bootstrapped (per predictor).
        bootstrap_runs: teacher runs scored while bootstrapping (counted in
            ``metric_calls`` too).
        proposals: instructions proposed by the prompt model (all predictors).
        proposals_failed: proposals the prompt model failed to write (its answer
            did not parse, or the call failed): those candidates keep the
            original instruction.
        trials: configurations scored by the search (minibatches, or the whole
            valset when the valset is small).
        full_evaluations: full-valset evaluations of the best configurations
            (the default program's first evaluation not counted).
        most_trials_in_flight: the most trials scored at once.
        default_score: the student's valset score, a percentage.
        best_score: the returned program's valset score, a percentage.
    """

    demo_sets: int = 0
    bootstrap_runs: int = 0
    proposals: int = 0
    proposals_failed: int = 0
    trials: int = 0
    full_evaluations: int = 0
    most_trials_in_flight: int = 0
    default_score: float = 0.0
    best_score: float = 0.0
