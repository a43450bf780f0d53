"""Shared helpers for the LM client tests: a scripted ``httpx.MockTransport``."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from trio_dspy.lm import LM

Reply = httpx.Response | Exception | Callable[[httpx.Request], Awaitable[httpx.Response]]

KEY = "sk-test-very-secret-key-123"


def chat(
    text: str | None = "ok",
    *,
    tool_calls: list[dict[str, Any]] | None = None,
    usage: tuple[int, int] = (10, 5),
    finish: str = "stop",
    model: str = "m-2024",
) -> dict[str, Any]:
    """An OpenAI Chat Completions response body."""
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": usage[0] + usage[1],
        },
    }


def ok(text: str = "ok", **kw: Any) -> httpx.Response:
    """A 200 Chat Completions response."""
    return httpx.Response(200, json=chat(text, **kw))


def error(
    status: int, message: str, code: str | None = None, *, param: str | None = None, **headers: str
) -> httpx.Response:
    """An OpenAI-style error response (``param``: the request parameter it blames)."""
    body = {
        "error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    }
    return httpx.Response(status, json=body, headers=headers)


class Scripted:
    """A mock server answering from a list (the last reply repeats).

    A reply is an ``httpx.Response``, an exception to raise (connection
    failures), or an async function of the request (for latency). Every
    request is recorded; :attr:`bodies` has their JSON bodies.
    """

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies) or [ok()]
        self.requests: list[httpx.Request] = []

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        index = min(len(self.requests), len(self.replies) - 1)
        self.requests.append(request)
        reply = self.replies[index]
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, httpx.Response):
            return reply
        return await reply(request)

    def lm(self, model: str = "openai/m", **kw: Any) -> LM:
        """An LM whose requests this mock answers."""
        kw.setdefault("api_key", KEY)
        kw.setdefault("base_url", "http://sim.test/v1")
        return LM(model, transport=httpx.MockTransport(self), **kw)
