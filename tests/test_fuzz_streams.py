"""Fuzzing what a model server sends: event streams, stream events and whole bodies.

Hostile input (``tests/hostile.py``) is built from valid documents with
``mutated(...)``: a value replaced by a number ``int()`` cannot take, deep
nesting, a lone surrogate or a value of the wrong type, the document cut
anywhere or spoiled with invalid UTF-8. Each example must end in a result
whose text can be sent on as UTF-8, or in one of ``td.errors``' types, in
bounded time, with the limiter's slot (and, over loopback, the connection)
given back.

Most examples drive the real client through an in-memory ``httpx``
transport (fast, same call path above the socket) on trio's virtual clock
(autojump), so retries' backoff costs nothing; a few go end to end through
a loopback HTTP server on the real clock. A wall-clock bound catches work
that spins.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any
from unittest import mock

import httpx
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from trio_dspy.errors import TrioDSPyError
from trio_dspy.http.sse import MAX_RETRY_MS, SSEDecoder
from trio_dspy.http.transport import H11Transport
from trio_dspy.lm import LM, LMRequest, LMResponse, Message, ToolCallDelta, params
from trio_dspy.lm.params import MAX_INDEX, MAX_TOKEN_COUNT
from trio_dspy.testing.http_server import Request, Response, serve_http

from .hostile import fuzz_settings, mutated, mutated_numbers

ASK = LMRequest([Message("user", "hi")])
# Seconds of real time one example may take (hostile input is parsed, not slept on).
WALL_BOUND = 5.0
# Virtual seconds one call may take, retries and backoff included.
VIRTUAL_BOUND = 600.0
SSE = (("content-type", "text/event-stream"),)
JSON = (("content-type", "application/json"),)

# ------------------------------------------------------------------ valid documents
OPENAI_EVENTS: list[dict[str, Any]] = [
    {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}],
    },
    {"choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": None}]},
    {
        "choices": [
            {
                "index": 0,
                "delta": {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"x"'},
                        }
                    ]
                },
            }
        ]
    },
    {
        "choices": [
            {"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}}
        ]
    },
    {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}},
    {"error": {"message": "boom", "type": "server_error", "code": 503}},
]

ANTHROPIC_EVENTS: list[tuple[str, dict[str, Any]]] = [
    (
        "message_start",
        {
            "type": "message_start",
            "message": {"model": "m", "usage": {"input_tokens": 4, "output_tokens": 1}},
        },
    ),
    (
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ),
    (
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    (
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "t1", "name": "f", "input": {}},
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"x": 1}'},
        },
    ),
    (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 7},
        },
    ),
    ("message_stop", {"type": "message_stop"}),
    ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}),
]

OPENAI_BODY: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "m",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "ok",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"x": 1}'},
                    }
                ],
            },
            "finish_reason": "stop",
        },
        {"index": 1, "message": {"role": "assistant", "content": "two"}, "finish_reason": "stop"},
    ],
    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
}

ANTHROPIC_BODY: dict[str, Any] = {
    "id": "msg_1",
    "type": "message",
    "model": "m",
    "content": [
        {"type": "text", "text": "ok"},
        {"type": "tool_use", "id": "t1", "name": "f", "input": {"x": [1, "a"]}},
    ],
    "stop_reason": "end_turn",
    "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 2},
}


# ------------------------------------------------------------------ strategies
def _openai_event(data: bytes) -> bytes:
    return b"data: " + data + b"\n\n"


def _anthropic_event(name: str) -> Callable[[bytes], bytes]:
    return lambda data: f"event: {name}\n".encode() + b"data: " + data + b"\n\n"


def _event_choices(valid: list[bytes], hostile: list[st.SearchStrategy[bytes]]) -> Any:
    """One event of a stream: as it should be, or (more often) spoiled."""
    return st.one_of(st.sampled_from(valid), *hostile)


_OPENAI_VALID = [_openai_event(json.dumps(doc).encode()) for doc in OPENAI_EVENTS]
_OPENAI_HOSTILE = [
    strategy(doc).map(_openai_event)
    for doc in OPENAI_EVENTS
    for strategy in (mutated, mutated_numbers)
]
_ANTHROPIC_VALID = [_anthropic_event(n)(json.dumps(doc).encode()) for n, doc in ANTHROPIC_EVENTS]
_ANTHROPIC_HOSTILE = [
    strategy(doc).map(_anthropic_event(name))
    for name, doc in ANTHROPIC_EVENTS
    for strategy in (mutated, mutated_numbers)
]


@st.composite
def openai_streams(draw: st.DrawFn) -> list[bytes]:
    """A Chat Completions stream: events in a plausible order, some spoiled, then ``[DONE]``."""
    events = draw(st.lists(_event_choices(_OPENAI_VALID, _OPENAI_HOSTILE), min_size=1, max_size=6))
    if draw(st.booleans()):
        events.append(b"data: [DONE]\n\n")
    return events


@st.composite
def anthropic_streams(draw: st.DrawFn) -> list[bytes]:
    """A Messages stream: events in a plausible order, some spoiled."""
    events = draw(
        st.lists(_event_choices(_ANTHROPIC_VALID, _ANTHROPIC_HOSTILE), min_size=1, max_size=6)
    )
    if draw(st.booleans()):
        events.append(_ANTHROPIC_VALID[-2])  # message_stop
    return events


def split(body: bytes, cuts: list[int]) -> list[bytes]:
    """``body`` in the pieces ``cuts`` mark (as the network might deliver it)."""
    points = sorted({c % (len(body) + 1) for c in cuts})
    return [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]


# ------------------------------------------------------------------ what every example checks
def bounded(main: Callable[[], Awaitable[None]], *, virtual: bool = True) -> None:
    """Run ``main`` under trio within :data:`WALL_BOUND` seconds of real time.

    ``virtual``: on an autojump clock, bounded by :data:`VIRTUAL_BOUND` virtual
    seconds. Large bodies are then decoded on the event loop: the clock would
    jump to the bound while a worker thread decodes (the loop looks idle).
    Otherwise on the real clock, worker threads included, bounded in real time.
    """
    start = time.monotonic()

    async def within(bound: float) -> None:
        with trio.fail_after(bound):
            await main()

    if virtual:
        clock = trio.testing.MockClock(autojump_threshold=0)
        with mock.patch.object(params, "_THREAD_THRESHOLD", 1 << 62):
            trio.run(within, VIRTUAL_BOUND, clock=clock)
    else:
        trio.run(within, WALL_BOUND)
    assert time.monotonic() - start < WALL_BOUND


def sendable(text: Any) -> None:
    """``text`` is a str a request body (UTF-8) can carry."""
    assert isinstance(text, str)
    text.encode("utf-8")


def check_response(response: LMResponse) -> None:
    """Every field has its declared type, and the text can be sent back to a model."""
    for choice in response.choices:
        sendable(choice.text)
        sendable(choice.model)
        assert choice.finish_reason is None or isinstance(choice.finish_reason, str)
        sendable(choice.finish_reason or "")
        for call in choice.tool_calls:
            for value in (call.id, call.name, call.arguments):
                sendable(value)
    usage = response.usage
    for count in (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens):
        assert isinstance(count, int) and 0 <= count <= 3 * MAX_TOKEN_COUNT


def check_delta(delta: str | ToolCallDelta) -> None:
    if isinstance(delta, str):
        sendable(delta)
        return
    assert 0 <= delta.index <= MAX_INDEX
    for value in (delta.id, delta.name, delta.arguments):
        sendable(value)


def check_error(error: TrioDSPyError) -> None:
    sendable(str(error))  # a log line or a span can take it


def slot_is_free(lm: LM) -> None:
    """The limiter's only slot was given back (``max_concurrency=1``)."""
    slots = lm.limits._state.get().slots
    assert slots is not None and slots.value == 1


def scripted(*bodies: tuple[tuple[tuple[str, str], ...], list[bytes]]) -> httpx.MockTransport:
    """An in-memory server answering the n-th request with ``bodies[n]`` (the last repeats):
    its headers and its body in pieces."""
    count = 0

    def handle(request: httpx.Request) -> httpx.Response:
        nonlocal count
        headers, pieces = bodies[min(count, len(bodies) - 1)]
        count += 1

        async def body() -> Any:
            for piece in pieces:
                yield piece

        return httpx.Response(200, headers=headers, content=body())

    return httpx.MockTransport(handle)


def make_lm(provider: str, transport: httpx.AsyncBaseTransport | None = None, **kw: Any) -> LM:
    base = kw.pop("base_url", "http://sim.test/v1" if provider == "openai" else "http://sim.test")
    kw.setdefault("max_retries", 1)
    return LM(
        f"{provider}/m",
        base_url=base,
        api_key="sk-fuzz",
        transport=transport,
        max_concurrency=1,
        **kw,
    )


async def stream_once(lm: LM) -> None:
    """One streamed call: every delta and the response checked, or a typed error."""
    try:
        async with lm.stream(ASK) as stream:
            async for delta in stream.events():
                check_delta(delta)
        check_response(stream.response)
    except TrioDSPyError as error:
        check_error(error)


async def request_once(lm: LM) -> None:
    """One whole call: the response checked, or a typed error."""
    try:
        check_response(await lm.request(ASK))
    except TrioDSPyError as error:
        check_error(error)


# ------------------------------------------------------------------ (a) the SSE decoder
_FIELDS = st.sampled_from([b"data", b"event", b"id", b"retry", b"", b":", b"dat\xffa"])
_HUGE_VALUES = st.sampled_from(
    [
        b"9" * 5000,
        b"0" * 5000 + b"7",
        b"1e400",
        b"-1",
        b"\xd9\xa1\xd9\xa2",  # Arabic-Indic digits: not ASCII digits
        b"a\x00b",
        b"\xed\xa0\x80",
        b"x" * 70_000,
    ]
)


@st.composite
def sse_bodies(draw: st.DrawFn) -> bytes:
    """Lines of fields with ordinary, huge or broken values, any line ends, any bytes between."""
    parts: list[bytes] = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.integers(0, 2))
        if kind == 0:
            value = draw(st.one_of(_HUGE_VALUES, st.binary(max_size=12)))
            parts.append(draw(_FIELDS) + b": " + value)
        elif kind == 1:
            parts.append(draw(st.binary(max_size=40)))
        parts.append(draw(st.sampled_from([b"\n", b"\r", b"\r\n", b"\n\n", b""])))
    return b"".join(parts)


@fuzz_settings(200)
@given(st.one_of(sse_bodies(), st.binary(max_size=300)), st.lists(st.integers(0, 10**6)))
def test_the_sse_decoder_takes_any_bytes_in_any_pieces(body: bytes, cuts: list[int]) -> None:
    start = time.monotonic()
    decoder = SSEDecoder()
    events = [event for piece in split(body, cuts) for event in decoder.feed(piece)]
    whole = SSEDecoder()
    assert whole.feed(body) == events  # however the bytes were split
    for event in events:
        for text in (event.data, event.event, event.id):
            sendable(text)
        assert "\0" not in event.id
    assert decoder.retry is None or 0 <= decoder.retry <= MAX_RETRY_MS
    assert time.monotonic() - start < WALL_BOUND


# ------------------------------------------------------------------ (b) stream decoders
@fuzz_settings(80)
@given(openai_streams(), st.lists(st.integers(0, 10**6), max_size=4))
def test_a_hostile_openai_stream_ends_in_a_result_or_a_typed_error(
    events: list[bytes], cuts: list[int]
) -> None:
    pieces = split(b"".join(events), cuts)

    async def main() -> None:
        async with make_lm("openai", scripted((SSE, pieces))) as lm:
            await stream_once(lm)
            slot_is_free(lm)

    bounded(main)


@fuzz_settings(80)
@given(anthropic_streams(), st.lists(st.integers(0, 10**6), max_size=4))
def test_a_hostile_anthropic_stream_ends_in_a_result_or_a_typed_error(
    events: list[bytes], cuts: list[int]
) -> None:
    pieces = split(b"".join(events), cuts)

    async def main() -> None:
        async with make_lm("anthropic", scripted((SSE, pieces))) as lm:
            await stream_once(lm)
            slot_is_free(lm)

    bounded(main)


# ------------------------------------------------------------------ (c) whole bodies
@fuzz_settings(80)
@given(st.sampled_from(["openai", "anthropic"]), st.data())
def test_a_hostile_whole_body_ends_in_a_result_or_a_typed_error(
    provider: str, data: st.DataObject
) -> None:
    document = OPENAI_BODY if provider == "openai" else ANTHROPIC_BODY
    body = data.draw(st.one_of(mutated(document), mutated_numbers(document)))
    streamed = data.draw(st.booleans())  # a server that ignores stream: true answers whole

    async def main() -> None:
        async with make_lm(provider, scripted((JSON, [body]))) as lm:
            await (stream_once(lm) if streamed else request_once(lm))
            slot_is_free(lm)

    bounded(main)


# ------------------------------------------------------------------ end to end, over loopback
def pool(lm: LM) -> H11Transport:
    transport = lm._http._pools.get().transport
    assert isinstance(transport, H11Transport)
    return transport


@fuzz_settings(10)
@given(st.sampled_from(["openai", "anthropic"]), st.data())
def test_hostile_answers_over_loopback_leave_no_connection_or_slot_behind(
    provider: str, data: st.DataObject
) -> None:
    streams = openai_streams() if provider == "openai" else anthropic_streams()
    events = data.draw(streams)
    document = OPENAI_BODY if provider == "openai" else ANTHROPIC_BODY
    body = data.draw(mutated(document))

    async def answer(request: Request) -> Response:
        if request.json().get("stream"):
            return Response(200, SSE, b"".join(events))
        return Response(200, JSON, body)

    async def main() -> None:
        async with serve_http(answer) as server:
            root = server.base_url + ("/v1" if provider == "openai" else "")
            # No retries: on the real clock a backoff would really sleep.
            async with make_lm(provider, base_url=root, max_retries=0) as lm:
                await stream_once(lm)
                await request_once(lm)
                slot_is_free(lm)
                assert pool(lm).connections_in_use == 0

    bounded(main, virtual=False)
