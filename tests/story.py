"""Typed values from the coffee-shop story, shared by the tests."""

from __future__ import annotations

import enum

import attrs

import trio_dspy as td


class Mood(enum.Enum):
    happy = "happy"
    neutral = "neutral"
    upset = "upset"


class Size(enum.Enum):
    small = "small"
    medium = "medium"
    large = "large"


@attrs.frozen
class Drink:
    name: str
    size: Size
    milk: str | None = None


@attrs.frozen
class MakeDrink:
    drink: Drink
    quantity: int = 1


@attrs.frozen
class Refund:
    order_id: str
    amount: float


class HandleCustomer(td.Signature):
    """Decide what the coffee shop should do for the customer."""

    request: str = td.InputField(desc="what the customer said")
    mood: Mood = td.InputField(desc="how the customer feels")
    action: MakeDrink | Refund = td.OutputField(desc="what to do")
    confidence: float = td.OutputField(desc="between 0 and 1")
