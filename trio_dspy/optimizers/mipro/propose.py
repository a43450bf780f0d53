"""MIPROv2's grounded proposer: instructions grounded on the data, the program and demos.

As in DSPy 3.3, a proposal for predictor ``i`` grounded on demo set ``j``
asks the prompt model (three calls when program-aware) to describe the
program, then the module, then to write an instruction given the dataset
summary, the program's code, those descriptions, up to three bootstrapped
demos (from set ``j``, then the sets after it), the current instruction and
a tip. The dataset summary is a chain of calls over batches of the
trainset, so it runs on its own while the demo sets are bootstrapped; each
proposal waits only for the summary and the demo sets it reads, and all of
them run at once.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import attrs
import trio

from ...modules.module import Module
from ...modules.predict import Predict
from ...primitives import Example
from ...signature import Signature
from .prompts import (
    DatasetDescriptor,
    DatasetDescriptorWithPriorObservations,
    DescribeModule,
    DescribeProgram,
    ObservationSummarizer,
    instruction_signature,
)

__all__ = [
    "Demo",
    "Later",
    "Proposal",
    "dataset_summary",
    "program_source",
    "propose",
    "strip_prefix",
]

T = TypeVar("T")
Demo = Mapping[str, Any]
"""A demo as predictors hold it (an example, bootstrapped ones marked ``augmented``)."""
Call = Callable[[Predict, dict[str, Any]], Awaitable[str]]
"""Runs one proposer step with the prompt model (holding a slot); returns its one output."""

_LABEL = re.compile(r"^[\*\s]*(([\w\'\-]+\s+){0,4}[\w\'\-]+):\s*")
_FRAMEWORK = "trio_dspy."


class Later(Generic[T]):
    """A value that one task sets and others wait for."""

    def __init__(self) -> None:
        self._event = trio.Event()
        self._value: T | None = None

    def set(self, value: T) -> None:
        """Hand ``value`` to every waiter."""
        self._value = value
        self._event.set()

    async def get(self) -> T:
        """The value, once set."""
        await self._event.wait()
        return self._value  # type: ignore[return-value]


@attrs.frozen
class Proposal:
    """One instruction to propose: for a predictor, grounded on a demo set, with a tip."""

    predictor: int
    demo_set: int
    tip: str


def strip_prefix(text: str) -> str:
    """``text`` without a leading label of up to five words and a colon, nor outer quotes."""
    return _LABEL.sub("", str(text)).strip('"')


def _field_prefix(name: str) -> str:
    """DSPy's label of a field in example strings: ``shelf_code`` -> ``Shelf Code:``."""
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).split("_")
    return " ".join(w.capitalize() for w in words if w) + ":"


def _examples_string(examples: Sequence[Example]) -> str:
    """A batch of trainset examples as the summarizer reads them (inputs marked, sorted)."""
    rows = []
    for example in examples:
        keys = sorted(example._input_keys or ())
        rows.append(f"{example!r} (input_keys={{{', '.join(repr(k) for k in keys)}}})")
    return "[" + ", ".join(rows) + "]"


async def dataset_summary(trainset: Sequence[Example], batch_size: int, call: Call) -> str:
    """Observations over batches of ``trainset``, summarized in two or three sentences.

    The first batch is described, then up to nine more batches add to the
    observations (five answers of ``COMPLETE`` stop early); a failure there
    keeps what was gathered. Each call depends on the last, so they run one
    after another.

    Raises:
        Exception: whatever the first description or the summary call raised.
    """
    describe = Predict(DatasetDescriptor, temperature=1.0)
    observations = await call(
        describe, {"examples": _examples_string(trainset[: min(len(trainset), batch_size)])}
    )
    skips = calls = 0
    more = Predict(DatasetDescriptorWithPriorObservations, temperature=1.0)
    try:
        for start in range(batch_size, len(trainset), batch_size):
            calls += 1
            if calls >= 10:
                break
            batch = trainset[start : min(len(trainset), start + batch_size)]
            out = await call(
                more, {"prior_observations": observations, "examples": _examples_string(batch)}
            )
            if len(out) >= 8 and out[:8].upper() == "COMPLETE":
                skips += 1
                if skips >= 5:
                    break
                continue
            observations += out
    except Exception:  # DSPy keeps the observations so far: they are context, not a result
        pass
    summary = await call(
        Predict(ObservationSummarizer, temperature=1.0), {"observations": observations}
    )
    return strip_prefix(summary)


def program_source(program: Module) -> str:
    """The program as the proposer shows it: each signature, then the program's own classes.

    Signatures are rendered from their fields; the classes of the program and
    its sub-modules are their source code, except trio_dspy's own modules
    (a bare ``Predict`` has no code worth showing).

    Raises:
        OSError, TypeError: a class's source cannot be read.
    """
    header: list[str] = []
    for _, predictor in program.named_predictors():
        text = _signature_source(predictor.signature)
        if text not in header:
            header.append(text)
    classes: list[str] = []
    for _, module in [("", program), *program.named_sub_modules()]:
        cls = type(module)
        if cls.__module__.startswith(_FRAMEWORK) or cls.__module__ == "trio_dspy":
            continue
        source = inspect.getsource(cls)
        if source not in classes:
            classes.append(source)
    return "\n\n".join(header) + "\n\n" + "\n\n".join(classes)


def _signature_source(signature: type[Signature]) -> str:
    lines = [f"class {signature.__name__}(Signature):", f'    """{signature.instructions}"""']
    for name, field in signature.fields.items():
        kind = "InputField" if field.is_input else "OutputField"
        desc = f"desc={field.desc!r}" if field.desc else ""
        lines.append(f"    {name}: {field.type_name} = {kind}({desc})")
    return "\n".join(lines)


def _example_string(signature: type[Signature], demo: Demo) -> str:
    return "\n".join(f"{_field_prefix(n)} {demo.get(n)}" for n in signature.fields)


async def task_demos(
    sets: Sequence[Later[list[list[Demo]]]],
    predictor: int,
    demo_set: int,
    signature: type[Signature],
    count: int = 3,
) -> str:
    """Up to ``count`` bootstrapped demos of ``predictor``, from set ``demo_set`` then the next.

    Waits only for the sets it reads. Set 0 (no demos) and no bootstrapped
    demos at all give ``"No task demos provided."``.
    """
    if demo_set == 0 or not sets:
        return "No task demos provided."
    order = [*range(demo_set, len(sets)), *range(demo_set)]
    shown: list[str] = []
    for index in order:
        demos = (await sets[index].get())[predictor]
        for demo in demos:
            if "augmented" in demo and len(shown) < count:
                shown.append(_example_string(signature, demo))
        if len(shown) >= count:
            break
    text = "\n\n".join(shown) + "\n\n" if shown else ""
    return text if text.strip() else "No task demos provided."


async def propose(
    proposal: Proposal,
    *,
    program: Module,
    code: str | None,
    summary: Later[str | None],
    sets: Sequence[Later[list[list[Demo]]]],
    call: Call,
    temperature: float,
) -> str:
    """One instruction for ``proposal.predictor``, grounded as DSPy's proposer does.

    ``code`` is the program's source (``None``: not program-aware). A failure
    describing the program leaves the descriptions "Not available"/"Not
    provided", as in DSPy.

    Raises:
        trio_dspy.errors.LMError: the instruction call failed.
    """
    predictor = program.predictors()[proposal.predictor]
    signature = predictor.signature
    demos = await task_demos(sets, proposal.predictor, proposal.demo_set, signature)
    description, module, module_description = "Not available", "Not provided", "Not provided"

    def predict(sig: type[Signature]) -> Predict:
        return Predict(sig, temperature=temperature)

    if code is not None:
        try:
            description = strip_prefix(
                await call(
                    predict(DescribeProgram), {"program_code": code, "program_example": demos}
                )
            )
            ins = ", ".join(signature.input_fields)
            outs = ", ".join(signature.output_fields)
            module = f"{type(predictor).__name__}({ins}) -> {outs}"
            module_description = await call(
                predict(DescribeModule),
                {
                    "program_code": code,
                    "program_description": description,
                    "program_example": demos,
                    "module": module,
                },
            )
        except Exception:  # as in DSPy: descriptions are context, the proposal goes on
            pass
    data = await summary.get()
    generate = instruction_signature(
        use_dataset_summary=data is not None,
        program_aware=code is not None,
        use_tip=bool(proposal.tip),
    )
    inputs = {
        "dataset_description": data,
        "program_code": code,
        "program_description": description,
        "module": module,
        "module_description": module_description,
        "task_demos": demos,
        "basic_instruction": signature.instructions,
        "tip": proposal.tip,
    }
    wanted = {k: v for k, v in inputs.items() if k in generate.input_fields}
    return strip_prefix(await call(predict(generate), wanted)).strip()
