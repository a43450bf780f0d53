"""The little of ASGI the serving app needs: reading a bounded body, sending JSON and events.

Written by hand rather than on a web framework: the app has six routes, and
owning the request loop keeps its cancellation exact (a client that hangs up
cancels its program at once) with no dependency beyond trio.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from ..unicode import utf8

__all__ = [
    "HANG_UP",
    "BodyTooLarge",
    "ClientGone",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "header",
    "headers",
    "read_body",
    "send_body",
    "send_json",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = Iterable[tuple[bytes, bytes]]

#: The ASGI extension (``scope["extensions"][HANG_UP]``) by which a server that
#: offers it (the lean server) tells an app of a hang-up with a call: a function
#: taking a callback of no arguments, called once when the client hangs up
#: before the current request's answer is complete (at once if it already has).
HANG_UP = "trio_dspy.hang_up"


class BodyTooLarge(Exception):
    """The request body is longer than the app accepts (answered 413, never read whole)."""


class ClientGone(Exception):
    """The client hung up before its request body arrived."""


def headers(scope: Scope, names: frozenset[bytes]) -> dict[bytes, str]:
    """The request headers among ``names`` (lower case), the first of each if repeated.

    One pass over the request's headers, however many the app reads.
    """
    found: dict[bytes, str] = {}
    for key, value in scope.get("headers", ()):
        key = key.lower()
        if key in names and key not in found:
            found[key] = bytes(value).decode("latin-1")
    return found


def header(scope: Scope, name: str) -> str | None:
    """The value of request header ``name`` (lower case), the first if repeated; else ``None``."""
    return headers(scope, frozenset((name.encode("latin-1"),))).get(name.encode("latin-1"))


async def read_body(receive: Receive, limit: int, length: str | None) -> bytes:
    """The request body, refused as soon as it is known to exceed ``limit`` bytes.

    A ``length`` (the ``content-length`` header) over the limit is refused
    before any of the body is read; a body sent in chunks is refused at the
    chunk that crosses it.

    Raises:
        BodyTooLarge: the body is longer than ``limit``.
        ClientGone: the client disconnected first.
    """
    if length is not None and length.strip().isdigit() and int(length) > limit:
        raise BodyTooLarge
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


async def send_body(
    send: Send, status: int, body: bytes, content_type: bytes, extra: Headers = ()
) -> None:
    """Send a whole response (``extra``: more headers, as the bytes ASGI sends)."""
    raw = [(b"content-type", content_type), (b"content-length", b"%d" % len(body)), *extra]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def dumps(payload: Any) -> bytes:
    """Compact UTF-8 JSON (non-ASCII kept as is; lone surrogates become U+FFFD)."""
    # Cleaning the written text equals cleaning every string first (strings
    # are never adjacent in JSON text, so no pair forms across two of them),
    # and costs one encode instead of a walk over the payload per response.
    return utf8(_ENCODER.encode(payload))


# One encoder for every response: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


async def send_json(send: Send, status: int, payload: Any, extra: Headers = ()) -> None:
    """Send ``payload`` as a JSON response."""
    await send_body(send, status, dumps(payload), b"application/json", extra)
