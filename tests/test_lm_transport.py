"""The HTTP/1.1 pool under the LM clients, over real loopback sockets.

No test here sleeps or depends on timing: each waits on events, and
``fail_after`` turns a hang into a failure.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx
import pytest
import trio

from trio_dspy.errors import LMServerError
from trio_dspy.http import HTTPClient, TransportFailure
from trio_dspy.http.transport import H11Transport
from trio_dspy.lm import LM, LMRequest, Message
from trio_dspy.testing.http_server import Request, Response, serve_http

from .test_lm_support import chat

ASK = LMRequest([Message("user", "hi")])


async def answer(request: Request) -> Response:
    return Response.from_json(chat("pong"))


@asynccontextmanager
async def raw_server(
    handle: Callable[[trio.SocketStream], Awaitable[None]],
) -> AsyncIterator[int]:
    """A TCP server that runs ``handle(stream)`` per connection; yields its port."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")

    async def handle_until_hung_up(stream: trio.SocketStream) -> None:
        # A client that hangs up mid-answer (as the tests make it) may reach
        # the handler as a reset: the client's business, not a server failure.
        with contextlib.suppress(trio.BrokenResourceError):
            await handle(stream)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handle_until_hung_up, listeners)
        yield listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


async def read_request(stream: trio.abc.Stream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    while len(rest) < length:
        rest += await stream.receive_some(65536)
    return head


async def test_connections_are_kept_alive_and_reused() -> None:
    async with serve_http(answer) as server:
        lm = LM("openai/m", base_url=server.base_url + "/v1", api_key="k")
        with trio.fail_after(10):
            for _ in range(5):
                assert (await lm.request(ASK)).text == "pong"
            await lm.aclose()
    assert server.connections_accepted == 1


async def test_aclose_closes_idle_connections() -> None:
    async with serve_http(answer) as server:
        lm = LM("openai/m", base_url=server.base_url + "/v1", api_key="k")
        with trio.fail_after(10):
            await lm.request(ASK)
            assert server.open_connections == 1
            await lm.aclose()
            while server.open_connections:  # the server notices the close
                await trio.testing.wait_all_tasks_blocked()
            await lm.request(ASK)  # and the LM opens a new one on demand
    assert server.connections_accepted == 2


async def test_a_connection_the_server_closed_is_not_reused() -> None:
    served = 0

    async def close_after_each(stream: trio.SocketStream) -> None:
        nonlocal served
        await read_request(stream)
        body = json.dumps(chat(f"answer {served}")).encode()
        served += 1
        # keep-alive is implied (HTTP/1.1, no "Connection: close"), yet we hang up
        await stream.send_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            + f"content-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await stream.aclose()

    async with raw_server(close_after_each) as port:
        lm = LM("openai/m", base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0)
        with trio.fail_after(10):
            texts = [(await lm.request(ASK)).text for _ in range(3)]
            await lm.aclose()
    assert texts == ["answer 0", "answer 1", "answer 2"]


async def test_chunked_and_gzipped_responses_are_decoded() -> None:
    async def chunked_gzip(stream: trio.SocketStream) -> None:
        while await read_request(stream):
            body = gzip.compress(json.dumps(chat("unzipped")).encode())
            half = len(body) // 2
            chunks = b"".join(
                f"{len(part):x}\r\n".encode() + part + b"\r\n"
                for part in (body[:half], body[half:])
            )
            await stream.send_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n"
                + chunks
                + b"0\r\n\r\n"
            )

    async with raw_server(chunked_gzip) as port:
        lm = LM("openai/m", base_url=f"http://127.0.0.1:{port}/v1", api_key="k")
        with trio.fail_after(10):
            assert (await lm.request(ASK)).text == "unzipped"
            assert (await lm.request(ASK)).text == "unzipped"  # same connection, still in sync
            await lm.aclose()


async def test_garbage_from_the_server_is_a_protocol_error() -> None:
    async def garbage(stream: trio.SocketStream) -> None:
        await read_request(stream)
        await stream.send_all(b"SMTP ready\r\n\r\n")
        await stream.aclose()

    async with raw_server(garbage) as port:
        client = HTTPClient(f"http://127.0.0.1:{port}")
        with trio.fail_after(10), pytest.raises(TransportFailure, match="RemoteProtocolError"):
            await client.post(client.url("/x"), b"{}")
        await client.aclose()


async def test_refused_connection_is_a_server_error_after_retries(autojump_clock: Any) -> None:
    # Connecting to a closed loopback port fails at once, so virtual time only
    # shortens the backoff sleeps.
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    lm = LM("openai/m", base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=2)
    with pytest.raises(LMServerError, match=f"127.0.0.1:{port}.*after 2 retries") as info:
        await lm.request(ASK)
    assert "cannot connect" in str(info.value)
    assert isinstance(info.value.__cause__, TransportFailure)
    assert isinstance(info.value.__cause__.__cause__, httpx.ConnectError)


async def test_max_connections_queues_requests_without_losing_any() -> None:
    in_flight = peak = 0
    gate = trio.Event()

    async def held(request: Request) -> Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await gate.wait()
        in_flight -= 1
        return Response.from_json(chat("done"))

    async with serve_http(held) as server:
        lm = LM("openai/m", base_url=server.base_url + "/v1", api_key="k", max_connections=3)
        results: list[str] = []

        async def call() -> None:
            results.append((await lm.request(ASK)).text)

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for _ in range(12):
                    nursery.start_soon(call)
                while in_flight < 3:
                    await trio.testing.wait_all_tasks_blocked()
                gate.set()
            await lm.aclose()
    assert results == ["done"] * 12
    assert peak == 3 and server.connections_accepted == 3


# A self-signed certificate for 127.0.0.1, made for this test only (valid until 2125).
TEST_CERT = """-----BEGIN CERTIFICATE-----
MIIBmjCCAUGgAwIBAgIUGbSIOXhV8Dgolic8EPBOdsNQIsswCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJMTI3LjAuMC4xMCAXDTI2MTEyNjIyMTMzN1oYDzIxMjYxMTAy
MjIxMzM3WjAUMRIwEAYDVQQDDAkxMjcuMC4wLjEwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAAStZRzq/eXnCwstBr6k8ANmiIZFNKNz2hkdI2jNxP9wt7QeWb6zgSH6
ykmLPcareN2f3symWwZ48oTrBb0AT6UQo28wbTAdBgNVHQ4EFgQUCguPaWyNvE3o
PanGW/Xecbc6AUEwHwYDVR0jBBgwFoAUCguPaWyNvE3oPanGW/Xecbc6AUEwDwYD
VR0TAQH/BAUwAwEB/zAaBgNVHREEEzARhwR/AAABgglsb2NhbGhvc3QwCgYIKoZI
zj0EAwIDRwAwRAIgOOPXCbIHE99c0vFGMHAFKSbXR80hR+NJS/wk6YE9TmcCIDm2
qxOgbX+xyXL/TEDG3aDmRqi8wJi6nP5GrBKJm/2w
-----END CERTIFICATE-----
"""
TEST_KEY = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgObuKCAUB8+9mnvXz
rhiV6gmx+hLXSemgPNIZMlEe9auhRANCAAStZRzq/eXnCwstBr6k8ANmiIZFNKNz
2hkdI2jNxP9wt7QeWb6zgSH6ykmLPcareN2f3symWwZ48oTrBb0AT6UQ
-----END PRIVATE KEY-----
"""


async def test_https_through_the_pool(tmp_path: Any) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text(TEST_CERT)
    key.write_text(TEST_KEY)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))

    async def tls_answer(stream: trio.SSLStream[trio.SocketStream]) -> None:
        try:
            while await read_request(stream):
                body = json.dumps(chat("secure")).encode()
                await stream.send_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    + f"content-length: {len(body)}\r\n\r\n".encode()
                    + body
                )
        except trio.BrokenResourceError:
            pass  # the client that does not trust us hangs up mid-handshake

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(trio.serve_ssl_over_tcp, tls_answer, 0, server_ctx, host="127.0.0.1")
        )
        port = listeners[0].transport_listener.socket.getsockname()[1]
        transport = H11Transport(ssl_context=client_ctx)
        lm = LM(
            "openai/m", base_url=f"https://127.0.0.1:{port}/v1", api_key="k", transport=transport
        )
        with trio.fail_after(10):
            assert [(await lm.request(ASK)).text for _ in range(2)] == ["secure", "secure"]
            await lm.aclose()
        # default trust store: our self-signed certificate is refused, without retries
        untrusted = LM("openai/m", base_url=f"https://127.0.0.1:{port}/v1", max_retries=4)
        with trio.fail_after(10), pytest.raises(LMServerError, match="trusted connection"):
            await untrusted.request(ASK)
        nursery.cancel_scope.cancel()


async def test_environment_proxies_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    # With HTTP_PROXY set, requests go through httpx.AsyncClient, which sends
    # them to the proxy in absolute form; our loopback server plays the proxy.
    targets: list[str] = []

    async def proxy(request: Request) -> Response:
        targets.append(request.target)
        return Response.from_json(chat("via proxy"))

    async with serve_http(proxy) as server:
        monkeypatch.setenv("HTTP_PROXY", server.base_url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        lm = LM("openai/m", base_url="http://api.example.test/v1", api_key="k")
        with trio.fail_after(10):
            assert (await lm.request(ASK)).text == "via proxy"
            await lm.aclose()
    assert targets == ["http://api.example.test/v1/chat/completions"]
