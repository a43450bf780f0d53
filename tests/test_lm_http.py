"""End to end over real loopback HTTP, against the simulated server.

Most tests run under ``autojump_clock``: the simulated latency, stalls and
our backoff are all ``trio.sleep``, so they take no real time. A virtual
jump while a request is in transit can only end a sleep early, and no test
here asserts a lower bound on time, so jumps cannot make them flaky. The
pool-leak test runs on the real clock because it must tell a leak (a hang)
from progress on real sockets.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

import trio_dspy as td
from trio_dspy.errors import LMAuthError, LMTimeoutError, ToolsUnsupportedError
from trio_dspy.lm import LM, LMRequest, LMResponse, Message, ToolSpec
from trio_dspy.testing import Fault, SimConfig, SimReply, serve_sim

from .story import HandleCustomer, MakeDrink, Mood, Refund


def openai_lm(sim: Any, **kw: Any) -> LM:
    kw.setdefault("api_key", "sim-key")
    return LM("openai/sim-model", base_url=sim.base_url, **kw)


ASK = LMRequest([Message("user", "hello")])


@pytest.mark.parametrize("adapter", [td.ChatAdapter(), td.JSONAdapter()], ids=["chat", "json"])
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_predict_with_a_typed_signature_over_http(
    autojump_clock: Any, adapter: td.Adapter, provider: str
) -> None:
    async with serve_sim(SimConfig(latency=0.2, api_key="sim-key")) as sim:
        base = sim.base_url if provider == "openai" else sim.root_url
        async with LM(f"{provider}/sim-model", base_url=base, api_key="sim-key") as lm:
            with td.context(lm=lm, adapter=adapter), td.track_usage() as usage:
                pred = await td.Predict(HandleCustomer)(request="Large latte", mood=Mood.happy)
    assert isinstance(pred.action, MakeDrink | Refund)
    assert isinstance(pred.confidence, float)
    assert usage.total_tokens > 0 and pred.usage.total_tokens == usage.total_tokens
    assert sim.stats.ok >= 1


async def test_every_other_request_rate_limited_costs_retries_not_failures(
    autojump_clock: Any,
) -> None:
    config = SimConfig(faults=[Fault("rate_limit", every=2, retry_after=0.5)])
    async with serve_sim(config) as sim, openai_lm(sim) as lm:
        retries: list[float] = []
        lm.on_retry = lambda attempt, delay, error: retries.append(delay)
        predict = td.Predict("question -> answer: int")
        with td.context(lm=lm):
            for i in range(10):
                assert isinstance((await predict(question=f"q{i}")).answer, int)
            # concurrent callers collide on the even numbers more often: more
            # retries, still no failures
            lm.max_retries = 8
            results = await td.gather(*(lambda: predict(question="together") for _ in range(16)))
    assert len(results) == 16
    assert sim.stats.faults["rate_limit"] >= 5 + 8
    assert retries and set(retries) == {0.5}  # Retry-After honoured


async def test_wrong_key_fails_fast_with_an_auth_error(autojump_clock: Any) -> None:
    async with (
        serve_sim(SimConfig(api_key="right-key")) as sim,
        openai_lm(sim, api_key="wrong") as lm,
    ):
        with pytest.raises(LMAuthError, match="Incorrect or missing API key") as info:
            await lm.request(ASK)
    assert info.value.status_code == 401
    assert sim.stats.requests == 1  # not retried
    assert "wrong" not in str(info.value)


async def test_a_stall_is_cut_off_by_the_timeout(autojump_clock: Any) -> None:
    config = SimConfig(faults=[Fault("stall", stall=5.0)])
    async with serve_sim(config) as sim, openai_lm(sim, timeout=0.5) as lm:
        start = trio.current_time()
        with pytest.raises(LMTimeoutError, match=r"0\.5 s"):
            await lm.request(ASK)
        assert trio.current_time() - start < 1.0


async def test_resets_server_errors_and_garbled_bodies_are_retried(autojump_clock: Any) -> None:
    faults = [Fault("reset", first=1), Fault("server_error", first=2), Fault("malformed", first=3)]
    async with serve_sim(SimConfig(faults=faults)) as sim, openai_lm(sim) as lm:
        response = await lm.request(ASK)
    assert response.text and sim.stats.requests == 4


async def test_json_schema_refusal_steps_down_and_is_remembered(autojump_clock: Any) -> None:
    predict = td.Predict("question -> answer: int")
    config = SimConfig(supports_json_schema=False, supports_json_object=False)
    async with serve_sim(config) as sim, openai_lm(sim) as stubborn, openai_lm(sim) as fresh:
        with td.context(lm=stubborn, adapter=td.JSONAdapter()):
            assert isinstance((await predict(question="1+1?")).answer, int)
            kinds = [(b.get("response_format") or {}).get("type") for b in sim.requests]
            assert kinds == ["json_schema", "json_object", None]
            assert stubborn.response_format_level == "prompt"
            sim.clear()
            await predict(question="2+2?")
            assert [b.get("response_format") for b in sim.requests] == [None]
        sim.clear()
        with td.context(lm=fresh, adapter=td.JSONAdapter()):
            await predict(question="3+3?")  # another LM learns on its own
        assert len(sim.requests) == 3


async def test_a_server_without_tools_refuses_them_as_tools_unsupported() -> None:
    tool = ToolSpec("lookup", "Look an order up", {"type": "object", "properties": {}})
    request = LMRequest([Message("user", "where is order 7?")], tools=[tool])
    async with serve_sim(SimConfig(supports_tools=False)) as sim, openai_lm(sim) as lm:
        with pytest.raises(ToolsUnsupportedError) as info:
            await lm.request(request)
        assert (await lm.request(ASK)).text  # the same server answers without tools
    assert info.value.status_code == 400
    assert (info.value.code, info.value.param) == ("unsupported", "tools")


async def test_json_object_with_inline_schema_when_only_json_schema_is_refused(
    autojump_clock: Any,
) -> None:
    async with serve_sim(SimConfig(supports_json_schema=False)) as sim, openai_lm(sim) as lm:
        with td.context(lm=lm, adapter=td.JSONAdapter()):
            pred = await td.Predict(HandleCustomer)(request="refund order 7", mood=Mood.upset)
    assert isinstance(pred.action, MakeDrink | Refund)
    last = sim.requests[-1]["response_format"]
    assert last["type"] == "json_object" and last["schema"]["required"] == ["action", "confidence"]
    assert lm.response_format_level == "json_object"


async def test_the_pool_is_not_a_hidden_bottleneck(autojump_clock: Any) -> None:
    async with serve_sim(SimConfig(latency=1.0)) as sim, openai_lm(sim) as lm:
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for _ in range(150):  # more than httpx's default pool of 100
                nursery.start_soon(lm.request, ASK)
        elapsed = trio.current_time() - start
    assert sim.stats.max_in_flight == 150
    assert elapsed < 2.0  # one latency, not two


async def test_max_concurrency_holds_over_http(autojump_clock: Any) -> None:
    async with (
        serve_sim(SimConfig(latency=1.0)) as sim,
        openai_lm(sim, max_concurrency=5) as lm,
        trio.open_nursery() as nursery,
    ):
        for _ in range(20):
            nursery.start_soon(lm.request, ASK)
    assert sim.stats.max_in_flight == 5


async def test_cancelled_calls_leave_no_connection_or_pool_slot_behind() -> None:
    # Real clock on purpose: a leaked slot shows up as a hang, which fail_after
    # turns into a failure; no test time is spent sleeping.
    slow = True
    arrived = 0
    pool_full = trio.Event()

    async def script(body: Any) -> SimReply | None:
        nonlocal arrived
        if slow:
            arrived += 1
            if arrived == 4:
                pool_full.set()
            await trio.sleep_forever()  # a stalled server (cancelled when it shuts down)
        return None

    # max_connections=4: leaking the 4 busy connections would block every later call
    async with serve_sim(SimConfig(script=script)) as sim, openai_lm(sim, max_connections=4) as lm:
        with trio.fail_after(10):  # cancelling must not hang either
            async with trio.open_nursery() as nursery:
                for _ in range(100):
                    nursery.start_soon(lm.request, ASK)
                await pool_full.wait()  # 4 on the wire, 96 queued for a connection
                nursery.cancel_scope.cancel()
        assert len(lm.history) == 0
        slow = False
        responses: list[LMResponse] = []

        async def call() -> None:
            responses.append(await lm.request(ASK))

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for _ in range(10):
                    nursery.start_soon(call)
    assert len(responses) == 10 and all(r.text for r in responses)
    assert arrived == 4 and sim.stats.ok == 10


def test_one_lm_serves_several_trio_runs_over_real_sockets() -> None:
    # The LM outlives the run that created it: its connection pool (and limits)
    # must be recreated inside the second run rather than reused from the first.
    made: list[LM] = []
    port = 0

    async def one_run() -> str:
        nonlocal port
        async with serve_sim(port=port) as sim:
            port = sim.port
            if not made:
                made.append(openai_lm(sim, max_concurrency=4))
            lm = made[0]
            async with trio.open_nursery() as nursery:
                for i in range(8):
                    nursery.start_soon(lm.request, LMRequest([Message("user", f"q{i}")]))
            return (await lm.request(ASK)).text

    assert trio.run(one_run)
    assert trio.run(one_run)
    assert len(made[0].history) == 18 and not any(e.response.cached for e in made[0].history)
