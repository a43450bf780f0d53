"""Hostile and broken servers: default timeouts, bounded bodies, deep nesting, early closes.

Each server here is written in the test over loopback (the simulated server
does not misbehave in these ways). Timeouts run under ``autojump_clock``.
"""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import httpx
import pytest
import trio

from trio_dspy.errors import (
    LMBadRequestError,
    LMRateLimitError,
    LMResponseTooLargeError,
    LMServerError,
    LMTimeoutError,
)
from trio_dspy.http import HTTPClient
from trio_dspy.http.client import ResponseTooLargeFailure
from trio_dspy.lm import LM, LMRequest, Message
from trio_dspy.testing.http_server import Request, Response, serve_http

from .test_lm_support import KEY, Scripted, chat, error
from .test_lm_transport import raw_server, read_request

ASK = LMRequest([Message("user", "hi")])
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"


def lm_at(port: int, **kw: Any) -> LM:
    return LM("openai/m", base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, **kw)


# ------------------------------------------------------------------ default timeouts
def test_defaults_are_documented_values() -> None:
    lm = LM("openai/m", api_key="k")
    assert lm.attempt_timeout == 600.0
    assert lm.backoff.max_retry_after == 60.0
    assert lm._http._timeouts["connect"] == 10.0
    assert lm._http._timeouts["read"] == 60.0
    assert lm._http.max_response_bytes == 32 * 1024 * 1024
    for name in ("attempt_timeout", "connect_timeout", "read_timeout", "max_response_bytes"):
        assert name in (LM.__doc__ or "")


async def test_a_server_that_never_answers_times_out_by_default(
    autojump_clock: trio.abc.Clock,
) -> None:
    attempts = 0

    async def never(request: Request) -> Response:
        nonlocal attempts
        attempts += 1
        await trio.sleep_forever()
        raise AssertionError  # pragma: no cover

    async with serve_http(never) as server:
        lm = LM("openai/m", base_url=server.base_url, api_key=KEY, max_retries=1)
        start = trio.current_time()
        with pytest.raises(LMTimeoutError, match="attempt_timeout=600"):
            await lm.request(ASK)
        # Two attempts of 600 s each (plus a backoff under a second).
        assert 1200 <= trio.current_time() - start < 1202
        assert attempts == 2
        await lm.aclose()


async def test_a_stall_mid_body_times_out_after_the_read_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def stall(stream: trio.SocketStream) -> None:
        while await read_request(stream):
            await stream.send_all(HEAD + b'content-length: 100\r\n\r\n{"choi')
            await trio.sleep_forever()

    async with raw_server(stall) as port:
        lm = lm_at(port, max_retries=0)
        start = trio.current_time()
        with pytest.raises(LMTimeoutError, match="ReadTimeout"):
            await lm.request(ASK)
        assert trio.current_time() - start == pytest.approx(60, abs=1)
        await lm.aclose()


async def test_a_server_that_stops_reading_the_request_times_out_after_the_write_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def deaf(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()  # never reads: the client's send fills the buffers

    async with raw_server(deaf) as port:
        lm = lm_at(port, max_retries=0)
        start = trio.current_time()
        # Larger than loopback's socket buffers, under the default body bound.
        big = LMRequest([Message("user", "x" * (24 * 1024 * 1024))])
        with pytest.raises(LMTimeoutError, match="WriteTimeout"):
            await lm.request(big)
        # The write timeout (read_timeout, 60 s), not the attempt's 600 s.
        assert trio.current_time() - start == pytest.approx(60, abs=1)
        await lm.aclose()


async def test_a_trickling_server_is_cut_off_by_the_attempt_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def trickle(stream: trio.SocketStream) -> None:
        while await read_request(stream):
            await stream.send_all(HEAD + b"content-length: 100000\r\n\r\n")
            while True:
                await trio.sleep(1)
                await stream.send_all(b" ")

    async with raw_server(trickle) as port:
        lm = lm_at(port, max_retries=0)
        start = trio.current_time()
        with pytest.raises(LMTimeoutError, match="attempt_timeout"):
            await lm.request(ASK)
        assert trio.current_time() - start == pytest.approx(600, abs=1)
        await lm.aclose()


async def test_connecting_is_bounded_by_the_connect_timeout(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unreachable(host: str, port: int) -> trio.SocketStream:
        await trio.sleep_forever()
        raise AssertionError  # pragma: no cover

    monkeypatch.setattr(trio, "open_tcp_stream", unreachable)
    lm = LM("openai/m", base_url="http://10.255.255.1/v1", api_key=KEY, max_retries=0)
    start = trio.current_time()
    with pytest.raises(LMTimeoutError, match="ConnectTimeout"):
        await lm.request(ASK)
    assert trio.current_time() - start == pytest.approx(10)


async def slow_answer(request: Request) -> Response:
    await trio.sleep(10)  # thinking: bounded by the attempt, not by the read timeout
    return Response(200, (("content-type", "application/json"),), json.dumps(chat()).encode())


def short_write_lm(base_url: str, **kw: Any) -> LM:
    """An LM whose write timeout (``read_timeout``, 5 s) is shorter than the waits."""
    return LM("openai/m", base_url=base_url, api_key=KEY, max_retries=0, read_timeout=5, **kw)


async def test_a_slow_connect_is_bounded_by_the_connect_timeout_not_the_write_timeout(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect = trio.open_tcp_stream

    async def slow_connect(host: str, port: int) -> trio.SocketStream:
        await trio.sleep(10)
        return await connect(host, port)

    monkeypatch.setattr(trio, "open_tcp_stream", slow_connect)
    async with serve_http(slow_answer) as server:
        lm = short_write_lm(server.base_url, connect_timeout=30)
        response = await lm.request(ASK)
        assert response.text == "ok"
        await lm.aclose()


async def test_waiting_for_a_free_connection_is_not_cut_by_the_write_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    texts: list[str | None] = []
    async with serve_http(slow_answer) as server:
        # One connection: the second call waits 10 s for the first.
        lm = short_write_lm(server.base_url, max_connections=1)

        async def call() -> None:
            texts.append((await lm.request(ASK)).text)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call)
            nursery.start_soon(call)
        assert texts == ["ok", "ok"]
        await lm.aclose()


async def test_a_slow_answer_through_an_httpx_transport_is_not_cut_by_the_write_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await trio.sleep(10)
        return httpx.Response(200, json=chat())

    lm = LM("openai/m", api_key=KEY, transport=httpx.MockTransport(slow), read_timeout=5)
    assert (await lm.request(ASK)).text == "ok"


async def test_a_retry_after_beyond_the_cap_fails_at_once(autojump_clock: trio.abc.Clock) -> None:
    server = Scripted(error(429, "slow down", **{"retry-after": "100"}))
    start = trio.current_time()
    with pytest.raises(LMRateLimitError) as caught:
        await server.lm().request(ASK)
    assert trio.current_time() == start  # no sleeping through a 100 s pause
    assert caught.value.retry_after == 100.0
    assert "100" in str(caught.value) and "max_retry_after" in str(caught.value)
    assert len(server.requests) == 1


# ------------------------------------------------------------------ bounded bodies
async def test_a_declared_oversized_body_is_refused_unread_and_not_retried() -> None:
    async def huge(request: Request) -> Response:
        return Response(200, (("content-type", "application/json"),), b" " * 2_000_000)

    async with serve_http(huge) as server:
        lm = LM("openai/m", base_url=server.base_url, api_key=KEY, max_response_bytes=1_000_000)
        with trio.fail_after(10), pytest.raises(LMResponseTooLargeError) as caught:
            await lm.request(ASK)
        assert isinstance(caught.value, LMServerError)
        assert caught.value.limit == 1_000_000 and "max_response_bytes" in str(caught.value)
        assert server.connections_accepted == 1  # not retried
        await lm.aclose()


async def test_an_oversized_chunked_body_stops_being_read_at_the_limit() -> None:
    sent = 0

    async def endless(stream: trio.SocketStream) -> None:
        nonlocal sent
        await read_request(stream)
        await stream.send_all(HEAD + b"transfer-encoding: chunked\r\n\r\n")
        chunk = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
        while True:
            await stream.send_all(chunk)
            sent += 0x10000

    async with raw_server(endless) as port:
        lm = lm_at(port, max_response_bytes=1 << 20)
        with trio.fail_after(10), pytest.raises(LMResponseTooLargeError):
            await lm.request(ASK)
        await lm.aclose()
    assert sent < 64 << 20  # the client hung up long before the server ran dry


def gzip_bomb(size: int) -> bytes:
    """``size`` bytes of zeros gzipped, built in milliseconds.

    After a full flush the compressor forgets its history, so every further
    MiB compresses to the same bytes: they are repeated instead of computed.
    (The trailer's checksum is wrong; a client that stops at its limit never
    reaches it.)
    """
    deflater = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"\0" * (1 << 20)
    first = deflater.compress(block) + deflater.flush(zlib.Z_FULL_FLUSH)
    unit = deflater.compress(block) + deflater.flush(zlib.Z_FULL_FLUSH)
    return first + unit * ((size >> 20) - 1) + deflater.flush()


async def test_a_gzip_bomb_is_never_inflated_whole() -> None:
    bomb = gzip_bomb(1 << 30)  # 1 GiB of zeros in about 1 MB
    assert len(bomb) < 2 << 20

    async def bomber(request: Request) -> Response:
        headers = (("content-type", "application/json"), ("content-encoding", "gzip"))
        return Response(200, headers, bomb)

    async with serve_http(bomber) as server:
        lm = LM("openai/m", base_url=server.base_url, api_key=KEY)
        with trio.fail_after(10), pytest.raises(LMResponseTooLargeError, match="33554432"):
            await lm.request(ASK)
        assert server.connections_accepted == 1
        await lm.aclose()


async def test_compressed_bodies_within_the_limit_decode_in_every_encoding() -> None:
    text = json.dumps(chat("unzipped")).encode()
    raw_deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    bodies = {
        "gzip": gzip.compress(text),
        "deflate": zlib.compress(text),
        "x-deflate-raw": raw_deflate.compress(text) + raw_deflate.flush(),
    }

    async def compressed(request: Request) -> Response:
        encoding = request.path.rsplit("/", 1)[-1]
        body = bodies[encoding]
        sent = "deflate" if encoding.startswith("x-deflate") else encoding
        return Response(200, (("content-encoding", sent),), body)

    async with serve_http(compressed) as server:
        for encoding in bodies:
            client = HTTPClient(server.base_url)
            reply = await client.post(client.url(f"/{encoding}"), b"{}")
            assert reply.json() == json.loads(text), encoding
            await client.aclose()
        client = HTTPClient(server.base_url, max_response_bytes=len(text) - 1)
        with pytest.raises(ResponseTooLargeFailure):
            await client.post(client.url("/gzip"), b"{}")
        await client.aclose()


async def test_a_truncated_gzip_body_is_a_retryable_failure() -> None:
    async def cut(request: Request) -> Response:
        body = gzip.compress(json.dumps(chat("x")).encode())[:-12]
        return Response(200, (("content-encoding", "gzip"),), body)

    async with serve_http(cut) as server:
        lm = LM("openai/m", base_url=server.base_url, api_key=KEY, max_retries=0)
        with trio.fail_after(10), pytest.raises(LMServerError, match="decompressed"):
            await lm.request(ASK)
        await lm.aclose()


async def test_injected_transports_are_bounded_too() -> None:
    big = Scripted(httpx.Response(200, content=b"x" * 5000))
    with pytest.raises(LMResponseTooLargeError):
        await big.lm(max_response_bytes=1000).request(ASK)

    async def streamed(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=httpx.ByteStream(b"y" * 5000))

    lm = LM(
        "openai/m",
        api_key=KEY,
        max_response_bytes=1000,
        transport=httpx.MockTransport(streamed),
    )
    with pytest.raises(LMResponseTooLargeError):
        await lm.request(ASK)


async def test_a_large_valid_body_is_decoded_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    threaded: list[object] = []
    run_sync = trio.to_thread.run_sync

    async def counting(fn: Any, *args: Any, **kw: Any) -> Any:
        threaded.append(fn)
        return await run_sync(fn, *args, **kw)

    monkeypatch.setattr(trio.to_thread, "run_sync", counting)
    text = "z" * (3 << 20)
    body = json.dumps(chat(text)).encode()

    async def large(request: Request) -> Response:
        return Response(200, (("content-type", "application/json"),), body)

    async with serve_http(large) as server:
        lm = LM("openai/m", base_url=server.base_url, api_key=KEY)
        with trio.fail_after(30):
            assert (await lm.request(ASK)).text == text
        assert len(threaded) == 1  # json.loads ran in a worker thread
        await lm.aclose()


# ------------------------------------------------------------------ hostile content
async def test_deeply_nested_json_is_a_server_error_not_a_recursion_error() -> None:
    nested = b"[" * 100_000 + b"]" * 100_000
    server = Scripted(httpx.Response(200, content=nested))
    with pytest.raises(LMServerError, match="nested too deeply"):
        await server.lm(max_retries=3).request(ASK)
    assert len(server.requests) == 1  # not worth asking again
    error_body = Scripted(httpx.Response(500, content=nested))
    with pytest.raises(LMServerError):
        await error_body.lm(max_retries=0).request(ASK)
    large = b'{"a":' + b"[" * 600_000 + b"]" * 600_000 + b"}"  # decoded in a thread
    with pytest.raises(LMServerError, match="nested too deeply"):
        await Scripted(httpx.Response(200, content=large)).lm().request(ASK)


async def test_nested_tool_input_in_an_anthropic_answer_is_a_server_error() -> None:
    deep: Any = {}
    for _ in range(5000):
        deep = {"a": deep}
    calls: list[dict[str, Any]] = [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]
    body = json.dumps({"content": calls, "usage": {}})
    body = body.replace('"input": {}', '"input": ' + '{"a":' * 5000 + "{}" + "}" * 5000)
    server = Scripted(httpx.Response(200, content=body.encode()))
    with pytest.raises(LMServerError):
        await server.lm("anthropic/c", max_retries=0).request(ASK)


async def test_a_non_numeric_usage_keeps_the_answer() -> None:
    body = chat("kept")
    body["usage"] = {"prompt_tokens": "many", "completion_tokens": None, "total_tokens": [1]}
    response = await Scripted(httpx.Response(200, json=body)).lm().request(ASK)
    assert response.text == "kept"
    assert (response.usage.prompt_tokens, response.usage.total_tokens) == (0, 0)
    anthropic = {
        "content": [{"type": "text", "text": "kept too"}],
        "usage": {"input_tokens": "n/a", "output_tokens": 3},
    }
    server = Scripted(httpx.Response(200, json=anthropic))
    response = await server.lm("anthropic/c").request(ASK)
    assert response.text == "kept too" and response.usage.completion_tokens == 3


async def test_a_usage_count_beyond_any_real_count_is_unknown_not_an_overflow() -> None:
    huge = "9" * 4000  # json.loads takes it; float arithmetic in the tpm bucket did not
    for count in (huge, "1e400", "Infinity", "NaN", "-5", "18446744073709551617"):
        body = json.dumps(chat("kept")).replace('"prompt_tokens": 10', f'"prompt_tokens": {count}')
        body = body.replace('"total_tokens": 15', f'"total_tokens": {count}')
        server = Scripted(httpx.Response(200, content=body.encode()))
        async with server.lm(tpm=100_000) as lm:
            response = await lm.request(ASK)
            assert response.text == "kept" and response.usage.prompt_tokens == 0
            assert response.usage.total_tokens == 5  # the completion's, the only count left
            with trio.fail_after(1):  # the budget was not wrecked for the next call
                assert (await lm.request(ASK)).text == "kept"


@pytest.mark.parametrize(
    ("provider", "body"),
    [
        ("openai", {"choices": [{"message": {"content": 5}}]}),
        ("openai", {"choices": [{"message": {"content": {"a": 1}}}]}),
        ("openai", {"choices": [{"message": {"tool_calls": [{"function": {"name": 7}}]}}]}),
        ("openai", {"choices": [{"message": {"content": "a"}}, 3]}),
        ("anthropic", {"content": [{"type": "text", "text": ["a"]}]}),
        ("anthropic", {"content": [{"type": "tool_use", "id": "t", "name": None}]}),
        ("anthropic", {"content": "text"}),
    ],
)
async def test_a_field_of_the_wrong_type_is_a_server_error(provider: str, body: Any) -> None:
    server = Scripted(httpx.Response(200, json=body))
    with pytest.raises(LMServerError, match=f"not in the {provider} format"):
        await server.lm(f"{provider}/m", max_retries=0).request(ASK)


async def test_metadata_of_the_wrong_type_keeps_the_answer() -> None:
    body = chat("kept")
    body["choices"][0]["finish_reason"] = {"why": 1}
    body["model"] = ["m"]
    response = await Scripted(httpx.Response(200, json=body)).lm().request(ASK)
    assert (response.text, response.finish_reason, response.model) == ("kept", None, "m")
    anthropic = {"content": [{"type": "text", "text": "too"}], "stop_reason": ["x"], "model": 3}
    server = Scripted(httpx.Response(200, json=anthropic))
    response = await server.lm("anthropic/c").request(ASK)
    assert (response.text, response.finish_reason, response.model) == ("too", None, "c")


# ------------------------------------------------------------------ redirects and closes
@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_a_redirect_is_reported_with_its_location_and_not_followed(status: int) -> None:
    followed = 0

    async def elsewhere(request: Request) -> Response:
        nonlocal followed
        if request.path.startswith("/moved"):
            followed += 1
            return Response.from_json(chat("followed"))
        location = "https://other.example/v1/chat/completions"
        return Response(status, (("location", location),))

    async with serve_http(elsewhere) as server:
        lm = LM("openai/m", base_url=server.base_url + "/v1", api_key=KEY)
        with pytest.raises(LMBadRequestError) as caught:
            await lm.request(ASK)
        message = str(caught.value)
        assert f"HTTP {status}" in message and "redirect" in message
        assert "https://other.example/v1/chat/completions" in message
        assert "empty body" not in message and KEY not in message
        assert followed == 0 and server.connections_accepted == 1
        await lm.aclose()


async def test_a_server_that_closes_before_answering_says_so() -> None:
    async def hang_up(stream: trio.SocketStream) -> None:
        await read_request(stream)
        await stream.aclose()

    async with raw_server(hang_up) as port:
        lm = lm_at(port, max_retries=0)
        with trio.fail_after(10), pytest.raises(LMServerError) as caught:
            await lm.request(ASK)
        message = str(caught.value)
        assert "closed the connection without answering" in message
        assert "can't handle event" not in message
        await lm.aclose()


async def test_a_server_that_closes_mid_body_says_so() -> None:
    async def cut(stream: trio.SocketStream) -> None:
        await read_request(stream)
        await stream.send_all(HEAD + b'content-length: 100\r\n\r\n{"cho')
        await stream.aclose()

    async with raw_server(cut) as port:
        lm = lm_at(port, max_retries=0)
        with trio.fail_after(10), pytest.raises(LMServerError, match="mid-response"):
            await lm.request(ASK)
        await lm.aclose()


# ------------------------------------------------------------------ lone surrogates
LONE = "\ud800"
# Tool arguments with a lone surrogate twice: decoded from the body's JSON,
# and written as an escape inside the arguments' own JSON text.
ARGUMENTS = '{"q": "' + LONE + '", "r": "\\ud800"}'


def follow_up(response: Any) -> LMRequest:
    """The next turn of a conversation that sends ``response`` back to the model."""
    calls = response.tool_calls
    tool_turns = [Message("tool", "done", tool_call_id=c.id) for c in calls]
    return LMRequest(
        [Message("user", "hi"), Message("assistant", response.text, tool_calls=calls), *tool_turns]
    )


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_lone_surrogate_in_an_answer_becomes_u_fffd_and_can_be_sent_back(
    provider: str,
) -> None:
    if provider == "openai":
        call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": ARGUMENTS}}
        body = chat("hi " + LONE, tool_calls=[call])
    else:
        blocks = [
            {"type": "text", "text": "hi " + LONE},
            {"type": "tool_use", "id": "c1", "name": "f", "input": {"q": LONE, "r": LONE}},
        ]
        body = {"content": blocks, "stop_reason": "tool_use", "usage": {}}
    content = json.dumps(body).encode()  # ASCII: each lone surrogate as its \ud800 escape
    assert b"\\ud800" in content
    server = Scripted(httpx.Response(200, content=content))
    async with server.lm(f"{provider}/m") as lm:
        response = await lm.request(ASK)
        assert response.text == "hi \ufffd"
        (tool_call,) = response.tool_calls
        assert json.loads(tool_call.arguments) == {"q": "\ufffd", "r": "\ufffd"}
        await lm.request(follow_up(response))  # no UnicodeEncodeError on the way out
    assert "\ufffd" in server.requests[1].content.decode()


async def test_a_lone_surrogate_in_an_error_message_becomes_u_fffd() -> None:
    body = json.dumps({"error": {"message": "bad " + LONE}}).encode()
    server = Scripted(httpx.Response(400, content=body))
    with pytest.raises(LMBadRequestError) as caught:
        await server.lm().request(ASK)
    assert "bad \ufffd" in str(caught.value)
    str(caught.value).encode()  # a log file can take it


async def test_a_surrogate_encoded_as_bytes_is_invalid_utf8_not_text() -> None:
    # json.loads(bytes) decodes with "surrogatepass": these three bytes would
    # have become a lone surrogate without any escape for a check to see.
    content = json.dumps(chat("hi")).encode().replace(b'"hi"', b'"hi \xed\xa0\x80"')
    server = Scripted(httpx.Response(200, content=content))
    with pytest.raises(LMServerError, match="not JSON"):
        await server.lm(max_retries=0).request(ASK)
    error_body = b'{"error": {"message": "bad \xed\xa0\x80"}}'
    with pytest.raises(LMBadRequestError) as caught:
        await Scripted(httpx.Response(400, content=error_body)).lm().request(ASK)
    str(caught.value).encode()  # the raw body, decoded with replacement, is the message
