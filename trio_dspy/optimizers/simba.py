"""``SIMBA``: stochastic introspective mini-batch ascent, with its runs in flight at once.

The algorithm is DSPy's (3.3):

1. each step takes the next ``bsize`` examples of a shuffled walk over the
   trainset (reshuffled when it wraps);
2. runs ``num_candidates`` trajectory models on each of them (the program's
   model at temperature 1.0, each with its own rollout id so a cache keeps
   their answers apart), the program of each run sampled by a softmax over
   the programs' mean scores (the top ``num_candidates`` and the student);
3. groups the runs by example into *buckets*, sorted by the gap between the
   best and worst score, then the best, then the best minus the mean;
4. for the buckets in that order, until ``num_candidates + 1`` candidates
   are made: copies a softmax-sampled program, drops a Poisson number of its
   demos, and applies a random strategy, :func:`append_a_demo` (the best
   run's calls become demos) or :func:`append_a_rule` (a model contrasts the
   best and worst runs and its advice is appended to the instructions);
5. scores the candidates on the same minibatch, and keeps the best as the
   step's winner;
6. at the end, scores evenly spaced winners (the student first) on the whole
   trainset and returns the best.

What differs is concurrency, and only that: a step's ``bsize *
num_candidates`` trajectory runs, its candidates' runs and the final
evaluation's runs are child tasks under one ``limit`` (rule requests, at
most ``num_candidates + 1`` a step, hold no slot), and the rule models of a
step are asked at once. Each bucket's random draws are made in DSPy's order
before its strategy runs (they never depend on a strategy's result), and
results are gathered in index order, so with a model that answers each
request the same way a seed gives the same program however the calls
interleave. DSPy's ``teacher_settings`` is not offered (a teacher is
refused), and ``num_threads`` is ``limit``. DSPy draws its Poisson numbers from numpy;
here a second seeded ``random.Random`` does (Knuth's method), so numpy is not
needed; the draws follow the same distribution, not DSPy's exact numbers.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from ..aliases import limit_alias
from ..checkpoint import entered
from ..errors import TrioDSPyError
from ..evaluate.evaluate import Metric, metric_value, run_in_order, score_of
from ..lm.base import BaseLM, LMStream
from ..messages import LMRequest, LMResponse
from ..modules.module import Module
from ..primitives import Example, Prediction
from ..settings import current, resolve_lm
from ..trace import collect_trace
from .base import ModuleT, Optimizer, check_trainset
from .simba_strategies import Outcome, append_a_demo, append_a_rule, poisson
from .stats import OptimizerStats, measure

__all__ = ["SIMBA"]


class _RolloutLM(BaseLM):
    """One trajectory model: ``inner`` at temperature 1.0 with its own rollout id.

    Calls go straight to ``inner`` (its usage, history and spans are its own).
    A predictor that pins its own ``temperature`` keeps it.
    """

    def __init__(self, inner: BaseLM, rollout_id: int, *, keep_temperature: bool) -> None:
        super().__init__(inner.model)
        self.inner = inner
        self.rollout_id = rollout_id
        self.keep_temperature = keep_temperature
        self.supports_n = inner.supports_n
        self.supports_tools = inner.supports_tools

    def _evolve(self, request: LMRequest) -> LMRequest:
        params = dict(request.params)
        if not self.keep_temperature:
            params["temperature"] = 1.0
        return attrs.evolve(request, params=params, rollout_id=self.rollout_id)

    async def send(self, request: LMRequest) -> LMResponse:  # pragma: no cover - request() is used
        return await self.inner.send(self._evolve(request))

    async def request(self, request: LMRequest, *, trace_content: bool = False) -> LMResponse:
        return await self.inner.request(self._evolve(request), trace_content=trace_content)

    @asynccontextmanager
    async def stream(
        self, request: LMRequest, *, trace_content: bool = False
    ) -> AsyncIterator[LMStream]:
        async with self.inner.stream(self._evolve(request), trace_content=trace_content) as s:
            yield s


@attrs.frozen
class _BucketPlan:
    """What one bucket's candidate was decided to be, before any strategy runs."""

    bucket: int
    source: int
    drop: tuple[int, ...]
    strategy: str


class SIMBA(Optimizer):
    """Improve a program by contrasting its good and bad runs on minibatches.

    ::

        simba = td.SIMBA(metric, bsize=32, num_candidates=6, max_steps=8)
        compiled = await simba.compile(program, trainset=train)

    Args:
        metric: ``metric(example, prediction, trace=None)`` returning a float,
            a bool or ``td.Prediction(score=..., **info)``; the prediction's
            other fields (``feedback``, say) are shown to the rule model as
            reward info. Sync or async. A run whose program or metric raises
            scores 0.0.
        bsize: examples per minibatch (at most the trainset's size).
        num_candidates: trajectory models per example, and new candidates
            per step minus one.
        max_steps: minibatch steps.
        max_demos: demos a predictor keeps before SIMBA starts dropping them;
            ``0`` turns :func:`append_a_demo` off.
        limit: the most program runs in flight.
        num_threads: DSPy's name for ``limit`` (deprecated: it warns).
        seed: seeds every random choice.
        temperature_for_sampling: softmax temperature choosing the program of
            each trajectory run.
        temperature_for_candidates: softmax temperature choosing the program
            each candidate starts from.
        prompt_model: the model that offers rules (default: the settings' model).
        demo_input_field_maxlen: demo inputs are cut to this many characters.

    After :meth:`compile`, :attr:`stats` says what the run cost, and
    :attr:`candidate_programs` holds the final candidates with their scores,
    best first.

    Raises:
        ValueError: a setting is out of range.
    """

    def __init__(
        self,
        metric: Metric,
        *,
        bsize: int = 32,
        num_candidates: int = 6,
        max_steps: int = 8,
        max_demos: int = 4,
        limit: int = 16,
        seed: int = 0,
        temperature_for_sampling: float = 0.2,
        temperature_for_candidates: float = 0.2,
        prompt_model: BaseLM | None = None,
        demo_input_field_maxlen: int = 100_000,
        num_threads: int | None = None,
    ) -> None:
        limit = limit_alias(limit, num_threads, "td.SIMBA", default=16)
        for name, value in (
            ("bsize", bsize),
            ("num_candidates", num_candidates),
            ("max_steps", max_steps),
            ("limit", limit),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if max_demos < 0:
            raise ValueError(f"max_demos must be 0 or more, got {max_demos}")
        for name, temp in (
            ("temperature_for_sampling", temperature_for_sampling),
            ("temperature_for_candidates", temperature_for_candidates),
        ):
            if not temp > 0:
                raise ValueError(f"{name} must be above 0, got {temp}")
        if prompt_model is not None and not isinstance(prompt_model, BaseLM):
            raise TypeError(
                f"prompt_model must be a language model (td.LM(...)), got {prompt_model!r}"
            )
        self.metric = metric
        self.bsize = bsize
        self.num_candidates = num_candidates
        self.max_steps = max_steps
        self.max_demos = max_demos
        self.limit = limit
        self.seed = seed
        self.temperature_for_sampling = temperature_for_sampling
        self.temperature_for_candidates = temperature_for_candidates
        self.prompt_model = prompt_model
        self.demo_input_field_maxlen = demo_input_field_maxlen
        self.strategies = ["append_a_demo", "append_a_rule"] if max_demos > 0 else ["append_a_rule"]
        self.stats = OptimizerStats()
        self.candidate_programs: list[tuple[float, Module]] = []

    async def compile(
        self,
        student: ModuleT,
        *,
        trainset: Sequence[Example],
        valset: Sequence[Example] | None = None,
        teacher: Module | None = None,
    ) -> ModuleT:
        """The best program found; ``student`` is left as it was.

        ``valset`` is not used, as in DSPy: the minibatches and the final
        choice all come from ``trainset``.

        Raises:
            TrioDSPyError: the trainset is empty or smaller than ``bsize``, its
                examples do not mark inputs, the program has no predictors,
                or a teacher is given.
            trio_dspy.errors.ConfigurationError: no model is configured.
        """
        await entered()
        if teacher is not None:
            raise TrioDSPyError(
                "SIMBA takes no teacher: its trajectories come from the student's own model"
            )
        train = check_trainset(trainset)
        if self.bsize > len(train):
            raise TrioDSPyError(
                f"bsize={self.bsize} is larger than the trainset ({len(train)} examples): "
                f"give SIMBA(bsize=...) at most {len(train)}, or more examples"
            )
        if not student.named_predictors():
            raise TrioDSPyError(
                "the program has no predictors (td.Predict, td.ChainOfThought, ...): "
                "SIMBA has nothing to improve"
            )
        settings = current()
        prompt_model = self.prompt_model or resolve_lm(None, settings)
        # The trajectory models wrap each predictor's model, resolved now so a
        # missing one is reported before anything runs.
        models = {name: resolve_lm(p.lm, settings) for name, p in student.named_predictors()}
        self.stats = OptimizerStats()
        self.candidate_programs = []
        with measure(self.stats):
            search = _Search(self, student, train, prompt_model, models)
            best = await search.run()
        return best  # type: ignore[return-value]

    def __repr__(self) -> str:
        return (
            f"SIMBA(bsize={self.bsize}, num_candidates={self.num_candidates}, "
            f"max_steps={self.max_steps}, limit={self.limit})"
        )


def _mean_score(outcomes: Sequence[Outcome]) -> float:
    return statistics.fmean(float(o.score) for o in outcomes)


def _percentile(values: Sequence[float], q: float) -> float:
    """numpy's default (linear) percentile."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class _Search:
    """One compile: the state DSPy keeps in ``compile``'s locals."""

    def __init__(
        self,
        simba: SIMBA,
        student: Module,
        train: list[Example],
        prompt_model: BaseLM,
        models: Mapping[str, BaseLM],
    ) -> None:
        self.simba = simba
        self.train = train
        self.prompt_model = prompt_model
        self.models = models
        self.rng = random.Random(simba.seed)
        # DSPy draws its Poisson numbers from numpy's generator: a second
        # stream, seeded apart so its draws are not the first stream's.
        self.poisson_rng = random.Random(f"{simba.seed}:poisson")
        self.slots = trio.CapacityLimiter(simba.limit)
        first = student.deepcopy()
        self.programs: list[Module] = [first]
        self.scores: dict[int, list[float]] = {0: []}  # the student's stays empty, as in DSPy
        self.winners: list[Module] = [first]

    # ------------------------------------------------------------------ helpers
    def _mean(self, index: int) -> float:
        scores = self.scores[index]
        return sum(scores) / len(scores) if scores else 0.0

    def _top_plus_baseline(self, k: int) -> list[int]:
        ranked = sorted(range(len(self.programs)), key=self._mean, reverse=True)[:k]
        if 0 not in ranked:
            ranked[-1] = 0
        return list(dict.fromkeys(ranked))

    def _softmax_sample(self, indices: list[int], temperature: float) -> int:
        # Shifted by the largest mean: the same softmax, and no overflow for
        # metrics that score far above 1.
        top = max(self._mean(i) for i in indices)
        weights = [math.exp((self._mean(i) - top) / temperature) for i in indices]
        total = sum(weights)
        if total <= 0:  # pragma: no cover - the largest weight is 1
            return self.rng.choice(indices)
        return self.rng.choices(indices, weights=[w / total for w in weights], k=1)[0]

    def _trajectory_program(self, source: int, rollout: int) -> Module:
        program = self.programs[source].deepcopy()
        for name, predictor in program.named_predictors():
            inner = self.models[name]
            keep = "temperature" in getattr(predictor, "lm_kwargs", {})
            predictor.lm = _RolloutLM(inner, rollout, keep_temperature=keep)
        return program

    async def _outcome(self, program: Module, example: Example) -> Outcome:
        """Run ``program`` on ``example`` and score it, as DSPy's ``wrap_program``."""
        names = {id(p): n for n, p in program.named_predictors()}
        prediction: Prediction | None = None
        with collect_trace() as trace:
            try:
                prediction = await program(**example.inputs())
            except Exception:  # a failed run scores 0.0, as in DSPy
                prediction = None
        steps = [
            (names[id(p)], dict(inputs), dict(outputs))
            for p, inputs, outputs in trace
            if id(p) in names
        ]
        self.simba.stats.metric_calls += 1
        metadata: dict[str, Any] = {}
        try:
            value = await metric_value(self.simba.metric, example, prediction, None)
            score = score_of(value, prediction, None, None)
            if isinstance(value, Mapping):
                metadata = {k: v for k, v in value.items() if k != "score"}
        except Exception:  # as DSPy: a metric that raises scores 0.0
            score = 0.0
        shown = None if prediction is None else dict(prediction)
        return Outcome(example, shown, steps, score, metadata)

    async def _run_all(self, jobs: Sequence[tuple[Module, Example]]) -> list[Outcome]:
        """Every ``(program, example)`` job under the shared slots; results in job order."""
        results: list[Outcome | None] = [None] * len(jobs)

        async def one(index: int, _: trio.CancelScope) -> None:
            program, example = jobs[index]
            results[index] = await self._outcome(program, example)

        await run_in_order(len(jobs), one, self.slots)
        return [r for r in results if r is not None]

    # ------------------------------------------------------------------ the loop
    async def run(self) -> Module:
        simba = self.simba
        order = list(range(len(self.train)))
        self.rng.shuffle(order)
        position = 0
        for _step in range(simba.max_steps):
            if position + simba.bsize > len(self.train):
                self.rng.shuffle(order)
                position = 0
            batch = [self.train[i] for i in order[position : position + simba.bsize]]
            position += simba.bsize
            await self._step(batch)
        return await self._final()

    async def _step(self, batch: list[Example]) -> None:
        simba = self.simba
        top = self._top_plus_baseline(simba.num_candidates)
        jobs = []
        for rollout in range(simba.num_candidates):  # model-major, as DSPy
            for example in batch:
                source = self._softmax_sample(top, simba.temperature_for_sampling)
                jobs.append((self._trajectory_program(source, rollout), example))
        outcomes = await self._run_all(jobs)
        scores = [float(o.score) for o in outcomes]
        p10, p90 = _percentile(scores, 10), _percentile(scores, 90)
        buckets = []
        for k in range(len(batch)):
            bucket = sorted(outcomes[k :: len(batch)], key=lambda o: o.score, reverse=True)
            values = [float(o.score) for o in bucket]
            best, worst = values[0], values[-1]
            key = (best - worst, best, best - statistics.fmean(values))
            buckets.append((bucket, key))
        buckets.sort(key=lambda b: b[1], reverse=True)
        candidates = await self._candidates([b for b, _ in buckets], p10, p90)
        if not candidates:
            return
        evaluated = await self._run_all([(c, ex) for c in candidates for ex in batch])
        means = []
        for c in range(len(candidates)):
            chunk = evaluated[c * len(batch) : (c + 1) * len(batch)]
            means.append(statistics.fmean(float(o.score) for o in chunk))
        best = max(range(len(candidates)), key=lambda c: (means[c], -c))
        self.winners.append(candidates[best].deepcopy())
        for c, candidate in enumerate(candidates):
            index = len(self.programs)
            self.programs.append(candidate)
            chunk = evaluated[c * len(batch) : (c + 1) * len(batch)]
            self.scores[index] = [float(o.score) for o in chunk]

    def _plan(self, bucket: int) -> _BucketPlan:
        """The draws for one bucket, in DSPy's order: source, drop count, drops, strategy."""
        simba = self.simba
        source = self._softmax_sample(
            self._top_plus_baseline(simba.num_candidates), simba.temperature_for_candidates
        )
        predictors = self.programs[source].predictors()
        divisor = simba.max_demos if simba.max_demos > 0 else 3
        demos = max((len(p.demos) for p in predictors), default=0)
        count = min(max(poisson(self.poisson_rng, demos / divisor), int(demos >= divisor)), demos)
        drop = tuple(self.rng.randrange(demos) for _ in range(count))
        return _BucketPlan(bucket, source, drop, self.rng.choice(simba.strategies))

    async def _candidates(
        self, buckets: list[list[Outcome]], p10: float, p90: float
    ) -> list[Module]:
        """Candidates from the buckets in order, the strategies of a wave run at once.

        A wave plans as many buckets as candidates are still wanted; a bucket
        whose strategy raised is dropped and the next wave plans more. The
        draws do not depend on the strategies' results, so they are DSPy's.
        """
        wanted = self.simba.num_candidates + 1
        made: dict[int, Module] = {}
        following = 0
        while len(made) < wanted and following < len(buckets):
            stop = min(len(buckets), following + wanted - len(made))
            plans = [self._plan(b) for b in range(following, stop)]
            following = stop
            built: dict[int, Module] = {}

            async def build(plan: _BucketPlan, built: dict[int, Module]) -> None:
                candidate = self.programs[plan.source].deepcopy()
                for predictor in candidate.predictors():
                    predictor.demos = [
                        d for j, d in enumerate(predictor.demos) if j not in plan.drop
                    ]
                try:
                    if plan.strategy == "append_a_demo":
                        append_a_demo(
                            buckets[plan.bucket],
                            candidate,
                            p10=p10,
                            maxlen=self.simba.demo_input_field_maxlen,
                        )
                    else:
                        await append_a_rule(
                            buckets[plan.bucket],
                            candidate,
                            p10=p10,
                            p90=p90,
                            prompt_model=self.prompt_model,
                        )
                except Exception:  # as DSPy: a strategy that fails makes no candidate
                    return
                built[plan.bucket] = candidate

            async with trio.open_nursery() as nursery:
                for plan in plans:
                    nursery.start_soon(build, plan, built)
            made.update(built)
        return [made[b] for b in sorted(made)][:wanted]

    async def _final(self) -> Module:
        simba = self.simba
        last = len(self.winners) - 1
        spread = simba.num_candidates + 1
        if last < 1:
            picks = [0] * spread
        else:  # evenly spaced, the student and the last winner included
            picks = [round(i * last / (spread - 1)) for i in range(spread)]
        chosen = [self.winners[i].deepcopy() for i in dict.fromkeys(picks)]
        outcomes = await self._run_all([(p, ex) for p in chosen for ex in self.train])
        size = len(self.train)
        means = [_mean_score(outcomes[k * size : (k + 1) * size]) for k in range(len(chosen))]
        best = max(range(len(chosen)), key=lambda k: (means[k], -k))
        ranked = sorted(range(len(chosen)), key=lambda k: (-means[k], k))
        simba.candidate_programs = [(means[k], chosen[k]) for k in ranked]
        return chosen[best].deepcopy()
