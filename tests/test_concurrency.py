from __future__ import annotations

from functools import partial
from typing import Any

import pytest
import structlog
import trio

import trio_dspy as td
from trio_dspy.errors import RequestTimeoutError
from trio_dspy.settings import current
from trio_dspy.testing import DummyLM


async def sleeper(delay: float, value: Any, log: list[Any] | None = None) -> Any:
    await trio.sleep(delay)
    if log is not None:
        log.append(value)
    return value


async def failing(delay: float, message: str) -> None:
    await trio.sleep(delay)
    raise ValueError(message)


async def test_gather_returns_in_input_order_and_runs_concurrently(
    autojump_clock: trio.testing.MockClock,
) -> None:
    finished: list[int] = []
    calls = [partial(sleeper, d, i, finished) for i, d in enumerate([3, 1, 2])]
    start = trio.current_time()
    assert await td.gather(*calls) == [0, 1, 2]
    assert finished == [1, 2, 0]
    assert trio.current_time() - start == pytest.approx(3)


async def test_gather_limit_bounds_concurrency(autojump_clock: trio.testing.MockClock) -> None:
    running = peak = 0

    async def tracked(i: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await trio.sleep(1)
        running -= 1
        return i

    start = trio.current_time()
    assert await td.gather(*(partial(tracked, i) for i in range(10)), limit=3) == list(range(10))
    assert peak == 3
    assert trio.current_time() - start == pytest.approx(4)  # ceil(10 / 3) rounds of 1 s
    with pytest.raises(ValueError, match="limit must be a positive integer"):
        await td.gather(partial(tracked, 1), limit=0)


async def test_first_failure_cancels_the_rest_and_is_raised_unwrapped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    finished: list[str] = []
    start = trio.current_time()
    with pytest.raises(ValueError, match="boom"):
        await td.gather(
            partial(sleeper, 5, "slow", finished),
            partial(failing, 1, "boom"),
            partial(sleeper, 0.5, "fast", finished),
        )
    assert finished == ["fast"]  # "slow" was cancelled
    assert trio.current_time() - start == pytest.approx(1)


async def test_return_exceptions_keeps_failures_in_their_slots(
    autojump_clock: trio.testing.MockClock,
) -> None:
    results = await td.gather(
        partial(sleeper, 2, "a"),
        partial(failing, 1, "bad"),
        partial(sleeper, 3, "c"),
        return_exceptions=True,
    )
    assert results[0] == "a"
    assert isinstance(results[1], ValueError)
    assert str(results[1]) == "bad"
    assert results[2] == "c"


async def test_outer_cancellation_cancels_every_call(
    autojump_clock: trio.testing.MockClock,
) -> None:
    finished: list[int] = []
    with trio.move_on_after(1.5) as scope:
        await td.gather(*(partial(sleeper, d, d, finished) for d in (1, 2, 3)))
    assert scope.cancelled_caught
    assert finished == [1]
    await trio.sleep(5)
    assert finished == [1]  # nothing kept running after gather was cancelled


async def test_as_completed_yields_in_completion_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen = []
    calls = [partial(sleeper, 3, "c"), partial(failing, 1, "x"), partial(sleeper, 2, "b")]
    async with td.as_completed(*calls) as results:
        async for index, result in results:
            seen.append(
                (index, trio.current_time(), result if isinstance(result, str) else type(result))
            )
    assert [(i, r) for i, _, r in seen] == [(1, ValueError), (2, "b"), (0, "c")]
    assert [t for _, t, _ in seen] == [pytest.approx(1), pytest.approx(2), pytest.approx(3)]


async def test_leaving_as_completed_early_cancels_the_rest(
    autojump_clock: trio.testing.MockClock,
) -> None:
    finished: list[int] = []
    async with td.as_completed(*(partial(sleeper, d, d, finished) for d in (1, 5, 9))) as results:
        async for _, first in results:
            assert first == 1
            break
    await trio.sleep(20)
    assert finished == [1]


async def test_request_scopes_isolate_overrides_usage_and_traces(
    autojump_clock: trio.testing.MockClock,
) -> None:
    base = DummyLM([{"a": "base"}], cycle=True, latency=1)
    calm = DummyLM([{"a": "calm"}], cycle=True, latency=1)
    seen: dict[str, Any] = {}
    predict = td.Predict("q -> a")
    td.configure(lm=base)

    async def handle(name: str, **overrides: Any) -> None:
        with td.request_scope("customer", request_id=name, **overrides) as req:
            pred = await predict(q=name)
            seen[name] = (pred.a, req.usage.total_tokens, current().lm_kwargs, td.current_request())
            assert structlog.contextvars.get_contextvars()["request_id"] == name

    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(handle, "upset", lm=calm, lm_kwargs={"temperature": 0.0}))
        nursery.start_soon(handle, "happy")
    assert seen["upset"][0] == "calm"
    assert seen["upset"][2] == {"temperature": 0.0}
    assert seen["happy"][0] == "base"
    assert seen["happy"][2] == {}  # the sibling's overrides never leaked
    assert seen["upset"][1] == calm.history[0].response.usage.total_tokens
    assert seen["happy"][1] == base.history[0].response.usage.total_tokens
    assert seen["upset"][3].request_id == "upset"
    assert td.current_request() is None
    assert "request_id" not in structlog.contextvars.get_contextvars()


async def test_a_nested_request_scope_gives_the_outer_request_id_back_to_the_logs() -> None:
    def bound() -> object:
        return structlog.contextvars.get_contextvars().get("request_id")

    with td.request_scope("outer", request_id="outer"):
        with td.request_scope("inner", request_id="inner"):
            assert bound() == "inner"
        assert bound() == "outer"
        with pytest.raises(ValueError), td.request_scope("failing", request_id="failing"):
            raise ValueError("boom")
        assert bound() == "outer"
    assert bound() is None


async def test_request_scope_timeout_cancels_and_raises(
    autojump_clock: trio.testing.MockClock,
) -> None:
    slow = DummyLM([{"a": "x"}], latency=10)
    with (
        td.context(lm=slow),
        pytest.raises(RequestTimeoutError, match="timed out after 2s") as info,
        td.request_scope(request_id="r1", timeout=2),
    ):
        await td.Predict("q -> a")(q="?")
    assert info.value.request_id == "r1"
    assert trio.current_time() == pytest.approx(2)
    # Cancelling by hand is not a timeout.
    with td.request_scope(timeout=5) as req:
        req.cancel_scope.cancel()
        await trio.sleep(1)


async def test_batch_runs_module_per_input_with_progress(
    autojump_clock: trio.testing.MockClock,
) -> None:
    lm = DummyLM({"one": {"a": "1"}, "two": {"a": "2"}, "three": {"a": "3"}}, latency=1)
    progress: list[tuple[int, int]] = []
    with td.context(lm=lm):
        preds = await td.Predict("q -> a").batch(
            [{"q": "one"}, {"q": "two"}, {"q": "three"}],
            limit=2,
            progress=lambda d, t: progress.append((d, t)),
        )
    assert [p.a for p in preds] == ["1", "2", "3"]
    assert progress[-1] == (3, 3)
    assert trio.current_time() == pytest.approx(2)
    with td.context(lm=lm):
        mixed = await td.Predict("q -> a").batch(
            [{"q": "one"}, {"q": "four"}], return_exceptions=True
        )
    assert mixed[0].a == "1"
    assert isinstance(mixed[1], td.errors.ConfigurationError)
