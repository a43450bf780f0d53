"""Write the DSPy save files that tests/test_dspy_saves.py loads.

Run once with DSPy installed (3.4.1 wrote the files here), from this folder:

    python make_dspy_saves.py

No model is called: each program gets demos and instructions by hand, then
``program.save(path)`` writes DSPy's JSON. Not run by the tests.
"""

from typing import Literal

import dspy


class QA(dspy.Signature):  # type: ignore[misc]
    """Answer the question in one word."""

    question: str = dspy.InputField(desc="a trivia question")
    answer: str = dspy.OutputField(desc="one word")


class Triage(dspy.Signature):  # type: ignore[misc]
    """Decide how the customer feels."""

    request: str = dspy.InputField(desc="what the customer said")
    mood: Literal["happy", "upset"] = dspy.OutputField()


class CoffeeShop(dspy.Module):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.triage = dspy.ChainOfThought(Triage)
        self.reply = dspy.Predict("request, mood -> reply")

    def forward(self, request: str) -> dspy.Prediction:
        mood = self.triage(request=request).mood
        return self.reply(request=request, mood=mood)


def look_up(city: str) -> str:
    """Look up the weather in a city."""
    return "sunny"


def main() -> None:
    predict = dspy.Predict(QA)
    predict.signature = predict.signature.with_instructions("Answer in one word, no punctuation.")
    predict.demos = [
        dspy.Example(question="Capital of France?", answer="Paris"),
        dspy.Example(question="Largest planet?", answer="Jupiter"),
    ]
    predict.save("dspy_predict.json")

    shop = CoffeeShop()
    shop.triage.predict.signature = shop.triage.predict.signature.with_instructions(
        "Read the customer's mood from their words."
    )
    shop.triage.predict.demos = [
        dspy.Example(request="This coffee is terrible!", reasoning="They complain.", mood="upset"),
        dspy.Example(request="Lovely latte, thanks!", mood="happy", augmented=True),
    ]
    shop.reply.demos = [
        dspy.Example(request="A latte", mood="happy", reply="Coming right up!"),
    ]
    shop.save("dspy_program.json")

    cot = dspy.ChainOfThought("question -> answer")
    cot.predict.demos = [dspy.Example(question="2 + 2?", reasoning="Two and two.", answer="4")]
    cot.save("dspy_chain_of_thought.json")

    agent = dspy.ReAct("question -> answer", tools=[look_up])
    agent.extract.predict.demos = [
        dspy.Example(question="Weather in Oslo?", trajectory="...", answer="sunny")
    ]
    agent.save("dspy_react.json")


if __name__ == "__main__":
    main()
