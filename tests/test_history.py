"""td.History inputs: earlier turns sent as user/assistant messages before the current one."""

from __future__ import annotations

import json
from typing import Any

import pytest

import trio_dspy as td
from trio_dspy.errors import SignatureError
from trio_dspy.testing import DummyLM, SimConfig, SimReply, serve_sim


class QA(td.Signature):
    """Answer the question."""

    question: str = td.InputField()
    history: td.History = td.InputField()
    answer: str = td.OutputField()


TURNS = [
    {"question": "Capital of France?", "answer": "Paris"},
    {"question": "And of Germany?", "answer": "Berlin"},
]
WITH_TWO_TURNS = ["system", "user", "assistant", "user", "assistant", "user"]


def sim_lm(sim: Any, provider: str) -> td.LM:
    base = sim.base_url if provider == "openai" else sim.root_url
    return td.LM(f"{provider}/sim-model", base_url=base, api_key="k")


def turns_of(body: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, text) of each non-system message on the wire, either dialect."""
    out = []
    for m in body["messages"]:
        content = m["content"]
        text = content if isinstance(content, str) else "".join(p["text"] for p in content)
        out.append((m["role"], text))
    return [t for t in out if t[0] != "system"]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_history_goes_out_as_prior_user_and_assistant_turns(provider: str) -> None:
    config = SimConfig(script=lambda body: SimReply(outputs={"answer": "Rome"}))
    async with serve_sim(config) as sim, sim_lm(sim, provider) as lm:
        with td.context(lm=lm):
            pred = await td.Predict(QA)(question="And Italy?", history=td.History(TURNS))
    assert pred.answer == "Rome"
    turns = turns_of(sim.requests[-1])
    assert [role for role, _ in turns] == ["user", "assistant", "user", "assistant", "user"]
    assert turns[0][1] == "[[ ## question ## ]]\nCapital of France?"
    assert turns[1][1] == "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]"
    assert turns[2][1] == "[[ ## question ## ]]\nAnd of Germany?"
    assert turns[4][1].startswith("[[ ## question ## ]]\nAnd Italy?\n\nRespond with")
    # As in DSPy: the system prompt lists the History input, no turn has its section.
    system = sim.requests[-1].get("system") or sim.requests[-1]["messages"][0]["content"]
    system = system if isinstance(system, str) else "".join(p["text"] for p in system)
    assert "2. `history` (History)" in system
    assert all("## history ##" not in text for _, text in turns)
    assert all("history" not in text for _, text in turns)


async def test_json_adapter_turns_are_json_answers() -> None:
    lm = DummyLM([{"answer": "Rome"}])
    with td.context(lm=lm, adapter=td.JSONAdapter()):
        await td.Predict(QA)(question="And Italy?", history=td.History(TURNS))
    messages = lm.history[-1].request.messages
    assert [m.role for m in messages] == WITH_TWO_TURNS
    assert json.loads(messages[2].text) == {"answer": "Paris"}


async def test_the_conversation_goes_on_by_appending_turns() -> None:
    lm = DummyLM([{"answer": "Paris"}, {"answer": "Yes, Paris."}])
    history = td.History(messages=[])
    predict = td.Predict(QA)
    with td.context(lm=lm):
        first = await predict(question="Capital of France?", history=history)
        history.messages.append({"question": "Capital of France?", **first})
        await predict(question="Are you sure?", history=history)
    messages = lm.history[-1].request.messages
    assert [m.role for m in messages] == ["system", "user", "assistant", "user"]
    assert "Paris" in messages[2].text


async def test_demos_come_before_the_history_and_turns_show_only_their_fields() -> None:
    sig = td.make_signature("context, question, history: History -> answer, confidence: float")
    lm = DummyLM([{"answer": "a", "confidence": 0.5}])
    program = td.Predict(sig)
    program.demos = [td.Example(context="c", question="demo q", answer="demo a", confidence=1.0)]
    with td.context(lm=lm):
        await program(
            context="ctx", question="now?", history=td.History([{"question": "earlier?"}])
        )
    messages = lm.history[-1].request.messages
    assert [m.role for m in messages] == ["system", "user", "assistant", "user", "user"]
    assert "demo q" in messages[1].text
    # The earlier turn had only a question: no context section, no assistant turn.
    assert messages[3].text == "[[ ## question ## ]]\nearlier?"


def test_the_tool_calling_request_carries_the_history_too() -> None:
    request = td.ChatAdapter().format_request(
        QA, [], {"question": "now?", "history": td.History(TURNS)}, tools=[]
    )
    assert [m.role for m in request.messages] == WITH_TWO_TURNS
    assert "`history`" not in request.messages[0].text


async def test_an_empty_or_missing_history_is_just_the_current_turn() -> None:
    lm = DummyLM([{"answer": "a"}], cycle=True)
    with td.context(lm=lm):
        await td.Predict(QA)(question="q", history=td.History())
        await td.Predict(QA)(question="q", history=None)
    for entry in lm.history:
        assert [m.role for m in entry.request.messages] == ["system", "user"]


async def test_bad_history_values_are_clear_type_errors() -> None:
    with td.context(lm=DummyLM([{"answer": "a"}], cycle=True)):
        with pytest.raises(TypeError, match=r"QA\.history needs a td\.History"):
            await td.Predict(QA)(question="q", history=TURNS)
        openai_style = td.History([{"role": "user", "content": "hi"}])
        with pytest.raises(TypeError, match=r"message 0 has none of the signature's fields"):
            await td.Predict(QA)(question="q", history=openai_style)
    with pytest.raises(TypeError, match="list of dicts"):
        td.History("hello")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="message 1 must be a dict"):
        td.History([{"question": "q"}, "answer"])  # type: ignore[list-item]


def test_two_history_inputs_fail_at_definition() -> None:
    with pytest.raises(SignatureError, match=r"2 td\.History inputs \(past, older\)"):

        class Twice(td.Signature):
            past: td.History = td.InputField()
            older: td.History = td.InputField()
            answer: str = td.OutputField()


@pytest.mark.parametrize(
    "spec",
    [
        "question -> history: History",
        "question, past: list[History] -> answer",
        "question, past: Optional[History] -> answer",
    ],
)
def test_history_anywhere_but_a_plain_input_fails_at_definition(spec: str) -> None:
    with pytest.raises(SignatureError, match="History"):
        td.make_signature(spec)


def test_a_history_is_frozen_but_its_turns_can_grow() -> None:
    history = td.History()
    history.messages.append({"question": "q", "answer": "a"})
    assert history == td.History([{"question": "q", "answer": "a"}])
    with pytest.raises(AttributeError):
        history.messages = []  # type: ignore[misc]
