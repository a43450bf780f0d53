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
flight at once, and all their runs share ``limit`` slots. Iteration ``i``
plans from the state as it was after iteration ``i - proposals`` committed
(with ``proposals=1`` that is DSPy's sequential loop exactly), and
iterations commit in order, whatever order they finish in. A child accepted
on its minibatch waits for every earlier iteration to commit; if its parent
has left the Pareto front meanwhile, it is dropped before its valset run
(the sequential loop would never have made it), so the budget goes to
children of the programs that lead. Each iteration
draws from its own random generator (seeded by ``seed`` and ``i``). So with
a model that answers each request the same way, a run gives the same result
for the same seed, however its calls interleave. A child whose minibatch can
no longer beat its parent is cancelled at once.

The budget: an iteration reserves what it may cost when it starts (two
minibatches and a valset evaluation; a merge, its check and a valset
evaluation) and gives back, when it commits, the valset evaluation it did
not need. Reservations are made in iteration order, and an iteration that
cannot reserve does not start, so the run never makes more metric calls
than the budget. Cancelled and journal-replayed runs stay charged, so the
same budget buys the same search whatever the timing.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import attrs
import trio

from ...aliases import limit_alias
from ...checkpoint import entered
from ...errors import LMError, TrioDSPyError
from ...evaluate.evaluate import Metric
from ...lm.base import BaseLM
from ...messages import LMRequest, Message
from ...modules.module import Module
from ...primitives import Example
from ..base import ModuleT, Optimizer, check_trainset
from ..slots import PrioritySlots
from ..stats import OptimizerStats, measure
from .budget import Auto, Ledger, resolve_budget
from .journal import Journal, fingerprint
from .merge import MergePlan, plan_merge
from .pareto import parent_by_pareto, reduced_fronts
from .reflection import extract_instruction, reflection_prompt
from .runs import Candidate, Run, Runner
from .state import Commit, GEPAResult, Program, State

__all__ = ["GEPA"]

Selection = Literal["pareto", "current_best"]


@attrs.frozen
class _Plan:
    """One iteration, decided from a snapshot before it starts."""

    iteration: int
    kind: Literal["reflect", "merge"]
    reserve: int
    parent: int = -1
    component: str = ""
    minibatch: tuple[int, ...] = ()
    child_pointer: int = 0
    merge: MergePlan | None = None


@attrs.frozen
class _Outcome:
    """What an iteration found: a program to add (or none), and calls to give back."""

    program: Program | None
    accepted_child: bool
    refund: int
    child_pointer: int = 0


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
                search = _Search(self, student, names, train, val, valset is None, journal, budget)
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


class _Search:
    """One compile's search loop: plans in order, runs concurrently, commits in order."""

    def __init__(
        self,
        gepa: GEPA,
        student: Module,
        names: list[str],
        train: list[Example],
        val: list[Example],
        val_is_train: bool,
        journal: Journal,
        budget: int,
    ) -> None:
        self.gepa = gepa
        self.names = names
        self.train = train
        self.val = val
        # With no valset the trainset is the valset: runs on it are shared.
        self.val_split = "train" if val_is_train else "val"
        self.journal = journal
        self.ledger = Ledger(budget)
        self.runner = Runner(
            student, gepa.metric, journal, failure_score=gepa.failure_score, stats=gepa.stats
        )
        self.slots = PrioritySlots(gepa.limit)
        self.state = State()
        self.pointers: dict[int, int] = {}
        self.tried_triples: set[tuple[int, int, int]] = set()
        self.tried_merges: set[Any] = set()
        self.merges_planned: list[int] = []  # iterations that are merges
        self._finished: dict[int, tuple[_Plan, _Outcome]] = {}
        self.charged = len(val)  # net metric calls charged by committed work (the seed's first)
        self._committed = 0
        self._changed = trio.Event()

    # ------------------------------------------------------------------ the loop
    async def run(self, seed_candidate: dict[str, str]) -> State:
        """Score the seed, then iterate until the budget is spent; the final state."""
        # Never refused: compile checked that the budget covers one valset pass.
        self.ledger.reserve(len(self.val))
        scores = await self._valset_scores(seed_candidate, rank=0)
        if all(run.failed for run in scores.values()):
            first = next(iter(scores.values()))
            raise TrioDSPyError(
                "every valset run of the seed program failed, so there is nothing to improve "
                f"on; the first: {first.error}"
            )
        self.state.programs.append(
            Program(seed_candidate, (), {k: r.score for k, r in scores.items()}, 0)
        )
        self.pointers[0] = 0
        async with trio.open_nursery() as nursery:
            iteration = 0
            while True:
                await self._until_committed(iteration - self.gepa.proposals + 1)
                plan = self._plan(iteration)
                if not self.ledger.reserve(plan.reserve):
                    await self._until_committed(iteration)  # every refund is in
                    if not self.ledger.reserve(plan.reserve):
                        break
                nursery.start_soon(self._iterate, plan)
                iteration += 1
        return self.state

    async def _until_committed(self, count: int) -> None:
        while self._committed < count:
            await self._changed.wait()

    async def _iterate(self, plan: _Plan) -> None:
        if plan.kind == "merge":
            outcome = await self._merge(plan)
        else:
            outcome = await self._reflect(plan)
        self._finished[plan.iteration] = (plan, outcome)
        while self._committed in self._finished:
            self._commit(*self._finished.pop(self._committed))
            self._committed += 1
        self._changed.set()
        self._changed = trio.Event()

    def _commit(self, plan: _Plan, outcome: _Outcome) -> None:
        state = self.state
        if outcome.program is not None:
            index = len(state.programs)
            # Charged before its valset run: every earlier iteration's net cost
            # and this one's minibatch runs (known now: commits are in order).
            outcome.program.discovered_at = self.charged + plan.reserve - len(self.val)
            state.programs.append(outcome.program)
            self.pointers[index] = outcome.child_pointer
            if outcome.accepted_child:
                if state.merges_accepted < self.gepa.max_merge_invocations:
                    state.merges_due += 1
            else:  # an accepted merge
                state.merges_due -= 1
                state.merges_accepted += 1
        self.ledger.refund(outcome.refund)
        self.charged += plan.reserve - outcome.refund
        state.commits.append(
            Commit(
                len(state.programs), outcome.accepted_child, state.merges_due, state.merges_accepted
            )
        )

    # ------------------------------------------------------------------ planning
    def _plan(self, iteration: int) -> _Plan:
        """Decide iteration ``iteration`` from the state ``proposals`` iterations back."""
        gepa = self.gepa
        snapshot = self.state.after(iteration - gepa.proposals)
        rng = random.Random(f"{gepa.seed}:iteration:{iteration}")
        count = snapshot.programs
        means = self.state.means(count)
        valset = len(self.val)
        in_flight = [m for m in self.merges_planned if m > iteration - gepa.proposals]
        if (
            gepa.use_merge
            and snapshot.accepted_child
            and snapshot.merges_due - len(in_flight) > 0
            and snapshot.merges_accepted + len(in_flight) < gepa.max_merge_invocations
        ):
            fronts = reduced_fronts(self.state.fronts(count), means)
            merge = plan_merge(
                merge_candidates=sorted({p for holders in fronts.values() for p in holders}),
                candidates=[p.instructions for p in self.state.programs[:count]],
                parents=[p.parents for p in self.state.programs[:count]],
                mean_scores=means,
                val_scores=[p.val_scores for p in self.state.programs[:count]],
                tried_triples=self.tried_triples,
                tried_merges=self.tried_merges,
                rng=rng,
            )
            if merge is not None:
                self.merges_planned.append(iteration)
                pointer = max(self.pointers[merge.first], self.pointers[merge.second])
                return _Plan(
                    iteration,
                    "merge",
                    len(merge.subsample) + valset,
                    child_pointer=pointer,
                    merge=merge,
                )
        if gepa.candidate_selection_strategy == "pareto":
            parent = parent_by_pareto(self.state.fronts(count), means, rng)
        else:
            parent = max(range(count), key=lambda i: (means[i], -i))
        pointer = self.pointers[parent]
        self.pointers[parent] = (pointer + 1) % len(self.names)
        return _Plan(
            iteration,
            "reflect",
            2 * gepa.reflection_minibatch_size + valset,
            parent=parent,
            component=self.names[pointer],
            minibatch=self._minibatch(iteration),
            child_pointer=self.pointers[parent],
        )

    def _minibatch(self, iteration: int) -> tuple[int, ...]:
        """The trainset examples of iteration ``iteration``: consecutive chunks of
        epoch-shuffled orders, each padded to a whole number of minibatches with
        its least-used examples, as the gepa engine's epoch-shuffled sampler."""
        size = self.gepa.reflection_minibatch_size
        total = len(self.train)
        padded = total + (size - total % size) % size
        start = iteration * size
        epoch, offset = divmod(start, padded)
        order = list(range(total))
        random.Random(f"{self.gepa.seed}:epoch:{epoch}").shuffle(order)
        order += [order[-1 - k % total] for k in range(padded - total)]
        return tuple(order[offset : offset + size])

    # ------------------------------------------------------------------ iterations
    async def _reflect(self, plan: _Plan) -> _Outcome:
        gepa = self.gepa
        valset = len(self.val)
        refund_all = valset + gepa.reflection_minibatch_size  # no child run, no valset run
        parent = self.state.programs[plan.parent]
        rank = plan.iteration + 1
        runs = await self.runner.evaluate(
            parent.instructions,
            "train",
            plan.minibatch,
            self.train,
            self.slots.view(rank),
            traced=True,
        )
        before = [runs[k].score for k in range(len(plan.minibatch))]
        if gepa.skip_perfect_score and all(s >= gepa.perfect_score for s in before):
            return _Outcome(None, False, refund_all)
        records = self._records(plan, [runs[k] for k in range(len(plan.minibatch))])
        if not records:
            return _Outcome(None, False, refund_all)
        current = parent.instructions[plan.component]
        proposed = await self._propose(plan, current, records)
        if not proposed or proposed == current:
            return _Outcome(None, False, refund_all)
        child = {**parent.instructions, plan.component: proposed}
        parent_sum = sum(before)
        done: list[float] = []

        def hopeless(position: int, run: Run, scope: trio.CancelScope) -> None:
            done.append(run.score)
            remaining = len(plan.minibatch) - len(done)
            if sum(done) + remaining * gepa.perfect_score <= parent_sum:
                scope.cancel()  # cannot strictly beat the parent any more

        child_runs = await self.runner.evaluate(
            child, "train", plan.minibatch, self.train, self.slots.view(rank), on_run=hopeless
        )
        if len(child_runs) < len(plan.minibatch):
            return _Outcome(None, False, valset)
        if sum(r.score for r in child_runs.values()) <= parent_sum:
            return _Outcome(None, False, valset)
        if self.gepa.proposals > 1:
            # Planned from a state some commits old: once every earlier
            # iteration has committed (a point that does not depend on timing),
            # a child whose parent has left the front since is dropped before
            # its valset run, as the sequential loop would never have made it.
            await self._until_committed(plan.iteration)
            count = len(self.state.programs)
            fronts = reduced_fronts(self.state.fronts(count), self.state.means(count))
            if not any(plan.parent in holders for holders in fronts.values()):
                return _Outcome(None, False, valset)
        scores = await self._valset_scores(child, rank)
        program = Program(child, (plan.parent,), {k: r.score for k, r in scores.items()}, 0)
        return _Outcome(program, True, 0, plan.child_pointer)

    async def _merge(self, plan: _Plan) -> _Outcome:
        merge = plan.merge
        assert merge is not None
        valset = len(self.val)
        rank = plan.iteration + 1
        indices = list(merge.subsample)
        runs = await self.runner.evaluate(
            merge.candidate, self.val_split, indices, self.val, self.slots.view(rank)
        )
        after = sum(r.score for r in runs.values())
        first, second = self.state.programs[merge.first], self.state.programs[merge.second]
        before = max(
            sum(first.val_scores[k] for k in indices), sum(second.val_scores[k] for k in indices)
        )
        if after < before:
            return _Outcome(None, False, valset)
        scores = await self._valset_scores(merge.candidate, rank)
        program = Program(
            merge.candidate, (merge.first, merge.second), {k: r.score for k, r in scores.items()}, 0
        )
        return _Outcome(program, False, 0, plan.child_pointer)

    async def _valset_scores(self, candidate: Candidate, rank: int) -> dict[int, Run]:
        indices = list(range(len(self.val)))
        return await self.runner.evaluate(
            candidate, self.val_split, indices, self.val, self.slots.view(rank)
        )

    def _records(self, plan: _Plan, runs: Sequence[Run]) -> list[dict[str, Any]]:
        """The reflective dataset for the plan's predictor: one record per minibatch run
        that called it (a run that failed has nothing to show)."""
        rng = random.Random(f"{self.gepa.seed}:reflect:{plan.iteration}")
        records = []
        for run in runs:
            calls = [s for s in run.steps if s.name == plan.component]
            if run.failed or not calls:
                continue
            step = rng.choice(calls)
            records.append(
                {
                    "Inputs": step.inputs,
                    "Generated Outputs": step.outputs,
                    "Feedback": step.feedback,
                }
            )
        return records

    async def _propose(self, plan: _Plan, current: str, records: list[dict[str, Any]]) -> str:
        """New instructions from the reflection model ("" when it gives none).

        A failed call is tried once more, as DSPy does; a second failure
        skips the iteration. The answer is journaled.
        """
        key = ["proposal", plan.iteration, fingerprint(records), fingerprint(current)]
        saved = self.journal.get(key)
        if isinstance(saved, str):
            return extract_instruction(saved)
        request = LMRequest([Message("user", reflection_prompt(current, records))])
        for attempt in range(2):
            try:
                response = await self.gepa.reflection_lm.request(request)
            except LMError:
                if attempt == 1:
                    return ""
                continue
            await self.journal.put(key, response.text)
            return extract_instruction(response.text)
        return ""  # pragma: no cover - the loop always returns
