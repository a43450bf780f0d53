"""``GEPA``: reflective prompt evolution, with several proposals in flight.

The algorithm is the one DSPy 3.4 runs (gepa engine 0.1.x):

1. the student (the *seed*) is scored on the whole valset;
2. each iteration picks a parent from the per-instance Pareto front
   (weighted by how many valset examples it is best on, dominated programs
   removed), or the best program (``candidate_selection_strategy="current_best"``);
3. runs the parent on a minibatch of ``reflection_minibatch_size`` trainset
   examples (epoch-shuffled), keeping traces and the metric's feedback; a
   parent that is already perfect there is skipped (``skip_perfect_score``);
4. picks the next predictor of that parent in round-robin order and asks the
   reflection model, in one call, for better instructions given its inputs,
   outputs and feedback (the text between the first and last fence);
5. runs the child on the same minibatch, and accepts it only if its sum
   strictly beats the parent's; an accepted child is scored on the valset;
6. after an iteration that accepted a child, may instead *merge* two front
   programs that share an ancestor (``use_merge``, at most
   ``max_merge_invocations`` accepted merges);
7. stops when the metric-call budget is spent, and returns the program with
   the best mean valset score (the earliest of equals).

What differs is concurrency, and only that. ``proposals`` iterations are in
flight at once, and all their runs share ``limit`` slots. The oldest
iteration not yet committed runs exactly the plan the sequential loop
(``proposals=1``, DSPy's) makes; the ones after it run speculative plans
(the committed programs, or the newest child that already beat its parent
on its minibatch, as the parent), remade when what they rest on changes and
checked when they become the oldest: a wrong guess is cancelled and the
right plan runs. A valset evaluation runs only for the oldest. So the
iterations committed are those of the sequential loop, in its order, and a
run gives the same result for the same seed however its calls interleave,
with a model that answers each request the same way (:mod:`.search`). A
child whose minibatch can no longer beat its parent is cancelled at once.

The budget: the search charges each committed iteration what the
sequential loop charges (two minibatches, and a valset evaluation if the
child is accepted; a merge, its check and a valset evaluation; journal
replays and cancelled runs included) and stops where it stops. Metric calls
really made, cancelled speculation's included, are bounded separately: an
attempt starts only if the calls made plus every attempt's allowance fit
the budget. Speculation is paid from what replays and cancelled runs left
unused; should it ever leave too little, the run ends early, and its
candidates are the first ones of the sequential loop's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ...aliases import limit_alias
from ...checkpoint import entered
from ...errors import TrioDSPyError
from ...evaluate.evaluate import Metric
from ...lm.base import BaseLM
from ...modules.module import Module
from ...primitives import Example
from ..base import ModuleT, Optimizer, check_trainset
from ..stats import OptimizerStats, measure
from .budget import Auto, resolve_budget
from .journal import Journal, fingerprint
from .search import Search
from .settings import Selection
from .state import GEPAResult

__all__ = ["GEPA"]


class GEPA(Optimizer):
    """Optimize instructions by reflecting on feedback, many proposals at once.

    ::

        gepa = td.GEPA(metric, reflection_lm=td.LM("openai/gpt-4.1"), auto="light")
        compiled = await gepa.compile(program, trainset=train, valset=val)

    Args:
        metric: ``metric(gold, pred, trace=None, pred_name=None, pred_trace=None)``
            returning a float, a bool or ``td.Prediction(score=..., feedback=...)``;
            three-argument metrics work too (their feedback is about the whole
            program). Sync or async. Scores are expected in ``[0, perfect_score]``.
        reflection_lm: the model that proposes new instructions.
        auto: ``"light"``, ``"medium"`` or ``"heavy"``: a budget from DSPy's formula.
        max_metric_calls: the budget in metric calls (examples run and scored).
        max_full_evals: the budget in full passes over trainset and valset.
        reflection_minibatch_size: trainset examples per reflection.
        candidate_selection_strategy: ``"pareto"`` or ``"current_best"``.
        use_merge: try merging front programs after an accepted child.
        max_merge_invocations: the most merges accepted.
        skip_perfect_score: skip a parent already perfect on its minibatch.
        perfect_score: the best score the metric gives.
        failure_score: the score of a run whose program or metric raised.
        limit: the most program runs in flight, all proposals together.
        num_threads: DSPy's name for ``limit`` (deprecated: it warns).
        proposals: the most iterations in flight (``1``: DSPy's sequential loop).
        log_dir: a directory for the journal; a compile started again with
            the same ``log_dir`` (and settings and data) resumes.
        track_stats: attach :class:`GEPAResult` as ``compiled.detailed_results``.
        seed: seeds every random choice.

    Exactly one of ``auto``, ``max_metric_calls`` and ``max_full_evals`` is
    given. After :meth:`compile`, :attr:`stats` says what the run cost and
    :attr:`result` what it found.

    Raises:
        ValueError: the budget is not given exactly once, or a setting is out of range.
    """

    def __init__(
        self,
        metric: Metric,
        *,
        reflection_lm: BaseLM,
        auto: Auto | None = None,
        max_metric_calls: int | None = None,
        max_full_evals: int | None = None,
        reflection_minibatch_size: int = 3,
        candidate_selection_strategy: Selection = "pareto",
        use_merge: bool = True,
        max_merge_invocations: int = 5,
        skip_perfect_score: bool = True,
        perfect_score: float = 1.0,
        failure_score: float = 0.0,
        limit: int = 16,
        proposals: int = 4,
        log_dir: str | Path | None = None,
        track_stats: bool = False,
        seed: int = 0,
        num_threads: int | None = None,
    ) -> None:
        limit = limit_alias(limit, num_threads, "td.GEPA", default=16)
        given = [auto, max_metric_calls, max_full_evals]
        if sum(v is not None for v in given) != 1:
            raise ValueError(
                "give exactly one of auto, max_metric_calls and max_full_evals to bound the run"
            )
        if not isinstance(reflection_lm, BaseLM):
            raise TypeError(
                f"reflection_lm must be a language model (td.LM(...)), got {reflection_lm!r}"
            )
        if candidate_selection_strategy not in ("pareto", "current_best"):
            raise ValueError(
                "candidate_selection_strategy must be 'pareto' or 'current_best', "
                f"got {candidate_selection_strategy!r}"
            )
        for name, value in (
            ("reflection_minibatch_size", reflection_minibatch_size),
            ("limit", limit),
            ("proposals", proposals),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if max_merge_invocations < 0:
            raise ValueError(
                f"max_merge_invocations must be 0 or more, got {max_merge_invocations}"
            )
        self.metric = metric
        self.reflection_lm = reflection_lm
        self.auto = auto
        self.max_metric_calls = max_metric_calls
        self.max_full_evals = max_full_evals
        self.reflection_minibatch_size = reflection_minibatch_size
        self.candidate_selection_strategy = candidate_selection_strategy
        self.use_merge = use_merge
        self.max_merge_invocations = max_merge_invocations
        self.skip_perfect_score = skip_perfect_score
        self.perfect_score = perfect_score
        self.failure_score = failure_score
        self.limit = limit
        self.proposals = proposals
        self.log_dir = None if log_dir is None else str(log_dir)
        self.track_stats = track_stats
        self.seed = seed
        self.stats = OptimizerStats()
        self.result: GEPAResult | None = None

    async def compile(
        self,
        student: ModuleT,
        *,
        trainset: Sequence[Example],
        valset: Sequence[Example] | None = None,
        teacher: Module | None = None,
    ) -> ModuleT:
        """A copy of ``student`` with the instructions of the best candidate found.

        ``valset`` defaults to the trainset. A cancelled or failed compile
        keeps every finished run in ``log_dir``'s journal; starting it again
        with the same ``log_dir`` resumes where it stopped.

        Raises:
            TrioDSPyError: the trainset or valset is unusable, the program has
                no predictors, the budget cannot cover one valset evaluation,
                or ``log_dir`` holds another run.
            trio_dspy.evaluate.MetricError: the metric gave no usable score for
                any valset example of the seed program.
        """
        await entered()
        if teacher is not None:
            raise TrioDSPyError("GEPA takes no teacher: it improves the student's own instructions")
        train = check_trainset(trainset)
        val = check_trainset(valset, "valset") if valset is not None else train
        names = [name for name, _ in student.named_predictors()]
        if not names:
            raise TrioDSPyError(
                "the program has no predictors (td.Predict, td.ChainOfThought, ...): "
                "GEPA has no instructions to improve"
            )
        budget = resolve_budget(
            auto=self.auto,
            max_metric_calls=self.max_metric_calls,
            max_full_evals=self.max_full_evals,
            num_predictors=len(names),
            trainset_size=len(train),
            valset_size=len(val),
            valset_given=valset is not None,
        )
        if budget < len(val):
            raise TrioDSPyError(
                f"a budget of {budget} metric calls cannot score the seed program on the "
                f"{len(val)} valset examples: raise the budget or use a smaller valset"
            )
        self.stats = OptimizerStats()
        seed_candidate = {name: p.signature.instructions for name, p in student.named_predictors()}
        header = {
            "algorithm": "gepa",
            "seed": self.seed,
            "budget": budget,
            "seed_candidate": fingerprint(seed_candidate),
            "trainset": fingerprint([dict(e) for e in train]),
            "valset": fingerprint([dict(e) for e in val]),
            "minibatch": self.reflection_minibatch_size,
            "proposals": self.proposals,
            "selection": self.candidate_selection_strategy,
            "merge": [self.use_merge, self.max_merge_invocations],
        }
        journal = Journal(self.log_dir, header)
        with measure(self.stats):
            await journal.open()
            try:
                search = Search(self, student, names, train, val, valset is None, journal, budget)
                state = await search.run(seed_candidate)
            finally:
                await journal.aclose()
        result = GEPAResult.from_state(
            state,
            student=student,
            total_metric_calls=self.stats.metric_calls,
            budget=budget,
            log_dir=self.log_dir,
            seed=self.seed,
        )
        self.result = result
        compiled: ModuleT = result.program(result.best_idx)  # type: ignore[assignment]
        if self.track_stats:
            compiled.detailed_results = result  # type: ignore[attr-defined]
        return compiled

    def __repr__(self) -> str:
        bound = (
            f"auto={self.auto!r}"
            if self.auto is not None
            else f"max_metric_calls={self.max_metric_calls}"
            if self.max_metric_calls is not None
            else f"max_full_evals={self.max_full_evals}"
        )
        return f"GEPA({bound}, proposals={self.proposals}, limit={self.limit})"
