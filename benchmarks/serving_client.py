"""The clients of ``benchmarks/serving.py``: one keep-alive HTTP/1.1 connection each, on trio.

They share the machine's two cores with the server under test and the
simulated model, so every millisecond they spend is one the server does not
get. httpx with trio_dspy's h11 transport cost about 0.9 ms of CPU per
request at 1,000 clients; these write a request prepared once and read the
answer's status and ``Content-Length`` body off the socket, a small fraction
of that. They speak only what both servers answer with (a response with a
``Content-Length``, kept alive); anything else counts as a failed request.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlsplit

import attrs
import trio

_HEAD_END = b"\r\n\r\n"
_LENGTH = b"\r\ncontent-length:"


class ClientError(Exception):
    """The server's answer was not one these clients read (or the connection broke)."""


@attrs.define
class Results:
    """What the clients saw: latencies of answered requests, failures by kind."""

    latencies: list[float] = attrs.field(factory=list)
    failures: dict[str, int] = attrs.field(factory=dict)

    def fail(self, key: str) -> None:
        """Count one failed request of kind ``key``."""
        self.failures[key] = self.failures.get(key, 0) + 1


def prepare(url: str, path: str, body: Any) -> tuple[str, int, bytes]:
    """Host, port and the bytes of a POST of ``body`` as JSON to ``url`` + ``path``."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    payload = json.dumps(body).encode()
    head = (
        f"POST {parts.path.rstrip('/')}{path} HTTP/1.1\r\nhost: {host}:{port}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n"
    )
    return host, port, head.encode() + payload


async def _answer(stream: trio.SocketStream, buffer: bytearray) -> int:
    """Read one response off ``stream`` (extra bytes stay in ``buffer``); return its status."""
    while (end := buffer.find(_HEAD_END)) < 0:
        data = await stream.receive_some(65536)
        if not data:
            raise ClientError("closed")
        buffer += data
    head = bytes(buffer[:end]).lower()
    at = head.find(_LENGTH)
    if at < 0:
        raise ClientError("no-content-length")
    line_end = head.find(b"\r\n", at + 2)
    length = int(head[at + len(_LENGTH) : line_end if line_end >= 0 else len(head)])
    del buffer[: end + len(_HEAD_END)]
    while len(buffer) < length:
        data = await stream.receive_some(65536)
        if not data:
            raise ClientError("closed")
        buffer += data
    del buffer[:length]
    return int(head[9:12])


async def run_client(host: str, port: int, request: bytes, count: int, results: Results) -> None:
    """Send ``request`` ``count`` times, one after another, on one connection.

    The first request's latency includes opening the connection, as a new
    client's does. A broken connection fails the requests it had left.
    """
    stream: trio.SocketStream | None = None
    buffer = bytearray()
    try:
        for done in range(count):
            start = time.perf_counter()
            try:
                if stream is None:
                    stream = await trio.open_tcp_stream(host, port)
                await stream.send_all(request)
                status = await _answer(stream, buffer)
            except (OSError, trio.BrokenResourceError, ClientError) as exc:
                key = str(exc) if isinstance(exc, ClientError) else type(exc).__name__
                for _ in range(count - done):
                    results.fail(key)
                return
            if status == 200:
                results.latencies.append(time.perf_counter() - start)
            else:
                results.fail(str(status))
    finally:
        if stream is not None:
            await stream.aclose()
