"""The text policy: a lone surrogate becomes U+FFFD wherever text enters.

A lone surrogate cannot be encoded as UTF-8, so one that got in (a server's
JSON-escaped ``\\ud800``, a user's input, a tool's result) used to fail the
next request with a bare ``UnicodeEncodeError``. These tests send such text
in through each door and check that the next request still goes out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import trio_dspy as td
from trio_dspy.messages import LMResponse, Message, TextPart, ToolCall, ToolSpec
from trio_dspy.telemetry import JsonlExporter, collect
from trio_dspy.testing import DummyLM, SimConfig, SimReply, SimToolCall, serve_sim
from trio_dspy.unicode import clean_json, clean_text, has_surrogate_escape

LONE = "x\ud800y"
CLEAN = "x\ufffdy"


def test_clean_text_replaces_lone_halves_and_joins_pairs() -> None:
    assert clean_text(LONE) == CLEAN
    assert clean_text("\udc80") == "\ufffd"
    assert clean_text("a\ud83d") == "a\ufffd"
    assert clean_text("\ud83d\ude00") == "\U0001f600"  # a pair written as two code points
    text = "caf\u00e9 \U0001f600"
    assert clean_text(text) is text  # clean text is returned as it is


def test_clean_json_cleans_keys_and_values_at_any_depth_and_copies_nothing_clean() -> None:
    value: Any = {"k\ud800": [LONE, {"n": 1, "t": ("\udfff",)}]}
    assert clean_json(value) == {"k\ufffd": [CLEAN, {"n": 1, "t": ("\ufffd",)}]}
    clean = {"a": [1, "\u00e9", {"b": None}]}
    assert clean_json(clean) is clean
    deep: list[Any] = []
    node = deep
    for _ in range(50_000):  # deeper than Python's recursion limit
        node.append([])
        node = node[0]
    node.append(LONE)
    cleaned = clean_json(deep)
    for _ in range(50_000):
        cleaned = cleaned[0]
    assert cleaned == [CLEAN]


def test_surrogate_escapes_are_found_in_raw_json() -> None:
    assert has_surrogate_escape(b'{"a": "\\ud800"}')
    assert has_surrogate_escape(b'{"a": "\\uDFFF"}')
    assert not has_surrogate_escape(b'{"a": "\\u00e9 \\uD7FF"}')


def test_messages_and_responses_are_clean_by_construction() -> None:
    message = Message("user", LONE, tool_calls=(ToolCall("c\ud800", "t", '{"a": "\ud800"}'),))
    assert message.content == CLEAN
    assert message.tool_calls[0].id == "c\ufffd"
    assert message.tool_calls[0].arguments == '{"a": "\ufffd"}'
    assert Message("user", [TextPart(LONE)]).content == (TextPart(CLEAN),)
    assert ToolSpec("t", LONE, {}).description == CLEAN
    assert LMResponse(LONE).text == CLEAN


def _sim_lm(server: Any) -> td.LM:
    return td.LM("openai/sim-model", base_url=server.base_url, api_key="k", max_retries=0)


async def test_user_input_with_a_lone_surrogate_goes_out_replaced() -> None:
    config = SimConfig(script=lambda body: SimReply(outputs={"answer": "ok"}))
    async with serve_sim(config) as server, _sim_lm(server) as lm:
        with td.context(lm=lm):
            pred = await td.Predict("question -> answer")(question=LONE)
    assert pred.answer == "ok"
    assert CLEAN in json.dumps(server.requests[0], ensure_ascii=False)


async def test_an_answer_holding_a_lone_surrogate_can_be_sent_back_as_history() -> None:
    # The server JSON-escapes the lone surrogate, as a server that emits
    # UTF-16 halves would; the answer then goes back out in a History turn.
    config = SimConfig(script=lambda body: SimReply(outputs={"answer": LONE}))
    async with serve_sim(config) as server, _sim_lm(server) as lm:
        with td.context(lm=lm):
            chat = td.Predict("question, history: History -> answer")
            first = await chat(question="hi", history=td.History())
            turns = td.History(messages=[{"question": "hi", "answer": first.answer}])
            await chat(question="again", history=turns)
    assert first.answer == CLEAN
    assert CLEAN in json.dumps(server.requests[1], ensure_ascii=False)


def echo(text: str) -> str:
    """Repeat the text."""
    return f"heard {text}"


async def test_react_goes_on_after_tool_arguments_that_hold_a_lone_surrogate() -> None:
    def script(body: Mapping[str, Any]) -> SimReply:
        if any(m.get("role") == "tool" for m in body["messages"]):
            return SimReply(tool_calls=[SimToolCall("finish", {"answer": "done"})])
        return SimReply(tool_calls=[SimToolCall("echo", {"text": LONE})])

    async with serve_sim(SimConfig(script=script)) as server, _sim_lm(server) as lm:
        with td.context(lm=lm):
            pred = await td.ReAct("question -> answer", tools=[echo])(question="say it")
    assert pred.answer == "done"
    assert pred.trajectory.steps[0].calls[0].observation == f"heard {CLEAN}"
    sent = json.dumps(server.requests[1], ensure_ascii=False)
    assert f"heard {CLEAN}" in sent


async def test_text_mode_react_goes_on_after_tool_arguments_that_hold_a_lone_surrogate() -> None:
    def script(body: Mapping[str, Any]) -> SimReply:
        system = body["messages"][0]["content"]
        if "next_thought" not in system:
            return SimReply(outputs={"reasoning": "r", "answer": "done"})
        if "Observation" in json.dumps(body["messages"]):
            return SimReply(
                outputs={"next_thought": "t", "next_tool_name": "finish", "next_tool_args": {}}
            )
        return SimReply(
            outputs={
                "next_thought": "t",
                "next_tool_name": "echo",
                "next_tool_args": {"text": LONE},
            }
        )

    config = SimConfig(script=script, supports_tools=False)
    async with serve_sim(config) as server, _sim_lm(server) as lm:
        with td.context(lm=lm):
            pred = await td.ReAct("question -> answer", tools=[echo])(question="say it")
    assert pred.answer == "done"
    assert pred.trajectory.steps[0].calls[0].observation == f"heard {CLEAN}"


async def test_an_in_process_model_answering_a_lone_surrogate_gives_clean_text() -> None:
    lm = DummyLM([{"answer": LONE}])
    with td.context(lm=lm):
        pred = await td.Predict("question -> answer")(question="q")
    assert pred.answer == CLEAN


async def test_traced_content_with_a_lone_surrogate_is_written_to_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    lm = DummyLM([{"answer": "ok"}])
    async with collect(JsonlExporter(path)):
        with td.context(lm=lm, trace_content=True):
            await td.Predict("question -> answer")(question=LONE)
    text = path.read_text(encoding="utf-8")
    assert text.count("\n") >= 2
    assert "\ud800" not in text


async def test_a_span_attribute_with_a_lone_surrogate_is_written_to_jsonl(tmp_path: Path) -> None:
    from trio_dspy.telemetry import start_span

    path = tmp_path / "spans.jsonl"
    async with collect(JsonlExporter(path)):
        with start_span("app work", attributes={"note": LONE}):
            pass
    (line,) = path.read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["attributes"]["note"] == CLEAN


async def test_a_stop_sequence_with_a_lone_surrogate_goes_out_replaced() -> None:
    config = SimConfig(script=lambda body: SimReply(outputs={"answer": "ok"}))
    async with serve_sim(config) as server, _sim_lm(server) as lm:
        with td.context(lm=lm):
            await td.Predict("question -> answer", stop=[LONE])(question="q")
    assert server.requests[0]["stop"] == [CLEAN]


async def test_a_tool_never_receives_a_lone_surrogate_the_model_escaped_in_its_arguments() -> None:
    received: list[str] = []

    def note(text: str) -> str:
        """Write the text down."""
        received.append(text)
        return "noted"

    def script(body: Mapping[str, Any]) -> SimReply:
        if any(m.get("role") == "tool" for m in body["messages"]):
            return SimReply(tool_calls=[SimToolCall("finish", {"answer": "done"})])
        # The arguments text itself escapes the surrogate: JSON inside JSON.
        return SimReply(tool_calls=[SimToolCall("note", '{"text": "x\\ud800y"}')])

    async with serve_sim(SimConfig(script=script)) as server, _sim_lm(server) as lm:
        with td.context(lm=lm):
            pred = await td.ReAct("question -> answer", tools=[note])(question="q")
    assert pred.answer == "done"
    assert received == [CLEAN]
