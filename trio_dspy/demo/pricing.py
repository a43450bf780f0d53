"""What the demo's model calls cost, and ``--price`` to price them as a real model's.

Against the simulated server a call costs nothing: the server reports
``usage.cost`` 0 with every answer (as OpenRouter reports what a call cost),
so the run's ``td.track_usage().cost`` is 0. ``--price`` prices the same
tokens as if a paid model had answered them:

* ``--price PROVIDER/MODEL``: at that model's list price in the ``prices``
  extra's offline table (genai-prices), e.g. ``openai/gpt-4o-mini`` or
  ``anthropic/claude-3-5-haiku-latest``, the same spelling as ``--model``;
* ``--price IN,OUT``: IN US dollars per million prompt tokens and OUT per
  million completion tokens, e.g. ``0.15,0.60`` (one number prices both).

Against a real model (``--model``) without ``--price`` the cost is the LM's
own: the server's figure, else the list price, else unknown (``None``).
A model's list price is applied to the run's prompt and completion tokens as
a whole, so a price that changes past some prompt length is not applied.
"""

from __future__ import annotations

import math

import attrs

from ..lm.prices import estimate_cost, prices_available
from ..primitives import Usage

__all__ = ["Price", "parse_price", "run_cost"]


@attrs.frozen
class Price:
    """A price for the run's tokens: a model's list price, or dollars per million tokens."""

    provider: str = ""
    model: str = ""
    input_per_million: float = 0.0
    output_per_million: float = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """What these tokens cost in US dollars (``None``: the model's price is unknown)."""
        if self.model:
            return estimate_cost(self.provider, (self.model,), prompt_tokens, completion_tokens)
        return (
            prompt_tokens * self.input_per_million + completion_tokens * self.output_per_million
        ) / 1e6

    def describe(self) -> str:
        """The price in words, for the demo's report."""
        if self.model:
            return f"{self.provider}/{self.model}'s list price"
        return (
            f"${self.input_per_million:g} per million prompt tokens and "
            f"${self.output_per_million:g} per million completion tokens"
        )


def parse_price(text: str) -> Price:
    """``--price``'s value: ``PROVIDER/MODEL`` or ``IN,OUT`` dollars per million tokens.

    Raises:
        ValueError: neither form; a negative or not finite price; a model the
            price table does not know, or no table (the ``prices`` extra is
            not installed). The message says which and what to give instead.
    """
    text = text.strip()
    if text and (text[0].isdigit() or text[0] == "."):
        return _per_million(text)
    provider, slash, model = text.partition("/")
    if not (slash and provider and model):
        raise ValueError(
            f"price {text!r} is neither PROVIDER/MODEL (e.g. openai/gpt-4o-mini) nor "
            "IN,OUT dollars per million prompt and completion tokens (e.g. 0.15,0.60)"
        )
    if not prices_available():
        raise ValueError(
            f"price {text} needs the price table: pip install 'trio_dspy[prices]', "
            "or give IN,OUT dollars per million tokens (e.g. 0.15,0.60)"
        )
    if estimate_cost(provider, (model,), 1000, 1000) is None:
        raise ValueError(
            f"the price table does not know {text}: check the spelling (PROVIDER/MODEL, "
            "e.g. openai/gpt-4o-mini), or give IN,OUT dollars per million tokens"
        )
    return Price(provider=provider, model=model)


def _per_million(text: str) -> Price:
    parts = [p.strip() for p in text.split(",")]
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) not in (1, 2) or not all(0 <= n < math.inf for n in numbers):
        raise ValueError(
            f"price {text!r}: give IN,OUT dollars per million prompt and completion tokens, "
            "two numbers of 0 or more (e.g. 0.15,0.60), or one for both"
        )
    return Price(input_per_million=numbers[0], output_per_million=numbers[-1])


def run_cost(usage: Usage, price: Price | None) -> tuple[float | None, str]:
    """The run's cost in US dollars (``None``: unknown) and a sentence saying where it comes from.

    Without ``price`` the cost is ``usage.cost``, what the calls' own
    accounting found (the server's figure or the list price). Raises nothing.
    """
    if price is not None:
        return price.cost(usage.prompt_tokens, usage.completion_tokens), f"at {price.describe()}"
    if usage.cost is None:
        return None, "unknown for this model: --price prices it"
    return usage.cost, "as the server reported it or at list price"
