"""BestOfN (concurrent attempts, first passing wins) and Refine (sequential, with feedback)."""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from functools import partial
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing
from trio.testing import wait_all_tasks_blocked

import trio_dspy as td
from trio_dspy.adapters.base import ToolTurn
from trio_dspy.errors import AdapterParseError
from trio_dspy.messages import LMRequest, LMResponse, ToolCall
from trio_dspy.modules import BestOfN, Refine
from trio_dspy.modules.best_of_n import AttemptCounts, BestOfNPrediction, HintAdapter
from trio_dspy.telemetry import InMemoryExporter, collect
from trio_dspy.testing import DummyLM, SimConfig, SimReply, serve_sim


def attempt_of(request: LMRequest) -> int:
    """Which attempt sent ``request``: BestOfN gives attempt i temperature 1.0 + 0.001 i."""
    temperature: float = request.params["temperature"]
    return round((temperature - 1.0) / 0.001)


class CountingLM(DummyLM):
    """A DummyLM that answers ``a<attempt>`` after ``attempt + 1`` seconds and
    records which attempts' calls ran to the end."""

    def __init__(self) -> None:
        super().__init__(
            lambda r: {"answer": f"a{attempt_of(r)}"},
            latency=lambda r: attempt_of(r) + 1.0,
        )
        self.finished: list[int] = []

    async def send(self, request: LMRequest) -> LMResponse:
        response = await super().send(request)
        self.finished.append(attempt_of(request))
        return response


def last_user(request: LMRequest) -> str:
    return [m.text for m in request.messages if m.role == "user"][-1]


async def test_best_of_n_second_attempt_wins_and_cancels_the_rest_in_flight(
    autojump_clock: trio.testing.MockClock,
) -> None:
    lm = CountingLM()
    rewarded: list[str] = []

    def reward(inputs: dict[str, Any], pred: td.Prediction) -> float:
        assert inputs == {"question": "q"}
        rewarded.append(pred.answer)
        return 1.0 if pred.answer == "a1" else 0.0

    best = BestOfN(td.Predict("question -> answer"), 5, reward, threshold=1.0)
    start = trio.current_time()
    with td.context(lm=lm, lm_kwargs={"max_tokens": 7}):
        pred = await best(question="q")
    assert pred.answer == "a1"
    # All five went out at once; the answer came after the second's latency...
    assert trio.current_time() - start == pytest.approx(2.0)
    assert sorted(attempt_of(r) for r in lm.requests) == [0, 1, 2, 3, 4]
    # ...and the three slower calls were cancelled in flight, never completed.
    assert lm.finished == [0, 1]
    assert rewarded == ["a0", "a1"]
    # Each attempt had its own temperature; the settings' other arguments stayed.
    assert sorted(r.params["temperature"] for r in lm.requests) == pytest.approx(
        [1.0, 1.001, 1.002, 1.003, 1.004]
    )
    assert all(r.params["max_tokens"] == 7 for r in lm.requests)


async def test_best_of_n_span_counts_completed_and_cancelled_attempts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def reward(inputs: dict[str, Any], pred: td.Prediction) -> float:
        return 1.0 if pred.answer == "a1" else 0.0

    exporter = InMemoryExporter()
    best = BestOfN(td.Predict("question -> answer"), 5, reward, threshold=1.0)
    async with collect(exporter):
        with td.context(lm=CountingLM()):
            pred = await best(question="q")
    (span,) = [s for s in exporter.spans if s.name == "invoke_agent BestOfN"]
    assert span.attributes["trio_dspy.attempts.completed"] == 2
    assert span.attributes["trio_dspy.attempts.failed"] == 0
    assert span.attributes["trio_dspy.attempts.cancelled"] == 3
    assert pred.attempts == AttemptCounts(completed=2, failed=0, cancelled=3)


async def test_best_of_n_with_none_passing_returns_the_best(
    autojump_clock: trio.testing.MockClock,
) -> None:
    lm = CountingLM()
    scores = {"a0": 0.2, "a1": 0.5, "a2": 0.9, "a3": 0.9, "a4": 0.1}

    async def reward(inputs: dict[str, Any], pred: td.Prediction) -> float:
        await trio.lowlevel.checkpoint()
        return scores[pred.answer]

    best = BestOfN(td.Predict("question -> answer"), 5, reward, threshold=1.0)
    with td.context(lm=lm):
        pred = await best(question="q")
    # The highest reward; between equals, the earlier attempt.
    assert pred.answer == "a2"
    assert sorted(lm.finished) == [0, 1, 2, 3, 4]


async def test_best_of_n_raises_when_fail_count_is_reached(
    autojump_clock: trio.testing.MockClock,
) -> None:
    lm = CountingLM()

    def reward(inputs: dict[str, Any], pred: td.Prediction) -> float:
        if pred.answer in ("a0", "a1"):
            raise ValueError(f"cannot score {pred.answer}")
        return 0.0

    best = BestOfN(td.Predict("question -> answer"), 5, reward, threshold=1.0, fail_count=2)
    with td.context(lm=lm), pytest.raises(ValueError, match="cannot score a1"):
        await best(question="q")
    # The second failure cancelled the attempts still running.
    assert lm.finished == [0, 1]


async def test_best_of_n_tolerates_fewer_failures_than_fail_count(
    autojump_clock: trio.testing.MockClock,
) -> None:
    lm = CountingLM()

    def reward(inputs: dict[str, Any], pred: td.Prediction) -> float:
        if pred.answer in ("a0", "a1"):
            raise ValueError("cannot score")
        return {"a2": 0.1, "a3": 0.7, "a4": 0.3}[pred.answer]

    best = BestOfN(td.Predict("question -> answer"), 5, reward, threshold=1.0)
    with td.context(lm=lm):
        pred = await best(question="q")
    assert pred.answer == "a3"


async def test_best_of_n_raises_the_last_failure_when_every_attempt_fails(
    autojump_clock: trio.testing.MockClock,
) -> None:
    lm = CountingLM()

    def reward(inputs: dict[str, Any], pred: td.Prediction) -> float:
        raise ValueError(f"cannot score {pred.answer}")

    # fail_count above N: nothing is left to return, so the last failure is raised.
    best = BestOfN(td.Predict("question -> answer"), 3, reward, threshold=1.0, fail_count=9)
    with td.context(lm=lm), pytest.raises(ValueError, match="cannot score a2"):
        await best(question="q")
    # With the default (N), the N-th failure is raised.
    best = BestOfN(td.Predict("question -> answer"), 3, reward, threshold=1.0)
    with td.context(lm=lm), pytest.raises(ValueError, match="cannot score a2"):
        await best(question="q")


@pytest.mark.parametrize("cls", [BestOfN, Refine])
def test_invalid_counts_are_refused(cls: type[BestOfN] | type[Refine]) -> None:
    predict = td.Predict("question -> answer")
    with pytest.raises(ValueError, match="N must be at least 1"):
        cls(predict, 0, lambda i, p: 1.0, 1.0)
    with pytest.raises(ValueError, match="fail_count must be at least 1"):
        cls(predict, 3, lambda i, p: 1.0, 1.0, fail_count=0)


# ---------------------------------------------------------------------- Refine
def one_word(inputs: dict[str, Any], pred: td.Prediction) -> float:
    return 1.0 if len(str(pred.answer).split()) == 1 else 0.0


async def test_refine_passes_the_previous_outputs_and_reward_to_the_next_attempt(
    autojump_clock: trio.testing.MockClock,
) -> None:
    lm = DummyLM([{"answer": "Paris, France"}, {"answer": "Paris"}], latency=1.0)
    refine = Refine(td.Predict("question -> answer"), 3, one_word, threshold=1.0)
    start = trio.current_time()
    with td.context(lm=lm):
        pred = await refine(question="Capital of France?")
    assert pred.answer == "Paris"
    assert len(lm.requests) == 2
    assert trio.current_time() - start == pytest.approx(2.0)  # one after the other
    first, second = lm.requests
    assert "hint_" not in first.messages[0].content
    assert "hint_" in second.messages[0].content  # the field is declared...
    hint = last_user(second)
    assert "Attempt 1 answered:\nanswer: Paris, France" in hint  # ...and filled in
    assert "It scored 0, below the required 1." in hint
    assert "Capital of France?" in hint
    assert [r.params["temperature"] for r in lm.requests] == pytest.approx([1.0, 1.001])


async def test_refine_tells_the_next_attempt_about_an_error() -> None:
    lm = DummyLM([{"answer": "x"}, {"answer": "y"}])

    def reward(inputs: dict[str, Any], pred: td.Prediction) -> float:
        if pred.answer == "x":
            raise KeyError("no such city")
        return 1.0

    refine = Refine(td.Predict("question -> answer"), 3, reward, threshold=1.0)
    with td.context(lm=lm, adapter=td.JSONAdapter()):
        pred = await refine(question="q")
    assert pred.answer == "y"
    assert "Attempt 1 failed with KeyError: 'no such city'" in last_user(lm.requests[1])


async def test_refine_with_none_passing_returns_the_best() -> None:
    lm = DummyLM([{"answer": "a b"}, {"answer": "a b c d"}, {"answer": "a b c"}])

    def shorter(inputs: dict[str, Any], pred: td.Prediction) -> float:
        return 1.0 / len(pred.answer.split())

    refine = Refine(td.Predict("question -> answer"), 3, shorter, threshold=1.0)
    with td.context(lm=lm):
        pred = await refine(question="q")
    assert pred.answer == "a b"
    assert len(lm.requests) == 3
    # Each hint describes the attempt just before it.
    assert "Attempt 2 answered:\nanswer: a b c d" in last_user(lm.requests[2])


async def test_refine_raises_at_fail_count_and_after_every_attempt_failed() -> None:
    def reward(inputs: dict[str, Any], pred: td.Prediction) -> float:
        raise ValueError(f"bad {pred.answer}")

    lm = DummyLM([{"answer": f"a{i}"} for i in range(9)])
    refine = Refine(td.Predict("question -> answer"), 3, reward, threshold=1.0, fail_count=2)
    with td.context(lm=lm), pytest.raises(ValueError, match="bad a1"):
        await refine(question="q")
    assert len(lm.requests) == 2
    refine = Refine(td.Predict("question -> answer"), 2, reward, threshold=1.0, fail_count=5)
    with td.context(lm=lm), pytest.raises(ValueError, match="bad a3"):
        await refine(question="q")
    assert len(lm.requests) == 4


def test_hint_adapter_delegates_everything_but_the_request() -> None:
    inner = td.JSONAdapter()
    hinted = HintAdapter(inner, "be brief")
    sig = td.make_signature("question -> answer")
    assert hinted.name == inner.name
    assert repr(hinted) == "HintAdapter(JSONAdapter())"
    messages = hinted.format(sig, [], {"question": "q"})
    assert "be brief" in messages[-1].content
    assert hinted.system_prompt(sig) == inner.system_prompt(sig)
    assert hinted.format_inputs(sig, {"question": "q"}) == inner.format_inputs(
        sig, {"question": "q"}
    )
    assert hinted.format_outputs(sig, {"answer": "a"}) == inner.format_outputs(sig, {"answer": "a"})
    assert hinted.parse(sig, '{"answer": "a"}') == {"answer": "a"}
    assert hinted.parse_response(sig, LMResponse('{"answer": "a"}')) == {"answer": "a"}
    assert hinted.output_requirements(sig) == inner.output_requirements(sig)
    assert hinted.response_format(sig) == inner.response_format(sig)
    error = AdapterParseError("bad", completion="x")
    assert hinted.format_retry("x", error, sig) == inner.format_retry("x", error, sig)
    assert hinted.tool_system_prompt(sig) == inner.tool_system_prompt(sig)
    assert hinted.finish_spec(sig) == inner.finish_spec(sig)
    call = ToolCall("c1", "finish", '{"answer": "a"}')
    turn = hinted.parse_tool_turn(LMResponse("", tool_calls=(call,)))
    assert turn == ToolTurn("", (call,))
    assert hinted.parse_finish(sig, call) == {"answer": "a"}
    assert hinted.format_tool_results(turn, [("c1", "ok")]) == inner.format_tool_results(
        turn, [("c1", "ok")]
    )
    request = hinted.format_request(sig, [], {"question": "q"}, tools=[])
    assert "hint_" in request.messages[0].content
    # The structured re-ask after a chat failure keeps the hint.
    assert hinted.structured_fallback() is None
    fallback = HintAdapter(td.ChatAdapter(), "be brief").structured_fallback()
    assert isinstance(fallback, HintAdapter) and isinstance(fallback.inner, td.JSONAdapter)
    assert "be brief" in fallback.format(sig, [], {"question": "q"})[-1].content


# ------------------------------------------------------- BestOfN over HTTP
def sim_attempt(body: Mapping[str, Any]) -> SimReply:
    """Attempt i (by its temperature) answers ``a<i>`` after ``i + 1`` seconds."""
    index = round((body["temperature"] - 1.0) / 0.001)
    return SimReply(outputs={"answer": f"a{index}"}, latency=index + 1.0)


async def test_best_of_n_over_http_cancels_the_other_calls_and_counts_only_arrived_usage(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def reward(inputs: dict[str, Any], pred: td.Prediction) -> float:
        return 1.0 if pred.answer == "a1" else 0.0

    # Replies cross real loopback sockets, which a loaded kernel may deliver
    # late: the clock jumps only after 50 real ms with nothing to do, so it
    # never runs past a reply still on its way (a third answer would arrive).
    autojump_clock.autojump_threshold = 0.05
    best = BestOfN(td.Predict("question -> answer"), 5, reward, threshold=1.0)
    async with serve_sim(SimConfig(script=sim_attempt)) as sim:
        lm = td.LM("openai/sim-model", base_url=sim.base_url, api_key="k", max_connections=5)
        async with lm:
            with td.context(lm=lm), td.track_usage() as usage:
                start = trio.current_time()
                pred = await best(question="q")
                elapsed = trio.current_time() - start
            answered = sim.stats.ok
            # The server saw the three others hang up and stopped working on them.
            await wait_all_tasks_blocked()
            assert sim.http is not None and sim.http.requests_abandoned == 3
            # The five went out at once, each at its own temperature.
            assert sorted(b["temperature"] for b in sim.requests) == pytest.approx(
                [1.0, 1.001, 1.002, 1.003, 1.004]
            )
            # Every connection came back to the pool: five more calls at once
            # need all five slots (a leaked one would hang, and fail_after fail).
            again = partial(td.Predict("question -> answer"), question="q")
            with td.context(lm=lm, lm_kwargs={"temperature": 1.0}), trio.fail_after(10):
                async with trio.open_nursery() as nursery:
                    for _ in range(5):
                        nursery.start_soon(again)
    assert isinstance(pred, BestOfNPrediction)
    assert pred.answer == "a1"
    assert elapsed == pytest.approx(2.0)  # the second's latency, not the slowest's
    assert answered == 2  # the server had answered two when the others were dropped
    assert pred.attempts == AttemptCounts(completed=2, failed=0, cancelled=3)
    # Usage counts the two calls whose answers arrived, in the prediction and
    # in track_usage alike; the three cancelled calls cost nothing counted.
    arrived = [h.response.usage.total_tokens for h in list(lm.history)[:2]]
    assert usage.total_tokens == pred.usage.total_tokens == sum(arrived) > 0
    copy = pickle.loads(pickle.dumps(pred))
    assert copy == pred and copy.attempts == pred.attempts and copy.usage == pred.usage
