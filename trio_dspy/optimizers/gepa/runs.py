"""Running one candidate on examples: scores, traces and feedback, each run journaled.

A *candidate* is the instructions of every predictor (``{name: text}``); its
program is a copy of the student with those instructions. A run executes the
program on one example and scores it with the metric (called with
``trace=None``, as DSPy's scoring does). A *traced* run also keeps, for each
predictor call, its inputs, its outputs and the metric's feedback on that
call (``metric(gold, pred, trace, pred_name, pred_trace)``): what reflection
shows the model. Feedback calls are not counted as metric calls (DSPy
counts only scoring).

Every finished run is written to the journal, so a resumed compile reads it
back instead of running it again. A program or metric that raises scores
``failure_score``; the run is kept, marked failed, with the error's text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import trio

from ...evaluate.evaluate import Limiter, Metric, run_in_order
from ...evaluate.feedback import call_feedback_metric
from ...modules.module import Module
from ...primitives import Example
from ...trace import collect_trace
from ...types import unstructure
from ..stats import OptimizerStats
from .journal import Journal, fingerprint

__all__ = ["Candidate", "Runner", "Step", "Tally", "build_program"]

Candidate = Mapping[str, str]


def build_program(student: Module, candidate: Candidate) -> Module:
    """A copy of ``student`` whose predictors have ``candidate``'s instructions."""
    program = student.deepcopy()
    for name, predictor in program.named_predictors():
        if name in candidate:
            predictor.signature = predictor.signature.with_instructions(candidate[name])
    return program


def _jsonable(value: Any) -> Any:
    """``value`` as JSON-ready data (its repr where it has no JSON form)."""
    try:
        data = unstructure(value)
        json.dumps(data)
    except (TypeError, ValueError, RecursionError):
        return repr(value)
    return data


@attrs.frozen
class Step:
    """One predictor call in a traced run, as reflection shows it."""

    name: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    feedback: str


@attrs.frozen
class Run:
    """One example run: its score, whether the program or metric failed, and its steps."""

    score: float
    failed: bool = False
    error: str | None = None
    steps: tuple[Step, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "failed": self.failed,
            "error": self.error,
            "steps": [attrs.asdict(s) for s in self.steps],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Run:
        return cls(
            float(data["score"]),
            bool(data.get("failed")),
            data.get("error"),
            tuple(Step(**s) for s in data.get("steps") or ()),
        )


@attrs.define
class Tally:
    """The metric calls one piece of work really made (journal replays not included)."""

    live: int = 0


class Runner:
    """Runs candidates on examples, through shared slots, with a journal.

    Args:
        student: the program whose copies run.
        metric: the (feedback) metric.
        journal: where finished runs are recorded and read back.
        failure_score: the score of a run whose program or metric raised.
        stats: counts metric calls made, replayed and saved.
    """

    def __init__(
        self,
        student: Module,
        metric: Metric,
        journal: Journal,
        *,
        failure_score: float,
        stats: OptimizerStats,
    ) -> None:
        self.student = student
        self.metric = metric
        self.journal = journal
        self.failure_score = failure_score
        self.stats = stats
        self._programs: dict[str, Module] = {}
        self._in_flight: dict[str, trio.Event] = {}

    def program(self, candidate: Candidate) -> Module:
        """The program of ``candidate`` (built once)."""
        key = fingerprint(dict(candidate))
        if key not in self._programs:
            self._programs[key] = build_program(self.student, candidate)
        return self._programs[key]

    async def run(
        self,
        candidate: Candidate,
        split: str,
        index: int,
        example: Example,
        *,
        traced: bool,
        tally: Tally | None = None,
    ) -> Run:
        """Run ``candidate`` on one example (or read the run back from the journal);
        a metric call really made is counted in ``tally`` too."""
        key = ["run", fingerprint(dict(candidate)), split, index, traced]
        flight = json.dumps(key)
        while True:
            saved = self.journal.get(key)
            if saved is None and not traced:  # a traced run holds the score too
                saved = self.journal.get([*key[:-1], True])
            if saved is not None:
                self.stats.metric_calls_replayed += 1
                await trio.lowlevel.checkpoint()
                return Run.from_json(saved)
            # The same run in flight elsewhere (two iterations sharing a parent
            # and a minibatch): wait for it rather than make it twice.
            pending = self._in_flight.get(flight)
            if pending is None:
                break
            await pending.wait()  # then read it back; if it was cancelled, run it here
        done = self._in_flight[flight] = trio.Event()
        try:
            run = await self._live(candidate, index, example, traced=traced)
            self.stats.metric_calls += 1
            if tally is not None:
                tally.live += 1
            await self.journal.put(key, run.to_json())
        finally:
            del self._in_flight[flight]
            done.set()
        return run

    async def _live(
        self, candidate: Candidate, index: int, example: Example, *, traced: bool
    ) -> Run:
        program = self.program(candidate)
        names = {id(p): n for n, p in program.named_predictors()}
        try:
            with collect_trace() as trace:
                prediction = await program(**example.inputs())
            scored = await call_feedback_metric(self.metric, example, prediction, index=index)
        except Exception as exc:  # the program or the metric failed: a failed run, kept
            return Run(self.failure_score, failed=True, error=f"{type(exc).__name__}: {exc}")
        if not traced:
            return Run(scored.score)
        steps = []
        for predictor, inputs, outputs in trace:
            name = names.get(id(predictor))
            if name is None:
                continue
            try:
                feedback = await call_feedback_metric(
                    self.metric,
                    example,
                    prediction,
                    trace=trace,
                    pred_name=name,
                    pred_trace=[(predictor, inputs, outputs)],
                    index=index,
                )
                text = feedback.feedback
            except Exception as exc:  # feedback is advice: a failure leaves a note, not a hole
                text = f"(the metric failed to give feedback: {type(exc).__name__}: {exc})"
            steps.append(
                Step(
                    name,
                    {k: _jsonable(v) for k, v in dict(inputs).items()},
                    {k: _jsonable(v) for k, v in dict(outputs).items()},
                    text if text is not None else f"This trajectory got a score of {scored.score}.",
                )
            )
        return Run(scored.score, steps=tuple(steps))

    async def evaluate(
        self,
        candidate: Candidate,
        split: str,
        indices: Sequence[int],
        examples: Sequence[Example],
        slots: Limiter,
        *,
        traced: bool = False,
        on_run: Callable[[int, Run, trio.CancelScope], None] | None = None,
        tally: Tally | None = None,
    ) -> dict[int, Run]:
        """Run ``candidate`` on ``examples[k]`` for each ``k`` in ``indices``, concurrently.

        Each run holds one of ``slots`` while it runs. ``on_run(position,
        run, scope)`` is called as each finishes and may cancel ``scope`` to
        stop the rest (they are counted as saved). Metric calls really made are
        counted in ``tally`` too. Returns the finished runs
        by position in ``indices`` (all of them unless cancelled).
        """
        finished: dict[int, Run] = {}

        async def one(position: int, scope: trio.CancelScope) -> None:
            index = indices[position]
            run = await self.run(
                candidate, split, index, examples[index], traced=traced, tally=tally
            )
            finished[position] = run
            if on_run is not None:
                on_run(position, run, scope)

        await run_in_order(len(indices), one, slots)
        self.stats.metric_calls_saved += len(indices) - len(finished)
        return finished
