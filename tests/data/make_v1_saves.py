"""Write the files that tests/test_dspy_names.py loads as saves of an earlier trio_dspy.

Until predictors were named by DSPy's paths, ``save`` named a ChainOfThought
by its attribute (``"triage"``; ``"self"`` for a program that is one) and a
ReAct's extraction step ``"extract"``. These files were written then, by this
script, so that loading them stays tested. Not run by the tests.
"""

from pathlib import Path
from typing import Literal

import trio_dspy as td

HERE = Path(__file__).parent


class Triage(td.Signature):
    """Decide how the customer feels."""

    request: str = td.InputField(desc="what the customer said")
    mood: Literal["happy", "upset"] = td.OutputField()


def check_menu(item: str) -> str:
    """Whether the shop has ``item``."""
    return "yes"


class Shop(td.Module):
    def __init__(self) -> None:
        self.triage = td.ChainOfThought(Triage)
        self.reply = td.Predict("request, mood -> reply")
        self.agent = td.ReAct("request -> answer", tools=[check_menu])

    async def forward(self, request: str) -> td.Prediction:
        return await self.reply(request=request, mood=(await self.triage(request=request)).mood)


def main() -> None:
    shop = Shop()
    shop.triage.signature = shop.triage.signature.with_instructions("Read the mood.")
    shop.triage.demos = [
        td.Example(request="Love it", reasoning="Praise.", mood="happy"),
    ]
    shop.agent.extract.demos = [
        td.Example(request="Tea?", trajectory="", reasoning="Asked.", answer="Yes"),
    ]
    shop.save(HERE / "trio_dspy_v1_program.json")
    cot = td.ChainOfThought("question -> answer")
    cot.demos = [td.Example(question="2+2?", reasoning="Sum.", answer="4")]
    cot.save(HERE / "trio_dspy_v1_chain_of_thought.json")


if __name__ == "__main__":
    main()
