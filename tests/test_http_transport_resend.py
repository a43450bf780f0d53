"""The h11 transport resends a request once when a reused connection dies unanswered.

A server may close an idle keep-alive connection just as the client reuses
it: the request then meets a closed connection before any response byte.
The transport sends it once more on a fresh connection, without counting it
against the caller's retries. Once a response has started, a lost connection
is the caller's error: the request may have had its effect.
"""

from __future__ import annotations

import dataclasses
import functools

import httpx
import pytest
import trio

from trio_dspy.http.transport import H11Transport

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@dataclasses.dataclass(frozen=True)
class ThenClose:
    """Send these bytes, then close the connection."""

    data: bytes


Reply = bytes | ThenClose | None


class RawServer:
    """A loopback HTTP/1.1 server of raw bytes: ``replies[c][r]`` answers request ``r``
    on connection ``c`` (``None``: close without answering). Bodyless requests only."""

    def __init__(self, replies: list[list[Reply]]) -> None:
        self.replies = replies
        self.connections = 0
        self.requests = 0
        self.port = 0

    async def handle(self, stream: trio.SocketStream) -> None:
        script = self.replies[min(self.connections, len(self.replies) - 1)]
        self.connections += 1
        buffered = b""
        async with stream:
            for reply in script:
                while b"\r\n\r\n" not in buffered:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buffered += data
                _, _, buffered = buffered.partition(b"\r\n\r\n")
                self.requests += 1
                if reply is None:
                    return
                if isinstance(reply, ThenClose):
                    await stream.send_all(reply.data)
                    return
                await stream.send_all(reply)
            await trio.sleep_forever()

    async def start(self, nursery: trio.Nursery) -> str:
        serve = functools.partial(trio.serve_tcp, self.handle, 0, host="127.0.0.1")
        listeners: list[trio.SocketListener] = await nursery.start(serve)
        self.port = listeners[0].socket.getsockname()[1]
        return f"http://127.0.0.1:{self.port}"


async def test_a_reused_connection_closed_before_answering_is_resent_on_a_fresh_one(
    nursery: trio.Nursery,
) -> None:
    # Connection 1 answers one request, then closes on the second without a
    # byte; connection 2 answers everything.
    server = RawServer([[OK, None], [OK, OK]])
    url = await server.start(nursery)
    transport = H11Transport()
    async with httpx.AsyncClient(transport=transport, base_url=url) as client:
        assert (await client.get("/a")).text == "ok"
        assert transport.idle_connections == 1
        assert (await client.get("/b")).text == "ok"  # resent, invisible to the caller
    assert server.connections == 2
    assert server.requests == 3


async def test_a_connection_lost_mid_response_is_an_error_not_a_resend(
    nursery: trio.Nursery,
) -> None:
    partial = ThenClose(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok")
    server = RawServer([[OK, partial]])
    url = await server.start(nursery)
    async with httpx.AsyncClient(transport=H11Transport(), base_url=url) as client:
        assert (await client.get("/a")).text == "ok"
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get("/b")
    assert server.requests == 2  # sent once: the caller's retry policy decides


async def test_a_fresh_connection_closed_unanswered_is_a_protocol_error(
    nursery: trio.Nursery,
) -> None:
    server = RawServer([[None]])
    url = await server.start(nursery)
    async with httpx.AsyncClient(transport=H11Transport(), base_url=url) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get("/a")
    assert server.connections == 1  # a fresh connection is not tried twice
