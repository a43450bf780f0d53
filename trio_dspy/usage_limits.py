"""Budgets on the LM calls of a block of code and the tasks it spawns.

::

    with td.usage_limits(max_requests=20, max_total_tokens=50_000) as budget:
        await agent(request=...)          # every LM call inside is charged
    print(budget.requests, budget.total_tokens, budget.remaining)

A call that could go over a budget raises
:class:`~trio_dspy.errors.UsageLimitExceeded` before anything is sent. To
make that hold for concurrent calls, each call *reserves* its worst case when
it starts (one request, and its prompt estimate plus its ``max_tokens``, or
1024 tokens without one: what the ``tpm`` rate limit reserves) and
*settles* to its real usage when it ends. A call is refused when the budget's
usage plus every reservation in flight plus its own would pass a limit, so 50
calls started at once never spend more than the budget unless a model writes
more than was reserved for it (a call without ``max_tokens`` may).

What counts: a request answered by the model counts one request and its
``total_tokens`` (a response without a usage count is charged its estimate);
a cache hit counts nothing; a call that failed or was cancelled counts one
request and no tokens (what it cost is not known). Retries inside one call
(``td.LM(max_retries=...)``) are one request. Each attempt of a
``td.FallbackLM`` is a call of its own.

Budgets nest: a call is charged to every enclosing block and refused if any
of them would go over, so an inner block can only be stricter. Child tasks
spawned inside the block are charged to it (a contextvar, as
:func:`~trio_dspy.track_usage`).
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

import attrs

from .errors import UsageLimitExceeded
from .primitives import Usage

__all__ = ["Remaining", "Reservation", "UsageBudget", "active", "reserve", "usage_limits"]


@attrs.frozen
class Remaining:
    """What a budget has left: ``None`` for a limit that was not set."""

    requests: int | None
    total_tokens: int | None


class UsageBudget:
    """A budget yielded by :func:`usage_limits`.

    ``requests`` and ``total_tokens`` are what the block's finished calls
    used; ``reserved_requests`` and ``reserved_tokens`` what its calls in
    flight hold; :attr:`remaining` what is left for new calls.
    """

    def __init__(self, max_requests: int | None, max_total_tokens: int | None) -> None:
        self.max_requests = max_requests
        self.max_total_tokens = max_total_tokens
        self.requests = 0
        self.total_tokens = 0
        self.reserved_requests = 0
        self.reserved_tokens = 0

    @property
    def remaining(self) -> Remaining:
        """The requests and tokens left once the calls in flight have their reservations."""
        requests = tokens = None
        if self.max_requests is not None:
            requests = max(0, self.max_requests - self.requests - self.reserved_requests)
        if self.max_total_tokens is not None:
            spent = self.total_tokens + self.reserved_tokens
            tokens = max(0, self.max_total_tokens - spent)
        return Remaining(requests, tokens)

    def _refusal(self, tokens: int) -> UsageLimitExceeded | None:
        """The error a call reserving ``tokens`` would get, or ``None`` if it fits."""
        if self.max_requests is not None:
            used = self.requests + self.reserved_requests
            if used + 1 > self.max_requests:
                return UsageLimitExceeded(
                    f"this LM call would go over max_requests={self.max_requests} "
                    f"({used} made or in flight); raise the limit in td.usage_limits "
                    "or make fewer calls",
                    limit="max_requests",
                    maximum=self.max_requests,
                    used=used,
                )
        if self.max_total_tokens is not None:
            used = self.total_tokens + self.reserved_tokens
            if used + tokens > self.max_total_tokens:
                return UsageLimitExceeded(
                    f"this LM call (up to {tokens} tokens: its prompt and max_tokens) would "
                    f"go over max_total_tokens={self.max_total_tokens} ({used} used or "
                    "reserved); raise the limit, or set a smaller max_tokens",
                    limit="max_total_tokens",
                    maximum=self.max_total_tokens,
                    used=used,
                )
        return None

    def __repr__(self) -> str:
        return (
            f"UsageBudget(requests={self.requests}/{self.max_requests}, "
            f"total_tokens={self.total_tokens}/{self.max_total_tokens})"
        )


# Every budget active for the calling task, outermost first; child tasks copy it.
_budgets: contextvars.ContextVar[tuple[UsageBudget, ...]] = contextvars.ContextVar(
    "trio_dspy.usage_limits", default=()
)


def _limit(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int or None, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}: use None for no limit")
    return value


@contextmanager
def usage_limits(
    max_requests: int | None = None, max_total_tokens: int | None = None
) -> Iterator[UsageBudget]:
    """Bound the LM calls made inside the block, child tasks included (see the module).

    Args:
        max_requests: the most calls the model may be sent.
        max_total_tokens: the most tokens (prompt and completion) they may use.

    Raises:
        ValueError: a limit is zero or negative.
        TypeError: a limit is not an int.

    Calls inside raise :class:`~trio_dspy.errors.UsageLimitExceeded`, before
    sending, when they could go over.
    """
    budget = UsageBudget(
        _limit("max_requests", max_requests), _limit("max_total_tokens", max_total_tokens)
    )
    token = _budgets.set((*_budgets.get(), budget))
    try:
        yield budget
    finally:
        _budgets.reset(token)


class Reservation:
    """One call's hold on every active budget: :meth:`settle` it when the call ends."""

    __slots__ = ("_budgets", "_tokens")

    def __init__(self, budgets: tuple[UsageBudget, ...], tokens: int) -> None:
        self._budgets = budgets
        self._tokens = tokens

    def settle(self, usage: Usage | None, *, cached: bool = False) -> None:
        """Replace the reservation with what the call used (``None``: it failed)."""
        for budget in self._budgets:
            budget.reserved_requests -= 1
            budget.reserved_tokens -= self._tokens
            if cached:
                continue
            budget.requests += 1
            if usage is not None:
                budget.total_tokens += usage.total_tokens or self._tokens
        self._budgets = ()  # settling twice changes nothing


_NO_RESERVATION = Reservation((), 0)


def active() -> bool:
    """Whether any budget applies to the calling task (so a call must reserve)."""
    return bool(_budgets.get())


def reserve(tokens: int) -> Reservation:
    """Reserve one request and ``tokens`` on every active budget, or refuse.

    Raises:
        UsageLimitExceeded: a budget would go over (nothing is reserved then).
    """
    budgets = _budgets.get()
    if not budgets:
        return _NO_RESERVATION
    for budget in budgets:  # check them all before holding any
        refusal = budget._refusal(tokens)
        if refusal is not None:
            raise refusal
    for budget in budgets:
        budget.reserved_requests += 1
        budget.reserved_tokens += tokens
    return Reservation(budgets, tokens)
