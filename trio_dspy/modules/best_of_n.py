"""``BestOfN`` and ``Refine``: run a module several times, keep an answer a reward accepts.

Both call ``module`` up to ``N`` times with the same inputs and score each
prediction with ``reward_fn(inputs, prediction) -> float`` (sync or async).
The first prediction whose reward reaches ``threshold`` is returned; if none
does, the one with the highest reward (the earliest attempt among equals),
as in DSPy.

* :class:`BestOfN` runs the attempts at once, as child tasks of one nursery:
  the first to pass cancels the others while their model calls are still in
  flight, so a passing answer costs one model latency, not ``N``.
* :class:`Refine` runs them one after the other, and each attempt after a
  failed one is told what went wrong (the previous outputs and their reward,
  or the error) in an extra input field, ``hint_``.

Inside :func:`~trio_dspy.streamify` the attempts stream nothing (any of
them may be thrown away): the chosen prediction comes whole, last.

Attempt ``i`` (from 0) runs with ``temperature = 1.0 + 0.001 * i`` set in the
settings' ``lm_kwargs``, so attempts sample differently and never share a
cache entry (DSPy uses ``temperature=1.0`` and a rollout id to the same end).
A predictor that pins its own ``temperature`` keeps it: its own
``lm_kwargs`` come before the settings'.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs
import trio

from ..adapters.base import Adapter, Extraction, ToolTurn
from ..errors import AdapterParseError
from ..messages import LMRequest, LMResponse, Message, ResponseFormat, ToolCall, ToolSpec
from ..primitives import Prediction, Usage
from ..settings import context, current
from ..signature import InputField, Signature
from ..stream_listener import unheard
from ..telemetry.span import current_span
from .module import Module
from .predict import resolve_adapter

__all__ = [
    "HINT_FIELD",
    "AttemptCounts",
    "BestOfN",
    "BestOfNPrediction",
    "HintAdapter",
    "Refine",
    "RewardFn",
    "attempt_lm_kwargs",
]

RewardFn = Callable[[dict[str, Any], Prediction], float | Awaitable[float]]
"""``reward_fn(inputs, prediction) -> float``, or an async function returning one."""

HINT_FIELD = "hint_"
HINT_DESC = (
    "Feedback on a previous attempt at this same request, which fell short. "
    "Use it to give a better answer."
)


def attempt_lm_kwargs(index: int) -> dict[str, Any]:
    """The settings' ``lm_kwargs`` for attempt ``index`` (from 0): a temperature of its own."""
    return {**current().lm_kwargs, "temperature": 1.0 + 0.001 * index}


async def _score(reward_fn: RewardFn, inputs: Mapping[str, Any], prediction: Prediction) -> float:
    value = reward_fn(dict(inputs), prediction)
    if inspect.isawaitable(value):
        value = await value
    return float(value)


def _check_args(n: int, fail_count: int | None) -> int:
    if n < 1:
        raise ValueError(f"N must be at least 1, got {n!r}")
    if fail_count is None:
        return n
    if fail_count < 1:
        raise ValueError(f"fail_count must be at least 1 or None, got {fail_count!r}")
    return fail_count


class _Attempts(Module):
    """What BestOfN and Refine share: the module, how many attempts, the reward."""

    def __init__(
        self,
        module: Module,
        N: int,
        reward_fn: RewardFn,
        threshold: float,
        fail_count: int | None = None,
    ) -> None:
        self.fail_count = _check_args(N, fail_count)
        self.module = module
        self.N = N
        self.reward_fn = reward_fn
        self.threshold = threshold


class BestOfN(_Attempts):
    """Run ``module`` ``N`` times concurrently; return the first answer that passes.

    ::

        def one_word(inputs, pred):
            return 1.0 if len(pred.answer.split()) == 1 else 0.0

        best = td.BestOfN(td.ChainOfThought("question -> answer"), 5, one_word, 1.0)
        pred = await best(question="What is the capital of Belgium?")

    The ``N`` attempts start together as child tasks. The first (in time)
    whose reward reaches ``threshold`` is returned at once and the others are
    cancelled, their model calls abandoned in flight. If none reaches it, the
    prediction with the highest reward is returned (the earliest attempt
    among equals). Attempts differ by temperature (``1.0 + 0.001 * i`` for
    attempt ``i``), so they sample differently and never share a cache entry.

    The result is a :class:`BestOfNPrediction`: the chosen attempt's fields,
    ``usage`` summed over every attempt whose answer arrived (cancelled calls
    cost nothing counted, here or in ``td.track_usage``), and ``attempts``
    counting those completed, failed and cancelled.

    An attempt fails when the module or ``reward_fn`` raises an
    ``Exception``. The ``fail_count``-th failure (default ``N``: every attempt
    failed) cancels the attempts still running and is raised as it is.

    Args:
        module: the module to run, e.g. a :class:`~trio_dspy.Predict`.
        N: how many attempts.
        reward_fn: ``reward_fn(inputs, prediction) -> float``, sync or async.
        threshold: the reward that makes an attempt win.
        fail_count: how many failed attempts are tolerated before raising;
            ``None`` means ``N``.

    Raises:
        ValueError: ``N`` or ``fail_count`` is below 1 (from the constructor).
    """

    async def forward(self, **inputs: Any) -> Prediction:
        """Run the attempts and return the winning (or best) prediction, as a
        :class:`BestOfNPrediction`.

        Raises:
            Exception: the ``fail_count``-th failure of an attempt (the module's
                or ``reward_fn``'s exception, unchanged), or the last failure
                when every attempt failed.
        """
        scored: list[tuple[float, int, Prediction]] = []
        failures: list[Exception] = []
        usage = Usage()
        winner: Prediction | None = None
        fatal: Exception | None = None

        async def attempt(index: int, cancel_scope: trio.CancelScope) -> None:
            nonlocal winner, fatal
            try:
                with context(lm_kwargs=attempt_lm_kwargs(index)), unheard():
                    prediction: Prediction = await self.module(**inputs)
                usage.add(prediction.usage)
                reward = await _score(self.reward_fn, inputs, prediction)
            except Exception as exc:
                failures.append(exc)
                if fatal is None and winner is None and len(failures) >= self.fail_count:
                    fatal = exc
                    cancel_scope.cancel()
                return
            scored.append((reward, index, prediction))
            if fatal is None and winner is None and reward >= self.threshold:
                winner = prediction
                cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            for index in range(self.N):
                nursery.start_soon(attempt, index, nursery.cancel_scope)
        counts = AttemptCounts(
            completed=len(scored),
            failed=len(failures),
            cancelled=self.N - len(scored) - len(failures),
        )
        span = current_span()
        if span is not None:
            span.set_attributes(
                {f"trio_dspy.attempts.{k}": v for k, v in attrs.asdict(counts).items()}
            )
        if fatal is not None:
            raise fatal
        if winner is None and not scored:
            raise failures[-1]
        best = winner or max(scored, key=lambda s: (s[0], -s[1]))[2]
        return BestOfNPrediction.of(best, usage, counts)


@attrs.frozen
class AttemptCounts:
    """How the attempts of one :class:`BestOfN` call ended.

    Attributes:
        completed: attempts whose prediction arrived and was scored.
        failed: attempts whose module or ``reward_fn`` raised.
        cancelled: attempts cancelled in flight once the answer was known
            (their model calls never completed and cost no counted tokens).
    """

    completed: int
    failed: int
    cancelled: int


class BestOfNPrediction(Prediction):
    """What :class:`BestOfN` returns: the winning attempt's prediction, plus how the attempts went.

    Its fields (and ``completions``) are the winner's. ``usage`` is the sum over
    every attempt whose prediction arrived, the winner's included: what the
    search cost. Cancelled calls are not in it (nor in ``td.track_usage``):
    their answers never arrived. ``attempts`` says how many attempts
    completed, failed and were cancelled.
    """

    __slots__ = ("attempts",)

    def __init__(self, base: Mapping[str, Any] | None = None, /, **fields: Any) -> None:
        super().__init__(base, **fields)
        object.__setattr__(self, "attempts", AttemptCounts(0, 0, 0))

    @classmethod
    def of(cls, winner: Prediction, usage: Usage, counts: AttemptCounts) -> BestOfNPrediction:
        """``winner``'s fields and completions with the search's ``usage`` and ``counts``."""
        pred = cls(winner)
        object.__setattr__(pred, "_completions", winner._completions)
        object.__setattr__(pred, "usage", usage)
        object.__setattr__(pred, "attempts", counts)
        return pred

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "attempts": self.attempts}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        object.__setattr__(self, "attempts", state["attempts"])


class Refine(_Attempts):
    """Run ``module`` up to ``N`` times in turn, telling each attempt how the last fell short.

    ::

        refine = td.Refine(td.Predict("question -> answer"), 3, one_word, 1.0)
        pred = await refine(question="What is the capital of Belgium?")

    The first attempt sees the inputs alone. Every later one also gets an
    input field ``hint_`` describing the attempt before it: its outputs, its
    reward and the threshold it missed, or the error it raised. The hint
    reaches every predictor inside ``module`` through the settings' adapter
    (a ``HintAdapter`` around it); a predictor with an adapter pinned to
    it does not see the hint. (DSPy asks a model to write advice per
    predictor, an extra call per attempt; here the feedback is the facts
    themselves, at no extra cost.)

    The first attempt whose reward reaches ``threshold`` is returned; if none
    does, the one with the highest reward (the earliest among equals).
    Attempts differ by temperature (``1.0 + 0.001 * i`` for attempt ``i``).

    Args:
        module: the module to run.
        N: how many attempts at most.
        reward_fn: ``reward_fn(inputs, prediction) -> float``, sync or async.
        threshold: the reward that ends the search.
        fail_count: how many failed attempts (the module or ``reward_fn``
            raised) are tolerated before raising; ``None`` means ``N``.

    Raises:
        ValueError: ``N`` or ``fail_count`` is below 1 (from the constructor).
    """

    async def forward(self, **inputs: Any) -> Prediction:
        """Run attempts until one passes; return it, or the best.

        Raises:
            Exception: the ``fail_count``-th failure of an attempt (unchanged),
                or the last failure when every attempt failed.
        """
        best: tuple[float, Prediction] | None = None
        failures = 0
        hint: str | None = None
        last_error: Exception | None = None
        for index in range(self.N):
            overrides: dict[str, Any] = {"lm_kwargs": attempt_lm_kwargs(index)}
            if hint is not None:
                overrides["adapter"] = HintAdapter(resolve_adapter(None, current()), hint)
            try:
                with context(**overrides), unheard():
                    prediction: Prediction = await self.module(**inputs)
                reward = await _score(self.reward_fn, inputs, prediction)
            except Exception as exc:
                failures += 1
                if failures >= self.fail_count:
                    raise
                last_error = exc
                hint = failure_hint(index, exc)
                continue
            if reward >= self.threshold:
                return prediction
            if best is None or reward > best[0]:
                best = (reward, prediction)
            hint = reward_hint(index, prediction, reward, self.threshold)
        if best is None:
            assert last_error is not None
            raise last_error
        return best[1]


def reward_hint(index: int, prediction: Prediction, reward: float, threshold: float) -> str:
    """The feedback :class:`Refine` gives after attempt ``index`` scored below ``threshold``."""
    outputs = "\n".join(f"{name}: {value}" for name, value in prediction.items())
    return (
        f"Attempt {index + 1} answered:\n{outputs}\n"
        f"It scored {reward:g}, below the required {threshold:g}. "
        "Answer again, differently, so that it scores higher."
    )


def failure_hint(index: int, error: Exception) -> str:
    """The feedback :class:`Refine` gives after attempt ``index`` raised ``error``."""
    return (
        f"Attempt {index + 1} failed with {type(error).__name__}: {error}\n"
        "Answer again, avoiding that failure."
    )


class HintAdapter(Adapter):
    """Another adapter, with one more input field, ``hint_``, in every request.

    :class:`Refine` sets it as the settings' adapter to pass feedback to the
    predictors of the module it runs. Everything but the request is the
    wrapped adapter's.

    Args:
        inner: the adapter that formats and parses.
        hint: the text of the ``hint_`` field.
    """

    def __init__(self, inner: Adapter, hint: str) -> None:
        self.inner = inner
        self.hint = hint
        self.name = inner.name

    def _with_hint(
        self, signature: type[Signature], inputs: Mapping[str, Any]
    ) -> tuple[type[Signature], dict[str, Any]]:
        extended = signature.append(HINT_FIELD, InputField(desc=HINT_DESC), str)
        return extended, {**inputs, HINT_FIELD: self.hint}

    def format_request(
        self,
        signature: type[Signature],
        demos: Sequence[Mapping[str, Any]],
        inputs: Mapping[str, Any],
        *,
        params: Mapping[str, Any] | None = None,
        tools: Sequence[ToolSpec] | None = None,
    ) -> LMRequest:
        """The wrapped adapter's request for ``signature`` plus the ``hint_`` input.

        Raises:
            ValueError: as the wrapped adapter's ``format_request``.
        """
        extended, values = self._with_hint(signature, inputs)
        return self.inner.format_request(extended, demos, values, params=params, tools=tools)

    def format(
        self,
        signature: type[Signature],
        demos: Sequence[Mapping[str, Any]],
        inputs: Mapping[str, Any],
    ) -> list[Message]:
        """The wrapped adapter's messages, with the ``hint_`` input."""
        extended, values = self._with_hint(signature, inputs)
        return self.inner.format(extended, demos, values)

    def system_prompt(self, signature: type[Signature]) -> str:
        """The wrapped adapter's system prompt."""
        return self.inner.system_prompt(signature)

    def format_inputs(self, signature: type[Signature], values: Mapping[str, Any]) -> str:
        """The wrapped adapter's input rendering."""
        return self.inner.format_inputs(signature, values)

    def format_outputs(self, signature: type[Signature], values: Mapping[str, Any]) -> str:
        """The wrapped adapter's output rendering."""
        return self.inner.format_outputs(signature, values)

    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        """The wrapped adapter's parse.

        Raises:
            AdapterParseError: the completion does not parse.
        """
        return self.inner.parse(signature, completion)

    def parse_response(self, signature: type[Signature], response: LMResponse) -> dict[str, Any]:
        """The wrapped adapter's parse of a response.

        Raises:
            AdapterParseError: the response does not parse.
        """
        return self.inner.parse_response(signature, response)

    def extraction(self, signature: type[Signature]) -> Extraction | None:
        """The wrapped adapter's second request (a two-step format's)."""
        return self.inner.extraction(signature)

    def output_requirements(self, signature: type[Signature]) -> str:
        """The wrapped adapter's closing request."""
        return self.inner.output_requirements(signature)

    def response_format(self, signature: type[Signature]) -> ResponseFormat | None:
        """The wrapped adapter's structured-output format."""
        return self.inner.response_format(signature)

    def format_retry(
        self, completion: str, error: AdapterParseError, signature: type[Signature]
    ) -> list[Message]:
        """The wrapped adapter's re-ask after a parse failure."""
        return self.inner.format_retry(completion, error, signature)

    def structured_fallback(self) -> Adapter | None:
        """The wrapped adapter's structured re-ask, still with the ``hint_`` input."""
        fallback = self.inner.structured_fallback()
        return None if fallback is None else HintAdapter(fallback, self.hint)

    def tool_system_prompt(self, signature: type[Signature]) -> str:
        """The wrapped adapter's tool-calling system prompt."""
        return self.inner.tool_system_prompt(signature)

    def finish_spec(self, signature: type[Signature]) -> ToolSpec:
        """The wrapped adapter's ``finish`` tool."""
        return self.inner.finish_spec(signature)

    def parse_tool_turn(self, response: LMResponse) -> ToolTurn:
        """The wrapped adapter's reading of a tool-calling response."""
        return self.inner.parse_tool_turn(response)

    def parse_finish(self, signature: type[Signature], call: ToolCall) -> dict[str, Any]:
        """The wrapped adapter's reading of a ``finish`` call.

        Raises:
            AdapterParseError: an output is missing or does not fit its type.
        """
        return self.inner.parse_finish(signature, call)

    def format_tool_results(
        self, turn: ToolTurn, results: Sequence[tuple[str, str]]
    ) -> list[Message]:
        """The wrapped adapter's messages after tools ran."""
        return self.inner.format_tool_results(turn, results)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"
