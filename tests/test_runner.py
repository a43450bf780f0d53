"""td-style run(): a program called from synchronous code, refused inside an event loop."""

from __future__ import annotations

import asyncio

import pytest
import trio

import trio_dspy as td
from trio_dspy.runner import run
from trio_dspy.testing import DummyLM


def test_run_calls_a_module_from_sync_code() -> None:
    lm = DummyLM([{"answer": "4"}])
    td.configure(lm=lm)
    pred = run(td.Predict("question -> answer"), question="2 + 2?")
    assert isinstance(pred, td.Prediction)
    assert pred.answer == "4"
    assert "2 + 2?" in lm.requests[0].messages[-1].content


def test_run_calls_an_async_function_and_passes_its_errors_through() -> None:
    async def double(*, x: int) -> int:
        await trio.lowlevel.checkpoint()
        return 2 * x

    async def fail() -> None:
        raise KeyError("boom")

    assert run(double, x=21) == 42
    with pytest.raises(KeyError, match="boom"):
        run(fail)


async def test_run_is_refused_inside_trio() -> None:
    async def program() -> int:
        return 1

    with pytest.raises(RuntimeError, match="inside a running trio run.*await program"):
        run(program)


def test_run_is_refused_inside_asyncio() -> None:
    async def program() -> int:
        return 1

    async def main() -> None:
        run(program)

    with pytest.raises(RuntimeError, match="inside a running asyncio event loop"):
        asyncio.run(main())
