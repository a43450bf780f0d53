"""LM.stream through an injected httpx transport: the wire shapes each provider may send."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import trio

from trio_dspy.errors import LMBadRequestError, LMRateLimitError, LMServerError, LMTimeoutError
from trio_dspy.lm import LM, LMRequest, Message

ASK = LMRequest([Message("user", "tell me")])
SSE = {"content-type": "text/event-stream"}


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    body = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
    return f"data: {json.dumps(body)}\n\n".encode()


def named(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps({'type': event, **data})}\n\n".encode()


def serving(*replies: Callable[[], httpx.Response]) -> tuple[httpx.MockTransport, list[Any]]:
    """A transport answering the n-th request with ``replies[n]()``; the bodies it got."""
    seen: list[Any] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return replies[min(len(seen), len(replies)) - 1]()

    return httpx.MockTransport(handle), seen


def events(*parts: bytes, pause: float = 0.0) -> Callable[[], httpx.Response]:
    async def body() -> AsyncIterator[bytes]:
        for part in parts:
            await trio.sleep(pause)
            yield part

    return lambda: httpx.Response(200, headers=SSE, content=body())


async def read(lm: LM) -> tuple[list[str], Any]:
    async with lm.stream(ASK) as stream:
        pieces = [piece async for piece in stream]
    return pieces, stream.response


async def test_openai_stream_asks_for_usage_and_reads_it_from_the_last_chunk() -> None:
    transport, seen = serving(
        events(
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Hel"}),
            chunk({"content": "lo"}),
            chunk({}, "stop"),
            b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n',
            b"data: [DONE]\n\n",
        )
    )
    lm = LM("openai/m", base_url="http://sim.test/v1", transport=transport)
    pieces, response = await read(lm)
    assert seen[0]["stream"] is True and seen[0]["stream_options"] == {"include_usage": True}
    assert pieces == ["Hel", "lo"] and response.text == "Hello"
    assert (response.usage.prompt_tokens, response.usage.total_tokens) == (3, 5)
    assert response.finish_reason == "stop"


async def test_openai_tool_call_pieces_join_by_index() -> None:
    first = {"index": 0, "id": "call_a", "function": {"name": "f", "arguments": '{"x"'}}
    second = {"index": 1, "id": "call_b", "function": {"name": "g", "arguments": "{}"}}
    transport, _ = serving(
        events(
            chunk({"tool_calls": [first]}),
            chunk({"tool_calls": [second]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}),
            chunk({}, "tool_calls"),
            b"data: [DONE]\n\n",
        )
    )
    lm = LM("openai/m", base_url="http://sim.test/v1", transport=transport)
    pieces, response = await read(lm)
    assert pieces == []
    assert [(c.id, c.name, c.arguments) for c in response.tool_calls] == [
        ("call_a", "f", '{"x": 1}'),
        ("call_b", "g", "{}"),
    ]


async def test_anthropic_error_event_before_any_text_is_retried_after_it_is_final(
    autojump_clock: Any,
) -> None:
    overloaded = named("error", {"error": {"type": "overloaded_error", "message": "busy"}})
    start = named("message_start", {"message": {"model": "m", "usage": {"input_tokens": 4}}})
    block = named("content_block_start", {"index": 0, "content_block": {"type": "text"}})
    text = named("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Hi"}})
    limited = named("error", {"error": {"type": "rate_limit_error", "message": "slow down"}})
    transport, seen = serving(events(start, overloaded), events(start, block, text, limited))
    lm = LM("anthropic/m", base_url="http://sim.test", transport=transport, max_retries=3)
    pieces: list[str] = []
    with pytest.raises(LMRateLimitError, match="slow down"):
        async with lm.stream(ASK) as stream:
            async for piece in stream:
                pieces.append(piece)
    assert len(seen) == 2 and pieces == ["Hi"]


async def test_a_server_that_ignores_stream_answers_whole_in_one_piece() -> None:
    body = {
        "choices": [{"message": {"content": "all at once"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 3},
    }
    transport, _ = serving(lambda: httpx.Response(200, json=body))
    lm = LM("openai/m", base_url="http://sim.test/v1", transport=transport)
    pieces, response = await read(lm)
    assert pieces == ["all at once"] and response.usage.total_tokens == 4


async def test_a_stream_cut_before_its_end_is_retried_when_nothing_was_read(
    autojump_clock: Any,
) -> None:
    cut = events(chunk({"role": "assistant"}))
    whole = events(chunk({"content": "ok"}), chunk({}, "stop"), b"data: [DONE]\n\n")
    transport, seen = serving(cut, whole)
    lm = LM("openai/m", base_url="http://sim.test/v1", transport=transport)
    pieces, _ = await read(lm)
    assert pieces == ["ok"] and len(seen) == 2


async def test_a_garbled_event_after_text_is_a_final_server_error() -> None:
    transport, seen = serving(events(chunk({"content": "a"}), b"data: {not json\n\n"))
    lm = LM("openai/m", base_url="http://sim.test/v1", transport=transport)
    with pytest.raises(LMServerError, match="not in the openai format"):
        await read(lm)
    assert len(seen) == 1


async def test_silence_on_an_httpx_transport_times_out_after_read_timeout(
    autojump_clock: Any,
) -> None:
    slow = events(chunk({"content": "a"}), chunk({}, "stop"), pause=30)
    transport, _ = serving(slow)
    lm = LM("openai/m", base_url="http://sim.test/v1", transport=transport, read_timeout=5)
    with pytest.raises(LMTimeoutError, match="ReadTimeout"):
        await read(lm)


async def test_an_error_status_before_the_stream_maps_like_a_whole_call() -> None:
    limited = {"error": {"message": "too many", "type": "requests"}}
    transport, seen = serving(lambda: httpx.Response(429, json=limited))
    lm = LM("openai/m", base_url="http://sim.test/v1", transport=transport, max_retries=0)
    with pytest.raises(LMRateLimitError, match="too many"):
        await read(lm)
    assert len(seen) == 1


async def test_an_openai_error_chunk_takes_its_status_from_the_code(autojump_clock: Any) -> None:
    broken = events(b'data: {"error": {"message": "engine crashed", "code": 503}}\n\n')
    refused = events(b'data: {"error": {"message": "bad prompt", "code": 400}}\n\n')
    transport, seen = serving(broken, refused)
    lm = LM("openai/m", base_url="http://sim.test/v1", transport=transport)
    with pytest.raises(LMBadRequestError, match="bad prompt"):
        await read(lm)
    assert len(seen) == 2  # the 503 was retried, the 400 was not


# ------------------------------------------------------------------ hostile numbers
TOOL_PIECE = '{{"index":{index},"id":"c","function":{{"name":"f","arguments":"{{}}"}}}}'
HOSTILE_INDEXES = ["Infinity", "-Infinity", "NaN", "1e400", "-1", "1" + "0" * 40, '"x"', "[]"]


@pytest.mark.parametrize("index", HOSTILE_INDEXES)
async def test_an_openai_tool_call_index_that_is_no_index_is_a_server_error(index: str) -> None:
    piece = TOOL_PIECE.format(index=index)
    body = f'data: {{"choices":[{{"index":0,"delta":{{"tool_calls":[{piece}]}}}}]}}\n\n'
    transport, seen = serving(events(body.encode(), b"data: [DONE]\n\n"))
    lm = LM("openai/m", base_url="http://sim.test/v1", transport=transport, max_retries=0)
    with pytest.raises(LMServerError, match="index"):
        await read(lm)
    assert len(seen) == 1


@pytest.mark.parametrize("event", ["content_block_start", "content_block_delta"])
@pytest.mark.parametrize("index", HOSTILE_INDEXES)
async def test_an_anthropic_block_index_that_is_no_index_is_a_server_error(
    event: str, index: str
) -> None:
    inner = '"content_block":{"type":"text","text":"a"}'
    if event == "content_block_delta":
        inner = '"delta":{"type":"text_delta","text":"a"}'
    body = f'event: {event}\ndata: {{"type":"{event}","index":{index},{inner}}}\n\n'
    stop = named("message_stop", {})
    transport, _ = serving(events(body.encode(), stop))
    lm = LM("anthropic/m", base_url="http://sim.test", transport=transport, max_retries=0)
    with pytest.raises(LMServerError, match="index"):
        await read(lm)


# ------------------------------------------------------------------ lone surrogates
LONE = "\ud800"
# The tool arguments' JSON text in pieces: one lone surrogate decoded from
# the event's JSON, one written as an escape in the arguments' own text
# (split between two pieces, as a model's tokens may split it).
PIECES = ['{"q": "' + LONE + '", "r": "\\ud8', '00"}']


def follow_up(response: Any) -> LMRequest:
    calls = response.tool_calls
    return LMRequest(
        [
            Message("user", "hi"),
            Message("assistant", response.text, tool_calls=calls),
            *(Message("tool", "done", tool_call_id=c.id) for c in calls),
        ]
    )


def openai_surrogates() -> Callable[[], httpx.Response]:
    start = {"index": 0, "id": "c1", "function": {"name": "f", "arguments": PIECES[0]}}
    rest = {"index": 0, "function": {"arguments": PIECES[1]}}
    return events(
        chunk({"content": "hi " + LONE}),  # json.dumps writes the \ud800 escape
        chunk({"tool_calls": [start]}),
        chunk({"tool_calls": [rest]}),
        chunk({}, "tool_calls"),
        b"data: [DONE]\n\n",
    )


def anthropic_surrogates() -> Callable[[], httpx.Response]:
    tool = {"type": "tool_use", "id": "c1", "name": "f", "input": {}}
    return events(
        named("message_start", {"message": {"model": "m", "usage": {"input_tokens": 1}}}),
        named("content_block_start", {"index": 0, "content_block": {"type": "text"}}),
        named("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "hi "}}),
        named("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": LONE}}),
        named("content_block_start", {"index": 1, "content_block": tool}),
        *(
            named(
                "content_block_delta",
                {"index": 1, "delta": {"type": "input_json_delta", "partial_json": piece}},
            )
            for piece in PIECES
        ),
        named("message_delta", {"delta": {"stop_reason": "tool_use"}, "usage": {}}),
        named("message_stop", {}),
    )


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_lone_surrogate_in_a_stream_becomes_u_fffd_and_can_be_sent_back(
    provider: str,
) -> None:
    stream = openai_surrogates() if provider == "openai" else anthropic_surrogates()
    answer = {"choices": [{"message": {"content": "ok"}}], "content": [{"type": "text"}]}
    transport, seen = serving(stream, lambda: httpx.Response(200, json=answer))
    base = "http://sim.test/v1" if provider == "openai" else "http://sim.test"
    lm = LM(f"{provider}/m", base_url=base, transport=transport)
    pieces, response = await read(lm)
    assert "".join(pieces) == response.text == "hi \ufffd"
    (call,) = response.tool_calls
    assert json.loads(call.arguments) == {"q": "\ufffd", "r": "\ufffd"}
    await lm.request(follow_up(response))  # no UnicodeEncodeError on the way out
    assert "\ufffd" in json.dumps(seen[1], ensure_ascii=False)
