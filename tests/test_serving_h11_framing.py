"""The lean server keeps each connection's framing whole: what a client sends early,
an answer cut mid-write, a head sent in pieces, a stop during a lingering close."""

from __future__ import annotations

import contextlib
import functools

import pytest
import trio
import trio.testing

import trio_dspy as td
from trio_dspy.serving.asgi import Message, Receive, Scope, Send
from trio_dspy.serving.h11_connection import Limits, Shared, serve_connection

from .test_serving_h11 import LIMITS, connection, echo, request


async def test_a_body_sent_without_waiting_for_100_continue_is_read_while_the_100_is_written(
    autojump_clock: trio.testing.MockClock, slow_100_continue: None
) -> None:
    # A client need not wait for the 100: its body may arrive while the
    # server is still writing it, and must not be waited for again.
    async with connection(echo) as client:
        await client.send(
            b"POST /x HTTP/1.1\r\nhost: t\r\nexpect: 100-continue\r\ncontent-length: 5\r\n\r\n"
        )
        await trio.sleep(0.1)
        await client.send(b"hello")
        client.expect("POST")
        with trio.fail_after(5):  # the body's own timeout is 10 s
            assert (await client.event()).status_code == 100
            assert (await client.event()).status_code == 200
            assert (await client.event()).data == b"POST /x hello"


async def cut_mid_write(scope: Scope, receive: Receive, send: Send) -> None:
    """A streamed answer whose first part is cut by a deadline; ``/2`` answers whole."""
    if scope["path"] == "/2":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"second"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    with trio.move_on_after(0.3):  # more than the socket takes while nobody reads
        await send({"type": "http.response.body", "body": b"x" * 4_000_000, "more_body": True})
    await send({"type": "http.response.body", "body": b"error", "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def test_an_answer_cut_mid_write_closes_the_connection_instead_of_answering_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with connection(cut_mid_write) as client:
        await client.send(request("GET", "/1"))
        await trio.sleep(0.6)  # the client reads nothing until the write was cut
        with contextlib.suppress(trio.BrokenResourceError):  # closed already: good
            await client.send(request("GET", "/2"))
        data = b""
        with trio.fail_after(30), contextlib.suppress(trio.BrokenResourceError):
            while chunk := await client.stream.receive_some(1 << 20):
                data += chunk
    # Part of the cut chunk is on the wire: anything more would be read as
    # its rest, so the connection closes rather than answer /2 on it.
    assert data.startswith(b"HTTP/1.1 200")
    assert b"second" not in data
    assert data.count(b"HTTP/1.1 ") == 1


async def test_a_head_over_the_size_limit_sent_in_pieces_is_answered_431(
    autojump_clock: trio.testing.MockClock,
) -> None:
    head = request("GET", "/", b"", *(f"x-filler-{i}: {'y' * 80}" for i in range(20)))
    assert len(head) > 1900
    async with connection(echo, Limits(max_header_bytes=1000)) as client:
        await client.send(head[:990])
        await trio.sleep(0.1)
        await client.send(head[990:])
        head_answer, _ = await client.response()
        assert head_answer.status_code == 431
        assert await client.closed()


async def test_an_oversized_head_pipelined_behind_a_small_request_is_answered_431() -> None:
    big = request("GET", "/big", b"", *(f"x-filler-{i}: {'y' * 80}" for i in range(20)))
    async with connection(echo, Limits(max_header_bytes=1000)) as client:
        await client.send(request("GET", "/small") + big)
        first, body = await client.response()
        assert (first.status_code, body) == (200, b"GET /small ")
        second, _ = await client.response()
        assert second.status_code == 431


async def test_a_stop_during_a_lingering_close_still_closes_the_socket(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server_end, client_end = trio.socket.socketpair()
    server = trio.SocketStream(server_end)
    async with trio.SocketStream(client_end) as client:
        with trio.CancelScope() as stop:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(serve_connection, Shared(echo, LIMITS), server)
                await client.send_all(b"GARBAGE\r\n\r\n")
                assert (await client.receive_some(65536)).startswith(b"HTTP/1.1 400")
                await trio.sleep(0.2)  # the server lingers, reading what the client sends
                stop.cancel()
    assert server.socket.fileno() == -1


async def _reads_then_answers(
    seen: list[Message], scope: Scope, receive: Receive, send: Send
) -> None:
    """Read the body to its end, then try to answer 200 (a well-behaved app that
    does not look at why the body ended)."""
    while True:
        message = await receive()
        seen.append(message)
        if message["type"] == "http.disconnect" or not message.get("more_body"):
            break
    headers = [(b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


async def test_a_body_that_stops_arriving_is_answered_408_and_the_connection_closed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[Message] = []
    app = functools.partial(_reads_then_answers, seen)
    async with connection(app) as client:
        start = trio.current_time()
        await client.send(b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 10\r\n\r\nabc")
        head, body = await client.response("POST")
        assert (head.status_code, body) == (408, b"")  # not the app's 200, dropped
        assert trio.current_time() - start == pytest.approx(LIMITS.header_timeout)
        assert await client.closed()
    assert seen == [
        {"type": "http.request", "body": b"abc", "more_body": True},
        {"type": "http.disconnect"},
    ]


async def test_a_malformed_chunked_body_is_answered_400_and_the_connection_closed() -> None:
    seen: list[Message] = []
    app = functools.partial(_reads_then_answers, seen)
    async with connection(app) as client:
        head = b"POST / HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n"
        await client.send(head + b"3\r\nabc\r\nnot a chunk size\r\n")
        response, body = await client.response("POST")
        assert (response.status_code, body) == (400, b"")
        assert await client.closed()
    assert seen[-1] == {"type": "http.disconnect"}


async def test_a_served_program_whose_body_stalls_is_answered_408_not_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls: list[str] = []

    class Echo(td.Module):
        async def forward(self, question: str) -> td.Prediction:
            calls.append(question)
            return td.Prediction(answer=question)

    async with connection(td.serving.app({"echo": Echo()})) as client:
        body = b'{"question": "hi"}'
        await client.send(request("POST", "/programs/echo", body)[: -len(body) + 5])
        head, _ = await client.response("POST")
        assert head.status_code == 408
        assert await client.closed()
    assert calls == []


async def test_after_a_400_for_a_malformed_body_the_server_lingers_for_what_is_still_sent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Closing at once, with the client's bytes unread, would have a TCP peer
    # reset the connection and could destroy the 400 before it is read.
    seen: list[Message] = []
    async with connection(functools.partial(_reads_then_answers, seen)) as client:
        head = b"POST / HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n"
        await client.send(head + b"zz\r\n")
        response, _ = await client.response("POST")
        assert response.status_code == 400
        await client.send(b"the rest of a body the client had already started to send")
        await client.stream.send_eof()
        assert await client.closed()
