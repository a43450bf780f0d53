"""FallbackLM: falling back on failures, hedging, usage and spans (autojump clock)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import trio_dspy as td
from trio_dspy.errors import (
    ConfigurationError,
    ContextWindowExceededError,
    LMAuthError,
    LMBadRequestError,
    LMError,
    LMRateLimitError,
    LMResponseTooLargeError,
    LMServerError,
    LMTimeoutError,
)
from trio_dspy.lm import BaseLM, FallbackLM, LMRequest, LMResponse, Message
from trio_dspy.lm.history import _global as global_history
from trio_dspy.primitives import Usage
from trio_dspy.telemetry import InMemoryExporter, collect
from trio_dspy.testing import DummyLM

REQUEST = LMRequest(messages=(Message("user", "hi"),))


class Scripted(BaseLM):
    """Answers ``text`` (or raises ``error``) after ``latency`` seconds; records its fate."""

    provider = "scripted"

    def __init__(
        self,
        model: str,
        *,
        latency: float = 0.0,
        text: str = "",
        error: Exception | None = None,
        tokens: int = 10,
    ) -> None:
        super().__init__(model)
        self.latency, self.text, self.error, self.tokens = latency, text or model, error, tokens
        self.started: list[float] = []
        self.completed = self.cancelled = 0

    async def send(self, request: LMRequest) -> LMResponse:
        self.started.append(trio.current_time())
        try:
            await trio.sleep(self.latency)
        except trio.Cancelled:
            self.cancelled += 1
            raise
        self.completed += 1
        if self.error is not None:
            raise self.error
        return LMResponse(
            text=self.text, usage=Usage(self.tokens, self.tokens, 2 * self.tokens), model=self.model
        )


@pytest.mark.parametrize(
    "error",
    [
        LMServerError("boom", status_code=500),
        LMTimeoutError("slow"),
        LMRateLimitError("busy", status_code=429, retry_after=120.0),
        LMResponseTooLargeError("huge", limit=10),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_a_retryable_failure_falls_back_to_the_next_model(
    autojump_clock: trio.testing.MockClock, error: LMError
) -> None:
    primary = Scripted("primary", latency=1.0, error=error)
    backup = Scripted("backup", latency=2.0)
    lm = FallbackLM(primary, backup)
    t0 = trio.current_time()
    response = await lm.request(REQUEST)
    assert response.text == "backup"
    assert trio.current_time() - t0 == pytest.approx(3.0)
    assert backup.started == [pytest.approx(t0 + 1.0)]


@pytest.mark.parametrize(
    "error",
    [
        LMAuthError("bad key", status_code=401),
        LMBadRequestError("bad", status_code=400),
        ContextWindowExceededError("too long", status_code=400),
        ConfigurationError("not an LM error"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_auth_and_bad_request_errors_are_raised_not_passed_on(
    autojump_clock: trio.testing.MockClock, error: Exception
) -> None:
    primary = Scripted("primary", error=error)
    backup = Scripted("backup")
    with pytest.raises(type(error)) as raised:
        await FallbackLM(primary, backup, hedge_after=5.0).request(REQUEST)
    assert raised.value is error  # as it is, not inside an ExceptionGroup
    assert backup.started == []


async def test_fallback_on_chooses_which_errors_are_passed_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    primary = Scripted("primary", error=LMAuthError("bad key", status_code=401))
    lm = FallbackLM(primary, Scripted("backup"), fallback_on=(LMError,))
    assert (await lm.request(REQUEST)).text == "backup"
    only_auth = FallbackLM(Scripted("a", error=LMServerError("x")), fallback_on=(LMAuthError,))
    with pytest.raises(LMServerError):
        await only_auth.request(REQUEST)


async def test_when_every_model_fails_the_last_failure_is_raised_with_the_others_as_notes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    lm = FallbackLM(
        Scripted("a", error=LMServerError("first down", status_code=503)),
        Scripted("b", error=LMTimeoutError("second slow")),
        Scripted("c", error=LMRateLimitError("third busy", status_code=429)),
    )
    with pytest.raises(LMRateLimitError, match="third busy") as raised:
        await lm.request(REQUEST)
    notes = raised.value.__notes__
    assert len(notes) == 2
    assert "LMServerError" in notes[0] and "first down" in notes[0]
    assert "LMTimeoutError" in notes[1] and "second slow" in notes[1]


async def test_without_hedging_a_slow_model_is_waited_for(
    autojump_clock: trio.testing.MockClock,
) -> None:
    primary, backup = Scripted("primary", latency=30.0), Scripted("backup", latency=1.0)
    t0 = trio.current_time()
    assert (await FallbackLM(primary, backup).request(REQUEST)).text == "primary"
    assert trio.current_time() - t0 == pytest.approx(30.0)
    assert backup.started == []


async def test_hedging_starts_the_next_model_and_cancels_the_loser(
    autojump_clock: trio.testing.MockClock,
) -> None:
    primary, backup = Scripted("primary", latency=30.0), Scripted("backup", latency=1.0)
    lm = FallbackLM(primary, backup, hedge_after=0.5)
    t0 = trio.current_time()
    response = await lm.request(REQUEST)
    assert response.text == "backup"
    assert trio.current_time() - t0 == pytest.approx(0.5 + 1.0)
    assert backup.started == [pytest.approx(t0 + 0.5)]
    assert (primary.cancelled, primary.completed) == (1, 0)
    assert (backup.cancelled, backup.completed) == (0, 1)


async def test_a_hedged_model_that_answers_first_still_wins(
    autojump_clock: trio.testing.MockClock,
) -> None:
    primary, backup = Scripted("primary", latency=2.0), Scripted("backup", latency=5.0)
    lm = FallbackLM(primary, backup, hedge_after=0.5)
    t0 = trio.current_time()
    assert (await lm.request(REQUEST)).text == "primary"
    assert trio.current_time() - t0 == pytest.approx(2.0)
    assert (backup.cancelled, backup.completed) == (1, 0)


async def test_a_failure_while_hedging_starts_the_next_model_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    first = Scripted("first", latency=30.0)
    second = Scripted("second", latency=0.25, error=LMServerError("down", status_code=500))
    third = Scripted("third", latency=1.0)
    lm = FallbackLM(first, second, third, hedge_after=1.0)
    t0 = trio.current_time()
    assert (await lm.request(REQUEST)).text == "third"
    # second starts at 1.0 (hedge), fails at 1.25, third starts then, not at 2.0
    assert third.started == [pytest.approx(t0 + 1.25)]
    assert trio.current_time() - t0 == pytest.approx(2.25)
    assert (first.cancelled, first.completed) == (1, 0)


async def test_hedging_waits_for_the_last_model_once_all_have_started(
    autojump_clock: trio.testing.MockClock,
) -> None:
    first, second = Scripted("first", latency=10.0), Scripted("second", latency=20.0)
    t0 = trio.current_time()
    assert (await FallbackLM(first, second, hedge_after=1.0).request(REQUEST)).text == "first"
    assert trio.current_time() - t0 == pytest.approx(10.0)
    assert len(second.started) == 1


async def test_a_failing_hedge_leaves_the_earlier_attempt_running(
    autojump_clock: trio.testing.MockClock,
) -> None:
    first = Scripted("first", latency=10.0)
    second = Scripted("second", latency=0.5, error=LMServerError("down", status_code=500))
    t0 = trio.current_time()
    response = await FallbackLM(first, second, hedge_after=1.0).send(REQUEST)
    assert response.text == "first"
    assert trio.current_time() - t0 == pytest.approx(10.0)
    assert (first.completed, second.completed) == (1, 1)


async def test_usage_counts_each_attempt_exactly_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def down(request: LMRequest) -> str:
        raise LMServerError("down", status_code=503)

    failing = DummyLM(down)
    answering = DummyLM(["hello"], model="answering")
    lm = FallbackLM(failing, answering)
    global_history.clear()
    with td.track_usage() as usage:
        response = await lm.request(REQUEST)
    assert response.usage.total_tokens > 0
    assert usage.total_tokens == response.usage.total_tokens
    assert usage.prompt_tokens == response.usage.prompt_tokens
    # one history entry in the answering model, the fallback's own and the process-wide one
    assert [len(answering.history), len(lm.history), len(global_history)] == [1, 1, 1]
    assert len(failing.requests) == 1

    two = FallbackLM(Scripted("a", latency=1.0, tokens=3), Scripted("b", latency=1.0, tokens=5))
    with td.track_usage() as usage:
        await two.send(REQUEST)  # send too records each attempt once
    assert usage.total_tokens == 6


async def test_the_span_shows_which_model_answered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    primary = Scripted("primary", latency=30.0)
    failing = Scripted("failing", latency=0.1, error=LMServerError("down"))
    backup = Scripted("backup", latency=1.0)
    exporter = InMemoryExporter()
    async with collect(exporter):
        await FallbackLM(primary, failing, backup, hedge_after=0.5).request(REQUEST)
    (outer,) = [s for s in exporter.spans if s.name == "fallback"]
    assert outer.attributes["trio_dspy.fallback.answered_by"] == "backup"
    assert outer.attributes["trio_dspy.fallback.answered_index"] == 2
    assert outer.attributes["trio_dspy.fallback.attempts"] == 3
    events = [(e.name, e.attributes.get("index")) for e in outer.events]
    assert events == [
        ("fallback.attempt", 0),
        ("fallback.attempt", 1),
        ("fallback.attempt_failed", 1),
        ("fallback.attempt", 2),
    ]
    chats = {s.name: s for s in exporter.spans if s.name.startswith("chat ")}
    assert set(chats) == {"chat primary", "chat failing", "chat backup"}
    assert all(s.parent_id == outer.span_id for s in chats.values())
    assert chats["chat primary"].attributes["error.type"] == "cancelled"


async def test_cancelling_the_call_cancels_every_attempt(
    autojump_clock: trio.testing.MockClock,
) -> None:
    models = [Scripted(name, latency=30.0) for name in ("a", "b", "c")]
    lm = FallbackLM(*models, hedge_after=1.0)
    with trio.move_on_after(5.0) as scope:
        await lm.request(REQUEST)
    assert scope.cancelled_caught
    assert [(m.cancelled, m.completed) for m in models] == [(1, 0)] * 3
    assert lm.history == type(lm.history)()


async def test_predict_runs_on_a_fallback_model(autojump_clock: trio.testing.MockClock) -> None:
    def down(request: LMRequest) -> str:
        raise LMServerError("down", status_code=503)

    backup = DummyLM([{"answer": "4"}])
    with td.context(lm=FallbackLM(DummyLM(down), backup)):
        prediction = await td.Predict("question -> answer")(question="2 + 2?")
    assert prediction.answer == "4"
    assert len(backup.requests) == 1


def test_names_tools_and_arguments() -> None:
    a = DummyLM(["x"], model="a", supports_tools=True)
    b = DummyLM(["x"], model="b", supports_tools=True)
    c = DummyLM(["x"], model="c")
    assert FallbackLM(a, b).supports_tools
    assert not FallbackLM(a, c).supports_tools
    lm = FallbackLM(a, c, hedge_after=0.5)
    assert (lm.provider, lm.model) == ("fallback", "fallback(a, c)")
    assert repr(lm) == "FallbackLM(DummyLM('a'), DummyLM('c'), hedge_after=0.5)"
    assert repr(FallbackLM(a)) == "FallbackLM(DummyLM('a'))"
    assert td.lm.FallbackLM is FallbackLM
    with pytest.raises(ValueError, match="at least one"):
        FallbackLM()
    with pytest.raises(ValueError, match="hedge_after"):
        FallbackLM(a, hedge_after=-1.0)


async def test_closing_a_fallback_closes_every_model() -> None:
    closed: list[str] = []

    class Closable(DummyLM):
        async def aclose(self) -> None:
            await trio.lowlevel.checkpoint()
            closed.append(self.model)

    first, second = Closable(["a"]), Closable(["b"])
    async with FallbackLM(first, DummyLM(["c"]), second) as lm:
        assert lm.lms == (first, lm.lms[1], second)
    assert closed == [first.model, second.model]
    closed.clear()
    with trio.CancelScope() as scope:
        scope.cancel()
        await FallbackLM(first, second).aclose()  # shielded: closes even when cancelled
    assert closed == [first.model, second.model]


async def test_a_model_failing_to_close_does_not_keep_the_others_open() -> None:
    closed: list[str] = []

    class Broken(DummyLM):
        async def aclose(self) -> None:
            await trio.lowlevel.checkpoint()
            raise OSError(f"cannot close {self.model}")

    class Closable(DummyLM):
        async def aclose(self) -> None:
            await trio.lowlevel.checkpoint()
            closed.append(self.model)

    good = Closable(["a"])
    with pytest.raises(OSError, match="cannot close"):
        await FallbackLM(Broken(["x"]), good).aclose()
    assert closed == [good.model]
    with pytest.raises(ExceptionGroup) as group:
        await FallbackLM(Broken(["x"]), Broken(["y"]), good).aclose()
    assert len(group.value.exceptions) == 2 and closed == [good.model, good.model]
