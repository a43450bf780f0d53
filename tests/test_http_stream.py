"""HTTPClient.stream: bodies read piece by piece, decoded and bounded as they come."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from trio_dspy.http import HTTPClient
from trio_dspy.http.failures import ResponseTooLargeFailure, TransportFailure

SSE = "text/event-stream"


def client(body: bytes, encoding: str, **kw: Any) -> HTTPClient:
    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 7):
            yield body[start : start + 7]

    def handle(request: httpx.Request) -> httpx.Response:
        assert request.headers["accept"] == SSE
        headers = {"content-type": SSE, "content-encoding": encoding}
        return httpx.Response(200, headers=headers, content=pieces())

    return HTTPClient("http://sim.test/v1", transport=httpx.MockTransport(handle), **kw)


async def read_all(http: HTTPClient) -> bytes:
    async with http.stream(http.url("/x"), b"{}") as reply:
        return await reply.read()


TEXT = b"data: hello\n\n" * 20


@pytest.mark.parametrize(
    ("encoding", "encoded"),
    [
        ("gzip", gzip.compress(TEXT)),
        ("deflate", zlib.compress(TEXT)),
        ("deflate", zlib.compress(TEXT, wbits=-zlib.MAX_WBITS)),  # raw, as some servers send
        ("identity", TEXT),
    ],
)
async def test_a_compressed_stream_is_inflated_piece_by_piece(
    encoding: str, encoded: bytes
) -> None:
    assert await read_all(client(encoded, encoding)) == TEXT


async def test_a_stream_that_inflates_past_the_limit_stops_there() -> None:
    bomb = gzip.compress(b"x" * 1_000_000)
    with pytest.raises(ResponseTooLargeFailure):
        await read_all(client(bomb, "gzip", max_response_bytes=10_000))


async def test_a_truncated_compressed_stream_is_a_transport_failure() -> None:
    with pytest.raises(TransportFailure, match="decompressed"):
        await read_all(client(gzip.compress(TEXT)[:-10], "gzip"))


async def test_a_plain_stream_over_the_limit_stops_there() -> None:
    with pytest.raises(ResponseTooLargeFailure):
        await read_all(client(TEXT, "identity", max_response_bytes=100))
