"""Guardrails: checks that run beside a module (or before a tool) and can stop it.

::

    async def no_secrets(question: str) -> bool:
        return "password" in question.lower()   # True trips

    safe = td.guarded(agent, input=[no_secrets], output=[looks_polite])
    await safe(question="...")   # raises td.errors.GuardrailTripped when one trips

A guardrail is a function (sync or async) or a trio_dspy module (a ``Predict``
classifier, say). Its verdict is ``True`` (trip) or ``False`` (pass), or a
:class:`GuardrailResult` carrying ``info``; a module's verdict is the boolean
``tripped`` field of its prediction (its other fields become ``info``).

What a guardrail receives:

* input guardrails: the module's inputs **as keyword arguments** (a function
  that wants them all takes ``**inputs``); a module guardrail receives those
  of its signature's input fields that the inputs have;
* output guardrails: a function receives the prediction (one positional
  argument); a module guardrail receives, as keywords, the prediction's
  fields and the inputs (the prediction's win) its signature asks for;
* tool guardrails (``td.Tool(fn, guardrails=[...])``): the call's validated
  arguments as keyword arguments, before the tool runs.

Input guardrails run concurrently with the module, as child tasks of one
nursery: the first trip cancels the module (its LM requests are abandoned,
its tools stopped) and the other guardrails, and raises
:class:`~trio_dspy.errors.GuardrailTripped`. The module's result is returned
only once every input guardrail has passed. ``input_mode="before"`` runs the
input guardrails (concurrently among themselves) first and starts the module
only if all pass: slower, but nothing is spent on a request that trips.
Output guardrails run concurrently on the prediction.

A guardrail that raises is not a trip: the run fails with that error (the
module is cancelled just the same). A sync guardrail runs inline on the event
loop, so keep it quick; put slow or blocking checks in an ``async def`` (with
``trio.to_thread.run_sync`` for blocking work). A guardrail that never
returns holds the run; bound it with the caller's deadline
(``trio.fail_after``) as any other call.

Each check is a ``guardrail {name}`` span (attributes ``trio_dspy.guardrail.stage``
and ``trio_dspy.guardrail.tripped``); a module guardrail's LM calls count in
:func:`~trio_dspy.track_usage` like any other.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import attrs
import trio

from .errors import GuardrailError, GuardrailTripped
from .groups import raise_single
from .modules.module import Module
from .telemetry.span import start_span

__all__ = ["Guarded", "GuardrailResult", "check_guardrails", "guarded"]

Stage = Literal["input", "output", "tool"]
Guardrail = Callable[..., Any] | Module


@attrs.frozen
class GuardrailResult:
    """A guardrail's verdict: ``tripped`` and what to report with it.

    ``info`` is any value (a reason, a score) carried to
    :attr:`GuardrailTripped.info <trio_dspy.errors.GuardrailTripped>`.
    ``halt`` matters for tool guardrails only: by default a tripped tool call
    becomes the agent's observation (the model can try something else);
    ``halt=True`` ends the agent's run with the error instead.
    """

    tripped: bool
    info: Any = None
    halt: bool = False


def guardrail_name(guard: Guardrail) -> str:
    """The name a guardrail is reported by: its ``name``, ``__name__`` or class name."""
    name = getattr(guard, "name", None) or getattr(guard, "__name__", None)
    return str(name) if name else type(guard).__name__


def _verdict(name: str, value: Any) -> GuardrailResult:
    """A guardrail's return value as a :class:`GuardrailResult`."""
    if isinstance(value, GuardrailResult):
        return value
    if isinstance(value, bool):
        return GuardrailResult(tripped=value)
    fields = value.to_dict() if callable(getattr(value, "to_dict", None)) else None
    if isinstance(fields, dict) and isinstance(fields.get("tripped"), bool):
        info = {k: v for k, v in fields.items() if k != "tripped"}
        return GuardrailResult(tripped=fields["tripped"], info=info or None)
    raise GuardrailError(
        f"guardrail {name} returned {type(value).__name__}, not a verdict: return True "
        "(trip) or False (pass), a td.GuardrailResult, or (a module) a prediction with "
        "a boolean `tripped` field"
    )


def _module_kwargs(guard: Module, values: Mapping[str, Any]) -> dict[str, Any]:
    """The values a module guardrail's signature asks for (all of them if it has none)."""
    signature = getattr(guard, "signature", None)
    wanted = getattr(signature, "input_fields", None)
    if not isinstance(wanted, Mapping):
        return dict(values)
    return {k: v for k, v in values.items() if k in wanted}


async def _run_one(
    guard: Guardrail, stage: Stage, inputs: Mapping[str, Any], prediction: Any
) -> GuardrailResult:
    """Run one guardrail inside its span and return its verdict."""
    name = guardrail_name(guard)
    with start_span(f"guardrail {name}") as span:
        if span.is_recording:
            span.set_attribute("trio_dspy.guardrail.stage", stage)
        if isinstance(guard, Module):
            values = dict(inputs)
            if stage == "output":
                values.update(prediction.to_dict() if hasattr(prediction, "to_dict") else {})
            value = await guard(**_module_kwargs(guard, values))
        else:
            value = guard(prediction) if stage == "output" else guard(**inputs)
            if inspect.isawaitable(value):
                value = await value
            else:
                await trio.lowlevel.checkpoint()  # a sync guardrail still lets others run
        verdict = _verdict(name, value)
        if span.is_recording:
            span.set_attribute("trio_dspy.guardrail.tripped", verdict.tripped)
        return verdict


def _tripped(name: str, stage: Stage, verdict: GuardrailResult) -> GuardrailTripped:
    detail = "" if verdict.info is None else f": {verdict.info!r}"
    return GuardrailTripped(
        f"{stage} guardrail {name} tripped{detail}",
        guardrail=name,
        stage=stage,
        info=verdict.info,
        halt=verdict.halt,
    )


async def check_guardrails(
    guards: Sequence[Guardrail],
    stage: Stage,
    inputs: Mapping[str, Any],
    prediction: Any = None,
    *,
    beside: Callable[[], Any] | None = None,
) -> Any:
    """Run ``guards`` concurrently (and ``beside()`` with them); return what ``beside`` returned.

    The first trip cancels everything still running and raises
    :class:`~trio_dspy.errors.GuardrailTripped`; a guardrail's or ``beside``'s
    own error propagates as itself (the rest cancelled).

    Raises:
        GuardrailTripped: a guardrail tripped.
        GuardrailError: a guardrail returned something that is not a verdict.
        Exception: whatever a guardrail or ``beside`` raised.
    """
    trip: list[GuardrailTripped] = []
    result: list[Any] = []

    async def check(guard: Guardrail, cancel: trio.CancelScope) -> None:
        verdict = await _run_one(guard, stage, inputs, prediction)
        if verdict.tripped and not trip:
            trip.append(_tripped(guardrail_name(guard), stage, verdict))
            cancel.cancel()  # stop the module and the other guardrails now

    try:
        async with trio.open_nursery() as nursery:
            for guard in guards:
                nursery.start_soon(check, guard, nursery.cancel_scope)
            if beside is not None:
                result.append(await beside())
    except BaseExceptionGroup as group:
        raise_single(group)
    if trip:
        raise trip[0]
    return result[0] if result else None


@attrs.define(eq=False)
class _Config:
    input: tuple[Guardrail, ...]
    output: tuple[Guardrail, ...]
    input_mode: Literal["concurrent", "before"]


class Guarded(Module):
    """A module run under guardrails: what :func:`guarded` returns.

    ``module`` is the guarded module (its predictors are this module's, so
    optimizers and ``save``/``load`` see them under ``module.``).
    """

    def __init__(
        self,
        module: Module,
        input: Sequence[Guardrail],
        output: Sequence[Guardrail],
        input_mode: Literal["concurrent", "before"],
    ) -> None:
        self.module = module
        self._guards = _Config(tuple(input), tuple(output), input_mode)

    @property
    def signature(self) -> Any:
        """The guarded module's signature (if it has one)."""
        return getattr(self.module, "signature", None)

    async def forward(self, **inputs: Any) -> Any:
        """Run the module under its guardrails (see :mod:`trio_dspy.guardrails`).

        Raises:
            GuardrailTripped: a guardrail tripped (the module was cancelled).
            GuardrailError: a guardrail returned something that is not a verdict.
            Exception: whatever the module or a guardrail raised.
        """
        guards = self._guards

        async def run() -> Any:
            return await self.module(**inputs)

        if guards.input_mode == "before":
            await check_guardrails(guards.input, "input", inputs)
            prediction = await run()
        else:
            prediction = await check_guardrails(guards.input, "input", inputs, beside=run)
        if guards.output:
            await check_guardrails(guards.output, "output", inputs, prediction)
        return prediction

    def _span_name(self) -> str:
        return f"invoke_agent guarded {type(self.module).__name__}"


def guarded(
    module: Module,
    *,
    input: Sequence[Guardrail] = (),
    output: Sequence[Guardrail] = (),
    input_mode: Literal["concurrent", "before"] = "concurrent",
) -> Guarded:
    """``module`` run under input and output guardrails (see :mod:`trio_dspy.guardrails`).

    Args:
        module: the module to guard.
        input: guardrails on the inputs (keyword arguments), run concurrently
            with the module (``input_mode="concurrent"``) or before it
            (``"before"``).
        output: guardrails on the prediction, run once the module has answered.
        input_mode: ``"concurrent"`` (default) or ``"before"``.

    Raises:
        TypeError: ``module`` is not a module, a guardrail is not callable, or
            ``input_mode`` is neither value.
    """
    if not isinstance(module, Module):
        raise TypeError(f"guarded() takes a trio_dspy module, got {type(module).__name__}")
    if input_mode not in ("concurrent", "before"):
        raise TypeError(f"input_mode must be 'concurrent' or 'before', got {input_mode!r}")
    for guard in (*input, *output):
        if not callable(guard):
            raise TypeError(f"a guardrail must be a function or a module, got {guard!r}")
    return Guarded(module, input, output, input_mode)
