"""What the serving app answers with: a program's result, its events, and error bodies."""

from __future__ import annotations

from typing import Any

from ..concurrency import RequestScope
from .asgi import Send, dumps, send_json
from .programs import ProgramSpec

__all__ = ["NO_CACHE", "error_payload", "result_payload", "send_event", "unauthorized"]

#: The headers of an answer a browser must ask for again each time.
NO_CACHE = [(b"cache-control", b"no-cache")]


async def unauthorized(send: Send) -> None:
    """Answer 401: the request lacks the API key."""
    await send_json(
        send,
        401,
        error_payload("unauthorized", "send the API key as `Authorization: Bearer <key>`"),
        [(b"www-authenticate", b"Bearer")],
    )


def result_payload(spec: ProgramSpec, result: Any, req: RequestScope) -> dict[str, Any]:
    """A program's answer: its ``outputs``, the request's ``usage`` and ``request_id``
    (and ``trace_id`` when its trace is recorded)."""
    usage = req.usage
    out: dict[str, Any] = {
        "outputs": spec.unstructure_outputs(result),
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "requests": usage.requests,
        },
        "request_id": req.request_id,
    }
    if req.span.is_recording:
        out["trace_id"] = req.span.trace_id
    return out


async def send_event(send: Send, event: str, data: Any) -> None:
    """Send one server-sent event of ``data`` as JSON."""
    # One data line: JSON never holds a raw newline.
    await send(
        {
            "type": "http.response.body",
            "body": b"event: " + event.encode() + b"\ndata: " + dumps(data) + b"\n\n",
            "more_body": True,
        }
    )


def error_payload(
    kind: str, message: str, request_id: str | None = None, **extra: Any
) -> dict[str, Any]:
    """An error answer's body: ``{"error": {"type", "message", ...}}``."""
    error: dict[str, Any] = {"type": kind, "message": message, **extra}
    if request_id is not None:
        error["request_id"] = request_id
    return {"error": error}
