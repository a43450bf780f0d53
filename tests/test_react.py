from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pytest
import trio

import trio_dspy as td
from trio_dspy.errors import AgentLimitError, LMBadRequestError, StopAgent, ToolsUnsupportedError
from trio_dspy.messages import LMRequest, LMResponse, ToolCall
from trio_dspy.testing import DummyLM

from .story import Drink, MakeDrink, Refund, Size

MENU = {"latte": 4.0, "mocha": 4.5}


class Shop:
    """A tiny shop whose tools record what they did."""

    def __init__(self) -> None:
        self.made: list[str] = []
        self.lookups: list[str] = []

    async def check_menu(self, item: str) -> str:
        """Look up the price of a menu item."""
        self.lookups.append(item)
        await trio.sleep(0.5)
        return f"{item}: ${MENU[item]}" if item in MENU else f"{item} is not on the menu"

    def make_drink(self, name: str, size: Literal["small", "medium", "large"]) -> str:
        """Make a drink."""
        self.made.append(f"{size} {name}")
        return f"made a {size} {name}"


def call(id: str, tool: str, /, **args: Any) -> ToolCall:
    return ToolCall(id, tool, json.dumps(args))


def turn(*calls: ToolCall, text: str = "") -> LMResponse:
    return LMResponse(text=text, tool_calls=calls, finish_reason="tool_calls")


class Order(td.Signature):
    """Serve the customer."""

    request: str = td.InputField()
    action: MakeDrink | Refund = td.OutputField()
    reply: str = td.OutputField()


FINISH_ARGS = {
    "action": {"_type": "MakeDrink", "drink": {"name": "latte", "size": "large"}},
    "reply": "Here is your latte!",
}


async def test_native_parallel_tools_then_typed_finish(
    autojump_clock: trio.testing.MockClock,
) -> None:
    shop = Shop()
    lm = DummyLM(
        [
            turn(
                call("a", "check_menu", item="latte"),
                call("b", "check_menu", item="mocha"),
                text="Check prices.",
            ),
            turn(call("c", "make_drink", name="latte", size="large")),
            turn(call("d", "finish", **FINISH_ARGS)),
        ],
        supports_tools=True,
    )
    agent = td.ReAct(Order, tools=[shop.check_menu, shop.make_drink])
    start = trio.current_time()
    with td.context(lm=lm):
        pred = await agent(request="a large latte")
    first_step = pred.trajectory.steps[0]
    # Two 0.5 s tools asked for in one turn run concurrently: 0.5 s, not 1 s.
    assert [c.duration for c in first_step.calls] == [pytest.approx(0.5), pytest.approx(0.5)]
    assert trio.current_time() - start == pytest.approx(0.5)
    assert [c.observation for c in first_step.calls] == ["latte: $4.0", "mocha: $4.5"]
    assert pred.action == MakeDrink(Drink("latte", Size.large))
    assert pred.reply == "Here is your latte!"
    assert pred.termination_reason == "finish"
    assert shop.made == ["large latte"]
    # The model sees tool results in the order it asked, tied to each call id.
    second = lm.requests[1].messages
    assert [(m.role, m.tool_call_id) for m in second[-3:]] == [
        ("assistant", None),
        ("tool", "a"),
        ("tool", "b"),
    ]
    assert {t.name for t in lm.requests[0].tools} == {"check_menu", "make_drink", "finish"}


async def test_invalid_literal_argument_comes_back_as_observation_and_tool_is_not_called() -> None:
    shop = Shop()
    lm = DummyLM(
        [
            turn(call("a", "make_drink", name="latte", size="huge")),
            turn(call("b", "make_drink", name="latte", size="large")),
            turn(call("c", "finish", **FINISH_ARGS)),
        ],
        supports_tools=True,
    )
    with td.context(lm=lm):
        pred = await td.ReAct(Order, tools=[shop.make_drink])(request="huge latte")
    bad = pred.trajectory.steps[0].calls[0]
    assert not bad.ok
    assert "size: 'huge' is not one of small, medium, large" in bad.observation
    assert lm.requests[1].messages[-1].content == bad.observation
    assert shop.made == ["large latte"]  # only the valid call reached the function


async def test_tool_exception_is_an_observation_and_stop_agent_propagates() -> None:
    def flaky() -> str:
        """Fails."""
        raise RuntimeError("espresso machine on fire")

    def manager() -> str:
        """Hand over to a human."""
        raise StopAgent("manager takes over")

    lm = DummyLM(
        [turn(call("a", "flaky")), turn(call("b", "manager"))],
        supports_tools=True,
    )
    agent = td.ReAct(Order, tools=[flaky, manager])
    with td.context(lm=lm), pytest.raises(StopAgent, match="manager takes over"):
        await agent(request="help")
    assert lm.requests[1].messages[-1].content == "Error: RuntimeError: espresso machine on fire"


async def test_bad_finish_arguments_are_sent_back() -> None:
    lm = DummyLM(
        [
            turn(call("a", "finish", action={"_type": "Coupon"}, reply="?")),
            turn(call("b", "finish", **FINISH_ARGS)),
        ],
        supports_tools=True,
    )
    with td.context(lm=lm):
        pred = await td.ReAct(Order, tools=[])(request="latte")
    assert "_type 'Coupon' is not one of MakeDrink, Refund" in lm.requests[1].messages[-1].content
    assert pred.reply == "Here is your latte!"


async def test_max_iters_ends_with_extraction_and_says_so() -> None:
    shop = Shop()
    loop = turn(call("x", "make_drink", name="latte", size="small"))
    extraction = {"reasoning": "ran out of turns", **FINISH_ARGS}

    def script(request: LMRequest) -> LMResponse | dict[str, Any]:
        return loop if request.tools else extraction

    lm = DummyLM(script, supports_tools=True)
    with td.context(lm=lm):
        pred = await td.ReAct(Order, tools=[shop.make_drink], max_iters=3)(request="latte")
    assert pred.termination_reason == "max_iters"
    assert len(pred.trajectory) == 3
    assert pred.action == MakeDrink(Drink("latte", Size.large))
    # The extraction sees the whole trajectory.
    assert lm.requests[-1].messages[-1].content.count("Tool: make_drink") == 3


async def test_limits_raise_with_the_trajectory() -> None:
    shop = Shop()
    lm = DummyLM(
        [turn(call("a", "make_drink", name="latte", size="small"))], cycle=True, supports_tools=True
    )
    agent = td.ReAct(Order, tools=[shop.make_drink], max_tool_calls=2)
    with td.context(lm=lm), pytest.raises(AgentLimitError, match="max_tool_calls=2") as info:
        await agent(request="latte")
    assert len(info.value.trajectory) == 2  # type: ignore[arg-type]
    costly = LMResponse(
        tool_calls=[call("a", "make_drink", name="latte", size="small")], usage=td.Usage(40, 10, 50)
    )
    tokens = td.ReAct(Order, tools=[shop.make_drink], max_tokens=120)
    with (
        td.context(lm=DummyLM([costly], cycle=True, supports_tools=True)),
        pytest.raises(AgentLimitError, match="150 tokens, over its max_tokens=120"),
    ):
        await tokens(request="latte")


async def test_text_mode_follows_dspy_fields(autojump_clock: trio.testing.MockClock) -> None:
    shop = Shop()
    lm = DummyLM(
        [
            {
                "next_thought": "Price?",
                "next_tool_name": "check_menu",
                "next_tool_args": {"item": "latte"},
            },
            {
                "next_thought": "Make it",
                "next_tool_name": "make_drink",
                "next_tool_args": {"name": "latte", "size": "huge"},
            },
            {"next_thought": "Done", "next_tool_name": "finish", "next_tool_args": {}},
            {"reasoning": "Made it.", **FINISH_ARGS},
        ]
    )
    agent = td.ReAct(Order, tools=[shop.check_menu, shop.make_drink])
    with td.context(lm=lm):
        pred = await agent(request="latte")
    assert pred.termination_reason == "finish"
    assert pred.action.drink.size is Size.large
    steps = pred.trajectory.steps
    assert steps[0].calls[0].observation == "latte: $4.0"
    assert "is not one of small, medium, large" in steps[1].calls[0].observation
    assert shop.made == []
    assert "Observation: latte: $4.0" in lm.requests[1].messages[-1].content


def text_mode_script(request: LMRequest) -> Any:
    if "next_thought" in request.messages[0].content:
        return {"next_thought": "done", "next_tool_name": "finish", "next_tool_args": {}}
    return {"reasoning": "r", **FINISH_ARGS}


async def test_auto_mode_falls_back_to_text_when_server_refuses_tools() -> None:
    lm = DummyLM(text_mode_script, supports_tools=True, refuse_tools=True)
    agent = td.ReAct(Order, tools=[Shop().make_drink])
    with td.context(lm=lm):
        first = await agent(request="latte")
        second = await agent(request="latte")
    assert first.reply == second.reply == "Here is your latte!"
    assert sum(1 for r in lm.requests if r.tools) == 1  # remembered: asked natively once


@pytest.mark.parametrize("param", ["tools", "tool_choice"])
async def test_a_bad_request_blaming_the_tools_parameter_means_no_tools(param: str) -> None:
    def script(request: LMRequest) -> Any:
        if request.tools:
            raise LMBadRequestError("unrecognized request argument", status_code=400, param=param)
        return text_mode_script(request)

    lm = DummyLM(script, supports_tools=True)
    agent = td.ReAct(Order, tools=[Shop().make_drink])
    with td.context(lm=lm):
        pred = await agent(request="latte")
    assert pred.termination_reason == "finish"
    assert lm in agent._refused_tools


async def test_the_words_of_a_bad_request_do_not_switch_modes() -> None:
    def script(request: LMRequest) -> Any:
        raise LMBadRequestError("tools are not supported by this server", status_code=400)

    lm = DummyLM(script, supports_tools=True)
    agent = td.ReAct(Order, tools=[Shop().make_drink])
    with td.context(lm=lm), pytest.raises(LMBadRequestError, match="not supported"):
        await agent(request="latte")
    assert lm not in agent._refused_tools


async def test_native_mode_does_not_fall_back(autojump_clock: trio.abc.Clock) -> None:
    lm = DummyLM(text_mode_script, supports_tools=True, refuse_tools=True)
    agent = td.ReAct(Order, tools=[Shop().make_drink], mode="native")
    with td.context(lm=lm), pytest.raises(ToolsUnsupportedError) as info:
        await agent(request="latte")
    assert info.value.param == "tools" and info.value.status_code == 400


async def test_cancelling_the_agent_cancels_lm_call_and_tools(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cancelled: list[str] = []

    async def slow_tool() -> str:
        """Takes long."""
        try:
            await trio.sleep(100)
        except trio.Cancelled:
            cancelled.append("tool")
            raise
        return "never"

    lm = DummyLM([turn(call("a", "slow_tool"), call("b", "slow_tool"))], supports_tools=True)
    with td.context(lm=lm), trio.move_on_after(5) as scope:
        await td.ReAct(Order, tools=[slow_tool])(request="x")
    assert scope.cancelled_caught
    assert cancelled == ["tool", "tool"]
    assert trio.current_time() == pytest.approx(5)

    slow_lm = DummyLM([turn()], latency=100, supports_tools=True)
    with td.context(lm=slow_lm), trio.move_on_after(1) as scope:
        await td.ReAct(Order, tools=[slow_tool])(request="x")
    assert scope.cancelled_caught
    assert trio.current_time() == pytest.approx(6)


class Desk(td.Module):
    """An agent inside a module inside a module."""

    def __init__(self) -> None:
        self.triage = td.Predict("request -> kind")
        self.inner = Counter()

    async def forward(self, **inputs: Any) -> Any:
        await self.triage(request=inputs["request"])
        return await self.inner(request=inputs["request"])


class Counter(td.Module):
    def __init__(self) -> None:
        self.agent = td.ReAct(Order, tools=[Shop().make_drink])

    async def forward(self, **inputs: Any) -> td.Prediction:
        return await self.agent(**inputs)


async def test_nested_composition_pinning_and_save_load(tmp_path: Path) -> None:
    desk = Desk()
    assert [n for n, _ in desk.named_predictors()] == [
        "triage",
        "inner.agent.react",
        "inner.agent.extract.predict",
    ]
    agent_lm = DummyLM([turn(call("f", "finish", **FINISH_ARGS))], supports_tools=True)
    default_lm = DummyLM([{"kind": "drink"}])
    desk.inner.agent.react.lm = agent_lm
    with td.context(lm=default_lm):
        pred = await desk(request="latte")
    assert pred.reply == "Here is your latte!"
    assert len(agent_lm.requests) == len(default_lm.requests) == 1

    desk.inner.agent.extract.demos = [
        td.Example(request="r", trajectory="t", reasoning="x", **FINISH_ARGS)
    ]
    desk.save(tmp_path / "desk.json")
    copy = Desk()
    copy.load(tmp_path / "desk.json")
    assert copy.inner.agent.extract.demos[0]["action"] == MakeDrink(Drink("latte", Size.large))
    assert (
        copy.inner.agent.react.signature.instructions
        == desk.inner.agent.react.signature.instructions
    )


def test_reserved_tool_names() -> None:
    def finish() -> None:
        """Clash."""

    with pytest.raises(td.errors.SignatureError, match="reserved or used twice"):
        td.ReAct(Order, tools=[finish])


async def test_trajectory_iterates_steps_and_has_dspys_flat_keys(
    autojump_clock: trio.testing.MockClock,
) -> None:
    shop = Shop()
    lm = DummyLM(
        [
            turn(
                call("a", "check_menu", item="latte"),
                call("b", "check_menu", item="mocha"),
                text="Check prices.",
            ),
            turn(call("c", "make_drink", name="latte", size="large"), text="Make it."),
            turn(call("d", "finish", **FINISH_ARGS)),
        ],
        supports_tools=True,
    )
    with td.context(lm=lm):
        pred = await td.ReAct(Order, tools=[shop.check_menu, shop.make_drink])(request="latte")
    trajectory: td.Trajectory = pred.trajectory
    assert [step.thought for step in trajectory] == ["Check prices.", "Make it.", ""]
    assert trajectory[1].calls[0].name == "make_drink"
    assert trajectory.to_dict() == {
        "thought_0": "Check prices.",
        "tool_name_0": "check_menu",
        "tool_args_0": {"item": "latte"},
        "observation_0": "latte: $4.0",
        "thought_1": "",  # the second call of the same step
        "tool_name_1": "check_menu",
        "tool_args_1": {"item": "mocha"},
        "observation_1": "mocha: $4.5",
        "thought_2": "Make it.",
        "tool_name_2": "make_drink",
        "tool_args_2": {"name": "latte", "size": "large"},
        "observation_2": "made a large latte",
        "thought_3": "",
        "tool_name_3": "finish",
        "tool_args_3": {},
        "observation_3": "Completed.",
    }
