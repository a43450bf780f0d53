from __future__ import annotations

import pytest
import trio
import trio.lowlevel

import trio_dspy as td
from trio_dspy.settings import current, resolve_lm
from trio_dspy.testing import DummyLM


def test_configure_sets_process_defaults_and_rejects_unknown_names() -> None:
    lm = DummyLM([])
    td.configure(lm=lm, max_parse_retries=5)
    assert current().lm is lm
    assert current().max_parse_retries == 5
    with pytest.raises(TypeError, match="unknown setting.*lmm"):
        td.configure(lmm=lm)
    with pytest.raises(ValueError, match="max_parse_retries"):
        td.configure(max_parse_retries=-1)


def test_context_overrides_nest_and_restore() -> None:
    a, b = DummyLM([]), DummyLM([])
    td.configure(lm=a)
    with td.context(lm=b, max_parse_retries=0) as effective:
        assert effective.lm is b
        assert current().lm is b
        with td.context(max_parse_retries=1):
            assert current().lm is b
            assert current().max_parse_retries == 1
        assert current().max_parse_retries == 0
    assert current().lm is a


def test_configure_shows_through_fields_not_overridden() -> None:
    with td.context(max_parse_retries=0):
        lm = DummyLM([])
        td.configure(lm=lm)
        assert current().lm is lm


async def test_child_sees_overrides_in_force_at_spawn_and_siblings_are_isolated() -> None:
    base, upset_lm, sibling_lm = DummyLM([]), DummyLM([]), DummyLM([])
    td.configure(lm=base)
    seen: dict[str, object] = {}
    child_may_check = trio.Event()
    sibling_done = trio.Event()

    async def upset_customer() -> None:
        with td.context(lm=upset_lm):
            seen["upset-before"] = current().lm
            child_may_check.set()
            await sibling_done.wait()  # sibling ran while our override was in force
            seen["upset-after"] = current().lm

    async def other_customer() -> None:
        await child_may_check.wait()
        seen["other"] = current().lm
        with td.context(lm=sibling_lm):
            await trio.lowlevel.checkpoint()
        sibling_done.set()

    async def grandchild() -> None:
        await trio.lowlevel.checkpoint()
        seen["grandchild"] = current().lm

    async with trio.open_nursery() as nursery:
        nursery.start_soon(upset_customer)
        nursery.start_soon(other_customer)
        with td.context(lm=upset_lm):
            nursery.start_soon(grandchild)  # spawned under the override
        seen["parent"] = current().lm  # the parent left the block before the child ran

    assert seen["upset-before"] is upset_lm
    assert seen["upset-after"] is upset_lm
    assert seen["other"] is base
    assert seen["grandchild"] is upset_lm
    assert seen["parent"] is base
    assert current().lm is base


async def test_override_made_in_child_is_invisible_to_parent() -> None:
    async def child() -> None:
        td.settings._overrides.set({"max_parse_retries": 9})  # even a raw set stays local
        assert current().max_parse_retries == 9

    async with trio.open_nursery() as nursery:
        nursery.start_soon(child)
    assert current().max_parse_retries == 2


def test_resolve_lm_prefers_the_pinned_model_and_says_how_to_configure_one() -> None:
    pinned, configured = DummyLM(["a"]), DummyLM(["b"])
    with pytest.raises(
        td.errors.ConfigurationError, match=r"td.configure\(lm=.*set agent.react.lm"
    ):
        resolve_lm(None, pin_hint="set agent.react.lm")
    td.configure(lm=configured)
    assert resolve_lm() is configured
    assert resolve_lm(pinned) is pinned
    with td.context(lm=pinned) as settings:
        assert resolve_lm(None, settings) is pinned
