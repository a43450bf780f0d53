"""The simulated server's streamed answers, read at the HTTP level."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

from trio_dspy import cli
from trio_dspy.http import HTTPClient
from trio_dspy.http.sse import SSEDecoder, SSEEvent
from trio_dspy.testing import SimConfig, SimReply, serve_sim
from trio_dspy.testing.sim_stream import anthropic_events, openai_events

TEXT = "abcdefghij" * 3


def body(**extra: Any) -> bytes:
    request = {"model": "sim-model", "messages": [{"role": "user", "content": "hi"}], **extra}
    return json.dumps(request).encode()


def decode(parts: list[bytes]) -> list[SSEEvent]:
    decoder = SSEDecoder()
    return [event for part in parts for event in decoder.feed(part)]


async def test_events_arrive_one_by_one_with_the_configured_delay(autojump_clock: Any) -> None:
    config = SimConfig(script=lambda b: SimReply(text=TEXT), stream_delay=2.0)
    async with serve_sim(config) as sim:
        http = HTTPClient(sim.base_url)
        arrivals: list[float] = []
        pieces: list[bytes] = []
        async with http.stream(http.url("/chat/completions"), body(stream=True)) as reply:
            assert reply.status == 200
            assert reply.headers["content-type"] == "text/event-stream"
            while piece := await reply.receive():
                arrivals.append(trio.current_time())
                pieces.append(piece)
        await http.aclose()
    events = decode(pieces)
    assert events[-1].data == "[DONE]"
    texts = [json.loads(e.data)["choices"][0]["delta"].get("content") for e in events[1:-2]]
    assert texts == [TEXT[:16], TEXT[16:]]  # 16 characters a piece by default
    assert len(pieces) == len(events) and arrivals[-1] - arrivals[0] == pytest.approx(8, abs=0.1)


def test_openai_events_cut_text_and_tool_arguments_into_pieces() -> None:
    payload = {
        "id": "c",
        "created": 0,
        "model": "m",
        "system_fingerprint": "fp",
        "choices": [
            {
                "message": {
                    "content": "hello",
                    "tool_calls": [
                        {"id": "call_1", "function": {"name": "f", "arguments": '{"a":1}'}}
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }
    events = decode(openai_events(payload, chunk_chars=2, include_usage=True))
    deltas = [json.loads(e.data)["choices"] for e in events[:-2]]
    contents = [c[0]["delta"].get("content") for c in deltas if c[0]["delta"].get("content")]
    assert contents == ["he", "ll", "o"]
    arguments = [
        c[0]["delta"]["tool_calls"][0]["function"].get("arguments", "")
        for c in deltas
        if "tool_calls" in c[0]["delta"]
    ]
    assert arguments == ["", '{"', 'a"', ":1", "}"]
    assert json.loads(events[-2].data)["usage"]["total_tokens"] == 3


def test_anthropic_events_follow_the_messages_stream_order() -> None:
    payload = {
        "id": "msg",
        "model": "m",
        "content": [
            {"type": "text", "text": "hey"},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 5, "output_tokens": 7},
    }
    events = decode(anthropic_events(payload, chunk_chars=4))
    assert [e.event for e in events] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert json.loads(events[-2].data)["usage"] == {"output_tokens": 7}


def test_serve_sim_takes_the_stream_options_as_flags() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["serve-sim", "--stream-chunk-chars", "3", "--stream-delay", "0.25"])
    config = cli.sim_config_from_args(args)
    assert (config.stream_chunk_chars, config.stream_delay) == (3, 0.25)


def test_stream_options_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="stream_chunk_chars"):
        SimConfig(stream_chunk_chars=0)
    with pytest.raises(ValueError, match="stream_delay"):
        SimConfig(stream_delay=-1)
