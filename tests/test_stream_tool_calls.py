"""Tool calls in a stream: argument pieces as they arrive, and agents' answers streamed from them.

Every test runs on the autojump clock, so the simulated server's chunk delays
and DummyLM's pauses are virtual time.
"""

from __future__ import annotations

import json

import pytest
import trio

import trio_dspy as td
from trio_dspy.lm import LM, LMRequest, LMResponse, LMStream, Message, ToolCall, ToolSpec
from trio_dspy.messages import ToolCallDelta
from trio_dspy.streaming import StreamItem
from trio_dspy.testing import DummyLM, SimConfig, SimReply, serve_sim
from trio_dspy.testing.sim_answers import SimToolCall
from trio_dspy.testing.sim_config import Body

ANSWER = 'A large latte, "hot" and\nready at the counter.'
PROVIDERS = ["openai", "anthropic"]
TOOLS = (ToolSpec("lookup", "find an item", {"type": "object"}),)


def check_menu(item: str) -> str:
    """Look up an item on the menu."""
    return f"{item} is on the menu"


def note(answer: str) -> str:
    """Write down a draft answer."""
    return "noted"


def make_lm(base: str, provider: str) -> LM:
    return LM(f"{provider}/sim-model", base_url=base, max_retries=0)


def answer_chunks(items: list[StreamItem]) -> list[td.StreamResponse]:
    return [i for i in items if isinstance(i, td.StreamResponse)]


def arguments_by_call(events: list[str | ToolCallDelta]) -> dict[int, str]:
    joined: dict[int, str] = {}
    for event in events:
        if isinstance(event, ToolCallDelta):
            joined[event.index] = joined.get(event.index, "") + event.arguments
    return joined


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_native_agents_answer_arrives_in_pieces_while_finish_is_written(
    autojump_clock: trio.abc.Clock, provider: str
) -> None:
    turns = iter(
        [
            SimReply(tool_calls=[SimToolCall("check_menu", {"item": "latte"})]),
            SimReply(tool_calls=[SimToolCall("finish", {"answer": ANSWER})]),
        ]
    )

    def script(body: Body) -> SimReply:
        return next(turns)

    config = SimConfig(script=script, stream_chunk_chars=4, stream_delay=0.5)
    agent = td.ReAct("request -> answer", tools=[check_menu])
    async with serve_sim(config) as sim:
        base = sim.base_url if provider == "openai" else sim.root_url
        async with make_lm(base, provider) as lm:
            with td.context(lm=lm):
                async with td.streamify(agent)(request="latte?") as stream:
                    items = [item async for item in stream]
    prediction = items[-1]
    assert isinstance(prediction, td.Prediction) and prediction.answer == ANSWER
    chunks = answer_chunks(items)
    assert len(chunks) > 3
    assert {(c.predictor, c.field) for c in chunks} == {("extract.predict", "answer")}
    assert "".join(c.chunk for c in chunks) == ANSWER
    assert [i.text for i in items if isinstance(i, td.StatusMessage)] == [
        "Calling tool check_menu",
        "Tool check_menu finished",
    ]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_plain_iteration_gives_text_only_and_events_add_the_argument_pieces(
    autojump_clock: trio.abc.Clock, provider: str
) -> None:
    calls = [SimToolCall("lookup", {"item": "latte"}), SimToolCall("price", {"item": "mocha"})]
    config = SimConfig(script=lambda body: SimReply(tool_calls=calls), stream_chunk_chars=3)
    request = LMRequest([Message("user", "find a latte")], tools=TOOLS)
    async with serve_sim(config) as sim:
        base = sim.base_url if provider == "openai" else sim.root_url
        async with make_lm(base, provider) as lm:
            async with lm.stream(request) as plain:
                pieces = [piece async for piece in plain]
            async with lm.stream(request) as stream:
                events = [event async for event in stream.events()]
    # The simulated server sends the calls alone: plain iteration sees nothing of them.
    assert pieces == [] and plain.response.text == ""
    assert len(plain.response.tool_calls) == 2
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert len(deltas) > 4
    assert "".join(e for e in events if isinstance(e, str)) == stream.response.text
    joined = arguments_by_call(events)
    response_calls = stream.response.tool_calls
    assert [joined[i] for i in range(len(response_calls))] == [c.arguments for c in response_calls]
    assert {(d.index, d.id, d.name) for d in deltas} == {
        (i, c.id, c.name) for i, c in enumerate(response_calls)
    }


async def test_a_whole_stream_gives_each_tool_call_as_one_piece_after_the_text() -> None:
    calls = (ToolCall("c1", "lookup", '{"item": "latte"}'), ToolCall("c2", "price", "{}"))
    response = LMResponse(text="Looking.", tool_calls=calls, finish_reason="tool_calls")
    assert [piece async for piece in LMStream.whole(response)] == ["Looking."]
    events = [event async for event in LMStream.whole(response).events()]
    assert events == [
        "Looking.",
        ToolCallDelta(0, "c1", "lookup", '{"item": "latte"}'),
        ToolCallDelta(1, "c2", "price", "{}"),
    ]


async def test_a_scripted_model_streams_tool_call_arguments_in_pieces(
    autojump_clock: trio.abc.Clock,
) -> None:
    arguments = json.dumps({"item": "latte"})
    scripted = LMResponse(text="Hmm.", tool_calls=(ToolCall("c1", "lookup", arguments),))
    lm = DummyLM([scripted, scripted], stream_chunk=4, supports_tools=True)
    request = LMRequest([Message("user", "find a latte")], tools=TOOLS)
    async with lm.stream(request) as stream:
        events = [event async for event in stream.events()]
    assert events[0] == "Hmm."
    assert [e.arguments for e in events[1:] if isinstance(e, ToolCallDelta)] == [
        arguments[i : i + 4] for i in range(0, len(arguments), 4)
    ]
    assert stream.response == scripted
    async with lm.stream(request) as plain:
        assert [piece async for piece in plain] == ["Hmm."]


async def test_only_the_finish_call_streams_other_tools_arguments_do_not(
    autojump_clock: trio.abc.Clock,
) -> None:
    lm = DummyLM(
        [
            LMResponse(
                text="Drafting.",
                tool_calls=(ToolCall("c1", "note", json.dumps({"answer": "a draft"})),),
            ),
            LMResponse(
                text="",
                tool_calls=(
                    ToolCall("c2", "finish", json.dumps({"answer": ANSWER})),
                    ToolCall("c3", "finish", json.dumps({"answer": "a second finish"})),
                ),
            ),
        ],
        supports_tools=True,
        stream_chunk=5,
    )
    agent = td.ReAct("request -> answer", tools=[note])
    with td.context(lm=lm):
        async with td.streamify(agent, listen=["answer"])(request="latte?") as stream:
            items = [item async for item in stream]
    chunks = answer_chunks(items)
    assert len(chunks) > 3
    assert "".join(c.chunk for c in chunks) == ANSWER


async def test_leaving_a_native_agents_stream_early_cancels_its_model_call(
    autojump_clock: trio.abc.Clock,
) -> None:
    arguments = json.dumps({"answer": "word " * 100})
    lm = DummyLM(
        [LMResponse(text="", tool_calls=(ToolCall("c1", "finish", arguments),))],
        supports_tools=True,
        stream_chunk=2,
        stream_delay=1.0,
    )
    agent = td.ReAct("request -> answer", tools=[check_menu])
    with td.context(lm=lm):
        async with td.streamify(agent)(request="latte?") as stream:
            async for item in stream:
                assert isinstance(item, td.StreamResponse)
                break
            at_first_chunk = lm.deltas_sent
        await trio.sleep(1000)  # time enough to finish, had the call gone on
    # The first chunk came while the model was writing, and the writing stopped there.
    assert 0 < at_first_chunk < len(arguments) // 2
    assert lm.deltas_sent <= at_first_chunk + 2
