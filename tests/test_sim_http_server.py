"""The generic loopback HTTP/1.1 server under the simulator."""

from __future__ import annotations

import httpx
import pytest
import trio
import trio.testing

from trio_dspy.testing.http_server import Request, Response, serve_http


async def _echo(request: Request) -> Response:
    if request.path == "/reset":
        return Response.connection_reset()
    if request.path == "/stall":
        await trio.sleep(3600)
    if request.path == "/boom":
        raise RuntimeError("handler bug")
    return Response.from_json(
        {
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "body": request.body.decode(),
            "auth": request.header("Authorization"),
        },
        headers={"x-echo": "1"},
    )


async def test_request_fields_reach_handler_and_response_comes_back() -> None:
    async with serve_http(_echo) as server, httpx.AsyncClient(base_url=server.base_url) as client:
        assert server.base_url == f"http://127.0.0.1:{server.port}"
        r = await client.post("/a/b?x=1", content=b"hello", headers={"Authorization": "t"})
        assert r.status_code == 200
        assert r.headers["x-echo"] == "1"
        assert r.json() == {
            "method": "POST",
            "path": "/a/b",
            "query": {"x": "1"},
            "body": "hello",
            "auth": "t",
        }


async def test_keep_alive_reuses_one_connection() -> None:
    async with serve_http(_echo) as server, httpx.AsyncClient(base_url=server.base_url) as client:
        for _ in range(5):
            assert (await client.get("/")).status_code == 200
        assert server.connections_accepted == 1


async def test_connection_close_is_honoured() -> None:
    async with serve_http(_echo) as server, httpx.AsyncClient(base_url=server.base_url) as client:
        for _ in range(3):
            r = await client.get("/", headers={"Connection": "close"})
            assert r.status_code == 200
        assert server.connections_accepted == 3


async def test_reset_gives_client_an_error_and_server_keeps_serving() -> None:
    async with serve_http(_echo) as server, httpx.AsyncClient(base_url=server.base_url) as client:
        with pytest.raises(httpx.TransportError):
            await client.get("/reset")
        assert (await client.get("/")).status_code == 200


async def test_handler_exception_becomes_500() -> None:
    async with serve_http(_echo) as server, httpx.AsyncClient(base_url=server.base_url) as client:
        assert (await client.get("/boom")).status_code == 500
        assert (await client.get("/")).status_code == 200


async def test_garbage_and_early_hangups_do_not_crash_the_server() -> None:
    async with serve_http(_echo) as server:
        s = await trio.open_tcp_stream("127.0.0.1", server.port)
        await s.send_all(b"NOT HTTP AT ALL\r\n\r\n")
        reply = await s.receive_some(1000)
        assert reply.startswith(b"HTTP/1.1 400")
        await s.aclose()
        s = await trio.open_tcp_stream("127.0.0.1", server.port)
        await s.send_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nshort")
        await s.aclose()
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            assert (await client.get("/")).status_code == 200


async def test_exit_cancels_stalled_handlers() -> None:
    entered = trio.Event()
    cancelled: list[bool] = []

    async def stall(request: Request) -> Response:
        entered.set()
        try:
            await trio.sleep(3600)
        except trio.Cancelled:
            cancelled.append(True)
            raise
        return Response()

    errors: list[Exception] = []

    async def client_call(client: httpx.AsyncClient, url: str) -> None:
        try:
            await client.get(url)
        except httpx.TransportError as exc:
            errors.append(exc)

    with trio.fail_after(10):  # guard only: the test finishes as soon as shutdown works
        async with httpx.AsyncClient() as client, trio.open_nursery() as nursery:
            async with serve_http(stall) as server:
                nursery.start_soon(client_call, client, server.base_url + "/")
                await entered.wait()
            assert cancelled == [True]
    assert len(errors) == 1


async def test_a_client_that_hangs_up_cancels_its_handler() -> None:
    cancelled = trio.Event()

    async def slow(request: Request) -> Response:
        try:
            await trio.sleep(3600)
        except trio.Cancelled:
            cancelled.set()
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    async with serve_http(slow) as server:
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        await stream.send_all(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi")
        await trio.testing.wait_all_tasks_blocked()
        await stream.aclose()
        with trio.fail_after(5):
            await cancelled.wait()
        assert server.requests_abandoned == 1


async def test_pipelined_requests_are_answered_in_order() -> None:
    async with serve_http(_echo) as server:
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        first = b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n"
        second = b"GET /two HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        await stream.send_all(first + second)
        received = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some(65536):
                received += chunk
        await stream.aclose()
        assert received.count(b"HTTP/1.1 200") == 2
        assert b'"path":"/one"' in received.replace(b" ", b"")
        assert b'"path":"/two"' in received.replace(b" ", b"")
        assert server.requests_abandoned == 0


async def test_an_error_in_the_block_comes_out_as_itself() -> None:
    from trio_dspy.testing import serve_sim

    with pytest.raises(KeyError, match="mine"):
        async with serve_http(_echo):
            raise KeyError("mine")
    with pytest.raises(KeyError, match="mine"):
        async with serve_sim():
            raise KeyError("mine")


class _Spawns(trio.abc.Instrument):
    """Counts the tasks started while it is installed."""

    def __init__(self) -> None:
        self.count = 0

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.count += 1


async def test_requests_on_a_kept_alive_connection_start_no_task_of_their_own() -> None:
    # One reader per connection watches for a hang-up: a request costs its
    # handler only, not a watcher task and a cancelled read.
    body = b"x" * 10
    raw = b"POST /a HTTP/1.1\r\nhost: t\r\ncontent-length: 10\r\n\r\n" + body
    async with serve_http(_echo) as server:
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:

            async def answer() -> bytes:
                await stream.send_all(raw)
                data = b""
                while not data.endswith(b"}"):  # the JSON body ends the answer
                    data += await stream.receive_some(65536)
                return data

            spawns = _Spawns()
            assert b" 200 " in await answer()
            trio.lowlevel.add_instrument(spawns)
            try:
                for _ in range(3):
                    assert b'"path":"/a"' in await answer()
            finally:
                trio.lowlevel.remove_instrument(spawns)
    assert spawns.count == 0
    assert server.connections_accepted == 1


async def test_a_body_sent_without_waiting_for_100_continue_is_read_while_the_100_is_written(
    autojump_clock: trio.testing.MockClock, slow_100_continue: None
) -> None:
    # A client need not wait for the 100: its body may arrive while the
    # server is still writing it, and must not be waited for again.
    async with serve_http(_echo) as server:
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            await stream.send_all(
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
            )
            await trio.sleep(0.1)
            await stream.send_all(b"hello")
            data = b""
            with trio.fail_after(30):
                while b"HTTP/1.1 200" not in data or not data.endswith(b"}"):
                    data += await stream.receive_some(65536)
            assert data.startswith(b"HTTP/1.1 100")
            assert b'"hello"' in data
