"""The lean HTTP/1.1 server (``trio-dspy serve --server h11``): what hypercorn does not share.

Most tests serve one connection over a socket pair on the autojump clock, so
the header, body and idle timeouts are exact and cost no real time; the
stop and lifespan tests run the whole server on a loopback port.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import h11
import pytest
import trio
import trio.testing

import trio_dspy as td
from trio_dspy.cli import build_parser
from trio_dspy.errors import ConfigurationError
from trio_dspy.serving.asgi import HANG_UP, Message, Receive, Scope, Send
from trio_dspy.serving.h11_connection import Limits, Shared, serve_connection
from trio_dspy.serving.h11_server import serve

LIMITS = Limits(max_header_bytes=4096, header_timeout=10.0, keep_alive_timeout=30.0)


class Client:
    """The client end of a served connection, reading each answer with a new h11 client
    told which request it answers (requests are written raw, pipelined or not)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)
        self.left = b""  # bytes of the next answers, read with this one's

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    def expect(self, method: str = "GET") -> None:
        """Read the next answer as the answer to a ``method`` request."""
        self.conn = h11.Connection(h11.CLIENT)
        self.conn.send(h11.Request(method=method, target="/", headers=[("host", "t")]))
        self.conn.send(h11.EndOfMessage())
        if self.left:
            self.conn.receive_data(self.left)

    async def event(self) -> Any:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                self.left = self.conn.trailing_data[0]
                return event
            self.conn.receive_data(await self.stream.receive_some(65536))

    async def response(self, method: str = "GET") -> tuple[h11.Response, bytes]:
        """The next whole response (its head and body)."""
        self.expect(method)
        head = await self.event()
        assert isinstance(head, h11.Response), head
        body = b""
        while type(event := await self.event()) is h11.Data:
            body += event.data
        assert type(event) is h11.EndOfMessage, event
        return head, body

    async def closed(self) -> bool:
        """Whether the server closes the connection (after anything still sent)."""
        while data := await self.stream.receive_some(65536):
            del data
        return True


@asynccontextmanager
async def connection(app: Any, limits: Limits = LIMITS) -> AsyncIterator[Client]:
    """One connection served by the lean server; the client's end."""
    server_end, client_end = trio.socket.socketpair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_connection, Shared(app, limits), trio.SocketStream(server_end))
        async with trio.SocketStream(client_end) as stream:
            yield Client(stream)


def request(method: str = "GET", path: str = "/", body: bytes = b"", *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "host: test", *headers]
    if body or method == "POST":
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer with the request's method, path and body."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    text = f"{scope['method']} {scope['path']} ".encode() + body
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", b"%d" % len(text))],
        }
    )
    await send({"type": "http.response.body", "body": text})


async def test_a_request_head_over_the_size_limit_is_answered_431_and_the_connection_closed() -> (
    None
):
    async with connection(echo) as client:
        await client.send(request("GET", "/", b"", "x-big: " + "a" * 5000))
        head, _ = await client.response()
        assert head.status_code == 431
        assert await client.closed()


async def test_a_malformed_request_is_answered_400_and_the_connection_closed() -> None:
    async with connection(echo) as client:
        await client.send(b"GET / HTTP/1.1\r\nno colon here\r\n\r\n")
        head, body = await client.response()
        assert head.status_code == 400 and body == b""
        assert await client.closed()


async def test_a_head_that_does_not_arrive_in_time_is_answered_408(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with connection(echo) as client:
        start = trio.current_time()
        await client.send(b"GET / HTTP/1.1\r\nhost: t")  # and nothing more: slowloris
        head, _ = await client.response()
        assert head.status_code == 408
        assert await client.closed()
        assert trio.current_time() - start == pytest.approx(LIMITS.header_timeout)


async def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with connection(echo) as client:
        start = trio.current_time()
        assert await client.closed()
        assert trio.current_time() - start == pytest.approx(LIMITS.header_timeout)


async def test_an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with connection(echo) as client:
        await client.send(request("GET", "/one"))
        assert (await client.response())[1] == b"GET /one "
        await trio.sleep(LIMITS.keep_alive_timeout - 1)
        await client.send(request("GET", "/two"))  # still open: kept alive
        assert (await client.response())[1] == b"GET /two "
        start = trio.current_time()
        assert await client.closed()
        assert trio.current_time() - start == pytest.approx(LIMITS.keep_alive_timeout)


async def test_pipelined_requests_are_answered_in_order_on_one_connection() -> None:
    async with connection(echo) as client:
        await client.send(
            request("POST", "/a", b"1") + request("GET", "/b%20c") + request("POST", "/d", b"3")
        )
        bodies = [(await client.response())[1] for _ in range(3)]
    assert bodies == [b"POST /a 1", b"GET /b c ", b"POST /d 3"]


async def test_expect_100_continue_is_answered_before_the_client_sends_its_body() -> None:
    async with connection(echo) as client:
        # The head announces 5 bytes and waits for the server's go-ahead.
        await client.send(
            b"POST /x HTTP/1.1\r\nhost: t\r\nexpect: 100-continue\r\ncontent-length: 5\r\n\r\n"
        )
        client.expect("POST")
        interim = await client.event()
        assert isinstance(interim, h11.InformationalResponse) and interim.status_code == 100
        await client.send(b"hello")
        assert (await client.event()).status_code == 200
        assert (await client.event()).data == b"POST /x hello"


async def test_a_head_request_gets_the_headers_without_the_body() -> None:
    async with connection(echo) as client:
        await client.send(request("HEAD", "/h") + request("GET", "/g"))
        head, body = await client.response("HEAD")
        assert head.status_code == 200 and body == b""
        assert dict(head.headers)[b"content-length"] == b"8"  # what GET would send
        assert (await client.response())[1] == b"GET /g "  # the HEAD sent no stray bytes


async def test_an_app_that_fails_before_answering_gets_a_bare_500_and_the_connection_closes() -> (
    None
):
    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("secret detail")

    async with connection(failing) as client:
        await client.send(request())
        head, body = await client.response()
        assert head.status_code == 500 and body == b""
        assert await client.closed()


async def test_an_app_that_fails_mid_answer_has_its_connection_closed() -> None:
    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise RuntimeError("broken")

    async with connection(failing) as client:
        await client.send(request())
        client.expect()
        head = await client.event()
        assert head.status_code == 200
        assert (await client.event()).data == b"part"
        with pytest.raises(h11.RemoteProtocolError):  # cut short, never a complete answer
            await client.event()


async def test_the_scope_has_every_field_of_an_asgi_http_scope() -> None:
    seen: list[Scope] = []

    async def keep(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)
        await echo(scope, receive, send)

    async with connection(keep) as client:
        await client.send(request("GET", "/caf%C3%A9/x?a=1&b=%20", b"", "X-Mixed-Case: V"))
        await client.response()
    scope = seen[0]
    assert scope["type"] == "http" and scope["asgi"]["version"] == "3.0"
    assert scope["http_version"] == "1.1" and scope["scheme"] == "http"
    assert scope["method"] == "GET" and scope["root_path"] == ""
    assert scope["path"] == "/café/x" and scope["raw_path"] == b"/caf%C3%A9/x"
    assert scope["query_string"] == b"a=1&b=%20"
    assert (b"x-mixed-case", b"V") in [tuple(h) for h in scope["headers"]]
    assert "client" in scope and "server" in scope


async def test_the_body_reaches_the_app_in_parts_as_the_client_sends_it() -> None:
    parts: list[Message] = []
    arrived = trio.Event()

    async def reader(scope: Scope, receive: Receive, send: Send) -> None:
        parts.append(await receive())
        arrived.set()
        while parts[-1].get("more_body"):
            parts.append(await receive())
        await echo(scope, _replay(parts), send)

    async with connection(reader) as client:
        head = b"POST / HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n"
        await client.send(head + b"3\r\nabc\r\n")
        await arrived.wait()  # the first part is the app's before the rest is sent
        await client.send(b"2\r\nde\r\n0\r\n\r\n")
        _, body = await client.response()
    assert parts[0] == {"type": "http.request", "body": b"abc", "more_body": True}
    assert body == b"POST / abcde"


def _replay(messages: list[Message]) -> Receive:
    queue = list(messages)

    async def receive() -> Message:
        await trio.lowlevel.checkpoint()
        return queue.pop(0)

    return receive


class Slow(td.Module):
    """Sleep ``seconds``, then answer; counts the runs cancelled."""

    cancelled = 0

    async def forward(self, seconds: float = 0.0) -> td.Prediction:
        try:
            await trio.sleep(seconds)
        except trio.Cancelled:
            Slow.cancelled += 1
            raise
        return td.Prediction(done=True)


async def test_a_client_that_hangs_up_cancels_its_program_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = td.serving.app({"slow": Slow()})
    Slow.cancelled = 0
    async with connection(app) as client:
        await client.send(request("POST", "/programs/slow", b'{"seconds": 1000}'))
        while app.in_flight == 0:  # noqa: ASYNC110 - the app's own counter
            await trio.sleep(0.01)
        start = trio.current_time()
        await client.stream.aclose()
        while app.in_flight:  # noqa: ASYNC110
            await trio.sleep(0.01)
    assert trio.current_time() - start < 1
    assert Slow.cancelled == 1


async def test_a_request_answered_is_followed_by_http_disconnect_not_by_a_hang() -> None:
    # ASGI: once the answer is sent, receive() says http.disconnect.
    after: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        async with trio.open_nursery() as nursery:

            async def wait() -> None:
                after.append(await receive())

            nursery.start_soon(wait)
            await echo(scope, _replay([{"type": "http.request"}]), send)
        return

    async with connection(app) as client:
        await client.send(request("GET", "/") + request("GET", "/again"))
        await client.response()
        await client.response()  # the next request, read while waiting, is answered
    assert after == [{"type": "http.disconnect"}] * 2


# ------------------------------------------------------------ the whole server
@asynccontextmanager
async def running(app: Any, grace: float = 5.0) -> AsyncIterator[tuple[str, trio.Event]]:
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        run = functools.partial(serve, app, "127.0.0.1", 0, graceful_timeout=grace)
        urls = await nursery.start(functools.partial(run, shutdown=stop.wait))
        yield urls[0], stop


async def _connect(url: str) -> Client:
    host, port = url.removeprefix("http://").split(":")
    return Client(await trio.open_tcp_stream(host, int(port)))


async def test_a_stop_closes_idle_connections_at_once_and_lets_running_requests_finish(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = td.serving.app({"slow": Slow()})
    answers: list[h11.Response] = []
    async with running(app) as (url, stop):
        idle, busy = await _connect(url), await _connect(url)
        await idle.send(request("GET", "/health"))
        assert (await idle.response())[0].status_code == 200

        async def ask() -> None:
            await busy.send(request("POST", "/programs/slow", b'{"seconds": 3}'))
            answers.append((await busy.response())[0])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask)
            while app.in_flight == 0:  # noqa: ASYNC110 - the app's own counter
                await trio.sleep(0.01)
            start = trio.current_time()
            stop.set()
            assert await idle.closed()
            assert trio.current_time() - start < 0.5  # not after the running request
            with pytest.raises(OSError):
                await _connect(url)  # refused: no longer listening
        assert await busy.closed()
    assert answers[0].status_code == 200
    assert (b"connection", b"close") in list(answers[0].headers)
    assert trio.current_time() - start == pytest.approx(3, abs=0.5)


async def test_a_request_still_running_when_the_grace_ends_is_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = td.serving.app({"slow": Slow()})
    Slow.cancelled = 0
    async with running(app, grace=2.0) as (url, stop):
        busy = await _connect(url)
        await busy.send(request("POST", "/programs/slow", b'{"seconds": 1000}'))
        while app.in_flight == 0:  # noqa: ASYNC110 - the app's own counter
            await trio.sleep(0.01)
        start = trio.current_time()
        stop.set()
    assert trio.current_time() - start == pytest.approx(2, abs=0.5)
    assert Slow.cancelled == 1


async def test_the_lifespan_starts_before_serving_and_ends_after_and_requests_see_its_state() -> (
    None
):
    said: list[str] = []
    states: list[Any] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                said.append(message["type"])
                if message["type"] == "lifespan.startup":
                    scope["state"]["db"] = "open"
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        states.append(scope["state"])
        await echo(scope, receive, send)

    with trio.fail_after(10):
        async with running(app) as (url, stop):
            assert said == ["lifespan.startup"]
            client = await _connect(url)
            await client.send(request())
            await client.response()
            stop.set()
    assert said == ["lifespan.startup", "lifespan.shutdown"]
    assert states == [{"db": "open"}]


async def test_an_app_without_a_lifespan_is_served_all_the_same() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            raise ValueError("http only")
        assert "state" not in scope
        await echo(scope, receive, send)

    with trio.fail_after(10):
        async with running(app) as (url, stop):
            client = await _connect(url)
            await client.send(request())
            assert (await client.response())[1] == b"GET / "
            stop.set()


async def test_a_lifespan_startup_that_fails_stops_the_server_with_a_configuration_error() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    failed: list[BaseException] = []
    with trio.fail_after(10):
        try:
            async with running(app):
                pytest.fail("served after a failed startup")
        except* ConfigurationError as group:
            failed.extend(group.exceptions)
    assert "no database" in repr(failed)  # the cause, said where the server stops


def test_hypercorn_stays_the_default_server_and_h11_is_a_choice() -> None:
    assert build_parser().parse_args(["serve", "m:a"]).server == "hypercorn"
    args = build_parser().parse_args(["serve", "m:a", "--server", "h11", "--workers", "2"])
    assert args.server == "h11" and args.workers == 2


@pytest.mark.parametrize(
    "option", ["--keep-alive-timeout", "--header-timeout", "--max-header-bytes"]
)
@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_the_lean_server_limits_must_be_positive(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["serve", "m:a", "--server", "h11", option, value])
    assert exited.value.code == 2
    assert option in capsys.readouterr().err


async def test_a_body_the_app_does_not_read_is_not_read_from_the_socket(
    autojump_clock: trio.testing.MockClock,
) -> None:
    holding = trio.Event()

    async def unread(scope: Scope, receive: Receive, send: Send) -> None:
        holding.set()
        await trio.sleep(100)  # never reads the body
        await echo(scope, _replay([{"type": "http.request"}]), send)

    async with connection(unread) as client:
        size = 20 << 20
        await client.send(b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: %d\r\n\r\n" % size)
        await holding.wait()
        sent = 0
        with trio.move_on_after(10):
            while sent < size:
                await client.send(b"x" * 65536)
                sent += 65536
        # The kernel's buffers and one read-ahead hold some; the rest waits.
        assert sent < size // 4
        await client.stream.aclose()


@pytest.mark.parametrize("field", ["max_header_bytes", "header_timeout", "keep_alive_timeout"])
def test_limits_given_in_code_must_be_positive_too(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Limits(**{field: 0})


class _Spawns(trio.abc.Instrument):
    """Counts the tasks started while it is installed."""

    def __init__(self) -> None:
        self.count = 0

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.count += 1


async def test_the_serving_app_runs_no_task_of_its_own_per_request_on_the_lean_server() -> None:
    # The server tells the app of a hang-up by a call (HANG_UP), so no task
    # per request waits for http.disconnect: each one costs its program only.
    lm = td.testing.DummyLM([{"answer": "4"}], cycle=True)
    app = td.serving.app({"qa": td.Predict("question -> answer")})
    body = b'{"question": "2+2?"}'
    spawns = _Spawns()
    with td.context(lm=lm):
        async with connection(app) as client:
            await client.send(request("POST", "/programs/qa", body))
            await client.response("POST")  # the first call's lazy set-up is not counted
            trio.lowlevel.add_instrument(spawns)
            try:
                for _ in range(3):
                    await client.send(request("POST", "/programs/qa", body))
                    head, answer = await client.response("POST")
                    assert head.status_code == 200 and b'"answer":"4"' in answer
            finally:
                trio.lowlevel.remove_instrument(spawns)
    assert spawns.count == 0


async def test_a_hang_up_is_told_to_the_app_that_asked_by_a_call_and_only_before_its_answer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        scope["extensions"][HANG_UP](lambda: calls.append(scope["path"]))
        if scope["path"] == "/answered":
            await echo(scope, _replay([{"type": "http.request"}]), send)
            await trio.sleep(5)  # the client leaves after its answer: no hang-up
        else:
            await trio.sleep(100)  # the client leaves first

    async with connection(app) as client:
        await client.send(request("GET", "/answered"))
        await client.response()
        await client.send(request("GET", "/left"))
        await trio.sleep(1)
        await client.stream.aclose()
        await trio.sleep(1)
    assert calls == ["/left"]
