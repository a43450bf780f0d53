"""Limits shared by every task using one model: concurrency, requests and tokens per minute.

:class:`Limits` gates each HTTP attempt. ``max_concurrency`` bounds the
requests in flight; ``rpm`` and ``tpm`` are token buckets on the trio clock
(full at start, refilled continuously). For ``tpm`` the caller estimates the
tokens of a request before sending it and reports the real usage after, so
the bucket ends up charged with what the provider actually counted.

All waiting is cancellable and fair (first come, first served). The
semaphore, locks and bucket levels are bound to a trio run and recreated in
the next one.

:class:`LimitsBackend` is what the LM needs of a limiter: :class:`Limits`
keeps the budgets in this process; a :class:`LimitsStore` given as
``LM(limits=...)`` (:class:`~trio_dspy.lm.redis_limits.RedisLimits`) binds
the same numbers to budgets shared by several processes.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Protocol

import trio

from ..runlocal import RunLocal

if TYPE_CHECKING:
    from ..messages import LMResponse

__all__ = [
    "Limits",
    "LimitsBackend",
    "LimitsStore",
    "Permit",
    "Settle",
    "TokenBucket",
    "within_limits",
]


class Settle(Protocol):
    """A permit: told the real token usage of the call it admitted."""

    def settle(self, actual_tokens: int) -> None:
        """Charge the call's real usage instead of its estimate."""


class LimitsBackend(Protocol):
    """Admits each HTTP attempt of an LM: the seam between the LM and its limiter."""

    def acquire(self, estimated_tokens: int = 0) -> AbstractAsyncContextManager[Settle]:
        """Wait (cancellably) for a slot and the rate budget; hold them for the block."""
        ...


class LimitsStore(Protocol):
    """Where an LM's limits are kept when not in the process (``LM(limits=...)``)."""

    def bind(self, limits: Limits, scope: str) -> LimitsBackend:
        """The limiter enforcing ``limits`` on the budgets named ``scope``
        (the model and its server: one set of budgets per model).

        Raises:
            ConfigurationError: the store's client library is not installed.
        """
        ...


class TokenBucket:
    """``per_minute`` units per minute, bursting up to ``per_minute`` at once.

    The level may go below zero when :meth:`adjust` charges more than was
    taken; later takers then wait for the debt to be refilled.
    """

    def __init__(self, per_minute: float) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.level = self.capacity
        self._stamp = trio.current_time()
        self._lock = trio.Lock()

    def _refill(self) -> None:
        now = trio.current_time()
        self.level = min(self.capacity, self.level + (now - self._stamp) * self.rate)
        self._stamp = now

    async def take(self, amount: float) -> float:
        """Wait until ``amount`` units are available and take them; return what was taken.

        ``amount`` is clamped to the capacity so a single huge request cannot
        wait forever. Waiters are served in arrival order.
        """
        amount = min(max(amount, 0.0), self.capacity)
        async with self._lock:
            self._refill()
            while self.level < amount:
                await trio.sleep((amount - self.level) / self.rate)
                self._refill()
            self.level -= amount
        return amount

    def adjust(self, extra: float) -> None:
        """Charge ``extra`` more units (negative gives some back)."""
        self._refill()
        self.level = min(self.capacity, self.level - extra)


class Permit:
    """Handed out by :meth:`Limits.acquire`; report real usage with :meth:`settle`."""

    __slots__ = ("_bucket", "_estimate")

    def __init__(self, bucket: TokenBucket | None, estimate: float) -> None:
        self._bucket = bucket
        self._estimate = estimate

    def settle(self, actual_tokens: int) -> None:
        """Correct the token bucket by the difference between estimate and real usage."""
        if self._bucket is not None:
            self._bucket.adjust(actual_tokens - self._estimate)
            self._bucket = None


class _RunState:
    def __init__(self, limits: Limits) -> None:
        self.slots = trio.Semaphore(limits.max_concurrency) if limits.max_concurrency else None
        self.requests = TokenBucket(limits.rpm) if limits.rpm else None
        self.tokens = TokenBucket(limits.tpm) if limits.tpm else None


class Limits:
    """Concurrency and rate limits for one model, shared by all its callers.

    Args:
        max_concurrency: requests in flight at once (``None``: no bound).
        rpm: requests per minute (``None``: no bound).
        tpm: tokens per minute (``None``: no bound).

    Raises:
        ValueError: a limit is not positive.
    """

    def __init__(
        self,
        *,
        max_concurrency: int | None = None,
        rpm: float | None = None,
        tpm: float | None = None,
    ) -> None:
        for name, value in (("max_concurrency", max_concurrency), ("rpm", rpm), ("tpm", tpm)):
            if value is not None and (not math.isfinite(value) or value <= 0):
                raise ValueError(f"{name} must be a positive number or None, got {value!r}")
        self.max_concurrency = max_concurrency
        self.rpm = rpm
        self.tpm = tpm
        self._state: RunLocal[_RunState] = RunLocal(
            lambda: _RunState(self), name="trio_dspy.lm.limits"
        )

    @property
    def active(self) -> bool:
        """Whether any limit is set (callers skip :meth:`acquire` otherwise)."""
        return bool(self.max_concurrency or self.rpm or self.tpm)

    @asynccontextmanager
    async def acquire(self, estimated_tokens: int = 0) -> AsyncIterator[Permit]:
        """Hold a slot (and rate budget) for one request for the body of the block.

        Waits, cancellably, for a free slot, then for the request and token
        buckets. Call ``permit.settle(total_tokens)`` after a successful call.
        """
        state = self._state.get()
        if state.slots is not None:
            await state.slots.acquire()
        try:
            if state.requests is not None:
                await state.requests.take(1)
            taken = await state.tokens.take(estimated_tokens) if state.tokens is not None else 0
            yield Permit(state.tokens, taken)
        finally:
            if state.slots is not None:
                state.slots.release()

    def __repr__(self) -> str:
        return f"Limits(max_concurrency={self.max_concurrency}, rpm={self.rpm}, tpm={self.tpm})"


async def within_limits(
    limits: LimitsBackend,
    estimate: int,
    prompt_tokens: int,
    call: Callable[[], Awaitable[LMResponse]],
) -> LMResponse:
    """``await call()`` once ``limits`` admit a request of ``estimate`` tokens.

    The permit is then charged what the server counted (``usage.total_tokens``;
    the estimate stays when it reports none), or only ``prompt_tokens`` when
    the call produced no completion (it failed or was cancelled).

    Raises:
        Exception: ``call``'s own errors, and ``trio.Cancelled`` while waiting.
    """
    async with limits.acquire(estimate) as permit:
        try:
            response = await call()
        except BaseException:
            permit.settle(prompt_tokens)
            raise
        if response.usage.total_tokens:
            permit.settle(response.usage.total_tokens)
        return response
