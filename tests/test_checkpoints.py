"""Every public async entry point is a checkpoint, and says so when trio is missing."""

from __future__ import annotations

import asyncio
import functools
import gc
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing

import trio_dspy as td
from trio_dspy.lm import LMRequest, Message
from trio_dspy.optimizers.base import Optimizer
from trio_dspy.testing import DummyLM

from .test_lm_support import Scripted, ok


def ask(text: str = "hi") -> LMRequest:
    return LMRequest([Message("user", text)])


def double(x: int) -> int:
    """Double a number."""
    return 2 * x


async def test_a_cache_hit_is_a_checkpoint() -> None:
    lm = Scripted(ok("first")).lm(cache=True)
    await lm.request(ask())
    with trio.testing.assert_checkpoints():
        response = await lm.request(ask())
    assert response.cached


async def test_closing_models_and_reading_caches_are_checkpoints() -> None:
    unused = td.LM("openai/m", base_url="http://127.0.0.1:9/v1", api_key="k")
    with trio.testing.assert_checkpoints():
        await unused.aclose()
    with trio.testing.assert_checkpoints():
        await DummyLM([]).aclose()
    cache = td.lm.MemoryCache()
    with trio.testing.assert_checkpoints():
        assert await cache.get("absent") is None


async def test_module_tool_gather_and_lm_calls_are_checkpoints() -> None:
    lm = DummyLM([{"answer": "4"}], cycle=True)
    td.configure(lm=lm)
    qa = td.Predict("question -> answer")
    tool = td.Tool(double, blocking=False)
    with trio.testing.assert_checkpoints():
        await qa(question="2+2?")
    with trio.testing.assert_checkpoints():
        await lm.request(ask())
    with trio.testing.assert_checkpoints():
        assert await tool.acall({"x": 2}) == 4
    with trio.testing.assert_checkpoints():
        assert await td.gather() == []
    with trio.testing.assert_checkpoints():
        await td.Evaluate([], lambda e, p: 1.0)(qa)
    example = td.Example(question="q", answer="4").with_inputs("question")
    with trio.testing.assert_checkpoints():
        await td.LabeledFewShot(1).compile(qa, trainset=[example])


async def test_a_thousand_calls_inside_a_cancelled_scope_all_raise_cancelled() -> None:
    lm = Scripted(ok("cached")).lm(cache=True)
    await lm.request(ask())
    dummy = DummyLM([{"answer": "4"}], cycle=True)
    qa = td.Predict("question -> answer")
    qa.lm = dummy
    tool = td.Tool(double, blocking=False)
    entries: list[Callable[[], Awaitable[Any]]] = [
        lambda: lm.request(ask()),
        lambda: dummy.request(ask()),
        lambda: qa(question="q"),
        lambda: tool.acall({"x": 1}),
        lambda: td.gather(),
    ]
    cancelled = 0
    for i in range(1000):
        with trio.CancelScope() as scope:
            scope.cancel()
            try:
                await entries[i % len(entries)]()
            except trio.Cancelled:
                cancelled += 1
                raise
    assert cancelled == 1000
    assert len(dummy.requests) == 0  # nothing reached the model


async def test_dummy_calls_interleave_like_real_ones() -> None:
    order: list[str] = []
    qa = td.Predict("question -> answer")
    qa.lm = DummyLM([{"answer": "ok"}], cycle=True)

    async def run(name: str) -> None:
        for _ in range(2):
            await qa(question=name)
            order.append(name)

    await td.gather(functools.partial(run, "a"), functools.partial(run, "b"))
    # each task yields on every call, so neither runs all its calls first
    assert sorted(order[:2]) == sorted(order[2:]) == ["a", "b"]


# ------------------------------------------------------------- outside trio
def test_entry_points_under_asyncio_say_trio_dspy_runs_under_trio() -> None:
    qa = td.Predict("question -> answer")
    qa.lm = DummyLM([{"answer": "4"}])
    lm = DummyLM([{"answer": "4"}])
    entries: list[Callable[[], Awaitable[Any]]] = [
        lambda: qa(question="q"),
        lambda: lm.request(ask()),
        lambda: td.gather(),
        lambda: td.Evaluate([], lambda e, p: 1.0)(qa),
        lambda: td.Tool(double).acall({"x": 1}),
    ]
    for entry in entries:

        async def main(entry: Callable[[], Awaitable[Any]] = entry) -> Any:
            return await entry()

        with pytest.raises(RuntimeError, match=r"trio_dspy runs under trio: use trio.run\(main\)"):
            asyncio.run(main())
    assert lm.requests == []


# ------------------------------------------------------------ gather's inputs
async def test_gather_refuses_coroutines_and_shows_the_right_call() -> None:
    qa = td.Predict("question -> answer")
    qa.lm = DummyLM([{"answer": "4"}], cycle=True)
    stray = qa(question="b")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a "never awaited" warning would fail here
        with pytest.raises(TypeError, match=r"argument 1 is a coroutine") as info:
            await td.gather(functools.partial(qa, question="a"), stray)  # type: ignore[call-overload]
        del stray
        gc.collect()
    assert "functools.partial(pred, question=...)" in str(info.value)
    assert "lambda: pred(question=...)" in str(info.value)
    assert qa.lm.requests == []  # nothing started


async def test_gather_refuses_values_that_are_not_callable() -> None:
    with pytest.raises(TypeError, match=r"argument 0 is int 3, which is not callable"):
        await td.gather(3)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="coroutine"):
        async with td.as_completed(asyncio.sleep(0)):  # type: ignore[arg-type]
            pass  # pragma: no cover


async def test_a_sync_function_fails_its_slot_with_the_right_call() -> None:
    def sync() -> int:
        return 3

    with pytest.raises(TypeError, match=r"returned int 3, not an awaitable: is it a sync function"):
        await td.gather(sync)  # type: ignore[arg-type]
    results = await td.gather(sync, return_exceptions=True)  # type: ignore[call-overload]
    assert isinstance(results[0], TypeError)
    async with td.as_completed(sync) as done:  # type: ignore[arg-type]
        got = [r async for r in done]
    assert isinstance(got[0][1], TypeError)


def _metric(example: td.Example, pred: Any) -> bool:
    return True


@pytest.mark.parametrize(
    "optimizer",
    [
        td.LabeledFewShot(1),
        td.BootstrapFewShot(_metric),
        td.BootstrapFewShotWithRandomSearch(_metric, num_candidate_programs=2),
        td.COPRO(_metric, breadth=2, depth=1),
    ],
    ids=type,
)
async def test_compile_is_a_checkpoint(optimizer: Optimizer) -> None:
    qa = td.Predict("question -> answer")
    qa.lm = DummyLM([{"answer": "4"}], cycle=True)
    example = td.Example(question="q", answer="4").with_inputs("question")
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await optimizer.compile(qa, trainset=[example])
    assert qa.lm.requests == []


async def test_a_module_whose_forward_awaits_nothing_is_still_a_checkpoint() -> None:
    class Echo(td.Module):
        async def forward(self, text: str) -> td.Prediction:
            return td.Prediction(text=text)

    with trio.testing.assert_checkpoints():
        await Echo()(text="x")
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await Echo()(text="x")


async def test_a_predict_call_yields_to_the_scheduler_once_not_at_every_level() -> None:
    # Module, Predict and the model call are each a checkpoint on their own,
    # but nested they yield once (here: the in-process model's), not per level.
    qa = td.Predict("question -> answer")
    qa.lm = DummyLM([{"answer": "4"}], cycle=True)
    task = trio.lowlevel.current_task()
    before = task._schedule_points
    await qa(question="2+2?")
    assert task._schedule_points - before == 1


@pytest.mark.parametrize("method", ["forward", "aforward"])
async def test_a_predictor_awaited_through_forward_is_a_checkpoint_too(method: str) -> None:
    # DSPy code calls forward (or aforward) directly; the module call's
    # checkpoint is then not around it, so Predict must be one itself.
    qa = td.Predict("question -> answer")
    qa.lm = DummyLM([{"answer": "4"}], cycle=True)
    call = getattr(qa, method)
    with trio.testing.assert_checkpoints():
        assert (await call(question="2+2?")).answer == "4"
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await call(question="2+2?")
    assert len(qa.lm.history) == 1  # the cancelled call asked no model
