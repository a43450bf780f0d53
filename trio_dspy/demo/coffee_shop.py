"""The coffee-shop agent: typed actions, tools over an in-memory shop, ReAct.

This is the agent the demo runs (``trio-dspy demo``). Read it as an example
of a real trio_dspy program:

* the customer's mood is an Enum input, the action the agent takes is a
  union of attrs classes (travelling as JSON tagged ``"_type"``);
* the tools are plain methods of a :class:`Shop` (sync and async alike);
  ``make_drink``'s ``size`` is a Literal, so a model asking for ``"huge"``
  gets the validation error back instead of a huge drink;
* :class:`CoffeeShopAgent` is a ``td.Module`` wrapping ``td.ReAct``;
* :func:`abuse_screen` is an input guardrail for it (``td.guarded``): a quick
  classifier call that runs beside the barista and, when it trips, cancels
  the barista's model call in flight.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import attrs
import trio
import trio.lowlevel

import trio_dspy as td

__all__ = [
    "SCREEN_INSTRUCTIONS",
    "AnswerQuestion",
    "CoffeeShopAgent",
    "CustomerMood",
    "DrinkOrder",
    "EscalateToManager",
    "HandleCustomer",
    "MakeDrink",
    "RefundOrder",
    "ScreenRequest",
    "Shop",
    "TellJoke",
    "abuse_screen",
]


class CustomerMood(enum.Enum):
    """How the customer feels."""

    happy = "happy"
    neutral = "neutral"
    upset = "upset"


Size = Literal["small", "medium", "large"]


@attrs.frozen
class DrinkOrder:
    """A drink as the barista makes it."""

    name: str
    size: Size
    iced: bool = False
    milk: str | None = None


@attrs.frozen
class MakeDrink:
    """Make a drink for the customer."""

    order: DrinkOrder
    order_id: str


@attrs.frozen
class RefundOrder:
    """Refund an order."""

    order_id: str
    amount: float


@attrs.frozen
class TellJoke:
    """Cheer the customer up."""

    joke: str


@attrs.frozen
class EscalateToManager:
    """Hand the customer over to the manager."""

    reason: str


@attrs.frozen
class AnswerQuestion:
    """Answer a question without taking any other action."""

    answer: str


Action = MakeDrink | RefundOrder | TellJoke | EscalateToManager | AnswerQuestion


class HandleCustomer(td.Signature):
    """You are the barista of a small coffee shop. Serve the customer: check the
    menu before promising anything, make drinks that are on the menu, refund
    orders customers complain about, tell a joke when asked, and call the
    manager for anything you cannot handle. Be warm, brief and honest."""

    request: str = td.InputField(desc="what the customer said")
    mood: CustomerMood = td.InputField(desc="how the customer feels")
    action: Action = td.OutputField(desc="the main thing you did for the customer")
    reply: str = td.OutputField(desc="what you say to the customer")


MENU: dict[str, float] = {
    "latte": 4.50,
    "cappuccino": 4.00,
    "espresso": 3.00,
    "americano": 3.25,
    "mocha": 4.75,
    "croissant": 3.50,
}
SIZE_PRICE = {"small": -0.50, "medium": 0.0, "large": 0.75}
JOKES = (
    "How does a coffee bean say goodbye? It's bean nice knowing you!",
    "Why did the latte call the police? It got mugged.",
    "What do you call a sad cup of coffee? A depresso.",
)


class Shop:
    """An in-memory coffee shop: a menu and an order book. Its methods are the tools."""

    def __init__(self) -> None:
        self.orders: dict[str, dict[str, Any]] = {
            "A17": {"item": "large latte", "price": 5.25, "refunded": False},
        }
        self._ids = itertools.count(100)
        self._jokes = itertools.cycle(JOKES)
        self.escalations: list[str] = []

    def check_menu(self, item: str) -> str:
        """Look up an item on the menu and its price.

        Args:
            item: what the customer asked about, e.g. "latte" or "hamburger".
        """
        key = item.strip().lower()
        for name, price in MENU.items():
            if name in key or key in name:
                return f"{name} is on the menu: ${price:.2f} (medium)"
        return f"{item} is not on the menu. We serve: {', '.join(MENU)}."

    def make_drink(
        self, name: str, size: Size = "medium", iced: bool = False, milk: str | None = None
    ) -> str:
        """Make a drink and record the order.

        Args:
            name: the drink, from the menu.
            size: cup size.
            iced: serve it over ice.
            milk: milk to use, if the customer asked for one (e.g. "oat").
        """
        key = name.strip().lower()
        if key not in MENU:
            return f"cannot make {name}: not on the menu"
        order_id = f"A{next(self._ids)}"
        price = MENU[key] + SIZE_PRICE[size]
        desc = " ".join(p for p in (size, "iced" if iced else "", key) if p)
        if milk:
            desc += f" with {milk} milk"
        self.orders[order_id] = {"item": desc, "price": price, "refunded": False}
        return f"made order {order_id}: {desc}, ${price:.2f}"

    def refund_order(self, order_id: str, reason: str) -> str:
        """Refund an order in full.

        Args:
            order_id: the order to refund, e.g. "A17".
            reason: why, in a few words.
        """
        order = self.orders.get(order_id.strip().upper())
        if order is None:
            return f"no order {order_id}; known orders: {', '.join(self.orders)}"
        if order["refunded"]:
            return f"order {order_id} was already refunded"
        order["refunded"] = True
        return f"refunded ${order['price']:.2f} for order {order_id} ({order['item']}): {reason}"

    def tell_joke(self, topic: str = "coffee") -> str:
        """Get a joke to tell the customer.

        Args:
            topic: what the joke should be about.
        """
        return next(self._jokes)

    async def call_manager(self, reason: str) -> str:
        """Call the manager over to handle the customer.

        Args:
            reason: what the manager needs to know.
        """
        await trio.lowlevel.checkpoint()  # paging the manager is instant in this shop
        self.escalations.append(reason)
        return "the manager is on the way"

    def tools(self) -> list[td.Tool]:
        """The shop's tools; the quick sync ones run inline, not in a thread."""
        return [
            td.Tool(self.check_menu, blocking=False),
            td.Tool(self.make_drink, blocking=False),
            td.Tool(self.refund_order, blocking=False),
            td.Tool(self.tell_joke, blocking=False),
            td.Tool(self.call_manager),
        ]


class CoffeeShopAgent(td.Module):
    """The barista: a ReAct agent over the shop's tools."""

    def __init__(
        self,
        shop: Shop | None = None,
        *,
        max_iters: int = 6,
        mode: Literal["auto", "native", "text"] = "auto",
    ) -> None:
        self.shop = shop or Shop()
        self.barista = td.ReAct(
            HandleCustomer, tools=self.shop.tools(), max_iters=max_iters, mode=mode
        )

    async def forward(self, **inputs: Any) -> td.Prediction:
        """Serve one customer: ``request`` and ``mood`` in, ``action`` and ``reply`` out."""
        prediction: td.Prediction = await self.barista(**inputs)
        return prediction


# The first line of ScreenRequest's instructions; the simulated model knows a
# screening request by it.
SCREEN_INSTRUCTIONS = "Screen what a coffee-shop customer said before the barista answers."


class ScreenRequest(td.Signature):
    """Screen what a coffee-shop customer said before the barista answers.
    Trip on abuse of the staff or demands that have nothing to do with a
    coffee shop. A complaint about the coffee, however blunt, is on topic."""

    request: str = td.InputField(desc="what the customer said")
    tripped: bool = td.OutputField(desc="true to refuse the request")
    reason: str = td.OutputField(desc="why, in a few words")


def abuse_screen() -> Callable[..., Awaitable[td.GuardrailResult]]:
    """An input guardrail for :class:`CoffeeShopAgent`: a ``Predict(ScreenRequest)`` call.

    Use it as ``td.guarded(agent, input=[abuse_screen()])``. It runs beside
    the agent, so screening adds no latency to a customer it passes; when it
    trips, the agent (its model call in flight, its tools) is cancelled and
    the call raises :class:`~trio_dspy.errors.GuardrailTripped` whose
    ``info`` is the screen's reason. Raises nothing itself; the model call's
    own errors propagate.
    """
    screen = td.Predict(ScreenRequest)

    async def abuse_screen(request: str, **_: Any) -> td.GuardrailResult:
        verdict = await screen(request=request)
        return td.GuardrailResult(tripped=bool(verdict.tripped), info=str(verdict.reason))

    return abuse_screen
