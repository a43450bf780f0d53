"""Budgets on the LM calls of a block of code and the tasks it spawns.

::

    with td.usage_limits(max_requests=20, max_total_tokens=50_000, max_cost=0.50) as budget:
        await agent(request=...)          # every LM call inside is charged
    print(budget.requests, budget.total_tokens, budget.cost, budget.remaining)

A call that could go over a budget raises
:class:`~trio_dspy.errors.UsageLimitExceeded` before anything is sent. To
make that hold for concurrent calls, each call *reserves* its worst case when
it starts (one request, and its prompt estimate plus its ``max_tokens``, or
1024 tokens without one: what the ``tpm`` rate limit reserves) and
*settles* to its real usage when it ends. A call is refused when the budget's
usage plus every reservation in flight plus its own would pass a limit, so 50
calls started at once never spend more than the budget unless a model writes
more than was reserved for it (a call without ``max_tokens`` may).

``max_cost`` (US dollars) reserves the list price of those tokens (see
:mod:`trio_dspy.lm.prices`: it needs the ``prices`` extra, or a server that
reports costs) and settles to the call's cost. A call whose price is not known
beforehand is refused under a ``max_cost``: it could not be bounded.

What counts: a request answered by the model counts one request and its
``total_tokens`` (a response without a usage count is charged its estimate);
a cache hit counts nothing; a call that failed or was cancelled counts one
request and no tokens or cost (what it cost is not known). A response whose
cost is not known is charged the reserved estimate. Retries inside one call
(``td.LM(max_retries=...)``) are one request. Each attempt of a
``td.FallbackLM`` is a call of its own.

Budgets nest: a call is charged to every enclosing block and refused if any
of them would go over, so an inner block can only be stricter. Child tasks
spawned inside the block are charged to it (a contextvar, as
:func:`~trio_dspy.track_usage`).
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Iterator
from contextlib import contextmanager

import attrs

from .errors import UsageLimitExceeded
from .primitives import Usage

__all__ = [
    "NO_RESERVATION",
    "Remaining",
    "Reservation",
    "UsageBudget",
    "active",
    "needs_cost",
    "reserve",
    "usage_limits",
]


@attrs.frozen
class Remaining:
    """What a budget has left: ``None`` for a limit that was not set."""

    requests: int | None
    total_tokens: int | None
    cost: float | None = None


class UsageBudget:
    """A budget yielded by :func:`usage_limits`.

    ``requests``, ``total_tokens`` and ``cost`` (US dollars) are what the
    block's finished calls used; ``reserved_requests``, ``reserved_tokens``
    and ``reserved_cost`` what its calls in flight hold; :attr:`remaining`
    what is left for new calls.
    """

    def __init__(
        self, max_requests: int | None, max_total_tokens: int | None, max_cost: float | None
    ) -> None:
        self.max_requests = max_requests
        self.max_total_tokens = max_total_tokens
        self.max_cost = max_cost
        self.requests = 0
        self.total_tokens = 0
        self.cost = 0.0
        self.reserved_requests = 0
        self.reserved_tokens = 0
        self.reserved_cost = 0.0

    @property
    def remaining(self) -> Remaining:
        """The requests and tokens left once the calls in flight have their reservations."""
        requests = tokens = None
        if self.max_requests is not None:
            requests = max(0, self.max_requests - self.requests - self.reserved_requests)
        if self.max_total_tokens is not None:
            spent = self.total_tokens + self.reserved_tokens
            tokens = max(0, self.max_total_tokens - spent)
        cost = None
        if self.max_cost is not None:
            cost = max(0.0, self.max_cost - self.cost - self.reserved_cost)
        return Remaining(requests, tokens, cost)

    def _refusal(self, tokens: int, cost: float | None, model: str) -> UsageLimitExceeded | None:
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
        if self.max_cost is not None:
            spent = self.cost + self.reserved_cost
            if cost is None:
                return UsageLimitExceeded(
                    f"no price is known for {model or 'this model'}, so a call cannot be held "
                    f"to max_cost={self.max_cost:g}: install trio_dspy[prices], or use "
                    "max_total_tokens instead",
                    limit="max_cost",
                    maximum=self.max_cost,
                    used=spent,
                )
            if spent + cost > self.max_cost:
                return UsageLimitExceeded(
                    f"this LM call (up to ${cost:.6f} at list price) would go over "
                    f"max_cost={self.max_cost:g} (${spent:.6f} spent or reserved); raise the "
                    "limit, or set a smaller max_tokens",
                    limit="max_cost",
                    maximum=self.max_cost,
                    used=spent,
                )
        return None

    def __repr__(self) -> str:
        return (
            f"UsageBudget(requests={self.requests}/{self.max_requests}, "
            f"total_tokens={self.total_tokens}/{self.max_total_tokens}, "
            f"cost={self.cost:g}/{self.max_cost})"
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


def _cost_limit(value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"max_cost must be a number of US dollars or None, got {value!r}")
    if not 0 < value < math.inf:
        raise ValueError(
            f"max_cost must be positive and finite, got {value}: use None for no limit"
        )
    return float(value)


@contextmanager
def usage_limits(
    max_requests: int | None = None,
    max_total_tokens: int | None = None,
    max_cost: float | None = None,
) -> Iterator[UsageBudget]:
    """Bound the LM calls made inside the block, child tasks included (see the module).

    Args:
        max_requests: the most calls the model may be sent.
        max_total_tokens: the most tokens (prompt and completion) they may use.
        max_cost: the most they may cost, in US dollars (see the module).

    Raises:
        ValueError: a limit is zero or negative (or ``max_cost`` not finite).
        TypeError: a limit is not a number (``max_requests`` and
            ``max_total_tokens`` take ints).

    Calls inside raise :class:`~trio_dspy.errors.UsageLimitExceeded`, before
    sending, when they could go over.
    """
    budget = UsageBudget(
        _limit("max_requests", max_requests),
        _limit("max_total_tokens", max_total_tokens),
        _cost_limit(max_cost),
    )
    token = _budgets.set((*_budgets.get(), budget))
    try:
        yield budget
    finally:
        _budgets.reset(token)


class Reservation:
    """One call's hold on every active budget: :meth:`settle` it when the call ends."""

    __slots__ = ("_budgets", "_cost", "_tokens")

    def __init__(self, budgets: tuple[UsageBudget, ...], tokens: int, cost: float) -> None:
        self._budgets = budgets
        self._tokens = tokens
        self._cost = cost

    def settle(self, usage: Usage | None, *, cached: bool = False) -> None:
        """Replace the reservation with what the call used (``None``: it failed)."""
        for budget in self._budgets:
            budget.reserved_requests -= 1
            budget.reserved_tokens -= self._tokens
            budget.reserved_cost -= self._cost
            if cached:
                continue
            budget.requests += 1
            if usage is not None:
                budget.total_tokens += usage.total_tokens or self._tokens
                budget.cost += self._cost if usage.cost is None else usage.cost
        self._budgets = ()  # settling twice changes nothing


#: The reservation of a call no budget applies to: settling it does nothing.
NO_RESERVATION = Reservation((), 0, 0.0)


def active() -> bool:
    """Whether any budget applies to the calling task (so a call must reserve)."""
    return bool(_budgets.get())


def needs_cost() -> bool:
    """Whether an active budget has a ``max_cost`` (so a call must be priced first)."""
    return any(budget.max_cost is not None for budget in _budgets.get())


def reserve(tokens: int, cost: float | None = None, *, model: str = "") -> Reservation:
    """Reserve one request, ``tokens`` and ``cost`` on every active budget, or refuse.

    ``cost`` is ``None`` when the call's price is not known (a budget with
    ``max_cost`` refuses it); ``model`` names it in that error.

    Raises:
        UsageLimitExceeded: a budget would go over (nothing is reserved then).
    """
    budgets = _budgets.get()
    if not budgets:
        return NO_RESERVATION
    for budget in budgets:  # check them all before holding any
        refusal = budget._refusal(tokens, cost, model)
        if refusal is not None:
            raise refusal
    held = cost or 0.0
    for budget in budgets:
        budget.reserved_requests += 1
        budget.reserved_tokens += tokens
        budget.reserved_cost += held
    return Reservation(budgets, tokens, held)
