"""Fault injection, latency, connection handling and shutdown of the simulated server.

Tests that use ``autojump_clock`` give the HTTP client no timeout, so a jump of
virtual time while bytes are in flight on the loopback socket cannot fire one.
"""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import pytest
import trio

from trio_dspy.testing import Fault, Latency, SimConfig, serve_sim

from .test_sim_server import sim_client

BODY = {"model": "m", "messages": [{"role": "user", "content": "hello there"}]}


async def statuses(client: httpx.AsyncClient, n: int, body: dict[str, Any] = BODY) -> list[int]:
    return [(await client.post("/chat/completions", json=body)).status_code for _ in range(n)]


# ----------------------------------------------------------------- selectors
async def test_every_other_request_gets_429_with_retry_after() -> None:
    fault = Fault("rate_limit", every=2, retry_after=1.5, retry_after_ms=True)
    async with sim_client(SimConfig(faults=[fault])) as (sim, client):
        assert await statuses(client, 4) == [200, 429, 200, 429]
        r = await client.post("/chat/completions", json=BODY)
        r = await client.post("/chat/completions", json=BODY)
    assert r.status_code == 429
    assert r.headers["retry-after"] == "1.5" and r.headers["retry-after-ms"] == "1500"
    assert r.json()["error"]["code"] == "rate_limit_exceeded"
    assert sim.stats.faults == {"rate_limit": 3} and sim.stats.faults_injected == 3


async def test_first_n_requests_then_recovery_and_first_matching_rule_wins() -> None:
    faults = [Fault("server_error", first=2), Fault("unavailable", every=1, first=3)]
    async with sim_client(SimConfig(faults=faults)) as (sim, client):
        assert await statuses(client, 4) == [500, 500, 503, 200]
    assert sim.stats.faults == {"server_error": 2, "unavailable": 1}


async def test_probability_is_seeded_and_repeatable() -> None:
    async def pattern(seed: int) -> list[int]:
        config = SimConfig(seed=seed, faults=[Fault("server_error", probability=0.3)])
        async with sim_client(config) as (_, client):
            return await statuses(client, 60)

    a, b, c = await pattern(7), await pattern(7), await pattern(8)
    assert a == b and a != c
    assert 5 <= a.count(500) <= 35  # about 30% of 60


async def test_predicate_on_the_body_selects_requests() -> None:
    fault = Fault("context_length", when=lambda body: body.get("model") == "tiny")
    async with sim_client(SimConfig(faults=[fault])) as (_, client):
        big = await client.post("/chat/completions", json={**BODY, "model": "big"})
        tiny = await client.post("/chat/completions", json={**BODY, "model": "tiny"})
    assert big.status_code == 200
    assert tiny.status_code == 400
    error = tiny.json()["error"]
    assert (
        error["code"] == "context_length_exceeded" and "maximum context length" in error["message"]
    )


def test_bad_fault_rules_are_rejected_with_what_to_use() -> None:
    with pytest.raises(ValueError, match="rate_limit"):
        Fault("rate-limit")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="every"):
        Fault("reset", every=0)
    with pytest.raises(ValueError, match="probability"):
        Fault("reset", probability=2)
    assert Fault.parse("stall:first=2,stall=9") == Fault("stall", first=2, stall=9.0)
    assert Fault.parse("rate_limit:retry_after=none").retry_after is None
    with pytest.raises(ValueError, match="unknown fault option"):
        Fault.parse("reset:often=1")
    with pytest.raises(ValueError, match="not a number"):
        Fault.parse("reset:every=often")


# -------------------------------------------------------------------- kinds
async def test_503_carries_retry_after() -> None:
    async with sim_client(SimConfig(faults=[Fault("unavailable", retry_after=2)])) as (_, client):
        r = await client.post("/chat/completions", json=BODY)
    assert r.status_code == 503 and r.headers["retry-after"] == "2"
    assert r.json()["error"]["type"] == "server_error"


async def test_reset_drops_the_connection_and_the_server_keeps_serving() -> None:
    async with sim_client(SimConfig(faults=[Fault("reset", first=1)])) as (sim, client):
        with pytest.raises(httpx.TransportError):
            await client.post("/chat/completions", json=BODY)
        assert await statuses(client, 1) == [200]
    assert sim.stats.faults == {"reset": 1}


async def test_malformed_body_is_not_json() -> None:
    async with sim_client(SimConfig(faults=[Fault("malformed")])) as (_, client):
        r = await client.post("/chat/completions", json=BODY)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        r.json()


async def test_truncate_cuts_content_and_says_length() -> None:
    async with sim_client(SimConfig(faults=[Fault("truncate", every=2)])) as (_, client):
        full = (await client.post("/chat/completions", json=BODY)).json()
        cut = (await client.post("/chat/completions", json=BODY)).json()
    assert full["choices"][0]["finish_reason"] == "stop"
    assert cut["choices"][0]["finish_reason"] == "length"
    whole = full["choices"][0]["message"]["content"]  # same body, same generated answer
    assert cut["choices"][0]["message"]["content"] == whole[: len(whole) // 2]


async def test_context_window_rejects_long_prompts() -> None:
    long = {"model": "m", "messages": [{"role": "user", "content": "w" * 4000}]}
    async with sim_client(SimConfig(context_window=500)) as (_, client):
        assert await statuses(client, 1) == [200]
        r = await client.post("/chat/completions", json=long)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "context_length_exceeded"
    assert "1000 tokens" in r.json()["error"]["message"]


async def test_anthropic_faults_use_anthropic_error_bodies() -> None:
    config = SimConfig(faults=[Fault("rate_limit", retry_after=3)])
    body = {"model": "c", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    async with sim_client(config) as (sim, _), httpx.AsyncClient(base_url=sim.root_url) as client:
        r = await client.post("/v1/messages", json=body)
    assert r.status_code == 429 and r.headers["retry-after"] == "3"
    assert r.json() == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": r.json()["error"]["message"]},
    }


# ------------------------------------------------------------------ latency
async def test_stall_waits_then_answers(autojump_clock: Any) -> None:
    async with sim_client(SimConfig(faults=[Fault("stall", first=1, stall=30)])) as (_, client):
        start = trio.current_time()
        assert await statuses(client, 1) == [200]
        stalled = trio.current_time() - start
        start = trio.current_time()
        assert await statuses(client, 1) == [200]
        normal = trio.current_time() - start
    assert 30 <= stalled < 31 and normal < 1


async def test_constant_latency_and_concurrent_requests_overlap(autojump_clock: Any) -> None:
    limits = httpx.Limits(max_connections=None)
    async with (
        serve_sim(SimConfig(latency=0.5)) as sim,
        httpx.AsyncClient(base_url=sim.base_url, timeout=None, limits=limits) as client,
    ):
        start = trio.current_time()
        assert await statuses(client, 1) == [200]
        one = trio.current_time() - start
        codes: list[int] = []
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for _ in range(200):
                nursery.start_soon(_post, client, codes)
        many = trio.current_time() - start
    assert 0.5 <= one < 0.6
    assert codes == [200] * 200
    # overlapping: 200 sequential requests would take 100 s (loose bounds, since
    # virtual time may jump while a connection is still being set up)
    assert 0.5 <= many < 1.5
    assert sim.stats.max_in_flight >= 150


async def _post(client: httpx.AsyncClient, codes: list[int]) -> None:
    codes.append((await client.post("/chat/completions", json=BODY)).status_code)


def test_latency_distributions_are_seeded_and_in_range() -> None:
    import random

    uni = Latency.uniform(0.2, 0.4)
    draws = [uni.sample({}, random.Random(i)) for i in range(200)]
    assert all(0.2 <= d <= 0.4 for d in draws) and max(draws) - min(draws) > 0.1
    logn = Latency.lognormal(0.3, 0.5)
    a = [logn.sample({}, random.Random(1)) for _ in range(3)]
    assert a == [logn.sample({}, random.Random(1)) for _ in range(3)]
    many = sorted(logn.sample({}, random.Random(i)) for i in range(400))
    assert math.isclose(many[200], 0.3, rel_tol=0.15)  # the median
    by_body = Latency.function(lambda body: len(body["messages"]) * 0.25)
    assert by_body.sample({"messages": [1, 2]}, random.Random(0)) == 0.5
    assert Latency.parse("uniform:0.1,0.2") == Latency.uniform(0.1, 0.2)
    assert Latency.parse("0.7") == Latency.constant(0.7)
    with pytest.raises(ValueError, match="uniform:LO,HI"):
        Latency.parse("fast")


async def test_latency_function_of_the_body(autojump_clock: Any) -> None:
    config = SimConfig(latency=lambda body: 2.0 if body["model"] == "slow" else 0.0)
    async with sim_client(config) as (_, client):
        start = trio.current_time()
        await client.post("/chat/completions", json={**BODY, "model": "slow"})
        slow = trio.current_time() - start
        start = trio.current_time()
        await client.post("/chat/completions", json=BODY)
        fast = trio.current_time() - start
    assert 2.0 <= slow < 2.5 and fast < 0.5


# ----------------------------------------------------- connections, shutdown
async def test_keep_alive_reuses_one_connection() -> None:
    async with sim_client() as (sim, client):
        assert await statuses(client, 5) == [200] * 5
        assert sim.http is not None and sim.http.connections_accepted == 1


async def test_leaving_serve_sim_cancels_stalled_requests(autojump_clock: Any) -> None:
    reached = trio.Event()

    def mark(body: Any) -> bool:
        reached.set()
        return True

    failures: list[Exception] = []

    async def call(client: httpx.AsyncClient, url: str) -> None:
        try:
            await client.post(url, json=BODY)
        except httpx.TransportError as exc:
            failures.append(exc)

    start = trio.current_time()
    config = SimConfig(faults=[Fault("stall", stall=3600, when=mark)])
    async with httpx.AsyncClient(timeout=None) as client, trio.open_nursery() as nursery:
        async with serve_sim(config) as sim:
            nursery.start_soon(call, client, sim.base_url + "/chat/completions")
            await reached.wait()
            assert sim.stats.in_flight == 1
        assert sim.stats.in_flight == 0
    assert len(failures) == 1
    assert trio.current_time() - start < 1  # nobody waited out the stall
