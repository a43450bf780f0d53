"""``td.Parallel`` and ``td.asyncify``: DSPy's call shapes, run as trio child tasks."""

from __future__ import annotations

import threading
import warnings
from typing import Any

import pytest
import trio

import trio_dspy as td
from trio_dspy.errors import ParallelError
from trio_dspy.testing import DummyLM


class Echo(td.Module):
    """Answers its question after ``delay`` seconds; fails on ``"boom"``."""

    def __init__(self) -> None:
        self.running = 0
        self.most = 0

    async def forward(self, question: str, delay: float = 1.0) -> td.Prediction:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await trio.sleep(delay)
            if question.startswith("boom"):
                raise ValueError(question)
            return td.Prediction(answer=question.upper())
        finally:
            self.running -= 1


async def test_parallel_runs_dspys_exec_pairs_in_order(autojump_clock: Any) -> None:
    echo = Echo()
    pairs: list[tuple[Any, Any]] = [
        (echo, td.Example(question="a", gold="A").with_inputs("question")),
        (echo, {"question": "b", "delay": 3.0}),
        (echo, {"question": "c"}),
    ]
    start = trio.current_time()
    results = await td.Parallel(limit=3, disable_progress_bar=True)(pairs)
    assert [r.answer for r in results] == ["A", "B", "C"]
    assert trio.current_time() - start == pytest.approx(3.0)  # concurrently, not one by one
    assert echo.most == 3


async def test_parallel_bounds_concurrency_by_limit(autojump_clock: Any) -> None:
    echo = Echo()
    pairs = [(echo, {"question": str(i)}) for i in range(10)]
    await td.Parallel(limit=2, disable_progress_bar=True)(pairs)
    assert echo.most == 2


async def test_num_threads_is_a_deprecated_alias_of_limit(autojump_clock: Any) -> None:
    echo = Echo()
    with pytest.warns(DeprecationWarning, match=r"limit=2"):
        parallel = td.Parallel(num_threads=2, disable_progress_bar=True)
    await parallel([(echo, {"question": str(i)}) for i in range(6)])
    assert echo.most == 2
    with pytest.raises(TypeError, match="give limit= only"):
        td.Parallel(num_threads=2, limit=3)


async def test_a_failed_call_is_none_and_return_failed_examples_gives_it(
    autojump_clock: Any,
) -> None:
    echo = Echo()
    pairs: list[tuple[Any, Any]] = [(echo, {"question": "ok"}), (echo, {"question": "boom"})]
    parallel = td.Parallel(disable_progress_bar=True, return_failed_examples=True)
    results, failed, exceptions = await parallel(pairs)
    assert results[0].answer == "OK" and results[1] is None
    assert failed == [{"question": "boom"}]
    assert [str(e) for e in exceptions] == ["boom"]


async def test_more_failures_than_max_errors_cancels_the_rest(autojump_clock: Any) -> None:
    echo = Echo()
    pairs: list[tuple[Any, Any]] = [
        (echo, {"question": "boom1", "delay": 1.0}),
        (echo, {"question": "boom2", "delay": 2.0}),
        (echo, {"question": "slow", "delay": 100.0}),
    ]
    start = trio.current_time()
    with pytest.raises(ParallelError, match="more than max_errors=1") as info:
        await td.Parallel(max_errors=1, disable_progress_bar=True)(pairs)
    assert trio.current_time() - start == pytest.approx(2.0)
    assert sorted(info.value.errors) == [0, 1]
    assert echo.running == 0


async def test_progress_is_printed_unless_disabled(capsys: pytest.CaptureFixture[str]) -> None:
    await td.Parallel()([(Echo(), {"question": "a", "delay": 0.0})])
    assert "1/1 done" in capsys.readouterr().err


async def test_parallel_calls_predictors_with_the_callers_settings() -> None:
    qa = td.Predict("question -> answer")
    with td.context(lm=DummyLM([{"answer": "x"}], cycle=True)):
        results = await td.Parallel(disable_progress_bar=True)([(qa, {"question": "q"})] * 3)
    assert [r.answer for r in results] == ["x", "x", "x"]


def test_dspys_straggler_options_say_what_to_use_instead() -> None:
    with pytest.raises(TypeError, match=r"timeout=.*trio\.fail_after"):
        td.Parallel(timeout=60)
    with pytest.raises(TypeError, match="unexpected keyword argument 'nope'"):
        td.Parallel(nope=1)


async def test_an_example_of_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="Invalid example type: str"):
        await td.Parallel()([(Echo(), "question")])


# ------------------------------------------------------------------------ asyncify
async def test_asyncify_runs_a_sync_function_in_a_worker_thread() -> None:
    def blocking(x: int, *, y: int = 1) -> tuple[int, bool]:
        return x + y, threading.current_thread() is threading.main_thread()

    fn = td.asyncify(blocking)
    assert await fn(1, y=2) == (3, False)
    assert fn.__name__ == "blocking"


async def test_asyncify_returns_a_module_as_it_is() -> None:
    echo = Echo()
    assert td.asyncify(echo) is echo


async def test_a_sync_function_in_parallel_runs_in_a_thread() -> None:
    def double(x: int) -> int:
        return 2 * x

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results = await td.Parallel(disable_progress_bar=True)([(double, (3,)), (double, {"x": 4})])
    assert results == [6, 8]
