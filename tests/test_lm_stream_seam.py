"""Every model streams: the default gives a whole response as one piece."""

from __future__ import annotations

import pytest
import trio

from trio_dspy.lm import LMStream
from trio_dspy.messages import LMRequest, LMResponse, Message
from trio_dspy.testing import DummyLM

REQUEST = LMRequest([Message("user", "hi")])


async def test_any_model_streams_its_whole_answer_as_one_piece() -> None:
    lm = DummyLM(["hello there"])
    async with lm.stream(REQUEST) as stream:
        pieces = [piece async for piece in stream]
    assert pieces == ["hello there"]
    assert stream.finished and stream.response.text == "hello there"
    assert len(lm.history) == 1  # recorded like a plain request


async def test_the_response_is_refused_before_the_stream_ends() -> None:
    send, receive = trio.open_memory_channel[str](1)
    stream = LMStream(receive)
    with pytest.raises(RuntimeError, match="read it to the end"):
        _ = stream.response
    await send.send("a")
    send.close()
    assert [p async for p in stream] == ["a"]


async def test_an_empty_answer_streams_no_piece() -> None:
    stream = LMStream.whole(LMResponse(text=""))
    assert [p async for p in stream] == []
    assert stream.response.text == ""
