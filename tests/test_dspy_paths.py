"""Predictors are named by DSPy's paths (``x.predict``), and older saves still load."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Literal

import trio_dspy as td
from trio_dspy.testing import DummyLM

DATA = Path(__file__).parent / "data"


class Triage(td.Signature):
    """Decide how the customer feels."""

    request: str = td.InputField(desc="what the customer said")
    mood: Literal["happy", "upset"] = td.OutputField()


def check_menu(item: str) -> str:
    """Whether the shop has ``item``."""
    return "yes"


class Shop(td.Module):
    """The program tests/data/make_v1_saves.py saved."""

    def __init__(self) -> None:
        self.triage = td.ChainOfThought(Triage)
        self.reply = td.Predict("request, mood -> reply")
        self.agent = td.ReAct("request -> answer", tools=[check_menu])

    async def forward(self, request: str) -> td.Prediction:
        mood = (await self.triage(request=request)).mood
        return await self.reply(request=request, mood=mood)


async def reward(example: Any, pred: Any, trace: Any = None) -> float:
    return 1.0


def names(module: td.Module) -> list[str]:
    return [name for name, _ in module.named_predictors()]


def test_predictor_names_are_dspys_paths() -> None:
    assert names(td.ChainOfThought("q -> a")) == ["predict"]
    assert names(td.Predict("q -> a")) == ["self"]
    assert names(Shop()) == ["triage.predict", "reply", "agent.react", "agent.extract.predict"]
    assert names(td.BestOfN(td.ChainOfThought("q -> a"), 3, reward, 1.0)) == ["module.predict"]
    assert names(td.Refine(td.ChainOfThought("q -> a"), 3, reward, 1.0)) == ["module.predict"]
    assert names(td.MultiChainComparison("q -> a")) == ["predict"]


def test_a_chain_of_thoughts_predict_is_the_predictor_dspy_code_reaches_for() -> None:
    shop = Shop()
    assert shop.triage.predict is shop.triage
    shop.triage.predict.demos = [td.Example(request="hi", reasoning="r", mood="happy")]
    assert dict(shop.named_predictors())["triage.predict"].demos == shop.triage.demos


def test_saves_use_dspys_paths(tmp_path: Path) -> None:
    Shop().save(tmp_path / "shop.json")
    text = (tmp_path / "shop.json").read_text()
    assert '"triage.predict"' in text and '"agent.extract.predict"' in text


def test_a_save_from_before_dspys_paths_still_loads(tmp_path: Path) -> None:
    shop = Shop()
    shop.load(DATA / "trio_dspy_v1_program.json")
    assert shop.triage.signature.instructions == "Read the mood."
    assert shop.triage.demos == [td.Example(request="Love it", reasoning="Praise.", mood="happy")]
    assert shop.agent.extract.demos[0]["answer"] == "Yes"
    # Saved again, it takes the current names, and loads back the same.
    shop.save(tmp_path / "again.json")
    again = Shop()
    again.load(tmp_path / "again.json")
    assert again.dump_state() == shop.dump_state()


def test_a_one_chain_of_thought_save_from_before_dspys_paths_still_loads(tmp_path: Path) -> None:
    copy = tmp_path / "cot.json"
    shutil.copy(DATA / "trio_dspy_v1_chain_of_thought.json", copy)
    cot = td.ChainOfThought("question -> answer")
    cot.load(copy)
    assert cot.demos == [td.Example(question="2+2?", reasoning="Sum.", answer="4")]


async def test_stream_items_name_the_predictor_by_its_dspy_path() -> None:
    shop = Shop()
    lm = DummyLM([{"reasoning": "Nice", "mood": "happy"}, {"reply": "Thanks!"}], stream_chunk=3)
    items = []
    with td.context(lm=lm):
        async with td.streamify(shop, listen=["reasoning"])(request="Love it") as stream:
            items = [i async for i in stream]
    assert {i.predictor for i in items if isinstance(i, td.StreamResponse)} == {"triage.predict"}
