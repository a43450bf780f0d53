"""One GEPA iteration: its plan, the work it does, and what it found.

A *plan* is everything an iteration decides before it runs (the parent and
its instructions, the predictor to rewrite, the minibatch; or a merge). An
*attempt* carries out one plan: the parent's minibatch runs, the reflection
call and the child's minibatch runs, then, once the plan is known to be the
one the sequential loop makes (the attempt is *validated*), the child's
valset evaluation. The search (:mod:`.search`) decides which plans run and
when; this module only runs them.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Literal

import attrs
import trio

from ...errors import LMError
from ...messages import LMRequest, Message
from ...primitives import Example
from ..slots import PrioritySlots
from .journal import Journal, fingerprint
from .merge import MergePlan
from .reflection import extract_instruction, reflection_prompt
from .runs import Candidate, Run, Runner, Tally
from .settings import GEPASettings
from .state import Program, State

__all__ = ["Attempt", "Iterations", "Outcome", "Plan"]


@attrs.frozen
class Plan:
    """One iteration, decided before it starts.

    ``parent_instructions`` is the parent's candidate: a speculative plan may
    name a parent not committed yet (a child still being scored on the valset).
    """

    iteration: int
    kind: Literal["reflect", "merge"]
    reserve: int
    parent: int = -1
    parent_instructions: dict[str, str] = attrs.field(factory=dict)
    component: str = ""
    minibatch: tuple[int, ...] = ()
    child_pointer: int = 0
    merge: MergePlan | None = None


@attrs.frozen
class Outcome:
    """What an iteration found: a program to add (or none), and calls to give back."""

    program: Program | None
    accepted_child: bool
    refund: int
    child_pointer: int = 0


@attrs.define(eq=False)
class Attempt:
    """One plan being carried out.

    ``allowance`` is the most metric calls it may really make (its minibatch
    runs; its valset runs too once validated), ``tally`` those it made.
    ``proposed`` is set when the reflection proposed a child, ``child`` when
    that child beat the parent on the minibatch. A plan that is not ``firm``
    yet rests on a guess likely to be wrong: it runs its minibatch but waits
    before the reflection call, which is dearer.
    """

    plan: Plan
    allowance: int
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    tally: Tally = attrs.field(factory=Tally)
    firm: trio.Event = attrs.field(factory=trio.Event)
    validated: trio.Event = attrs.field(factory=trio.Event)
    imperfect: bool = False  # the parent is not perfect on the minibatch: it will reflect
    proposed: dict[str, str] | None = None
    child: dict[str, str] | None = None
    outcome: Outcome | None = None
    ended: bool = False

    @property
    def outstanding(self) -> int:
        """Metric calls it may still make."""
        return 0 if self.ended else max(0, self.allowance - self.tally.live)


def minibatch_rank(iteration: int) -> int:
    """The slot priority of an iteration's minibatch runs.

    Minibatch runs sit on the chain of round trips that leads to the next
    child; a valset evaluation gates only the commit. So an iteration's
    valset runs wait behind the next iteration's minibatch runs, and go
    before the one after (the seed is iteration -1).
    """
    return 2 * iteration + 2


def valset_rank(iteration: int) -> int:
    """The slot priority of an iteration's valset runs (see :func:`minibatch_rank`)."""
    return 2 * iteration + 5


class Iterations:
    """The work of iterations: minibatches, reflection, child runs, valset, merges."""

    gepa: GEPASettings
    names: list[str]
    train: list[Example]
    val: list[Example]
    val_split: str
    journal: Journal
    runner: Runner
    slots: PrioritySlots
    state: State

    def _poke(self) -> None:
        """Tell the search that an attempt moved on."""
        raise NotImplementedError

    def _parent_scored(self, attempt: Attempt, perfect: bool) -> None:
        """Tell the search how the attempt's parent did on its minibatch."""
        raise NotImplementedError

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

    async def _reflect(self, attempt: Attempt) -> Outcome:
        gepa = self.gepa
        plan = attempt.plan
        valset = len(self.val)
        refund_all = valset + gepa.reflection_minibatch_size  # no child run, no valset run
        view = self.slots.view(minibatch_rank(plan.iteration))
        runs = await self.runner.evaluate(
            plan.parent_instructions,
            "train",
            plan.minibatch,
            self.train,
            view,
            traced=True,
            tally=attempt.tally,
        )
        before = [runs[k].score for k in range(len(plan.minibatch))]
        perfect = all(s >= gepa.perfect_score for s in before)
        self._parent_scored(attempt, perfect)
        if gepa.skip_perfect_score and perfect:
            return Outcome(None, False, refund_all)
        records = self._records(plan, [runs[k] for k in range(len(plan.minibatch))])
        if not records:
            return Outcome(None, False, refund_all)
        current = plan.parent_instructions[plan.component]
        await attempt.firm.wait()
        proposed = await self._propose(plan, current, records)
        if not proposed or proposed == current:
            return Outcome(None, False, refund_all)
        child = {**plan.parent_instructions, plan.component: proposed}
        attempt.proposed = child
        self._poke()  # while children keep being accepted, the next may speculate on it
        parent_sum = sum(before)
        done: list[float] = []

        def hopeless(position: int, run: Run, scope: trio.CancelScope) -> None:
            done.append(run.score)
            remaining = len(plan.minibatch) - len(done)
            if sum(done) + remaining * gepa.perfect_score <= parent_sum:
                scope.cancel()  # cannot strictly beat the parent any more

        child_runs = await self.runner.evaluate(
            child, "train", plan.minibatch, self.train, view, on_run=hopeless, tally=attempt.tally
        )
        if len(child_runs) < len(plan.minibatch):
            return Outcome(None, False, valset)
        if sum(r.score for r in child_runs.values()) <= parent_sum:
            return Outcome(None, False, valset)
        attempt.child = child
        self._poke()  # later iterations may now speculate on this child as their parent
        # The valset runs only for the plan the sequential loop makes.
        await attempt.validated.wait()
        scores = await self._valset_scores(child, plan.iteration, attempt.tally)
        program = Program(child, (plan.parent,), {k: r.score for k, r in scores.items()}, 0)
        return Outcome(program, True, 0, plan.child_pointer)

    async def _merge(self, attempt: Attempt) -> Outcome:
        plan = attempt.plan
        merge = plan.merge
        assert merge is not None
        valset = len(self.val)
        indices = list(merge.subsample)
        runs = await self.runner.evaluate(
            merge.candidate,
            self.val_split,
            indices,
            self.val,
            self.slots.view(minibatch_rank(plan.iteration)),
            tally=attempt.tally,
        )
        after = sum(r.score for r in runs.values())
        first, second = self.state.programs[merge.first], self.state.programs[merge.second]
        before = max(
            sum(first.val_scores[k] for k in indices), sum(second.val_scores[k] for k in indices)
        )
        if after < before:
            return Outcome(None, False, valset)
        scores = await self._valset_scores(merge.candidate, plan.iteration, attempt.tally)
        program = Program(
            merge.candidate, (merge.first, merge.second), {k: r.score for k, r in scores.items()}, 0
        )
        return Outcome(program, False, 0, plan.child_pointer)

    async def _valset_scores(
        self, candidate: Candidate, iteration: int, tally: Tally
    ) -> dict[int, Run]:
        indices = list(range(len(self.val)))
        return await self.runner.evaluate(
            candidate,
            self.val_split,
            indices,
            self.val,
            self.slots.view(valset_rank(iteration)),
            tally=tally,
        )

    def _records(self, plan: Plan, runs: Sequence[Run]) -> list[dict[str, Any]]:
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

    async def _propose(self, plan: Plan, current: str, records: list[dict[str, Any]]) -> str:
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
