"""The h11 transport: pooling, staleness, timeouts and cancellation over loopback."""

from __future__ import annotations

import httpx
import pytest
import trio

from trio_dspy.http.connection import Connection
from trio_dspy.http.transport import H11Transport, ResponseTooLarge
from trio_dspy.testing.http_server import Request, Response, serve_http


async def echo(request: Request) -> Response:
    return Response.from_json({"path": request.path, "body": request.body.decode()})


async def test_round_trip_and_keep_alive_reuse() -> None:
    async with serve_http(echo) as server:
        transport = H11Transport()
        async with httpx.AsyncClient(transport=transport, base_url=server.base_url) as client:
            for i in range(5):
                response = await client.post("/v1/x", content=f"n{i}".encode())
                assert response.status_code == 200
                assert response.json() == {"path": "/v1/x", "body": f"n{i}"}
            assert server.connections_accepted == 1
            assert transport.idle_connections == 1


async def test_concurrent_requests_use_one_connection_each_and_all_come_back() -> None:
    release, all_arrived = trio.Event(), trio.Event()
    arrived = 0

    async def slow(request: Request) -> Response:
        nonlocal arrived
        arrived += 1
        if arrived == 20:
            all_arrived.set()
        await release.wait()
        return Response.from_json({"ok": True})

    transport = H11Transport()
    async with (
        serve_http(slow) as server,
        httpx.AsyncClient(transport=transport, base_url=server.base_url) as client,
    ):
        results: list[int] = []

        async def one() -> None:
            results.append((await client.get("/")).status_code)

        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(one)
            await all_arrived.wait()  # 20 requests in flight at once
            release.set()
        assert results == [200] * 20
        assert server.connections_accepted == 20
        assert transport.idle_connections == 20


async def test_stale_keep_alive_connection_is_retried_on_a_fresh_one() -> None:
    transport = H11Transport()
    async with httpx.AsyncClient(transport=transport) as client:
        async with serve_http(echo) as server:
            assert (await client.get(f"{server.base_url}/a")).status_code == 200
            assert transport.idle_connections == 1
        # The server went away and comes back on the same port: the pooled
        # connection is dead, and the transport notices before reusing it.
        async with serve_http(echo, port=server.port) as again:
            assert (await client.get(f"{again.base_url}/b")).json()["path"] == "/b"
            assert again.connections_accepted == 1


async def test_cancelled_requests_leave_no_slot_or_connection_behind(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Virtual time may jump while sockets connect, so the cancel lands with
    # requests at every stage: connecting, sending, waiting for the answer.
    async def hang_until_gate(request: Request) -> Response:
        if request.path == "/slow":
            await trio.sleep_forever()
        return Response.from_json({"ok": True})

    async with serve_http(hang_until_gate) as server:
        transport = H11Transport(max_connections=5)
        async with httpx.AsyncClient(
            transport=transport, base_url=server.base_url, timeout=None
        ) as client:
            with trio.move_on_after(0.5):
                async with trio.open_nursery() as nursery:
                    for _ in range(100):
                        nursery.start_soon(client.get, "/slow")
            assert transport.connections_in_use == 0
            assert transport.idle_connections == 0  # cancelled connections are closed, never pooled
            with trio.fail_after(10):  # a leaked slot would block here forever
                for _ in range(10):
                    assert (await client.get("/fast")).status_code == 200


async def test_timeouts_become_httpx_timeouts() -> None:
    # Real (short) timeouts: under autojump_clock the connect deadline could
    # fire while the socket connects. Nothing here sleeps on purpose.
    arrived = trio.Event()

    async def stall(request: Request) -> Response:
        arrived.set()
        await trio.sleep_forever()

    async with serve_http(stall) as server:
        async with httpx.AsyncClient(transport=H11Transport(), base_url=server.base_url) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.get("/", timeout=httpx.Timeout(5, read=0.05))
        arrived = trio.Event()
        pool_bound = H11Transport(max_connections=1)
        async with (
            httpx.AsyncClient(transport=pool_bound, base_url=server.base_url) as client,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(lambda: client.get("/", timeout=httpx.Timeout(None)))
            await arrived.wait()  # the only slot is taken
            with pytest.raises(httpx.PoolTimeout):
                await client.get("/", timeout=httpx.Timeout(None, pool=0.05))
            nursery.cancel_scope.cancel()


async def test_reset_and_refused_connections_raise_httpx_errors() -> None:
    async def reset(request: Request) -> Response:
        return Response.connection_reset()

    async with (
        serve_http(reset) as server,
        httpx.AsyncClient(transport=H11Transport(), base_url=server.base_url) as client,
    ):
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await client.get("/")
    async with httpx.AsyncClient(transport=H11Transport(), base_url=server.base_url) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/")  # nothing listens there any more


async def test_closed_transport_refuses_requests() -> None:
    transport = H11Transport()
    await transport.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await transport.handle_async_request(httpx.Request("GET", "http://127.0.0.1:1/"))
    with pytest.raises(ValueError, match="max_connections"):
        H11Transport(max_connections=0)


async def test_first_byte_and_read_timeouts_are_separate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The wait for a response to begin is the model's thinking time; once bytes
    # flow, "read" bounds each silence.
    async def slow_start(request: Request) -> Response:
        await trio.sleep(100)
        return Response.from_json({"ok": True})

    transport = H11Transport()
    headers = [(b"host", b"x"), (b"content-length", b"0")]
    async with serve_http(slow_start) as server:
        url = httpx.URL(server.base_url + "/")
        timeouts = {"read": 5.0, "first_byte": None}
        raw = await transport.request(b"GET", url, headers, b"", timeouts)
        assert raw.status == 200  # 100 s before the first byte, then no silence
        with pytest.raises(httpx.ReadTimeout):
            await transport.request(b"GET", url, headers, b"", {"read": 5.0})  # read bounds both
    await transport.aclose()


async def test_max_response_bytes_bounds_each_body_and_closes_its_connection() -> None:
    async def sized(request: Request) -> Response:
        return Response(200, (), b"x" * int(request.path.strip("/")))

    transport = H11Transport(max_response_bytes=1000)
    headers = [(b"host", b"x"), (b"content-length", b"0")]
    async with serve_http(sized) as server:
        ok = await transport.request(b"GET", httpx.URL(server.base_url + "/1000"), headers, b"")
        assert len(ok.content) == 1000
        with pytest.raises(ResponseTooLarge) as caught:
            await transport.request(b"GET", httpx.URL(server.base_url + "/1001"), headers, b"")
        assert caught.value.limit == 1000
        assert transport.idle_connections == 0  # the refused body's connection is not reused
    await transport.aclose()


async def test_an_idle_connection_checked_before_is_seen_dead_once_the_server_closes_it() -> None:
    left, right = trio.socket.socketpair()
    conn = Connection(trio.SocketStream(left))
    assert conn.looks_alive(0.0, 60.0)
    assert conn.looks_alive(0.0, 60.0)  # checked again: still idle and open
    right.close()  # the server hangs up while the connection waits in the pool
    assert not conn.looks_alive(0.0, 60.0)
    conn.close_now()


async def test_an_idle_connection_the_server_wrote_to_is_not_alive() -> None:
    left, right = trio.socket.socketpair()
    conn = Connection(trio.SocketStream(left))
    assert conn.looks_alive(0.0, 60.0)
    await right.send(b"HTTP/1.1 408 Request Timeout\r\n\r\n")  # unasked: not to be read as ours
    assert not conn.looks_alive(0.0, 60.0)
    assert not conn.looks_alive(100.0, 60.0)  # expired, whatever the socket says
    conn.close_now()
    right.close()
