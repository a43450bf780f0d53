"""DSPy's serving recipe for ``benchmarks/serving.py``: FastAPI + ``dspy.asyncify`` under uvicorn.

As DSPy's deployment tutorial writes it: the program wrapped by
``dspy.asyncify`` (it runs in worker threads, ``async_max_workers`` of them,
DSPy's default unless ``DSPY_ASYNC_MAX_WORKERS`` is set), one POST route
that returns ``result.toDict()``. Imports nothing from trio_dspy: it runs in
an environment that has dspy, fastapi and uvicorn. ``SIM_URL`` is the
simulated server's base URL.

Two programs, as trio-dspy serves them (benchmarks/serving_target.py):
``qa``, one ``Predict("question -> answer")``, and ``shop``, the coffee-shop
agent ported to DSPy: the same signature (the action a union of pydantic
classes instead of attrs ones), the same five tools over an in-memory shop,
``dspy.ReAct`` with the same ``max_iters=6``.
"""

from __future__ import annotations

import enum
import itertools
import os
from typing import Any, Literal, Union

import dspy
from fastapi import FastAPI
from pydantic import BaseModel

dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
lm = dspy.LM("openai/sim-model", api_base=os.environ["SIM_URL"], api_key="k", cache=False)
workers = os.environ.get("DSPY_ASYNC_MAX_WORKERS")
if workers:
    dspy.settings.configure(lm=lm, adapter=dspy.ChatAdapter(), async_max_workers=int(workers))
else:
    dspy.settings.configure(lm=lm, adapter=dspy.ChatAdapter())

app = FastAPI()
qa = dspy.asyncify(dspy.Predict("question -> answer"))


class Question(BaseModel):
    question: str


@app.post("/programs/qa")
async def predict(body: Question) -> dict[str, object]:
    result = await qa(question=body.question)
    return {"outputs": result.toDict()}


# ------------------------------------------------------------------ the shop
class CustomerMood(enum.Enum):
    """How the customer feels."""

    happy = "happy"
    neutral = "neutral"
    upset = "upset"


Size = Literal["small", "medium", "large"]


class DrinkOrder(BaseModel):
    """A drink as the barista makes it."""

    name: str
    size: Size
    iced: bool = False
    milk: str | None = None


class MakeDrink(BaseModel):
    """Make a drink for the customer."""

    order: DrinkOrder
    order_id: str


class RefundOrder(BaseModel):
    """Refund an order."""

    order_id: str
    amount: float


class TellJoke(BaseModel):
    """Cheer the customer up."""

    joke: str


class EscalateToManager(BaseModel):
    """Hand the customer over to the manager."""

    reason: str


class AnswerQuestion(BaseModel):
    """Answer a question without taking any other action."""

    answer: str


Action = Union[MakeDrink, RefundOrder, TellJoke, EscalateToManager, AnswerQuestion]  # noqa: UP007


class HandleCustomer(dspy.Signature):
    """You are the barista of a small coffee shop. Serve the customer: check the
    menu before promising anything, make drinks that are on the menu, refund
    orders customers complain about, tell a joke when asked, and call the
    manager for anything you cannot handle. Be warm, brief and honest."""

    request: str = dspy.InputField(desc="what the customer said")
    mood: CustomerMood = dspy.InputField(desc="how the customer feels")
    action: Action = dspy.OutputField(desc="the main thing you did for the customer")
    reply: str = dspy.OutputField(desc="what you say to the customer")


MENU = {
    "latte": 4.50,
    "cappuccino": 4.00,
    "espresso": 3.00,
    "americano": 3.25,
    "mocha": 4.75,
    "croissant": 3.50,
}
SIZE_PRICE = {"small": -0.50, "medium": 0.0, "large": 0.75}
JOKES = itertools.cycle(
    (
        "How does a coffee bean say goodbye? It's bean nice knowing you!",
        "Why did the latte call the police? It got mugged.",
        "What do you call a sad cup of coffee? A depresso.",
    )
)
ORDERS: dict[str, dict[str, Any]] = {
    "A17": {"item": "large latte", "price": 5.25, "refunded": False}
}
IDS = itertools.count(100)


def check_menu(item: str) -> str:
    """Look up an item on the menu and its price."""
    key = item.strip().lower()
    for name, price in MENU.items():
        if name in key or key in name:
            return f"{name} is on the menu: ${price:.2f} (medium)"
    return f"{item} is not on the menu. We serve: {', '.join(MENU)}."


def make_drink(
    name: str, size: Size = "medium", iced: bool = False, milk: str | None = None
) -> str:
    """Make a drink and record the order."""
    key = name.strip().lower()
    if key not in MENU:
        return f"cannot make {name}: not on the menu"
    order_id = f"A{next(IDS)}"
    price = MENU[key] + SIZE_PRICE.get(size, 0.0)
    desc = " ".join(p for p in (size, "iced" if iced else "", key) if p)
    if milk:
        desc += f" with {milk} milk"
    ORDERS[order_id] = {"item": desc, "price": price, "refunded": False}
    return f"made order {order_id}: {desc}, ${price:.2f}"


def refund_order(order_id: str, reason: str) -> str:
    """Refund an order in full."""
    order = ORDERS.get(order_id.strip().upper())
    if order is None:
        return f"no order {order_id}; known orders: {', '.join(ORDERS)}"
    if order["refunded"]:
        return f"order {order_id} was already refunded"
    order["refunded"] = True
    return f"refunded ${order['price']:.2f} for order {order_id} ({order['item']}): {reason}"


def tell_joke(topic: str = "coffee") -> str:
    """Get a joke to tell the customer."""
    return next(JOKES)


def call_manager(reason: str) -> str:
    """Call the manager over to handle the customer."""
    return "the manager is on the way"


shop = dspy.asyncify(
    dspy.ReAct(
        HandleCustomer,
        tools=[check_menu, make_drink, refund_order, tell_joke, call_manager],
        max_iters=6,
    )
)


class Customer(BaseModel):
    request: str
    mood: CustomerMood


@app.post("/programs/shop")
async def serve_customer(body: Customer) -> dict[str, object]:
    result = await shop(request=body.request, mood=body.mood)
    return {"outputs": {"action": result.action.model_dump(), "reply": result.reply}}
