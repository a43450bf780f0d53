"""The simulated server's streamed answers (``"stream": true``) in both dialects.

A completion is rendered as server-sent events, one network write each,
``SimConfig.stream_delay`` seconds apart, the text and each tool call's
arguments cut into pieces of ``SimConfig.stream_chunk_chars`` characters:

* OpenAI: ``chat.completion.chunk`` events (the role first, then content
  pieces, then each tool call: id and name, then argument pieces), one with
  the finish reason, the usage chunk when ``stream_options.include_usage``
  asks for it, and ``data: [DONE]``;
* Anthropic: ``message_start`` (input usage), ``ping``, each content block
  as ``content_block_start`` / ``content_block_delta`` (``text_delta`` or
  ``input_json_delta``) / ``content_block_stop``, ``message_delta`` (stop
  reason, output usage) and ``message_stop``.

Faults mid-stream (:class:`~trio_dspy.testing.Fault` ``after=k``):
``"stream_reset"`` aborts the connection after ``k`` events,
``"stream_stall"`` stops sending for ``stall`` seconds after ``k`` events.
A client that goes away before the end is counted in
``SimStats.streams_abandoned``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .http_server import ClientGone, ConnectionReset, Response
from .sim_answers import Dialect
from .sim_config import Fault, SimConfig

if TYPE_CHECKING:
    from .sim_stats import SimStats

__all__ = ["anthropic_events", "openai_events", "stream_response"]

Sleep = Callable[[float], Awaitable[None]]


def _pieces(text: str, size: int) -> Iterator[str]:
    for start in range(0, len(text), max(1, size)):
        yield text[start : start + max(1, size)]


def _sse(data: Mapping[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def openai_events(body: Mapping[str, Any], *, chunk_chars: int, include_usage: bool) -> list[bytes]:
    """A ``chat.completion`` body as ``chat.completion.chunk`` events, ending in ``[DONE]``."""
    choice = body["choices"][0]
    message = choice["message"]
    head = {k: body[k] for k in ("id", "created", "model", "system_fingerprint")}
    head["object"] = "chat.completion.chunk"

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _sse({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": p}) for p in _pieces(message.get("content") or "", chunk_chars)]
    for i, call in enumerate(message.get("tool_calls") or ()):
        function = call["function"]
        start = {"index": i, "id": call["id"], "type": "function"}
        events.append(chunk({"tool_calls": [{**start, "function": {"name": function["name"]}}]}))
        events += [
            chunk({"tool_calls": [{"index": i, "function": {"arguments": p}}]})
            for p in _pieces(function["arguments"], chunk_chars)
        ]
    events.append(chunk({}, choice["finish_reason"]))
    if include_usage:
        events.append(_sse({**head, "choices": [], "usage": body["usage"]}))
    events.append(b"data: [DONE]\n\n")
    return events


def anthropic_events(body: Mapping[str, Any], *, chunk_chars: int) -> list[bytes]:
    """A Messages API ``message`` body as the named events of its stream."""
    usage = body["usage"]
    start = {**body, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    events = [
        _sse({"type": "message_start", "message": start}, "message_start"),
        _sse({"type": "ping"}, "ping"),
    ]
    for index, block in enumerate(body["content"]):
        opened: dict[str, Any]
        if block["type"] == "text":
            opened = {"type": "text", "text": ""}
            deltas = [
                {"type": "text_delta", "text": p} for p in _pieces(block["text"], chunk_chars)
            ]
        else:
            opened = {**block, "input": {}}
            arguments = json.dumps(block["input"], separators=(",", ":"))
            deltas = [
                {"type": "input_json_delta", "partial_json": p}
                for p in _pieces(arguments, chunk_chars)
            ]
        events.append(
            _sse(
                {"type": "content_block_start", "index": index, "content_block": opened},
                "content_block_start",
            )
        )
        events += [
            _sse({"type": "content_block_delta", "index": index, "delta": d}, "content_block_delta")
            for d in deltas
        ]
        events.append(_sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
    delta = {"stop_reason": body["stop_reason"], "stop_sequence": None}
    ending = {
        "type": "message_delta",
        "delta": delta,
        "usage": {"output_tokens": usage["output_tokens"]},
    }
    events.append(_sse(ending, "message_delta"))
    events.append(_sse({"type": "message_stop"}, "message_stop"))
    return events


def stream_response(
    payload: Mapping[str, Any],
    request: Mapping[str, Any],
    dialect: Dialect,
    *,
    config: SimConfig,
    stats: SimStats,
    sleep: Sleep,
    fault: Fault | None,
) -> Response:
    """The streamed answer to ``request`` whose whole answer is ``payload``."""
    if dialect == "anthropic":
        events = anthropic_events(payload, chunk_chars=config.stream_chunk_chars)
    else:
        options = request.get("stream_options") or {}
        include_usage = bool(options.get("include_usage"))
        if config.profile is not None:  # the imitated server decides
            include_usage = config.profile.stream_usage_for(request, payload)
        events = openai_events(
            payload, chunk_chars=config.stream_chunk_chars, include_usage=include_usage
        )
    if fault is not None and not fault.kind.startswith("stream_"):
        fault = None
    body = _send(events, config.stream_delay, stats, sleep, fault)
    headers = (("content-type", "text/event-stream"), ("cache-control", "no-cache"))
    return Response(200, headers, stream=body)


async def _send(
    events: list[bytes], delay: float, stats: SimStats, sleep: Sleep, fault: Fault | None
) -> AsyncGenerator[bytes, None]:
    stats.streams += 1
    try:
        for sent, event in enumerate(events):
            if fault is not None and sent == fault.after:
                if fault.kind == "stream_reset":
                    raise ConnectionReset
                await sleep(fault.stall)
            if sent and delay > 0:
                await sleep(delay)
            yield event
    except ClientGone:
        stats.streams_abandoned += 1
        raise
