"""``Ensemble``: several programs answer every call at once; one answer is made of theirs.

DSPy's shape is kept: ``Ensemble(...).compile(programs)`` is synchronous
(it calls no model, so there is nothing to await) and takes a list of
programs rather than a student and a trainset, which is why ``Ensemble`` is
not an :class:`~trio_dspy.optimizers.Optimizer`.

Where this differs from DSPy, on purpose:

* the members run concurrently (DSPy runs them one after the other), so a
  call takes as long as the slowest member, not the sum;
* ``reduce_fn=None`` means :func:`~trio_dspy.majority` (DSPy then returns the
  list of predictions: pass ``reduce_fn=list`` for that);
* ``size`` samples with a ``random.Random(seed)`` of the compiled program's
  own (DSPy uses the unseeded global ``random``), and a ``size`` larger than
  the ensemble is refused at compile time rather than on the first call;
* the sampled members answer in ensemble order, so :func:`~trio_dspy.majority`
  breaks a tie in favour of the member listed first (DSPy keeps the sample's
  random order);
* ``deterministic=True``, which DSPy refuses, samples by a hash of the call's
  inputs: the same inputs always go to the same members, in any process.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..concurrency import gather
from ..modules.aggregation import majority
from ..modules.module import Module
from ..types import unstructure
from .stats import OptimizerStats

__all__ = ["Ensemble", "EnsembledProgram", "Reduce"]

Reduce = Callable[[list[Any]], Any]
"""``reduce_fn(outputs) -> answer``, sync or async, given the members' outputs in order."""


class Ensemble:
    """Combine programs into one that runs them all (or ``size`` of them) per call.

    ::

        vote = td.Ensemble(size=3).compile([program_a, program_b, program_c, program_d])
        prediction = await vote(question="...")   # 3 of the 4 at once, majority answer

    Args:
        reduce_fn: makes one answer of the members' outputs (a list, in
            ensemble order); ``None`` is :func:`~trio_dspy.majority`. It may be
            async.
        size: members run per call, sampled without replacement; ``None`` or
            ``0`` runs every member.
        deterministic: sample by a hash of the call's inputs (and ``seed``)
            rather than by one sequence of draws: the same inputs always use
            the same members.
        seed: seeds the sampling.

    Raises:
        ValueError: ``size`` is negative.
        TypeError: ``reduce_fn`` is not callable.

    :attr:`stats` stays empty: compiling calls no model.
    """

    def __init__(
        self,
        *,
        reduce_fn: Reduce | None = None,
        size: int | None = None,
        deterministic: bool = False,
        seed: int = 0,
    ) -> None:
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise ValueError(f"size must be a whole number of 0 or more, or None, got {size!r}")
        if reduce_fn is not None and not callable(reduce_fn):
            raise TypeError(
                "reduce_fn must be a function of the list of outputs, "
                f"got {type(reduce_fn).__name__}"
            )
        self.reduce_fn = reduce_fn
        self.size = size
        self.deterministic = deterministic
        self.seed = seed
        self.stats = OptimizerStats()

    def compile(self, programs: Sequence[Module]) -> EnsembledProgram:
        """One program running ``programs`` concurrently and reducing their outputs.

        Raises:
            ValueError: no programs, or fewer than ``size``.
            TypeError: a program is not a :class:`~trio_dspy.Module`.
        """
        members = list(programs)
        if not members:
            raise ValueError("an ensemble needs at least one program")
        for i, program in enumerate(members):
            if not isinstance(program, Module):
                raise TypeError(f"program {i} is {type(program).__name__}, not a td.Module")
        if self.size and self.size > len(members):
            raise ValueError(
                f"size={self.size} is more than the {len(members)} program(s) given: "
                "pass a smaller size, or more programs"
            )
        return EnsembledProgram(
            members,
            reduce_fn=self.reduce_fn or majority,
            size=self.size or None,
            deterministic=self.deterministic,
            seed=self.seed,
        )

    def __repr__(self) -> str:
        return f"Ensemble(size={self.size}, deterministic={self.deterministic})"


class EnsembledProgram(Module):
    """The program :meth:`Ensemble.compile` returns.

    Its members are ``programs`` (saved and loaded with it, as
    ``programs[0].…``). A call runs the chosen members as child tasks: the
    first to raise cancels the others and its exception propagates, as in
    DSPy; cancelling the call cancels every member.
    """

    def __init__(
        self,
        programs: list[Module],
        *,
        reduce_fn: Reduce,
        size: int | None,
        deterministic: bool,
        seed: int,
    ) -> None:
        self.programs = programs
        self.reduce_fn = reduce_fn
        self.size = size
        self.deterministic = deterministic
        self.seed = seed
        self._rng = random.Random(seed)

    async def forward(self, **inputs: Any) -> Any:
        """The reduced outputs of the chosen members on ``inputs``.

        Raises:
            Exception: the first member's failure, or the reduce function's
                (:func:`~trio_dspy.majority` raises ``ValueError`` when no
                output has a value).
        """
        chosen = [self.programs[i] for i in self.members(inputs)]
        outputs = await gather(*(functools.partial(program, **inputs) for program in chosen))
        result = self.reduce_fn(outputs)
        if inspect.isawaitable(result):
            result = await result
        return result

    def members(self, inputs: Mapping[str, Any]) -> list[int]:
        """Indices of the members a call with ``inputs`` runs, in ensemble order.

        Without ``deterministic`` each call draws the next sample of the
        program's seeded sequence (concurrent calls take their draws in the
        order they start).
        """
        count = len(self.programs)
        if self.size is None:
            return list(range(count))
        rng = random.Random(inputs_digest(inputs, self.seed)) if self.deterministic else self._rng
        return sorted(rng.sample(range(count), self.size))


def inputs_digest(inputs: Mapping[str, Any], seed: int) -> bytes:
    """A hash of ``inputs`` (order of keys aside) and ``seed``, the same in every process.

    Values are written as JSON (records and models as their fields); what
    JSON cannot hold is written as its ``repr``.
    """

    def fallback(value: Any) -> Any:
        data = unstructure(value)
        return repr(value) if data is value else data

    items = sorted(inputs.items(), key=lambda item: str(item[0]))
    try:
        text = json.dumps(dict(items), ensure_ascii=True, default=fallback)
    except (TypeError, ValueError, RecursionError):
        # Keys that are not strings, or values that refer to themselves.
        try:
            text = repr(items)
        except (ValueError, RecursionError):
            # An int too long to write in decimal: its hex has no such limit.
            text = repr([(k, hex(v) if isinstance(v, int) else type(v).__name__) for k, v in items])
    return hashlib.sha256(f"{seed}\0{text}".encode("utf-8", "surrogatepass")).digest()
