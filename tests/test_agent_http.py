"""Agents and telemetry over real loopback HTTP against the simulated server."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import structlog

import trio_dspy as td
from trio_dspy.demo.coffee_shop import CoffeeShopAgent, CustomerMood, MakeDrink, RefundOrder
from trio_dspy.demo.story import customers, script
from trio_dspy.telemetry import InMemoryExporter, collect, span_to_dict
from trio_dspy.testing import Fault, SimConfig, SimReply, serve_sim

API_KEY = "sk-test-very-secret-key-123"


async def test_coffee_shop_agent_native_tools_over_http() -> None:
    people = customers(4)
    config = SimConfig(script=script(people, time_scale=0.0), api_key=API_KEY)
    async with serve_sim(config) as server:
        lm = td.LM("openai/sim-model", base_url=server.base_url, api_key=API_KEY)
        agent = CoffeeShopAgent()
        async with lm:
            with td.context(lm=lm):
                preds = await td.gather(
                    *(lambda c=c: agent(request=c.request, mood=c.mood) for c in people)
                )
    latte, refund = preds[0], preds[1]
    assert isinstance(latte.action, MakeDrink)
    assert latte.action.order.iced is True and latte.action.order.milk == "oat"
    assert latte.termination_reason == "finish"
    assert latte.trajectory.steps[0].calls[0].name == "make_drink"
    assert latte.trajectory.steps[0].calls[0].observation.startswith("made order A1")
    assert isinstance(refund.action, RefundOrder)
    assert agent.shop.orders["A17"]["refunded"] is True
    # Native tool calling: the server saw tool definitions, including finish.
    tools = {t["function"]["name"] for t in server.requests[0]["tools"]}
    assert {
        "check_menu",
        "make_drink",
        "refund_order",
        "tell_joke",
        "call_manager",
        "finish",
    } <= tools


async def test_text_mode_react_over_http() -> None:
    steps = [
        {
            "next_thought": "Check it.",
            "next_tool_name": "check_menu",
            "next_tool_args": {"item": "latte"},
        },
        {"next_thought": "Done.", "next_tool_name": "finish", "next_tool_args": {}},
    ]
    extraction = {
        "reasoning": "Latte is on the menu.",
        "action": {"_type": "AnswerQuestion", "answer": "Yes, $4.50."},
        "reply": "We do! A latte is $4.50.",
    }

    def answer(body: Mapping[str, Any]) -> SimReply:
        system = body["messages"][0]["content"]
        if "next_thought" in system:
            turn = sum(1 for m in body["messages"] if "Observation:" in str(m.get("content")))
            return SimReply(outputs=steps[min(turn, 1)])
        return SimReply(outputs=extraction)

    async with serve_sim(SimConfig(script=answer, supports_tools=False)) as server:
        lm = td.LM("openai/sim-model", base_url=server.base_url, api_key="k")
        agent = CoffeeShopAgent()
        async with lm:
            with td.context(lm=lm):
                pred = await agent(request="Do you have lattes?", mood=CustomerMood.neutral)
    assert pred.termination_reason == "finish"
    assert pred.reply == "We do! A latte is $4.50."
    assert pred.trajectory.steps[0].calls[0].observation == "latte is on the menu: $4.50 (medium)"
    # The server refused tools once; the agent fell back to text mode and stayed there.
    assert sum(1 for body in server.requests if body.get("tools")) == 1


async def test_api_key_never_reaches_spans_or_logs() -> None:
    config = SimConfig(script=script(customers(1), time_scale=0.0), api_key=API_KEY)
    exporter = InMemoryExporter()
    with structlog.testing.capture_logs() as logs:
        async with serve_sim(config) as server, collect(exporter):
            lm = td.LM("openai/sim-model", base_url=server.base_url, api_key=API_KEY, max_retries=1)
            async with lm:
                with td.context(lm=lm, trace_content=True):
                    await CoffeeShopAgent()(
                        request="Large iced latte with oat milk", mood=CustomerMood.happy
                    )
                bad = td.LM("openai/sim-model", base_url=server.base_url, api_key=API_KEY + "x")
                async with bad:
                    with td.context(lm=bad):
                        try:
                            await td.Predict("q -> a")(q="?")
                        except td.errors.LMAuthError as exc:
                            assert API_KEY not in str(exc)
    assert exporter.spans, "spans were exported"
    dumped = repr([span_to_dict(s) for s in exporter.spans]) + repr(logs)
    assert API_KEY not in dumped
    assert API_KEY not in repr(lm) and API_KEY not in repr(bad)
    chat = next(s for s in exporter.spans if s.name == "chat sim-model")
    assert chat.attributes["server.address"] == "127.0.0.1"
    assert chat.attributes["gen_ai.provider.name"] == "openai"


async def test_retries_are_events_on_the_chat_span(autojump_clock: object) -> None:
    config = SimConfig(faults=[Fault("rate_limit", first=2, retry_after=0.01)])
    exporter = InMemoryExporter()
    async with serve_sim(config) as server, collect(exporter):
        lm = td.LM("openai/sim-model", base_url=server.base_url, api_key="k")
        async with lm:
            with td.context(lm=lm):
                await td.Predict("q -> a")(q="?")
    chat = next(s for s in exporter.spans if s.name == "chat sim-model")
    retries = [e for e in chat.events if e.name == "retry"]
    assert [e.attributes["attempt"] for e in retries] == [1, 2]
    assert all(e.attributes["http.response.status_code"] == 429 for e in retries)


async def test_text_mode_react_calls_tools_with_valid_arguments_from_the_simulated_server() -> None:
    made: list[str] = []

    def make_drink(name: str, size: Literal["small", "medium", "large"], shots: int = 1) -> str:
        """Make a drink."""
        made.append(f"{size} {name} x{shots}")
        return f"made a {size} {name}"

    def check_menu(item: str) -> str:
        """Look an item up on the menu."""
        return f"{item} is on the menu"

    def refund(order_id: str, amount: float) -> str:
        """Refund an order."""
        return f"refunded {amount} for {order_id}"

    agent = td.ReAct("request -> reply", tools=[make_drink, check_menu, refund], mode="text")
    async with serve_sim(SimConfig()) as server:
        lm = td.LM("openai/sim-model", base_url=server.base_url, api_key="k")
        async with lm:
            with td.context(lm=lm):
                preds = [await agent(request=f"customer {i}") for i in range(4)]
    calls = [c for p in preds for c in p.trajectory.tool_calls]
    assert calls, "the simulated model never picked a tool"
    assert all(c.ok for c in calls), [c.observation for c in calls if not c.ok]
    assert {c.name for c in calls} <= {"make_drink", "check_menu", "refund"}
