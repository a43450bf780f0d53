"""The customers of the coffee-shop story, and how the simulated model serves them.

The four customers and their latencies (5.4, 7.5, 6.0 and 6.1 s) come from
the story this demo retells; ``--customers N`` adds generated ones. The demo
also meets :data:`ABUSIVE`, whom the agent's input guardrail refuses: the
model screens every customer in :data:`SCREEN_LATENCY` seconds, beside the
barista's first call, and finds this one abusive and off topic. The
script below makes the simulated OpenAI-compatible server answer like a
sensible barista model: first a tool call that fits the request, then a
``finish`` call with the typed action and a reply. Each customer's latency is
split evenly over the model calls their request takes.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping
from typing import Any

import attrs

from ..testing import SimReply, SimToolCall
from ..testing.sim_answers import read_request
from .coffee_shop import SCREEN_INSTRUCTIONS, CustomerMood

__all__ = ["ABUSIVE", "SCREEN_LATENCY", "Customer", "customers", "script"]

# Model calls per customer: one turn that calls a tool, one that finishes
# (and in text mode, DSPy's loop, a third that extracts the outputs).
CALLS_PER_CUSTOMER = 2
TEXT_CALLS_PER_CUSTOMER = 3


@attrs.frozen
class Customer:
    """One customer: what they say, how they feel, and how the model answers."""

    request: str
    mood: CustomerMood
    latency: float  # seconds the model takes for this customer, in total
    tool: str
    tool_args: Mapping[str, Any]
    action: Mapping[str, Any]  # the finish action; "{order_id}" is filled in
    reply: str
    abusive: bool = False  # what the screening model finds


STORY = (
    Customer(
        "Large iced latte with oat milk",
        CustomerMood.happy,
        5.4,
        "make_drink",
        {"name": "latte", "size": "large", "iced": True, "milk": "oat"},
        {
            "_type": "MakeDrink",
            "order": {"name": "latte", "size": "large", "iced": True, "milk": "oat"},
            "order_id": "{order_id}",
        },
        "One large iced latte with oat milk, coming right up!",
    ),
    Customer(
        "This coffee is terrible!",
        CustomerMood.upset,
        7.5,
        "refund_order",
        {"order_id": "A17", "reason": "customer found the coffee terrible"},
        {"_type": "RefundOrder", "order_id": "A17", "amount": 5.25},
        "I'm so sorry about that. I've refunded your order in full.",
    ),
    Customer(
        "Do you sell hamburgers?",
        CustomerMood.neutral,
        6.0,
        "check_menu",
        {"item": "hamburger"},
        {"_type": "AnswerQuestion", "answer": "No hamburgers, but we do have croissants."},
        "Sorry, no hamburgers here, but our croissants are excellent!",
    ),
    Customer(
        "Got any coffee jokes?",
        CustomerMood.happy,
        6.1,
        "tell_joke",
        {"topic": "coffee"},
        {"_type": "TellJoke", "joke": "{observation}"},
        "Here's one: {observation}",
    ),
)

# Seconds the model takes to screen a customer (before time scaling): well
# under any customer's first barista call, so screening adds no latency.
SCREEN_LATENCY = 0.6

#: The customer the guardrail refuses. Unguarded, the agent would page the manager.
ABUSIVE = Customer(
    "Write my history essay right now, you useless bean-pushers!",
    CustomerMood.upset,
    6.0,
    "call_manager",
    {"reason": "a customer is abusing the staff"},
    {"_type": "EscalateToManager", "reason": "a customer is abusing the staff"},
    "My manager will be right with you.",
    abusive=True,
)

_EXTRA = (
    (
        "A small cappuccino, please",
        CustomerMood.happy,
        "make_drink",
        {"name": "cappuccino", "size": "small"},
    ),
    (
        "Can I get a medium mocha?",
        CustomerMood.neutral,
        "make_drink",
        {"name": "mocha", "size": "medium"},
    ),
    ("Do you have bubble tea?", CustomerMood.neutral, "check_menu", {"item": "bubble tea"}),
    (
        "I need to speak to someone in charge.",
        CustomerMood.upset,
        "call_manager",
        {"reason": "customer asked for the manager"},
    ),
    ("Tell me something funny", CustomerMood.happy, "tell_joke", {"topic": "coffee"}),
)


def _extra(index: int, rng: random.Random) -> Customer:
    text, mood, tool, args = _EXTRA[index % len(_EXTRA)]
    request = f"{text} (customer {index + 5})"
    if tool == "make_drink":
        action: dict[str, Any] = {
            "_type": "MakeDrink",
            "order": dict(args),
            "order_id": "{order_id}",
        }
        reply = f"Your {args['size']} {args['name']} is on its way."
    elif tool == "check_menu":
        action = {"_type": "AnswerQuestion", "answer": "{observation}"}
        reply = "{observation}"
    elif tool == "call_manager":
        action = {"_type": "EscalateToManager", "reason": args["reason"]}
        reply = "My manager will be right with you."
    else:
        action = {"_type": "TellJoke", "joke": "{observation}"}
        reply = "{observation}"
    return Customer(request, mood, round(rng.uniform(5.0, 7.5), 2), tool, args, action, reply)


def customers(count: int = 4, *, seed: int = 7) -> list[Customer]:
    """The story's four customers, then generated ones up to ``count``."""
    rng = random.Random(seed)
    people = list(STORY[:count])
    people += [_extra(i, rng) for i in range(max(0, count - len(STORY)))]
    return people


def _fill(value: Any, observation: str, order_id: str) -> Any:
    if isinstance(value, str):
        return value.replace("{observation}", observation).replace("{order_id}", order_id)
    if isinstance(value, Mapping):
        return {k: _fill(v, observation, order_id) for k, v in value.items()}
    return value


def script(people: list[Customer], time_scale: float) -> Any:
    """A simulated-server script serving ``people``, with latencies scaled by ``time_scale``."""
    by_request = {c.request: c for c in people}

    def answer(body: Mapping[str, Any]) -> SimReply | None:
        request = read_request(body, "openai")
        customer = next((c for r, c in by_request.items() if r in request.last_user), None)
        if customer is None:
            return None  # not one of ours: let the server generate an answer
        if SCREEN_INSTRUCTIONS in request.system:
            return SimReply(outputs=_screened(customer), latency=SCREEN_LATENCY * time_scale)
        if not request.tools:
            latency = customer.latency * time_scale / TEXT_CALLS_PER_CUSTOMER
            return SimReply(
                outputs=_text_mode(customer, request.system, request.last_user), latency=latency
            )
        latency = customer.latency * time_scale / CALLS_PER_CUSTOMER
        if not request.has_tool_result:
            call = SimToolCall(customer.tool, dict(customer.tool_args))
            return SimReply(text="Let me take care of that.", tool_calls=[call], latency=latency)
        observation = _last_tool_result(body)
        match = re.search(r"order (A\d+)", observation)
        order_id = match.group(1) if match else "A17"
        arguments = {
            "action": _fill(customer.action, observation, order_id),
            "reply": _fill(customer.reply, observation, order_id),
        }
        return SimReply(tool_calls=[SimToolCall("finish", arguments)], latency=latency)

    return answer


def _screened(customer: Customer) -> dict[str, Any]:
    """The screening model's verdict on ``customer``."""
    if customer.abusive:
        return {"tripped": True, "reason": "abuse of the staff, and an essay is not on the menu"}
    return {"tripped": False, "reason": "an ordinary coffee-shop request"}


def _text_mode(customer: Customer, system: str, last_user: str) -> dict[str, Any]:
    """The outputs of a text-mode agent's request: a step of the loop, or the extraction."""
    observed = re.search(r"^Observation: (.*)$", last_user, re.MULTILINE)
    if "next_tool_name" in system:  # a step: call the customer's tool, then finish
        if observed is None:
            return {
                "next_thought": f"I should use {customer.tool}.",
                "next_tool_name": customer.tool,
                "next_tool_args": dict(customer.tool_args),
            }
        return {
            "next_thought": "I have what I need.",
            "next_tool_name": "finish",
            "next_tool_args": {},
        }
    observation = observed.group(1) if observed else ""
    match = re.search(r"order (A\d+)", observation)
    order_id = match.group(1) if match else "A17"
    return {
        "reasoning": f"The {customer.tool} tool answered: {observation}",
        "action": _fill(customer.action, observation, order_id),
        "reply": _fill(customer.reply, observation, order_id),
    }


def _last_tool_result(body: Mapping[str, Any]) -> str:
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "tool":
            content = message.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    return ""
