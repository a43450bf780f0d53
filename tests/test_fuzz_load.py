"""Fuzzing ``Module.load``: whatever a saved file holds, loading it ends in a
program that can format its requests, or in a ``td.errors`` type that
changed nothing.

Both formats are fuzzed, starting from a valid file: the native one
``module.save`` writes and DSPy's (``tests/data/dspy_program.json``). Each
scalar or member in turn is replaced with a hostile value (wrong JSON types,
deep nesting, huge and non-finite numbers, lone surrogates), or the file is
truncated or spoiled with invalid UTF-8. Loading is synchronous, so each
example is bounded in wall-clock time.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import attrs
from hypothesis import given

import trio_dspy as td
from trio_dspy.adapters.base import Adapter

from .hostile import fuzz_settings, mutated

DATA = Path(__file__).parent / "data"
# A load reads one small file: far below this even on a loaded machine.
DEADLINE_SECONDS = 10.0


class Triage(td.Signature):
    """Decide how the customer feels."""

    request: str = td.InputField(desc="what the customer said")
    mood: Literal["happy", "upset"] = td.OutputField()


class CoffeeShop(td.Module):
    """The program DSPy saved in tests/data/dspy_program.json."""

    def __init__(self) -> None:
        self.triage = td.ChainOfThought(Triage)
        self.reply = td.Predict("request, mood -> reply")

    async def forward(self, request: str) -> td.Prediction:
        mood = (await self.triage(request=request)).mood
        return await self.reply(request=request, mood=mood)


class Order(td.Signature):
    """Take the order."""

    request: str = td.InputField()
    drink: str = td.OutputField(desc="the drink's name")
    shots: int = td.OutputField()
    price: float = td.OutputField()
    extras: list[str] = td.OutputField()


class Counter(td.Module):
    """A program whose saved demos hold typed values of several kinds."""

    def __init__(self) -> None:
        self.order = td.Predict(Order)
        self.triage = td.ChainOfThought(Triage)

    async def forward(self, request: str) -> td.Prediction:
        return await self.order(request=request)


def _counter_document() -> dict[str, Any]:
    program = Counter()
    program.order.signature = program.order.signature.with_instructions("Take it kindly.")
    program.order.demos = [
        td.Example(request="a latte", drink="latte", shots=2, price=3.5, extras=["oat"]),
        td.Example(request="tea", drink="tea", shots=0, price=2.0, extras=[]),
    ]
    program.triage.demos = [td.Example(request="Cold!", reasoning="complaint", mood="upset")]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "counter.json"
        program.save(path)
        document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


NATIVE_DOCUMENT = _counter_document()
DSPY_DOCUMENT = json.loads((DATA / "dspy_program.json").read_text(encoding="utf-8"))


def _with_state_of_its_own(program: td.Module) -> td.Module:
    """``program`` with demos and instructions that no fuzzed file holds,
    so that a load that changed anything shows in its dump."""
    for _, predictor in program.named_predictors():
        assert isinstance(predictor, td.Predict)
        predictor.signature = predictor.signature.with_instructions("Before the load.")
        inputs = {n: "kept" for n in predictor.signature.input_fields}
        predictor.demos = [td.Example(**inputs)]
    return program


def _wire(request: td.LMRequest) -> bytes:
    """The request's messages as the JSON a provider is sent (UTF-8, strictly)."""
    messages = [attrs.asdict(m) for m in request.messages]
    return json.dumps(messages, ensure_ascii=False).encode("utf-8")


def _formats_every_request(program: td.Module) -> None:
    adapters: list[Adapter] = [td.ChatAdapter(), td.JSONAdapter()]
    for _, predictor in program.named_predictors():
        assert isinstance(predictor, td.Predict)
        inputs = {n: "a latte" for n in predictor.signature.input_fields}
        for adapter in adapters:
            _wire(adapter.format_request(predictor.signature, predictor.demos, inputs))


def _load_is_all_or_nothing(program: td.Module, content: bytes) -> None:
    """Load ``content`` into ``program``: a program that formats its requests,
    or a ``td.errors`` type and the state as it was, within the deadline."""
    before = program.dump_state()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "program.json"
        path.write_bytes(content)
        try:
            program.load(path)
        except td.errors.TrioDSPyError:
            assert program.dump_state() == before
        else:
            _formats_every_request(program)
    assert time.monotonic() - started < DEADLINE_SECONDS


def test_the_unmutated_files_load_and_format(tmp_path: Path) -> None:
    # The fuzzing below starts from files that load: check that they do.
    for program, document in [(Counter(), NATIVE_DOCUMENT), (CoffeeShop(), DSPY_DOCUMENT)]:
        path = tmp_path / "program.json"
        path.write_text(json.dumps(document), encoding="utf-8")
        _with_state_of_its_own(program).load(path)
        _formats_every_request(program)


@fuzz_settings(80)
@given(content=mutated(NATIVE_DOCUMENT))
def test_a_hostile_native_file_loads_whole_or_changes_nothing(content: bytes) -> None:
    _load_is_all_or_nothing(_with_state_of_its_own(Counter()), content)


@fuzz_settings(80)
@given(content=mutated(DSPY_DOCUMENT))
def test_a_hostile_dspy_file_loads_whole_or_changes_nothing(content: bytes) -> None:
    _load_is_all_or_nothing(_with_state_of_its_own(CoffeeShop()), content)
