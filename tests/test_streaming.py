"""``td.streamify``: output fields read while the model writes them, status lines, the prediction last."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
import trio.testing

import trio_dspy as td
from trio_dspy.adapters.markers import COMPLETED, field_header
from trio_dspy.errors import AdapterParseError, ConfigurationError
from trio_dspy.messages import LMResponse, ToolCall
from trio_dspy.streaming import ProgramStream, StreamItem, status
from trio_dspy.testing import DummyLM
from trio_dspy.trace import collect_trace

REPLY = "Here is your large latte, enjoy it!"


def chat(**fields: str) -> str:
    body = "\n\n".join(f"{field_header(k)}\n{v}" for k, v in fields.items())
    return f"{body}\n\n{COMPLETED}"


async def collect(stream: ProgramStream) -> list[StreamItem]:
    return [item async for item in stream]


def texts(items: list[StreamItem], field: str, predictor: str | None = None) -> str:
    return "".join(
        i.chunk
        for i in items
        if isinstance(i, td.StreamResponse)
        and i.field == field
        and (predictor is None or i.predictor == predictor)
    )


class Respond(td.Module):
    """Two predictors, the second fed by the first."""

    def __init__(self) -> None:
        self.draft = td.Predict("request -> reply")
        self.polish = td.ChainOfThought("draft -> reply, tone: float")

    async def forward(self, **inputs: Any) -> td.Prediction:
        draft = await self.draft(**inputs)
        pred: td.Prediction = await self.polish(draft=draft.reply)
        return pred


async def test_the_first_chunk_arrives_while_the_model_is_still_writing(
    autojump_clock: trio.abc.Clock,
) -> None:
    lm = DummyLM([chat(answer=REPLY)], stream_chunk=4, stream_delay=0.1)
    program = td.streamify(td.Predict("question -> answer"))
    with td.context(lm=lm):
        async with program(question="Latte?") as stream:
            first = await stream.__anext__()
            sent_at_first_chunk = lm.deltas_sent
            rest = await collect(stream)
    assert isinstance(first, td.StreamResponse) and first.field == "answer"
    assert sent_at_first_chunk < lm.deltas_sent  # more was written after it
    prediction = rest[-1]
    assert isinstance(prediction, td.Prediction) and prediction.answer == REPLY
    assert texts([first, *rest], "answer") == REPLY


@pytest.mark.parametrize("adapter", [td.ChatAdapter(), td.JSONAdapter()], ids=repr)
async def test_chunks_join_to_the_final_value_in_both_formats(
    adapter: td.Adapter, autojump_clock: trio.abc.Clock
) -> None:
    answer = {"answer": f'  {REPLY} \\ "quoted" café 😀\n', "confidence": 0.5}
    lm = DummyLM([answer], stream_chunk=3)
    program = td.streamify(td.Predict("question -> answer, confidence: float"))
    with td.context(lm=lm, adapter=adapter):
        async with program(question="Latte?") as stream:
            items = await collect(stream)
    prediction = items[-1]
    assert isinstance(prediction, td.Prediction)
    chunks = [i for i in items if isinstance(i, td.StreamResponse)]
    assert len(chunks) > 5 and {c.predictor for c in chunks} == {"self"}
    assert {c.field for c in chunks} == {"answer"}  # confidence is no str field
    assert texts(items, "answer") == prediction.answer


async def test_a_marker_split_over_many_deltas_never_shows_in_a_chunk(
    autojump_clock: trio.abc.Clock,
) -> None:
    lm = DummyLM([chat(answer="plain words", notes="more words")], stream_chunk=1)
    program = td.streamify(td.Predict("question -> answer, notes"))
    with td.context(lm=lm):
        async with program(question="?") as stream:
            items = await collect(stream)
    chunks = [i.chunk for i in items if isinstance(i, td.StreamResponse)]
    assert not any(set(c) & set("[]#") for c in chunks)
    assert (texts(items, "answer"), texts(items, "notes")) == ("plain words", "more words")


async def test_every_call_of_every_nested_predictor_streams_under_its_name(
    autojump_clock: trio.abc.Clock,
) -> None:
    lm = DummyLM(
        [chat(reply="draft text"), chat(reasoning="be kind", reply="polished text", tone="0.9")],
        stream_chunk=2,
    )
    program = Respond()
    with td.context(lm=lm), collect_trace() as trace:
        async with td.streamify(program)(request="a latte") as stream:
            items = await collect(stream)
    assert [entry[0] for entry in trace] == [program.draft, program.polish]  # traced as usual
    assert texts(items, "reply", "draft") == "draft text"
    assert texts(items, "reasoning", "polish.predict") == "be kind"
    assert texts(items, "reply", "polish.predict") == "polished text"
    assert isinstance(items[-1], td.Prediction) and items[-1].tone == 0.9


async def test_listen_picks_fields_and_unknown_names_are_refused(
    autojump_clock: trio.abc.Clock,
) -> None:
    lm = DummyLM([chat(reply="draft"), chat(reasoning="r", reply="final", tone="1")])
    with td.context(lm=lm):
        async with td.streamify(Respond(), listen=["reasoning"])(request="x") as stream:
            items = await collect(stream)
    assert {(i.predictor, i.field) for i in items if isinstance(i, td.StreamResponse)} == {
        ("polish.predict", "reasoning")
    }
    with pytest.raises(ValueError, match=r"'answer'.*reply \(draft, polish\.predict\); reasoning"):
        td.streamify(Respond(), listen=["reply", "answer"])
    with pytest.raises(ValueError, match="'tone'"):  # a float field does not stream
        td.streamify(Respond(), listen=["tone"])
    with pytest.raises(TypeError, match=r"\['reply'\]"):
        td.streamify(Respond(), listen="reply")


async def test_leaving_the_block_early_cancels_the_program_and_its_model_call(
    autojump_clock: trio.abc.Clock,
) -> None:
    cancelled: list[bool] = []

    class Watched(Respond):
        async def forward(self, **inputs: Any) -> td.Prediction:
            try:
                return await super().forward(**inputs)
            except trio.Cancelled:
                cancelled.append(True)
                raise

    text = chat(reply="word " * 50)
    lm = DummyLM([text, text], stream_chunk=5, stream_delay=1.0)
    with td.context(lm=lm):
        async with td.streamify(Watched())(request="x") as stream:
            async for item in stream:
                assert isinstance(item, td.StreamResponse)
                break
        await trio.sleep(100)  # plenty of time for the model to go on, had it not stopped
    assert cancelled == [True]
    assert len(lm.requests) == 1  # the second predictor never ran
    assert lm.deltas_sent < len(text) // 5


async def test_a_consumer_that_stops_reading_stops_the_model(
    autojump_clock: trio.abc.Clock,
) -> None:
    header = f"{field_header('answer')}\n"
    lm = DummyLM([chat(answer="x" * 500)], stream_chunk=1)
    program = td.streamify(td.Predict("question -> answer"), buffer=4)
    with td.context(lm=lm):
        async with program(question="?") as stream:
            await trio.sleep(1000)
            stalled_at = lm.deltas_sent
            # The buffer holds 4 chunks; Predict and the model each wait with one more.
            assert stalled_at <= len(header) + 4 + 2
            items = await collect(stream)
    assert texts(items, "answer") == "x" * 500
    assert lm.deltas_sent > stalled_at


async def test_the_programs_error_comes_out_as_itself(autojump_clock: trio.abc.Clock) -> None:
    program = td.streamify(td.Predict("question -> answer"))
    with td.context(lm=DummyLM([])), pytest.raises(ConfigurationError, match="ran out"):
        async with program(question="?") as stream:
            await collect(stream)
    # Caught inside the block, it is the iteration that raised it.
    with td.context(lm=DummyLM([])):
        async with program(question="?") as stream:
            with pytest.raises(ConfigurationError):
                await collect(stream)
    # A failure the block never read still comes out of the block.
    with td.context(lm=DummyLM([])), pytest.raises(ConfigurationError):
        async with program(question="?"):
            await trio.sleep(1)
    # And the block's own error is given back unwrapped.
    with td.context(lm=DummyLM([chat(answer="a")])), pytest.raises(KeyError):
        async with program(question="?"):
            raise KeyError("mine")


async def test_a_reask_is_announced_and_usage_and_history_count_both_calls(
    autojump_clock: trio.abc.Clock,
) -> None:
    # The re-ask goes out in structured-output mode: the scripted model answers JSON.
    lm = DummyLM([chat(answer="first", score="high"), {"answer": "second", "score": 2}])
    program = td.streamify(td.Predict("question -> answer, score: int"))
    with td.context(lm=lm), td.track_usage() as usage:
        async with program(question="?") as stream:
            items = await collect(stream)
    statuses = [i.text for i in items if isinstance(i, td.StatusMessage)]
    assert statuses == ["self: the answer did not parse, asking again"]
    prediction = items[-1]
    assert isinstance(prediction, td.Prediction) and prediction.answer == "second"
    assert texts(items, "answer") == "first"  # the reference is the prediction
    assert len(lm.history) == 2 and usage.total_tokens == prediction.usage.total_tokens > 0


async def test_a_reask_that_continues_the_streamed_text_completes_it(
    autojump_clock: trio.abc.Clock,
) -> None:
    lm = DummyLM([chat(answer="first"), chat(answer="first and more")])
    with td.context(lm=lm, max_parse_retries=1), pytest.raises(AdapterParseError):
        await td.Predict("question -> answer, n: int")(question="?")  # no stream: plain errors
    first = " ".join(["first"] * 30)  # streamed in more pieces than are kept apart
    lm = DummyLM(
        [chat(answer=first, n="x"), chat(answer=f"{first} and more", n="1")], stream_chunk=1
    )
    # The free-text re-ask, which shows the model its answer, may continue it.
    with td.context(lm=lm, adapter=td.ChatAdapter(use_json_adapter_fallback=False)):
        async with td.streamify(td.Predict("question -> answer, n: int"))(question="?") as s:
            items = await collect(s)
    assert texts(items, "answer") == f"{first} and more"
    assert items[-2] == td.StreamResponse("self", "answer", " and more", is_last_chunk=True)


async def test_two_streams_at_once_never_mix(autojump_clock: trio.abc.Clock) -> None:
    first, second = td.Predict("question -> answer"), Respond()
    first.lm = DummyLM([chat(answer="one " * 20)], stream_chunk=3, stream_delay=0.1)
    second_lm = DummyLM(
        [chat(reply="two " * 20), chat(reasoning="r", reply="three", tone="1")],
        stream_chunk=3,
        stream_delay=0.1,
    )
    second.draft.lm = second.polish.lm = second_lm
    results: dict[str, list[StreamItem]] = {}

    async def consume(key: str, stream_program: Any, inputs: dict[str, Any]) -> None:
        async with stream_program(**inputs) as stream:
            results[key] = await collect(stream)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume, "first", td.streamify(first), {"question": "?"})
        nursery.start_soon(consume, "second", td.streamify(second), {"request": "?"})
    assert {i.predictor for i in results["first"] if isinstance(i, td.StreamResponse)} == {"self"}
    assert texts(results["first"], "answer") == ("one " * 20).strip()
    assert texts(results["second"], "reply", "draft") == ("two " * 20).strip()
    # A plain call made beside a stream sends nothing anywhere.
    plain = td.Predict("question -> answer")
    plain.lm = DummyLM([chat(answer="quiet")])
    assert (await plain(question="?")).answer == "quiet"


# ------------------------------------------------------------------------ agents
def check_menu(item: str) -> str:
    """Look up an item on the menu."""
    return f"{item} is on the menu"


def tool_turn(*calls: ToolCall) -> LMResponse:
    return LMResponse(text="", tool_calls=calls, finish_reason="tool_calls")


async def test_an_agent_reports_each_tool_and_streams_its_answer(
    autojump_clock: trio.abc.Clock,
) -> None:
    finish = {"answer": REPLY}
    lm = DummyLM(
        [
            tool_turn(ToolCall("c1", "check_menu", json.dumps({"item": "latte"}))),
            tool_turn(ToolCall("c2", "finish", json.dumps(finish))),
        ],
        supports_tools=True,
    )
    agent = td.ReAct("request -> answer", tools=[check_menu])
    with td.context(lm=lm):
        async with td.streamify(agent, listen=["answer"])(request="A latte") as stream:
            items = await collect(stream)
    assert items[:2] == [
        td.StatusMessage("Calling tool check_menu"),
        td.StatusMessage("Tool check_menu finished"),
    ]
    assert items[2:-1] == [
        td.StreamResponse("extract.predict", "answer", REPLY, is_last_chunk=True)
    ]
    assert isinstance(items[-1], td.Prediction) and items[-1].answer == REPLY


async def test_a_text_mode_agent_streams_its_steps_and_shows_arguments_when_tracing(
    autojump_clock: trio.abc.Clock,
) -> None:
    lm = DummyLM(
        [
            {
                "next_thought": "look it up",
                "next_tool_name": "check_menu",
                "next_tool_args": {"item": "mocha"},
            },
            {"next_thought": "done", "next_tool_name": "finish", "next_tool_args": {}},
            {"reasoning": "it is there", "answer": "Yes, mocha."},
        ],
        stream_chunk=4,
    )
    agent = td.ReAct("request -> answer", tools=[check_menu], mode="text")
    with td.context(lm=lm, trace_content=True):
        async with td.streamify(agent)(request="Mocha?") as stream:
            items = await collect(stream)
    statuses = [i.text for i in items if isinstance(i, td.StatusMessage)]
    assert statuses == [
        'Calling tool check_menu with {"item": "mocha"}',
        "Tool check_menu finished",
    ]
    assert texts(items, "next_thought", "react") == "look it updone"
    assert texts(items, "answer", "extract.predict") == "Yes, mocha."
    assert texts(items, "reasoning", "extract.predict") == "it is there"


async def test_status_does_nothing_outside_a_stream() -> None:
    await status("nobody listens")  # no error, no effect


async def test_a_scripted_model_streams_in_pieces_and_stops_when_left(
    autojump_clock: trio.abc.Clock,
) -> None:
    lm = DummyLM(["abcdefghij"] * 2, stream_chunk=3, stream_delay=1.0)
    request = td.LMRequest([td.Message("user", "hi")])
    async with lm.stream(request) as stream:
        assert [p async for p in stream] == ["abc", "def", "ghi", "j"]
    assert stream.response.text == "abcdefghij"
    async with lm.stream(request) as stream:
        assert await stream.__anext__() == "abc"
    assert lm.deltas_sent == 5 and len(lm.history) == 2
    with pytest.raises(ValueError, match="stream_chunk"):
        DummyLM([], stream_chunk=0)


async def test_status_and_opening_a_stream_are_checkpoints() -> None:
    with trio.testing.assert_checkpoints():
        await status("x")
    program = td.streamify(td.Predict("question -> answer"))
    with td.context(lm=DummyLM([chat(answer="a")])):
        stream_cm = program(question="?")
        with trio.testing.assert_checkpoints():
            stream = await stream_cm.__aenter__()
        await collect(stream)
        await stream_cm.__aexit__(None, None, None)


async def test_best_of_n_and_refine_stream_no_candidate_only_the_chosen_prediction(
    autojump_clock: trio.abc.Clock,
) -> None:
    def long_enough(inputs: Any, prediction: td.Prediction) -> float:
        return 1.0 if len(prediction.answer) > 3 else 0.0

    for module in (td.BestOfN, td.Refine):
        lm = DummyLM([chat(answer="no"), chat(answer="yes indeed")], stream_chunk=2)
        program = module(td.Predict("question -> answer"), 2, long_enough, 1.0)
        with td.context(lm=lm):
            async with td.streamify(program)(question="?") as stream:
                items = await collect(stream)
        assert len(lm.requests) == 2
        assert len(items) == 1 and isinstance(items[0], td.Prediction)
        assert items[0].answer == "yes indeed"
