"""MIPROv2's step 3: Optuna's TPE over each predictor's (instruction, demo set), trials in flight.

DSPy's loop is sequential: ask TPE for a configuration, score it on a fresh
random minibatch of the valset, tell TPE the score; after every
``minibatch_full_eval_steps`` trials (and after the last), score the
configuration with the best mean minibatch score, not yet fully scored, on
the whole valset, and add that score to the study as one more trial. The
result is the program with the best full score (the default program, scored
first, included; the earliest of equals).

Here ``in_flight`` trials run at once, and a full evaluation runs while the
next trials do. Trials are told to TPE in the order they were asked, and
trial ``t`` is asked right after trial ``t - in_flight`` was told; full
evaluations start and are added at fixed points of that order (the next one
starts only after the previous one was added). So TPE sees the same history
at each ask whatever order the runs finish in, and a seed, an ``in_flight``
and a model that answers each request the same way give the same result.
(Telling each trial as it finishes would let TPE learn a little sooner, but
make the result depend on timing.) The first trials, which TPE draws at
random until it has ``n_startup_trials`` results, are asked all at once:
their draws do not depend on what TPE knows, so they are the same trials,
scored while the proposals are still being written. The price: TPE
proposes trial ``t`` knowing ``in_flight - 1`` fewer results than DSPy's
loop would, so the early trials are closer to random.
"""

from __future__ import annotations

import itertools
import math
import random
import warnings
from collections.abc import Sequence
from typing import Any

import attrs
import trio

from ...errors import TrioDSPyError
from ...evaluate.evaluate import Limiter, Metric, call_metric, run_in_order
from ...modules.module import Module
from ...primitives import Example
from ..slots import PrioritySlots
from .propose import Demo, Later
from .stats import MIPROStats

__all__ = ["Scorer", "Search", "Trial"]


@attrs.frozen
class Trial:
    """One scored configuration: Optuna's trial number, its choices, its score (a percentage).

    ``params`` maps ``"{i}_predictor_instruction"`` (and ``"{i}_predictor_demos"``)
    to candidate indices; ``full_eval`` says whether the score is on the whole
    valset rather than a minibatch.
    """

    number: int
    params: dict[str, int]
    score: float
    full_eval: bool


class Scorer:
    """Scores programs on valset examples, every run holding one of the shared slots."""

    def __init__(
        self, metric: Metric, valset: Sequence[Example], slots: PrioritySlots, stats: MIPROStats
    ) -> None:
        self.metric = metric
        self.valset = valset
        self.slots = slots
        self.stats = stats
        self._rank = itertools.count(1_000_000)  # behind the bootstraps and proposals
        self.errors: list[Exception] = []

    def view(self) -> Limiter:
        """Slots for the next evaluation, served after every evaluation viewed before it."""
        return self.slots.view(next(self._rank))

    async def score(self, program: Module, indices: Sequence[int], slots: Limiter) -> float:
        """The program's mean score on ``valset[indices]`` as a percentage (two decimals).

        A run whose program or metric raised scores 0, as in DSPy's Evaluate.
        """
        scores = [0.0] * len(indices)

        async def one(position: int, cancel: trio.CancelScope) -> None:
            example = self.valset[indices[position]]
            try:
                prediction = await program(**example.inputs())
                scores[position] = await call_metric(self.metric, example, prediction, None)
            except Exception as exc:
                self.errors.append(exc)
            self.stats.metric_calls += 1

        await run_in_order(len(indices), one, slots)
        return round(100 * sum(scores) / len(indices), 2)


_Full = tuple[str, dict[str, int], Module, Later[float]]
"""A full evaluation in flight: its configuration's key, params, program, and score to come."""


def _key(params: dict[str, int]) -> str:
    """DSPy's name of a configuration (``"Predictor 0: Instruction 2,..."``)."""
    parts = []
    for name, value in params.items():
        index, _, kind = name.partition("_predictor_")
        label = "Instruction" if kind == "instruction" else "Few-Shot Set"
        parts.append(f"Predictor {index}: {label} {value}")
    return ",".join(parts)


class Search:
    """One compile's TPE search (see the module's docstring)."""

    def __init__(
        self,
        *,
        optuna: Any,
        seed: int,
        student: Module,
        instructions: Sequence[Sequence[Later[str]]],
        demos: Sequence[Later[list[list[Demo]]]] | None,
        scorer: Scorer,
        rng: random.Random,
        num_trials: int,
        minibatch: bool,
        minibatch_size: int,
        steps: int,
        in_flight: int,
        stats: MIPROStats,
    ) -> None:
        self.optuna = optuna
        self.student = student
        self.instructions = instructions
        self.demos = demos
        self.scorer = scorer
        self.rng = rng
        self.num_trials = num_trials
        self.minibatch = minibatch
        self.minibatch_size = minibatch_size
        self.steps = steps
        self.in_flight = in_flight
        self.stats = stats
        self.trials: list[Trial] = []
        self.distributions: dict[str, Any] = {}
        for i in range(len(instructions)):
            choices = list(range(len(instructions[i])))
            self.distributions[f"{i}_predictor_instruction"] = (
                optuna.distributions.CategoricalDistribution(choices)
            )
            if demos is not None:
                self.distributions[f"{i}_predictor_demos"] = (
                    optuna.distributions.CategoricalDistribution(list(range(len(demos))))
                )
        with warnings.catch_warnings():
            # ``multivariate`` is experimental in older Optuna; DSPy uses it all the same.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True)
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "A new study created"
        try:
            self.study = optuna.create_study(direction="maximize", sampler=sampler)
        finally:
            optuna.logging.set_verbosity(verbosity)
        self.best_score = -math.inf
        self.best_program: Module = student
        self._means: dict[str, list[float]] = {}
        self._first: dict[str, tuple[dict[str, int], Module]] = {}
        self._fully: set[str] = set()
        self._running = 0

    async def program(self, params: dict[str, int]) -> Module:
        """A copy of the student with the instructions and demo sets ``params`` choose
        (once the proposals and demo sets it uses are ready)."""
        program = self.student.deepcopy()
        for i, predictor in enumerate(program.predictors()):
            text = await self.instructions[i][params[f"{i}_predictor_instruction"]].get()
            predictor.signature = predictor.signature.with_instructions(text)
            if self.demos is not None:
                demo_set = await self.demos[params[f"{i}_predictor_demos"]].get()
                predictor.demos = list(demo_set[i])
        return program

    def _add(
        self, params: dict[str, int], score: float, program: Module, *, default: bool = False
    ) -> None:
        """Add a full evaluation to the study (TPE learns from it) and to the best so far."""
        trial = self.optuna.trial.create_trial(
            params=params, distributions=self.distributions, value=score
        )
        self.study.add_trial(trial)
        self.trials.append(Trial(self.study.trials[-1].number, params, score, True))
        self.stats.full_evaluations += not default
        if score > self.best_score:
            self.best_score, self.best_program = score, program

    def _random_asks(self) -> int:
        """How many trials, from the first, TPE draws at random: those the schedule
        above asks while the study has fewer complete trials than the sampler's
        ``n_startup_trials`` (counting a full evaluation as added whenever one
        may be, an upper bound). Their draws come from the sampler's random
        generator in the order asked, whatever it knows, so they are all asked
        at once: the same trials, scored sooner, while the proposals are written.
        """
        startup = int(getattr(self.study.sampler, "_n_startup_trials", 0))
        complete = 1  # the default program's full evaluation
        count = 0
        if complete < startup:
            count = min(self.in_flight, self.num_trials)
        evaluating = False
        for t in range(self.num_trials):
            complete += 1  # trial t told
            if self.minibatch and (t + 1) % self.steps == 0:
                complete += evaluating  # a full evaluation added
                evaluating = True
            following = t + self.in_flight
            if following >= self.num_trials or complete >= startup:
                break
            count = following + 1
        return count

    async def run(self) -> Module:
        """Score the default program, then search; the program with the best full score.

        Raises:
            TrioDSPyError: every run of the default program raised (no score to improve on).
        """
        everything = list(range(len(self.scorer.valset)))
        default = self.student.deepcopy()
        score = await self.scorer.score(default, everything, self.scorer.view())
        if len(self.scorer.errors) == len(everything):
            first = self.scorer.errors[0]
            raise TrioDSPyError(
                "every valset run of the default program raised, so there is no score to "
                f"improve on; first: {type(first).__name__}: {first}"
            ) from first
        self.stats.default_score = score
        self._add({name: 0 for name in self.distributions}, score, default, default=True)
        asked: list[tuple[Any, dict[str, int], Later[Module], Later[float]]] = []
        full: _Full | None = None

        async def evaluate(
            program: Module, indices: list[int], slots: Limiter, out: Later[float]
        ) -> None:
            out.set(await self.scorer.score(program, indices, slots))

        async def running(
            params: dict[str, int],
            built: Later[Module],
            indices: list[int],
            slots: Limiter,
            out: Later[float],
        ) -> None:
            program = await self.program(params)
            built.set(program)
            self._running += 1
            self.stats.most_trials_in_flight = max(self.stats.most_trials_in_flight, self._running)
            try:
                await evaluate(program, indices, slots, out)
            finally:
                self._running -= 1

        async with trio.open_nursery() as nursery:

            def ask() -> None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", self.optuna.exceptions.ExperimentalWarning)
                    trial = self.study.ask()
                    params = {
                        name: int(trial.suggest_categorical(name, list(dist.choices)))
                        for name, dist in self.distributions.items()
                    }
                if self.minibatch:
                    indices = self.rng.sample(everything, self.minibatch_size)
                else:
                    indices = everything
                out: Later[float] = Later()
                built: Later[Module] = Later()
                asked.append((trial, params, built, out))
                nursery.start_soon(running, params, built, indices, self.scorer.view(), out)

            def start_full() -> _Full | None:
                ranked = sorted(
                    (k for k in self._means if k not in self._fully),
                    key=lambda k: -sum(self._means[k]) / len(self._means[k]),
                )
                if not ranked:  # every configuration tried is fully scored already
                    return None
                key = ranked[0]
                self._fully.add(key)
                params, program = self._first[key]
                out: Later[float] = Later()
                nursery.start_soon(evaluate, program, everything, self.scorer.view(), out)
                return key, params, program, out

            async def finish(pending: _Full | None) -> None:
                if pending is not None:
                    _, params, program, out = pending
                    self._add(params, await out.get(), program)

            at_once = max(min(self.in_flight, self.num_trials), self._random_asks())
            while len(asked) < at_once:
                ask()
            for t in range(self.num_trials):
                trial, params, built, out = asked[t]
                score = await out.get()
                program = await built.get()
                self.study.tell(trial, score)
                self.trials.append(Trial(trial.number, params, score, not self.minibatch))
                self.stats.trials += 1
                if not self.minibatch:
                    if score > self.best_score:
                        self.best_score, self.best_program = score, program
                else:
                    key = _key(params)
                    self._means.setdefault(key, []).append(score)
                    self._first.setdefault(key, (params, program))
                    if (t + 1) % self.steps == 0:
                        await finish(full)
                        full = start_full()
                while len(asked) < min(self.num_trials, t + 1 + self.in_flight):
                    ask()
            await finish(full)
            if self.minibatch and self.num_trials % self.steps != 0:
                await finish(start_full())
        self.stats.best_score = self.best_score
        return self.best_program
