"""Retries with exponential backoff and full jitter, ``Retry-After``, error mapping.

An attempt either returns, raises a final :class:`~trio_dspy.errors.LMError`,
or raises :class:`Retryable` (408, 409, 429, 5xx, connection failures, read
timeouts). :func:`call_with_retries` sleeps between attempts with
``trio.sleep`` (so tests run it under ``autojump_clock``), honouring the
server's ``Retry-After`` / ``retry-after-ms``, and gives up with the last
error when retries run out, when the server asks for a longer pause than
``Backoff.max_retry_after``, or when the pause would outlast the deadline.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import attrs
import trio

from ..errors import (
    ContextWindowExceededError,
    LMAuthError,
    LMBadRequestError,
    LMError,
    LMRateLimitError,
    LMServerError,
    LMTimeoutError,
)
from ..http.headers import parse_retry_after

__all__ = [
    "Backoff",
    "OnRetry",
    "Retryable",
    "call_with_retries",
    "error_for_status",
    "error_message",
    "is_retryable_status",
    "parse_retry_after",
]

T = TypeVar("T")

#: ``on_retry(attempt, delay, error)``: called before sleeping ``delay`` seconds
#: ahead of retry number ``attempt`` (1 for the first retry).
OnRetry = Callable[[int, float, LMError], None]

_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "context length",
    "context_length",
    "context window",
    "context size",
    "prompt is too long",
    "input is too long",
    "too many tokens",
    "maximum number of tokens",
)


class Retryable(Exception):
    """An attempt failed in a way worth retrying; ``error`` is raised if none is left."""

    def __init__(self, error: LMError, *, retry_after: float | None = None) -> None:
        self.error = error
        self.retry_after = retry_after
        super().__init__(str(error))


@attrs.frozen
class Backoff:
    """How long to wait between attempts.

    Retry ``n`` (0-based) waits a uniformly random time in
    ``[0, min(cap, base * 2**n)]`` ("full jitter"), unless the server said how
    long to wait. A server asking for more than ``max_retry_after`` seconds
    ends the retries at once.
    """

    base: float = 0.5
    cap: float = 30.0
    max_retry_after: float = 120.0

    def delay(self, retry: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait before retry ``retry``; ``None`` means give up now."""
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after else None
        return random.uniform(0.0, min(self.cap, self.base * (2.0**retry)))


def error_message(data: Any, fallback: str) -> tuple[str, str]:
    """The provider's error text and code from a decoded error body.

    Understands OpenAI (``{"error": {"message", "code", "type"}}``), Anthropic
    (``{"type": "error", "error": {...}}``) and the shapes of common
    OpenAI-compatible servers (``{"error": "..."}``, ``{"message": ...}``,
    ``{"detail": ...}``). ``fallback`` (the raw body) is used otherwise.
    """
    if isinstance(data, Mapping):
        err = data.get("error")
        if isinstance(err, Mapping):
            code = err.get("code") or err.get("type") or ""
            return str(err.get("message") or fallback), str(code)
        if isinstance(err, str) and err:
            return err, str(data.get("code") or data.get("type") or "")
        for key in ("message", "detail"):
            if data.get(key):
                return str(data[key]), str(data.get("code") or data.get("type") or "")
    return fallback, ""


def is_retryable_status(status: int) -> bool:
    """408, 409, 429 and 5xx are worth retrying; other failures are final."""
    return status in (408, 409, 429) or status >= 500


def _is_context_error(message: str, code: str) -> bool:
    text = f"{code} {message}".lower()
    return any(marker in text for marker in _CONTEXT_MARKERS)


def error_for_status(
    status: int,
    message: str,
    code: str = "",
    *,
    retry_after: float | None = None,
    retries: int = 0,
    provider: str = "",
    model: str = "",
    auth_hint: str = "check the API key",
) -> LMError:
    """The typed error for a failed HTTP status, carrying the provider's message.

    ``retries`` is how many retries were spent (mentioned for transient errors).
    """
    kw: dict[str, Any] = {"status_code": status, "provider": provider, "model": model}
    after = f" after {retries} retr{'y' if retries == 1 else 'ies'}" if retries else ""
    if status in (401, 403):
        return LMAuthError(f"{message} ({auth_hint})", **kw)
    if status == 429:
        return LMRateLimitError(
            f"{message} (still rate limited{after}: lower max_concurrency or set rpm=/tpm= "
            "on the LM, or raise max_retries)",
            retry_after=retry_after,
            **kw,
        )
    if status == 408:
        return LMTimeoutError(f"{message} (the server timed out{after})", **kw)
    if status >= 500 or status == 409:
        return LMServerError(f"{message} (the server kept failing{after}; try again later)", **kw)
    if status in (400, 413, 422) and _is_context_error(message, code):
        return ContextWindowExceededError(
            f"{message} (shorten the prompt: fewer demos or smaller inputs, or use a model "
            "with a larger context window)",
            **kw,
        )
    if status == 404:
        return LMBadRequestError(f"{message} (check the model name and base_url)", **kw)
    return LMBadRequestError(message, **kw)


async def call_with_retries(
    attempt: Callable[[int], Awaitable[T]],
    *,
    max_retries: int,
    backoff: Backoff,
    on_retry: OnRetry | None = None,
) -> T:
    """Run ``attempt(retries_so_far)`` until it returns, retrying :class:`Retryable` failures.

    Between attempts it sleeps (cancellably) per ``backoff`` and calls
    ``on_retry(attempt_number, delay, error)``. It gives up, raising the last
    ``Retryable.error``, once ``max_retries`` retries are spent, when the server
    asks for too long a pause, or when the pause would outlast the enclosing
    deadline (no point sleeping into a timeout).

    Raises:
        LMError: the final error (from the attempt, or the last retryable one).
    """
    retry = 0
    while True:
        try:
            return await attempt(retry)
        except Retryable as failure:
            delay = backoff.delay(retry, failure.retry_after) if retry < max_retries else None
            if delay is None or trio.current_time() + delay >= trio.current_effective_deadline():
                raise failure.error from failure.__cause__
            retry += 1
            if on_retry is not None:
                on_retry(retry, delay, failure.error)
            await trio.sleep(delay)
