"""Retries with exponential backoff and full jitter, honouring ``Retry-After``.

An attempt either returns, raises a final :class:`~trio_dspy.errors.LMError`,
or raises :class:`Retryable` (408, 409, 429, 5xx, connection failures, read
timeouts; :mod:`trio_dspy.lm.errors` says which statuses those are).
:func:`call_with_retries` sleeps between attempts with ``trio.sleep`` (so
tests run it under ``autojump_clock``), honouring the server's
``Retry-After`` / ``retry-after-ms``, and gives up with the last error when
retries run out, when the server asks for a longer pause than
``Backoff.max_retry_after``, or when the pause would outlast the deadline.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import attrs
import trio

from ..errors import LMError
from ..logs import get_logger
from ..telemetry.span import current_span

__all__ = ["Backoff", "OnRetry", "Retryable", "call_with_retries", "next_retry", "report_retry"]

log = get_logger(__name__)

T = TypeVar("T")

#: ``on_retry(attempt, delay, error)``: called before sleeping ``delay`` seconds
#: ahead of retry number ``attempt`` (1 for the first retry).
OnRetry = Callable[[int, float, LMError], None]


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
    max_retry_after: float = 60.0

    def delay(self, retry: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait before retry ``retry``; ``None`` means give up now."""
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after else None
        return random.uniform(0.0, min(self.cap, self.base * (2.0**retry)))


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
            delay = next_retry(failure, retry, max_retries, backoff, on_retry)
            retry += 1
            await trio.sleep(delay)


def next_retry(
    failure: Retryable, retry: int, max_retries: int, backoff: Backoff, on_retry: OnRetry | None
) -> float:
    """The pause before the retry after ``failure`` (``retry``: the retries so far),
    ``on_retry`` told of it; called in the ``except`` block that caught ``failure``.

    Raises:
        LMError: ``failure.error``, when no retry is left, the server asks for too
            long a pause, or the pause would outlast the enclosing deadline.
    """
    delay = backoff.delay(retry, failure.retry_after) if retry < max_retries else None
    if delay is None and retry < max_retries and failure.retry_after is not None:
        failure.error.message += (
            f" (the server asked to wait {failure.retry_after:g} s, more than "
            f"max_retry_after={backoff.max_retry_after:g} s: not waiting)"
        )
    if delay is None or trio.current_time() + delay >= trio.current_effective_deadline():
        raise failure.error from failure.__cause__
    if on_retry is not None:
        on_retry(retry + 1, delay, failure.error)
    return delay


def report_retry(model: str, server: str, attempt: int, delay: float, error: LMError) -> None:
    """Log a coming retry (at debug level) and add a ``retry`` event to the current span."""
    log.debug(
        "lm.retry",
        model=model,
        server=server,
        attempt=attempt,
        delay=round(delay, 3),
        error=str(error),
    )
    span = current_span()
    if span is not None:  # the call's "chat" span
        span.add_event(
            "retry",
            {
                "attempt": attempt,
                "delay_s": round(delay, 3),
                "error.type": type(error).__name__,
                "http.response.status_code": error.status_code,
            },
        )
