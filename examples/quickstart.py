"""A typed signature and two adapters, each serving two concurrent calls, with a scripted model.

Run: python examples/quickstart.py
"""

from __future__ import annotations

import enum
from functools import partial

import attrs
import trio

import trio_dspy as td
from trio_dspy.testing import DummyLM


class Mood(enum.Enum):
    happy = "happy"
    upset = "upset"


@attrs.frozen
class MakeDrink:
    drink: str
    size: str


@attrs.frozen
class Refund:
    order_id: str
    amount: float


class HandleCustomer(td.Signature):
    """Decide what the coffee shop should do for the customer."""

    request: str = td.InputField(desc="what the customer said")
    mood: Mood = td.InputField()
    action: MakeDrink | Refund = td.OutputField()
    confidence: float = td.OutputField(desc="between 0 and 1")


def script(request: td.LMRequest) -> dict[str, object]:
    """The scripted model: a refund for complaints, a drink otherwise."""
    said = request.messages[-1].content
    if "terrible" in said:
        return {"action": Refund("A17", 4.5), "confidence": 0.9}
    return {"action": MakeDrink("latte", "large"), "confidence": 0.8}


async def main() -> None:
    handle = td.ChainOfThought(HandleCustomer)
    requests = [
        ("Large iced latte with oat milk", Mood.happy),
        ("This coffee is terrible!", Mood.upset),
    ]
    for adapter in (td.ChatAdapter(), td.JSONAdapter()):
        lm = DummyLM(lambda r: {"reasoning": "Read the request.", **script(r)}, latency=0.5)
        with td.context(lm=lm, adapter=adapter), td.track_usage() as usage:
            start = trio.current_time()
            calls = [partial(handle, request=text, mood=mood) for text, mood in requests]
            results = await td.gather(*calls)
            elapsed = trio.current_time() - start
        name = type(adapter).__name__
        print(f"{name}: {len(results)} requests in {elapsed:.2f}s, {usage.total_tokens} tokens")
        for (text, _), pred in zip(requests, results, strict=True):
            print(f"  {text!r:36} -> {pred.action!r} (confidence {pred.confidence})")


if __name__ == "__main__":
    trio.run(main)
