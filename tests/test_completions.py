"""``n=`` among the LM arguments: several completions of one call, in ``pred.completions``."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio
import trio.testing

import trio_dspy as td
from trio_dspy.messages import LMRequest, LMResponse
from trio_dspy.primitives import Completions
from trio_dspy.testing import DummyLM, SimConfig, serve_sim

from .story import HandleCustomer, MakeDrink, Mood, Refund


async def test_n_gives_several_completions_from_one_request() -> None:
    async with serve_sim(SimConfig()) as sim:
        async with td.LM("openai/sim-model", base_url=sim.base_url, api_key="k") as lm:
            with td.context(lm=lm):
                pred = await td.Predict(HandleCustomer, n=3)(request="latte", mood=Mood.happy)
        bodies = list(sim.requests)
    assert len(bodies) == 1 and bodies[0]["n"] == 3
    completions = pred.completions
    assert len(completions) == 3
    # Every completion parsed into the signature's types; the first is the prediction.
    assert all(isinstance(a, MakeDrink | Refund) for a in completions.action)
    assert all(isinstance(c, float) for c in completions["confidence"])
    assert pred.action == completions.action[0] and pred.confidence == completions[0].confidence
    assert len({json.dumps(str(c)) for c in completions.action}) > 1  # samples differ


async def test_n_among_the_lm_defaults_works_too() -> None:
    async with serve_sim(SimConfig()) as sim:
        lm = td.LM("openai/sim-model", base_url=sim.base_url, api_key="k", n=2)
        async with lm:
            with td.context(lm=lm):
                pred = await td.Predict("question -> answer")(question="q")
    assert len(pred.completions) == 2
    assert sim.stats.requests == 1


async def test_a_provider_without_n_gets_n_concurrent_calls_each_its_own_cache_entry(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serve_sim(SimConfig(latency=1.0)) as sim:
        lm = td.LM("anthropic/sim-model", base_url=sim.root_url, api_key="k", cache=True)
        async with lm:
            with td.context(lm=lm):
                start = trio.current_time()
                pred = await td.Predict("question -> answer", n=3)(question="q")
                elapsed = trio.current_time() - start
        bodies = list(sim.requests)
    assert len(pred.completions) == 3
    # Three requests, at once (one latency), none of them answered from the cache.
    assert len(bodies) == 3 and all("n" not in b for b in bodies)
    assert sim.stats.max_in_flight == 3
    assert elapsed == pytest.approx(1.0)


async def test_a_server_that_ignores_n_is_topped_up_with_separate_calls() -> None:
    sent: list[dict[str, Any]] = []

    def server(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        sent.append(body)
        text = f"[[ ## answer ## ]]\nanswer {len(sent)}\n\n[[ ## completed ## ]]"
        return httpx.Response(
            200,
            json={
                "model": "m",
                "choices": [{"message": {"content": text}, "finish_reason": "stop"}],
            },
        )

    lm = td.LM("openai/m", base_url="http://sim.test", transport=httpx.MockTransport(server))
    with td.context(lm=lm):
        pred = await td.Predict("question -> answer", n=3)(question="q")
    assert [b.get("n") for b in sent] == [3, None, None]
    assert sorted(pred.completions.answer) == ["answer 1", "answer 2", "answer 3"]
    assert pred.answer == "answer 1"


class ChoicesLM(DummyLM):
    """A DummyLM that answers every request with the given choices."""

    supports_n = True

    def __init__(self, *texts: str) -> None:
        super().__init__(lambda r: LMResponse(texts[0]))
        self.texts = texts

    async def send(self, request: LMRequest) -> LMResponse:
        first = await super().send(request)
        return LMResponse(first.text, alternatives=[LMResponse(t) for t in self.texts[1:]])


def answer(text: str) -> str:
    return f"[[ ## answer ## ]]\n{text}\n\n[[ ## completed ## ]]"


async def test_completions_that_do_not_parse_are_left_out_and_asked_again() -> None:
    lm = ChoicesLM("rambling", answer("b"), answer("c"))
    with td.context(lm=lm):
        pred = await td.Predict("question -> answer", n=3)(question="q")
    # Two of three parsed; one more call (without n) brought the third.
    assert pred.completions.answer == ["b", "c", "b"]
    assert pred.answer == "b"
    assert [r.params.get("n") for r in lm.requests] == [3, None]


@pytest.mark.parametrize("n", [0, -1, 1.5, "3", True])
async def test_a_bad_n_is_refused(n: Any) -> None:
    with td.context(lm=DummyLM([{"answer": "a"}])), pytest.raises(ValueError, match="n \\(the"):
        await td.Predict("question -> answer", n=n)(question="q")


def test_completions_read_like_dspys() -> None:
    completions = Completions([{"answer": "a", "score": 1}, {"answer": "b", "score": 2}])
    assert len(completions) == 2
    assert completions.answer == ["a", "b"] == completions["answer"]
    assert completions[1] == td.Prediction(answer="b", score=2)
    assert isinstance(completions[0], td.Prediction)
    assert [p.answer for p in completions] == ["a", "b"]
    assert dict(completions.items()) == {"answer": ["a", "b"], "score": [1, 2]}
    assert "score" in completions and "other" not in completions
    assert repr(completions) == "Completions(answer=['a', 'b'], score=[1, 2])"
    with pytest.raises(AttributeError, match="no completion has a field 'other'"):
        completions.other  # noqa: B018
    with pytest.raises(KeyError):
        completions["other"]
    with pytest.raises(IndexError):
        completions[2]


async def test_a_single_completion_is_its_own_completions() -> None:
    with td.context(lm=DummyLM([{"answer": "a"}])):
        pred = await td.Predict("question -> answer")(question="q")
    assert len(pred.completions) == 1
    assert pred.completions.answer == ["a"]


async def test_groq_which_refuses_n_gets_separate_calls() -> None:
    async with serve_sim(SimConfig(profile="groq")) as sim:
        lm = td.LM("groq/llama-3.3-70b-versatile", base_url=sim.base_url, api_key="k")
        async with lm:
            with td.context(lm=lm):
                pred = await td.Predict("question -> answer", n=3)(question="q")
        bodies = list(sim.requests)
    assert len(pred.completions) == 3
    assert len(bodies) == 3 and all(b.get("n") in (None, 1) for b in bodies)
    assert sim.stats.errors == 0


async def test_streamed_n_is_one_request_not_streamed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serve_sim(SimConfig()) as sim:
        async with td.LM("openai/sim-model", base_url=sim.base_url, api_key="k") as lm:
            program = td.streamify(td.Predict("question -> answer", n=3))
            with td.context(lm=lm):
                async with program(question="q") as stream:
                    items = [item async for item in stream]
        bodies = list(sim.requests)
    # One request for the three completions, not a stream of one plus two more.
    assert len(bodies) == 1 and bodies[0]["n"] == 3 and not bodies[0].get("stream")
    (prediction,) = items
    assert isinstance(prediction, td.Prediction) and len(prediction.completions) == 3
