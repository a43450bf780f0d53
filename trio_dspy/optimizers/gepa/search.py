"""GEPA's search loop: the sequential loop's plans, run ahead by speculation.

The sequential loop (DSPy's, and ``proposals=1`` here) plans iteration
``j`` from the state every earlier iteration left, runs it, and commits it.
Here up to ``proposals`` iterations are in flight. The oldest one not yet
committed, the *head*, always runs the plan the sequential loop would make:
it is planned (or checked) only once every earlier iteration committed.
Iterations after it run *speculative* plans, made from what is known so far:

* an earlier iteration whose child already beat its parent on the
  minibatch will add it: that child (the newest such) is assumed to be the
  next parent, so the minibatch runs and the reflection on it start while
  its valset evaluation is still running;
* while most iterations so far added a program, an earlier iteration whose
  reflection proposed a child is assumed to add it too (its minibatch runs
  and the next iteration's, on its child, run side by side); one that has
  not proposed yet is assumed to add nothing, but that guess is a *long
  shot*: it runs its minibatch and waits before its reflection call, and
  starts only while the calls cancelled speculation made fit in the slack
  (below);
* otherwise an earlier iteration still running is assumed to add no program
  (its child rejected, or its parent perfect on its minibatch), and the plan
  is drawn from the committed programs as the sequential loop would draw it.

Each speculative plan is remade whenever what it rests on changes (a child
accepted on its minibatch, an iteration committed), and when it becomes the
head it is checked against the sequential loop's plan: if they differ, its
work is cancelled and the right plan runs instead. A valset evaluation runs
only for the head. So the iterations committed are exactly those of the
sequential loop, in its order, whatever order calls finish in.

The budget, two ways. The *search's* ledger charges each committed
iteration what the sequential loop charges (minibatch runs, valset runs,
journal replays and cancelled child runs included) and refuses an iteration
exactly where the sequential loop stops. The *calls' own* count bounds the
metric calls really made: every attempt may make at most its allowance, an
attempt starts only if the calls made plus every allowance outstanding fit
the budget, and the head goes first (later attempts are cancelled to make
room for it). Calls made by cancelled speculation are real, so they count
there; the *slack* pays for them: what committed iterations were charged
and did not make (journal replays, child runs cancelled as hopeless).
Long shots start only while speculation's calls fit in the slack plus a
tenth of the budget lent ahead of it. If wrong guesses ever leave too little
for the head's next step, the run ends there: its candidates are then the
sequential loop's first ones, in its order (a prefix of its result). No
speculation starts where the sequential loop might already have stopped.
"""

from __future__ import annotations

import random
from typing import Any

import trio

from ...errors import TrioDSPyError
from ...groups import raise_single
from ...modules.module import Module
from ...primitives import Example
from ..slots import PrioritySlots
from .budget import Ledger
from .iteration import Attempt, Iterations, Outcome, Plan
from .journal import Journal, fingerprint
from .merge import plan_merge
from .pareto import parent_by_pareto, reduced_fronts
from .runs import Runner
from .settings import GEPASettings
from .state import Commit, Program, State

__all__ = ["Search"]

LENT = 10
"""Long shots may spend ``budget // LENT`` metric calls before the slack covers them."""


class Search(Iterations):
    """One compile's search: plans in order, speculates ahead, commits in order."""

    def __init__(
        self,
        gepa: GEPASettings,
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
        self.budget = budget
        self.ledger = Ledger(budget)
        self.runner = Runner(
            student, gepa.metric, journal, failure_score=gepa.failure_score, stats=gepa.stats
        )
        self.slots = PrioritySlots(gepa.limit)
        self.state = State()
        self.pointers: dict[int, int] = {0: 0}
        self.tried_triples: set[tuple[int, int, int]] = set()
        self.tried_merges: set[Any] = set()
        self.charged = len(val)  # metric calls charged by committed work (the seed's first)
        self.flights: dict[int, Attempt] = {}  # the current attempt of each iteration in flight
        self.attempts: set[Attempt] = set()  # every attempt whose task has not ended
        self.committed = 0  # iterations committed
        self.seed_candidate: dict[str, str] = {}
        self.seeded = False
        self.stopping = False
        self.head_plan: Plan | None = None  # the sequential loop's plan for the head
        # Per candidate (by its instructions): minibatches it was perfect on, and run on.
        self.minibatches: dict[str, tuple[int, int]] = {}
        self.slack = 0  # metric calls committed iterations were charged but did not make
        self.wasted = 0  # metric calls made by cancelled speculation
        self._changed = trio.Event()
        self._nursery: trio.Nursery | None = None

    # ------------------------------------------------------------------ the loop
    async def run(self, seed_candidate: dict[str, str]) -> State:
        """Score the seed, then iterate until the budget is spent; the final state."""
        self.seed_candidate = seed_candidate
        # Never refused: compile checked that the budget covers one valset pass.
        self.ledger.reserve(len(self.val))
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                seed = Attempt(Plan(-1, "reflect", len(self.val)), len(self.val))
                seed.firm.set()
                seed.validated.set()
                self.attempts.add(seed)
                nursery.start_soon(self._score_seed, seed)
                while not self._advance():
                    await self._changed.wait()
                    self._changed = trio.Event()
        except BaseExceptionGroup as group:  # the one failure, not a group of one
            raise_single(group)
        return self.state

    def _poke(self) -> None:
        self._changed.set()

    async def _score_seed(self, attempt: Attempt) -> None:
        try:
            scores = await self._valset_scores(self.seed_candidate, -1, attempt.tally)
        finally:
            attempt.ended = True
            self.attempts.discard(attempt)
            self._poke()
        if all(run.failed for run in scores.values()):
            first = next(iter(scores.values()))
            raise TrioDSPyError(
                "every valset run of the seed program failed, so there is nothing to improve "
                f"on; the first: {first.error}"
            )
        self.state.programs.append(
            Program(self.seed_candidate, (), {k: r.score for k, r in scores.items()}, 0)
        )
        self.seeded = True

    async def _fly(self, attempt: Attempt) -> None:
        try:
            with attempt.scope:
                if attempt.plan.kind == "merge":
                    attempt.outcome = await self._merge(attempt)
                else:
                    attempt.outcome = await self._reflect(attempt)
        finally:
            attempt.ended = True
            self.attempts.discard(attempt)
            if not attempt.validated.is_set():
                self.wasted += attempt.tally.live  # cancelled speculation
            self._poke()

    def _advance(self) -> bool:
        """Commit what can be, put the head on the right plan, speculate ahead;
        whether the run is over."""
        head_waits = self.seeded and not self.stopping and not self._settle_head()
        if self.stopping:
            return not self.attempts
        if not head_waits:  # the head's room first
            self._speculate()
        return False

    def _settle_head(self) -> bool:
        """Validate the head iteration, and commit it and those after it that finished;
        ``False`` while the head waits for cancelled attempts to give back room."""
        while not self.stopping:
            head = self.committed
            attempt = self.flights.get(head)
            if attempt is None or not attempt.validated.is_set():
                if not self._validate(head, attempt):
                    return False
                continue
            if attempt.outcome is None:
                return True
            del self.flights[head]
            # Charged but not made (read back from the journal, or cancelled):
            # what speculation on a long shot may spend.
            self.slack += attempt.plan.reserve - attempt.outcome.refund - attempt.tally.live
            self._commit(attempt.plan, attempt.outcome)
            self.committed += 1
            self.head_plan = None
        return True

    def _validate(self, head: int, attempt: Attempt | None) -> bool:
        """Make the head run the sequential loop's plan (or end the run); ``False``
        if it must wait for room."""
        if self.head_plan is None:
            self.head_plan = self._plan(head)  # once per iteration: it moves pointers
            if not self.ledger.reserve(self.head_plan.reserve):
                self._stop()  # where the sequential loop stops
                return True
        plan = self.head_plan
        if attempt is not None and attempt.plan == plan:
            # Right all along: it may now make its valset runs too.
            extra = 0 if attempt.outcome is not None else plan.reserve - attempt.allowance
            if not self._make_room(extra, head):
                return self._wait_or_stop()
            attempt.allowance += extra
            attempt.firm.set()
            attempt.validated.set()
            return True
        if attempt is not None:
            self._cancel(head)
        if not self._make_room(plan.reserve, head):
            return self._wait_or_stop()
        attempt = self._launch(plan, plan.reserve)
        attempt.firm.set()
        attempt.validated.set()
        return True

    def _wait_or_stop(self) -> bool:
        """The head lacks room: wait while cancelled attempts are still ending (their
        allowance comes back), else end the run (speculation spent its slack)."""
        if any(a.scope.cancel_called for a in self.attempts):
            return False
        self._stop()
        return True

    def _make_room(self, calls: int, head: int) -> bool:
        """Whether ``calls`` more metric calls fit the budget, cancelling speculative
        attempts after ``head`` (the latest first) to make room."""
        for later in sorted((k for k in self.flights if k > head), reverse=True):
            if self._fits(calls):
                return True
            self._cancel(later)
        return self._fits(calls)

    def _fits(self, calls: int) -> bool:
        made = self.gepa.stats.metric_calls
        return made + sum(a.outstanding for a in self.attempts) + calls <= self.budget

    def _speculate(self) -> None:
        """Remake every speculative plan that rests on changed ground; start the missing ones."""
        first = self.committed + 1 if self.seeded else 0
        for k in range(first, self.committed + self.gepa.proposals):
            plan, firm = self._guess(k)
            attempt = self.flights.get(k)
            if attempt is not None and (plan is None or plan != attempt.plan):
                self._cancel(k)
                attempt = None
            if attempt is None and plan is not None:
                allowance = 2 * self.gepa.reflection_minibatch_size
                if not self._may_run(k, plan) or not self._fits(allowance):
                    return
                if not firm and not self._long_shot_fits(allowance):
                    return
                attempt = self._launch(plan, allowance)
            if attempt is not None and firm:
                attempt.firm.set()

    def _may_run(self, iteration: int, plan: Plan) -> bool:
        """Whether the search's ledger surely admits ``iteration``, were every
        iteration before it to cost the most it can (a finished one: what it cost,
        should its guess hold).
        Nothing is speculated where the sequential loop might have stopped."""
        between = sum(
            a.plan.reserve if a.outcome is None else a.plan.reserve - a.outcome.refund
            for k, a in self.flights.items()
            if k < iteration and not a.validated.is_set()  # the head's is reserved already
        )
        return self.ledger.available - between >= plan.reserve

    def _long_shot_fits(self, allowance: int) -> bool:
        """Whether a guess likely to be wrong may start: the calls speculation made,
        and those long shots in flight may make, must fit in what
        committed iterations were charged but did not make, plus a tenth of the
        budget lent ahead of it (such calls mostly come: journal replays, child
        runs cancelled as hopeless). Calls lent and never made up may end the
        run before the sequential loop would end it."""
        at_risk = sum(
            a.tally.live + a.outstanding
            for a in self.attempts
            if not a.validated.is_set() and not a.firm.is_set()
        )
        return self.wasted + at_risk + allowance <= self.slack + self.budget // LENT

    def _launch(self, plan: Plan, allowance: int) -> Attempt:
        assert self._nursery is not None
        attempt = Attempt(plan, allowance)
        self.flights[plan.iteration] = attempt
        self.attempts.add(attempt)
        self._nursery.start_soon(self._fly, attempt)
        return attempt

    def _cancel(self, iteration: int) -> None:
        attempt = self.flights.pop(iteration)
        attempt.scope.cancel()  # its task ends soon; its calls so far stay counted

    def _stop(self) -> None:
        self.stopping = True
        for k in list(self.flights):
            self._cancel(k)

    def _commit(self, plan: Plan, outcome: Outcome) -> None:
        state = self.state
        if outcome.program is not None:
            index = len(state.programs)
            # Charged before its valset run: every earlier iteration's net cost
            # and this one's minibatch runs.
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
    def _plan(self, iteration: int) -> Plan:
        """The sequential loop's plan for ``iteration``, every earlier one committed.

        Made once per iteration, in order: it advances the parent's predictor
        pointer and records the merge tried.
        """
        gepa = self.gepa
        state = self.state
        rng = random.Random(f"{gepa.seed}:iteration:{iteration}")
        count = len(state.programs)
        means = state.means(count)
        last = state.after(iteration - 1)
        if (
            gepa.use_merge
            and last.accepted_child
            and last.merges_due > 0
            and last.merges_accepted < gepa.max_merge_invocations
        ):
            fronts = reduced_fronts(state.fronts(count), means)
            merge = plan_merge(
                merge_candidates=sorted({p for holders in fronts.values() for p in holders}),
                candidates=[p.instructions for p in state.programs],
                parents=[p.parents for p in state.programs],
                mean_scores=means,
                val_scores=[p.val_scores for p in state.programs],
                tried_triples=self.tried_triples,
                tried_merges=self.tried_merges,
                rng=rng,
            )
            if merge is not None:
                pointer = max(self.pointers[merge.first], self.pointers[merge.second])
                return Plan(
                    iteration,
                    "merge",
                    len(merge.subsample) + len(self.val),
                    child_pointer=pointer,
                    merge=merge,
                )
        parent = self._draw(count, rng)
        pointer = self.pointers[parent]
        self.pointers[parent] = (pointer + 1) % len(self.names)
        return self._reflect_plan(iteration, parent, state.programs[parent].instructions, pointer)

    def _reflect_plan(
        self, iteration: int, parent: int, instructions: dict[str, str], pointer: int
    ) -> Plan:
        return Plan(
            iteration,
            "reflect",
            2 * self.gepa.reflection_minibatch_size + len(self.val),
            parent=parent,
            parent_instructions=instructions,
            component=self.names[pointer],
            minibatch=self._minibatch(iteration),
            child_pointer=(pointer + 1) % len(self.names),
        )

    def _draw(self, count: int, rng: random.Random) -> int:
        """The parent the sequential loop draws from the first ``count`` programs."""
        means = self.state.means(count)
        if self.gepa.candidate_selection_strategy == "pareto":
            return parent_by_pareto(self.state.fronts(count), means, rng)
        return max(range(count), key=lambda i: (means[i], -i))

    def _guess(self, iteration: int) -> tuple[Plan | None, bool]:
        """A speculative plan for ``iteration`` (see the module's docstring), or ``None``
        when it would depend on a merge the head may plan; and whether it is *firm*:
        not resting on an iteration that has yet to propose while most iterations
        add a program (such a guess runs its minibatch but not its reflection)."""
        count = len(self.state.programs) if self.seeded else 0
        improving = self._improving()
        firm = True
        pointers = dict(self.pointers)
        parents: list[tuple[int, dict[str, str]]] = []  # children assumed added, in order
        if not self.seeded:
            parents.append((0, self.seed_candidate))
        for k in range(self.committed, iteration):
            attempt = self.flights.get(k)
            if attempt is None:
                return None, False  # an earlier iteration waits to start: guess once it has
            plan = attempt.plan
            if plan.kind == "merge":
                return None, False
            child = attempt.child
            if child is None and attempt.outcome is None and improving:
                child = attempt.proposed  # likely accepted
                if child is None and (attempt.imperfect or not self._skips(plan)):
                    firm = False  # a long shot: it will more likely propose a child
            if not attempt.validated.is_set():  # the head's pointer moved when it was planned
                pointers[plan.parent] = (pointers[plan.parent] + 1) % len(self.names)
            if child is not None:
                index = count + len(parents)
                pointers[index] = plan.child_pointer
                parents.append((index, child))
        if parents:
            parent, instructions = parents[-1]
        else:
            rng = random.Random(f"{self.gepa.seed}:iteration:{iteration}")
            parent = self._draw(count, rng)
            instructions = self.state.programs[parent].instructions
        return self._reflect_plan(iteration, parent, instructions, pointers[parent]), firm

    def _parent_scored(self, attempt: Attempt, perfect: bool) -> None:
        key = fingerprint(attempt.plan.parent_instructions)
        perfect_runs, runs = self.minibatches.get(key, (0, 0))
        self.minibatches[key] = (perfect_runs + perfect, runs + 1)
        if not perfect:
            attempt.imperfect = True
            self._poke()  # a guess that it skips is now a long shot

    def _skips(self, plan: Plan) -> bool:
        """Whether the plan's parent likely skips its minibatch (perfect on it, with
        ``skip_perfect_score``): it was perfect on most minibatches it ran on."""
        if not self.gepa.skip_perfect_score:
            return False
        perfect_runs, runs = self.minibatches.get(fingerprint(plan.parent_instructions), (0, 0))
        return 2 * perfect_runs > runs

    def _improving(self) -> bool:
        """Whether most iterations so far added a program.

        While children keep being accepted, guessing that an iteration still
        running adds none is mostly wrong, and the cancelled work wastes
        budget: then a proposed child is guessed accepted (and the next
        parent) instead, and nothing is guessed before the proposal. Once
        most iterations add nothing, that is the guess.
        """
        added = max(len(self.state.programs) - 1, 0)  # every program but the seed
        return 2 * added >= self.committed
