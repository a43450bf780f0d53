"""A minimal in-process ASGI client on trio, for the serving tests.

httpx's ``ASGITransport`` collects the whole response before returning and
has no way to hang up mid-request; the serving tests need both (events
arriving one by one, and a client that disconnects), so this drives the
app's ``(scope, receive, send)`` directly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import trio

_NOTHING = object()


@attrs.define
class Response:
    """What the app sent: status, headers (lower-case names), body, and each body message."""

    status: int = 0
    headers: dict[str, str] = attrs.field(factory=dict)
    body: bytes = b""
    started: trio.Event = attrs.field(factory=trio.Event)
    pieces: list[bytes] = attrs.field(factory=list)
    piece_arrived: trio.Event = attrs.field(factory=trio.Event)

    def json(self) -> Any:
        return json.loads(self.body)

    def events(self) -> list[tuple[str, Any]]:
        """The server-sent events of the body, as ``(event, decoded data)``."""
        out = []
        for block in self.body.decode().split("\n\n"):
            if not block.strip():
                continue
            event, data = "message", ""
            for line in block.split("\n"):
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data += line[6:]
            out.append((event, json.loads(data)))
        return out


async def request(
    app: Any,
    method: str,
    path: str,
    *,
    json_body: Any = _NOTHING,
    content: bytes = b"",
    chunks: Sequence[bytes] | None = None,
    headers: Mapping[str, str] | None = None,
    hang_up: trio.Event | None = None,
    response: Response | None = None,
    start_delay: float = 0.0,
) -> Response:
    """Send one request to ``app`` and return its response.

    ``chunks`` sends the body in pieces; ``hang_up``, once set, makes the
    client disconnect (the app's next ``receive()`` gets ``http.disconnect``).
    Pass ``response`` to watch it fill while the request runs;
    ``start_delay`` makes the response's start take that long to be accepted
    (a server or network that pushes back).
    """
    if json_body is not _NOTHING:
        content = json.dumps(json_body).encode()
    pieces = list(chunks) if chunks is not None else [content]
    raw_headers = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if json_body is not _NOTHING:
        raw_headers.append((b"content-type", b"application/json"))
    if chunks is None:
        raw_headers.append((b"content-length", str(len(content)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": raw_headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    out = response if response is not None else Response()
    queue = [
        {"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1}
        for i, piece in enumerate(pieces)
    ]

    async def receive() -> dict[str, Any]:
        if queue:
            await trio.lowlevel.checkpoint()
            return queue.pop(0)
        if hang_up is None:
            await trio.sleep_forever()
        else:
            await hang_up.wait()
        return {"type": "http.disconnect"}

    async def send(message: Mapping[str, Any]) -> None:
        await trio.lowlevel.checkpoint()
        if message["type"] == "http.response.start":
            await trio.sleep(start_delay)
            assert not out.started.is_set(), "the response started twice"
            out.status = message["status"]
            out.headers = {k.decode(): v.decode() for k, v in message.get("headers", ())}
            out.started.set()
        elif message["type"] == "http.response.body":
            assert out.started.is_set(), "a body before the response started"
            piece = bytes(message.get("body", b""))
            out.body += piece
            out.pieces.append(piece)
            out.piece_arrived.set()
            out.piece_arrived = trio.Event()

    await app(scope, receive, send)
    return out
