"""Response and error bodies in OpenAI's and Anthropic's wire formats."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from .http_server import Response
from .sim_answers import Answer, Dialect

__all__ = ["anthropic_body", "error_response", "openai_body", "tokens"]

_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    529: "overloaded_error",
}
_OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "invalid_request_error",
    429: "requests",
    500: "server_error",
    503: "server_error",
}
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def tokens(chars: int) -> int:
    """A rough token count: about four characters per token, at least one."""
    return max(1, chars // 4)


def error_response(
    dialect: Dialect,
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
) -> Response:
    """An error in the dialect's own shape.

    OpenAI: ``{"error": {"message", "type", "param", "code"}}``;
    Anthropic: ``{"type": "error", "error": {"type", "message"}}``.
    """
    if dialect == "anthropic":
        kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
        body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
    else:
        kind = _OPENAI_ERROR_TYPES.get(
            status, "server_error" if status >= 500 else "invalid_request_error"
        )
        body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return Response.from_json(body, status=status, headers=tuple(headers))


def _usage(prompt_chars: int, answer: Answer) -> tuple[int, int]:
    out = len(answer.text) + sum(len(c[1]) + len(c[2]) for c in answer.tool_calls)
    return tokens(prompt_chars), tokens(out)


def openai_body(answer: Answer, *, model: str, prompt_chars: int, number: int) -> dict[str, Any]:
    """A ``chat.completion`` object for ``answer``."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": answer.text if answer.text or not answer.tool_calls else None,
    }
    if answer.tool_calls:
        message["tool_calls"] = [
            {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
            for cid, name, args in answer.tool_calls
        ]
    prompt, completion = _usage(prompt_chars, answer)
    return {
        "id": f"chatcmpl-sim{number:08d}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": answer.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
        "system_fingerprint": "fp_sim",
    }


def anthropic_body(answer: Answer, *, model: str, prompt_chars: int, number: int) -> dict[str, Any]:
    """A Messages API ``message`` object for ``answer``."""
    content: list[dict[str, Any]] = []
    if answer.text:
        content.append({"type": "text", "text": answer.text})
    for cid, name, args in answer.tool_calls:
        try:
            arguments = json.loads(args)
        except ValueError:
            arguments = {"_raw": args}
        content.append(
            {"type": "tool_use", "id": "toolu_" + cid[5:], "name": name, "input": arguments}
        )
    prompt, completion = _usage(prompt_chars, answer)
    return {
        "id": f"msg_sim{number:08d}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _STOP_REASONS[answer.finish_reason],
        "stop_sequence": None,
        "usage": {"input_tokens": prompt, "output_tokens": completion},
    }
