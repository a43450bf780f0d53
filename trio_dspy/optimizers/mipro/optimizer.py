"""``MIPROv2``: instructions and demo sets proposed, then searched with Optuna's TPE.

The algorithm is DSPy 3.3's:

0. settings: ``auto`` (``"light"``, ``"medium"``, ``"heavy"``) sets the
   number of candidates ``n`` (6, 12, 18), a valset sample (100, 300, 1000
   examples, seeded) and the number of trials,
   ``int(max(2 * variables * log2(n), 1.5 * n))`` with one variable per
   predictor for instructions and one for demos; minibatches only when the
   valset has more than 50 examples. Without a valset, the last 80% of the
   trainset becomes the valset.
1. ``n`` demo sets for every predictor: none (zero-shot), labelled only,
   bootstrapped from the trainset in order, and bootstrapped from seeded
   shuffles with a seeded number of demos (:class:`BootstrapFewShot`,
   :class:`LabeledFewShot`);
2. a summary of the trainset, then instruction proposals per predictor,
   each grounded on the summary, the program's code and its description,
   demos from one demo set and a random tip (:mod:`.propose`); candidate 0
   is the original instruction (DSPy generates a proposal for it and throws
   it away; it is not asked for here);
3. a Bayesian search over (instruction, demo set) per predictor with
   Optuna's seeded multivariate TPE, on minibatches, with periodic full
   evaluations of the best mean configuration (:mod:`.search`).

What differs is concurrency. The demo-set bootstraps, the dataset summary
and every proposal run at once under ``limit`` (each proposal waits only
for the demo sets it shows), and the search does not wait for them: the
default program is scored meanwhile, and a trial waits only for the
instruction and demo set it draws (TPE draws indices, not texts, so the
draws are the same). Several trials are scored at once, as many as
``limit`` can keep busy plus one (the first ones, which TPE draws at
random, all at once), and full evaluations run beside the next trials.
Trials are told to TPE in the order they were asked, so the same seed and
``limit`` with a model that answers each request the same way give the same
program whatever order the calls finish in (the number of trials in
flight follows ``limit``, and with it what TPE knows at each ask). TPE
proposes each trial without the scores of the trials still in flight, which
DSPy's sequential loop would have had, so early trials are closer to random.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any, Literal

import trio

from ...aliases import limit_alias, refuse_keywords
from ...checkpoint import entered
from ...errors import AdapterParseError, ConfigurationError, LMError, TrioDSPyError
from ...evaluate.evaluate import Metric
from ...groups import raise_single
from ...lm.base import BaseLM
from ...logs import get_logger
from ...modules.module import Module
from ...modules.predict import Predict
from ...primitives import Example
from ..base import ModuleT, Optimizer, check_trainset
from ..bootstrap import BootstrapFewShot
from ..labeled import LabeledFewShot
from ..slots import PrioritySlots
from ..stats import measure
from .prompts import TIPS
from .propose import Call, Demo, Later, Proposal, dataset_summary, program_source, propose
from .search import Scorer, Search, Trial
from .stats import MIPROStats

__all__ = ["AUTO_RUN_SETTINGS", "MIPROv2", "num_trials_for"]

log = get_logger(__name__)

Auto = Literal["light", "medium", "heavy"]

AUTO_RUN_SETTINGS: dict[str, dict[str, int]] = {
    "light": {"n": 6, "val_size": 100},
    "medium": {"n": 12, "val_size": 300},
    "heavy": {"n": 18, "val_size": 1000},
}
MIN_MINIBATCH_SIZE = 50
"""Under ``auto``, minibatches are used only for a valset larger than this."""


def num_trials_for(num_predictors: int, num_candidates: int, *, zeroshot: bool = False) -> int:
    """DSPy's number of trials: ``int(max(2 * variables * log2(n), 1.5 * n))``.

    There is one variable per predictor for its instruction, and one more for
    its demo set unless the run is zero-shot.
    """
    variables = num_predictors * (1 if zeroshot else 2)
    return int(max(2 * variables * math.log2(num_candidates), 1.5 * num_candidates))


# DSPy's compile() keywords with no counterpart here, and what to write instead.
_DSPY_ONLY = {
    "requires_permission_to_run": "the run starts at once; nothing asks for permission",
    "provide_traceback": "failures keep their exceptions; turn on logging for 'trio_dspy'",
    "minibatch": "minibatches follow minibatch_size= and the valset's size",
    "program_aware_proposer": "the proposer always sees the program",
    "data_aware_proposer": "the proposer always sees a summary of the data",
    "tip_aware_proposer": "the proposer always draws a tip",
    "fewshot_aware_proposer": "the proposer always sees the demo candidates",
}


class MIPROv2(Optimizer):
    """Optimize instructions and demos together, trials scored concurrently.

    ::

        mipro = td.MIPROv2(metric, auto="light")
        compiled = await mipro.compile(program, trainset=train)

    Args:
        metric: ``metric(example, prediction, trace=None)``: a float, a bool or
            ``td.Prediction(score=...)``; sync or async.
        prompt_model: the model that summarizes the data and proposes
            instructions (default: the configured model).
        auto: ``"light"``, ``"medium"`` or ``"heavy"``, or ``None`` to give
            ``num_candidates`` and ``num_trials`` yourself.
        num_candidates: demo sets and instructions per predictor (``auto=None``).
        num_trials: configurations to score (``auto=None``).
        max_bootstrapped_demos: bootstrapped demos per demo set.
        max_labeled_demos: labelled demos per demo set (both 0: zero-shot, only
            instructions are searched).
        minibatch_size: valset examples per trial.
        minibatch_full_eval_steps: trials between full evaluations.
        limit: the most program runs and prompt-model calls in flight.
        num_threads: DSPy's name for ``limit`` (deprecated: it warns).
        seed: seeds the valset sample, the demo sets, the tips, the minibatches
            and TPE.

    After :meth:`compile`, :attr:`stats` says what the run cost, :attr:`trials`
    lists every scored configuration, and :attr:`instruction_candidates` and
    :attr:`demo_candidates` hold what was searched.

    Raises:
        ValueError: ``auto`` is unknown, or ``auto`` and ``num_candidates`` /
            ``num_trials`` are given together or not at all, or a size is out of range.
    """

    def __init__(
        self,
        metric: Metric,
        *,
        prompt_model: BaseLM | None = None,
        auto: Auto | None = "light",
        num_candidates: int | None = None,
        num_trials: int | None = None,
        max_bootstrapped_demos: int = 4,
        max_labeled_demos: int = 4,
        minibatch_size: int = 35,
        minibatch_full_eval_steps: int = 5,
        limit: int = 16,
        seed: int = 9,
        num_threads: int | None = None,
    ) -> None:
        limit = limit_alias(limit, num_threads, "td.MIPROv2", default=16)
        if auto is not None and auto not in AUTO_RUN_SETTINGS:
            raise ValueError(
                f"Invalid value for auto: {auto!r}. "
                "Must be one of None, 'light', 'medium', 'heavy'."
            )
        if auto is None and num_candidates is not None and num_trials is None:
            advice = ", ".join(
                f"{num_trials_for(p, num_candidates)} for {p} predictor{'s' * (p > 1)}"
                for p in (1, 2, 3)
            )
            raise ValueError(
                "If auto is None, num_trials must also be provided. Given "
                f"num_candidates={num_candidates}, we'd recommend setting num_trials to about "
                f"{advice} (td.optimizers.mipro.num_trials_for)."
            )
        if auto is None and (num_candidates is None or num_trials is None):
            raise ValueError(
                "If auto is None, num_candidates must also be provided (and num_trials): "
                "or set auto='light', 'medium' or 'heavy'."
            )
        if auto is not None and (num_candidates is not None or num_trials is not None):
            raise ValueError(
                f"If auto is not None, num_candidates and num_trials cannot be set, since they "
                f"would be overridden by the auto settings. Please either set auto=None or do "
                f"not specify num_candidates and num_trials (got auto={auto!r}, "
                f"num_candidates={num_candidates}, num_trials={num_trials})."
            )
        for name, value, least in (
            ("num_candidates", num_candidates, 1),
            ("num_trials", num_trials, 1),
            ("max_bootstrapped_demos", max_bootstrapped_demos, 0),
            ("max_labeled_demos", max_labeled_demos, 0),
            ("minibatch_size", minibatch_size, 1),
            ("minibatch_full_eval_steps", minibatch_full_eval_steps, 1),
            ("limit", limit, 1),
        ):
            if value is not None and value < least:
                raise ValueError(f"{name} must be at least {least}, got {value}")
        self.metric = metric
        self.prompt_model = prompt_model
        self.auto = auto
        self.num_candidates = num_candidates
        self.num_trials = num_trials
        self.max_bootstrapped_demos = max_bootstrapped_demos
        self.max_labeled_demos = max_labeled_demos
        self.minibatch_size = minibatch_size
        self.minibatch_full_eval_steps = minibatch_full_eval_steps
        self.limit = limit
        self.seed = seed
        self.init_temperature = 1.0
        self.view_data_batch_size = 10
        self.stats: MIPROStats = MIPROStats()
        self.trials: list[Trial] = []
        self.instruction_candidates: list[list[str]] = []
        self.demo_candidates: list[list[list[Demo]]] | None = None

    async def compile(
        self,
        student: ModuleT,
        *,
        trainset: Sequence[Example],
        valset: Sequence[Example] | None = None,
        teacher: Module | None = None,
        max_bootstrapped_demos: int | None = None,
        max_labeled_demos: int | None = None,
        num_trials: int | None = None,
        seed: int | None = None,
        minibatch_size: int | None = None,
        **dspy_only: Any,
    ) -> ModuleT:
        """A copy of ``student`` with the instructions and demos of the best configuration.

        ``valset`` defaults to the last 80% of ``trainset`` (the rest is the
        trainset). ``teacher`` bootstraps the demo sets (default: the student).
        ``max_bootstrapped_demos``, ``max_labeled_demos``, ``num_trials``,
        ``seed`` and ``minibatch_size``, given here as DSPy's tutorials do,
        replace the optimizer's own settings.

        Raises:
            ConfigurationError: optuna is not installed.
            TrioDSPyError: the trainset or valset is unusable, the program has
                no predictors, the minibatch is larger than the valset, or
                every valset run of the student raised.
            TypeError: a DSPy keyword this method does not take (the message
                says what to write).
        """
        refuse_keywords("MIPROv2.compile", dspy_only, _DSPY_ONLY)
        given = {
            "max_bootstrapped_demos": max_bootstrapped_demos,
            "max_labeled_demos": max_labeled_demos,
            "num_trials": num_trials,
            "seed": seed,
            "minibatch_size": minibatch_size,
        }
        for name, value in given.items():
            if value is not None:
                setattr(self, name, value)
        await entered()
        try:
            import optuna
        except ImportError as exc:
            raise ConfigurationError(
                f"MIPROv2 searches with Optuna, which is not installed ({exc}): "
                "pip install 'trio_dspy[optimize]'"
            ) from exc
        examples = check_trainset(trainset)
        if not student.predictors():
            raise TrioDSPyError(
                "the program has no predictors (td.Predict, td.ChainOfThought, ...): "
                "MIPROv2 has no instructions or demos to optimize"
            )
        train, val = _split(examples, valset)
        zeroshot = self.max_bootstrapped_demos == 0 and self.max_labeled_demos == 0
        rng = random.Random(self.seed)
        if self.auto is not None:
            settings = AUTO_RUN_SETTINGS[self.auto]
            val = [val[i] for i in rng.sample(range(len(val)), min(settings["val_size"], len(val)))]
            minibatch = len(val) > MIN_MINIBATCH_SIZE
            n_fewshot = settings["n"]
            n_instr = n_fewshot if zeroshot else int(n_fewshot * 0.5)
            num_trials = num_trials_for(len(student.predictors()), n_fewshot, zeroshot=zeroshot)
        else:
            assert self.num_candidates is not None and self.num_trials is not None
            minibatch = True
            n_instr = n_fewshot = self.num_candidates
            num_trials = self.num_trials
        if minibatch and self.minibatch_size > len(val):
            raise TrioDSPyError(
                f"Minibatch size cannot exceed the size of the valset: minibatch_size="
                f"{self.minibatch_size}, valset of {len(val)}. Use a smaller minibatch_size "
                "or a larger valset."
            )
        self.stats = MIPROStats()
        self.trials = []
        slots = PrioritySlots(self.limit)
        with measure(self.stats):
            batch = self.minibatch_size if minibatch else len(val)
            try:
                async with trio.open_nursery() as nursery:
                    # The proposals run on while the default program is scored and the
                    # first trials run: a trial waits only for the candidates it uses.
                    instructions, sets = self._propose(
                        nursery, student, teacher, train, rng, slots, n_fewshot, n_instr, zeroshot
                    )
                    search = Search(
                        optuna=optuna,
                        seed=self.seed,
                        student=student,
                        instructions=instructions,
                        demos=None if zeroshot else sets,
                        scorer=Scorer(self.metric, val, slots, self.stats),
                        rng=rng,
                        num_trials=num_trials,
                        minibatch=minibatch,
                        minibatch_size=self.minibatch_size,
                        steps=self.minibatch_full_eval_steps,
                        in_flight=min(num_trials, math.ceil(self.limit / batch) + 1),
                        stats=self.stats,
                    )
                    try:
                        best = await search.run()
                    finally:
                        self.trials = search.trials
            except BaseExceptionGroup as group:  # the one failure, not a group of one
                raise_single(group)
            self.instruction_candidates = [[await c.get() for c in row] for row in instructions]
            self.demo_candidates = (
                None
                if zeroshot
                else [[(await s.get())[i] for s in sets] for i in range(len(student.predictors()))]
            )
        return best  # type: ignore[return-value]

    def _propose(
        self,
        nursery: trio.Nursery,
        student: Module,
        teacher: Module | None,
        train: list[Example],
        rng: random.Random,
        slots: PrioritySlots,
        n_fewshot: int,
        n_instr: int,
        zeroshot: bool,
    ) -> tuple[list[list[Later[str]]], list[Later[list[list[Demo]]]]]:
        """Steps 1 and 2, all at once, started in ``nursery``: each predictor's instruction
        candidates and the demo sets (each set: demos per predictor), to come."""
        # Zero-shot runs still bootstrap demos, to show the proposer (DSPy's 3 and 0).
        most_boot = 3 if zeroshot else self.max_bootstrapped_demos
        most_labeled = 0 if zeroshot else self.max_labeled_demos
        # Every random draw is made here, in DSPy's order, before anything runs.
        plans: list[tuple[str, list[Example], int]] = []
        for seed in range(-3, n_fewshot - 3):
            order = list(train)
            if seed == -3:
                plans.append(("zero-shot", order, 0))
            elif seed == -2 and most_labeled > 0:
                plans.append(("labeled", order, 0))
            elif seed == -1:
                plans.append(("bootstrap", order, most_boot))
            else:
                rng.shuffle(order)
                # DSPy's randint(1, 0) fails with no bootstrapped demos: then none are.
                size = rng.randint(1, most_boot) if most_boot >= 1 else 0
                plans.append(("bootstrap", order, size))
        predictors = student.predictors()
        count = min(n_instr, n_fewshot)
        proposals: list[Proposal] = []
        for i in range(len(predictors)):
            for j in range(count):
                tip = TIPS[rng.choice(list(TIPS))]
                rng.randint(0, 10**9)  # DSPy's rollout id: drawn so later draws match DSPy's
                if j:  # candidate 0 is the original instruction
                    proposals.append(Proposal(i, j, tip))
        instructions: list[list[Later[str]]] = [[Later() for _ in range(count)] for _ in predictors]
        for i, predictor in enumerate(predictors):  # candidate 0: the original instruction
            instructions[i][0].set(predictor.signature.instructions)
        sets: list[Later[list[list[Demo]]]] = [Later() for _ in plans]
        summary: Later[str | None] = Later()
        try:
            code: str | None = program_source(student)
        except (OSError, TypeError):  # no source to read (a class made at run time)
            code = None

        def caller(rank: int) -> Call:
            view = slots.view(rank)

            async def call(step: Predict, inputs: dict[str, Any]) -> str:
                step.lm = self.prompt_model
                token = object()
                await view.acquire_on_behalf_of(token)
                try:
                    prediction = await step(**inputs)
                finally:
                    view.release_on_behalf_of(token)
                return str(getattr(prediction, next(iter(step.signature.output_fields))))

            return call

        async def summarize() -> None:
            try:
                text: str | None = await dataset_summary(
                    train, self.view_data_batch_size, caller(0)
                )
            except Exception:  # as in DSPy: proposals go on without a summary
                text = None
            summary.set(text)

        async def bootstrap(k: int, kind: str, order: list[Example], size: int) -> None:
            program: Module
            if kind == "zero-shot":
                program = student.reset_copy()
            elif kind == "labeled":
                program = await LabeledFewShot(most_labeled).compile(student, trainset=order)
            else:
                optimizer = BootstrapFewShot(
                    self.metric, max_bootstrapped_demos=size, max_labeled_demos=most_labeled
                )
                try:
                    program = await optimizer.compile(
                        student, trainset=order, teacher=teacher, limiter=slots.view(1 + k)
                    )
                finally:
                    ran = optimizer.stats.run if optimizer.stats is not None else 0
                    self.stats.bootstrap_runs += ran
                    self.stats.metric_calls += ran
            sets[k].set([list(p.demos) for p in program.predictors()])
            self.stats.demo_sets += 1

        async def one(rank: int, proposal: Proposal) -> None:
            text = predictors[proposal.predictor].signature.instructions
            try:
                text = await propose(
                    proposal,
                    program=student,
                    code=code,
                    summary=summary,
                    sets=sets,
                    call=caller(rank),
                    # Each candidate its own temperature, so that equal prompts do
                    # not share a cache entry (DSPy gives each a rollout id).
                    temperature=self.init_temperature + 0.001 * proposal.demo_set,
                )
            except (AdapterParseError, LMError) as exc:
                # One proposal the prompt model could not write (a small model's
                # unparsable answer, a refused request) leaves that candidate the
                # original instruction, where DSPy would end the whole compile;
                # the search then weighs it like any other.
                self.stats.proposals_failed += 1
                log.warning(
                    "mipro.proposal_failed",
                    predictor=proposal.predictor,
                    candidate=proposal.demo_set,
                    error_type=type(exc).__name__,
                    error=str(exc)[:300],
                )
            else:
                self.stats.proposals += 1
            instructions[proposal.predictor][proposal.demo_set].set(text)

        nursery.start_soon(summarize)
        for k, (kind, order, size) in enumerate(plans):
            nursery.start_soon(bootstrap, k, kind, order, size)
        for r, proposal in enumerate(proposals):
            nursery.start_soon(one, 1 + len(plans) + r, proposal)
        return instructions, sets

    def __repr__(self) -> str:
        bound = (
            f"auto={self.auto!r}"
            if self.auto is not None
            else f"num_candidates={self.num_candidates}, num_trials={self.num_trials}"
        )
        return f"MIPROv2({bound}, limit={self.limit})"


def _split(
    examples: list[Example], valset: Sequence[Example] | None
) -> tuple[list[Example], list[Example]]:
    """The trainset and valset: without a valset, the last 80% of the trainset (at most 1000).

    Raises:
        TrioDSPyError: no valset and fewer than two examples, or an unusable valset.
    """
    if valset is not None:
        return examples, check_trainset(valset, "valset")
    if len(examples) < 2:
        raise TrioDSPyError(
            "Trainset must have at least 2 examples if no valset specified: give more "
            "examples or a valset"
        )
    size = min(1000, max(1, int(len(examples) * 0.80)))
    cutoff = len(examples) - size
    return examples[:cutoff], examples[cutoff:]
