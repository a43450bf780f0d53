"""Prompts are laid out as DSPy 3.4.1 lays them out, where a program would notice.

A demo's ``History`` is shown in the demo; the system prompt lists a History
input among the inputs; a ``Prediction`` passed into a ``str`` input is sent
in its text form, as ``str(prediction)`` gives it, not as a JSON object.
"""

from __future__ import annotations

from typing import Any

import pytest

import trio_dspy as td
from trio_dspy.messages import Message


class QA(td.Signature):
    """Answer the question."""

    question: str = td.InputField()
    history: td.History = td.InputField()
    answer: str = td.OutputField()


class Critique(td.Signature):
    """Critique the draft."""

    draft: str = td.InputField()
    critique: str = td.OutputField()


def text(message: Message) -> str:
    content = message.content
    return content if isinstance(content, str) else "".join(getattr(p, "text", "") for p in content)


ADAPTERS = [td.ChatAdapter(), td.JSONAdapter(), td.XMLAdapter()]


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda a: type(a).__name__)
def test_the_system_prompt_lists_a_history_input_among_the_inputs(adapter: Any) -> None:
    messages = adapter.format(QA, [], {"question": "And Italy?", "history": td.History([])})
    system = text(messages[0])
    assert "Your input fields are:\n1. `question` (str)\n2. `history` (History)\n" in system


def test_a_demos_history_is_shown_in_the_demo() -> None:
    demo = {
        "question": "And Germany?",
        "history": td.History([{"question": "Capital of France?", "answer": "Paris"}]),
        "answer": "Berlin",
    }
    messages = td.ChatAdapter().format(QA, [demo], {"question": "And Italy?"})
    demo_user = text(messages[1])
    assert demo_user == (
        "[[ ## question ## ]]\nAnd Germany?\n\n"
        '[[ ## history ## ]]\n{"messages": [{"question": "Capital of France?", "answer": "Paris"}]}'
    )
    assert text(messages[2]) == "[[ ## answer ## ]]\nBerlin\n\n[[ ## completed ## ]]"


def test_a_demo_without_history_shows_no_history_section() -> None:
    demo = {"question": "And Germany?", "answer": "Berlin"}
    messages = td.ChatAdapter().format(QA, [demo], {"question": "And Italy?"})
    assert text(messages[1]) == "[[ ## question ## ]]\nAnd Germany?"


def test_a_prediction_in_a_str_input_is_sent_in_its_text_form() -> None:
    draft = td.Prediction(answer="Paris", reasoning="France's capital")
    messages = td.ChatAdapter().format(Critique, [], {"draft": draft})
    body = text(messages[-1])
    assert body.startswith(
        "[[ ## draft ## ]]\nPrediction(\n    answer='Paris',\n    reasoning=\"France's capital\"\n)"
    )
    assert str(draft) == "Prediction(\n    answer='Paris',\n    reasoning=\"France's capital\"\n)"
