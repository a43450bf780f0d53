"""What an LM call cost, in US dollars: the server's figure, else a price table.

A server that reports the cost of a call (OpenRouter's ``usage.cost``, for
one) is believed. Otherwise the ``prices`` extra (``pip install
'trio_dspy[prices]'``, pydantic's ``genai-prices``: an offline table of the
providers' published prices, no network) prices the call by its provider
(``openai``, ``anthropic``, ...) and model (the server's name for it first,
then the one the LM was given). Without the extra, or for a model the table
does not know (a local server's, a fine-tune), the cost is ``None``.

Calls are priced only when something reads the cost: a
:func:`~trio_dspy.track_usage` block or a :func:`~trio_dspy.usage_limits`
budget (see :func:`cost_wanted`). The table is read the first time a cost is
needed (about a third of a second, once per process), in a worker thread so
that the event loop keeps running; a model the table does not know is looked
up once per process. Prices are the providers' list prices: discounts, batch
rates and cached-prompt rebates are not applied, so treat the figure as an
estimate.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import sys
from typing import TYPE_CHECKING, Any

import trio

from ..primitives import Usage
from ..usage import wants_cost
from ..usage_limits import active

if TYPE_CHECKING:
    from ..messages import LMResponse

__all__ = [
    "call_cost",
    "cost_wanted",
    "estimate_cost",
    "load_prices",
    "prices_available",
    "response_cost",
]

# (provider, model) pairs the table does not know: its lookup of a name it
# lacks tries every model's patterns (about a third of a millisecond), so a
# miss is remembered.
_unknown: set[tuple[str, str]] = set()


@functools.cache
def prices_available() -> bool:
    """Whether the ``prices`` extra (``genai-prices``) is installed."""
    return importlib.util.find_spec("genai_prices") is not None


def cost_wanted() -> bool:
    """Whether a call made now must be priced: a :func:`~trio_dspy.track_usage`
    block or a :func:`~trio_dspy.usage_limits` budget is active for the task."""
    return wants_cost() or active()


def _load_table() -> None:
    import genai_prices.data_snapshot

    genai_prices.data_snapshot.get_snapshot()


# The load in progress in this trio run, if any: calls that want the table
# while it loads wait for that one thread instead of starting their own, and
# all of them go on together when it is read.
_loading: trio.lowlevel.RunVar[trio.Event | None] = trio.lowlevel.RunVar(
    "trio_dspy.prices_loading", default=None
)


async def load_prices() -> None:
    """Import the price table in a worker thread the first time, so that the
    event loop is not held for its third of a second; concurrent callers wait
    for the one load. Raises nothing."""
    if "genai_prices.data_snapshot" in sys.modules or not prices_available():
        return
    loading = _loading.get()
    if loading is not None:
        await loading.wait()
        return
    loading = trio.Event()
    _loading.set(loading)
    try:
        await trio.to_thread.run_sync(_load_table)
    finally:
        _loading.set(None)
        loading.set()


def estimate_cost(
    provider: str, models: tuple[str, ...], prompt_tokens: int, completion_tokens: int
) -> float | None:
    """The list price of a call using these tokens, by the first of ``models`` the table knows.

    ``None`` when the extra is not installed or no model is known. Raises nothing.
    """
    if not prices_available():
        return None
    import genai_prices

    usage = genai_prices.Usage(input_tokens=prompt_tokens, output_tokens=completion_tokens)
    for model in models:
        if not model or (provider, model) in _unknown:
            continue
        try:
            found: Any = genai_prices.calc_price(usage, model_ref=model, provider_id=provider)
        except LookupError:
            _unknown.add((provider, model))
            continue
        except (ValueError, TypeError):
            continue
        price = float(found.total_price)
        if math.isfinite(price) and price >= 0:
            return price
    return None


def response_cost(provider: str, model_name: str, response: LMResponse) -> float | None:
    """What ``response`` (from ``provider``'s ``model_name``) cost: the server's
    reported cost, else the table's; ``None`` for a cache hit, a call that used
    no tokens, or a model the table does not know. Raises nothing."""
    usage = response.usage
    if usage.cost is not None or response.cached or not usage.total_tokens:
        return usage.cost
    return call_cost(provider, (response.model, model_name), usage)


def call_cost(provider: str, models: tuple[str, ...], usage: Usage) -> float | None:
    """The cost of a call that used ``usage``: the server's, else the table's, else ``None``."""
    if usage.cost is not None:
        return usage.cost
    if not usage.total_tokens:
        return None
    return estimate_cost(provider, models, usage.prompt_tokens, usage.completion_tokens)
