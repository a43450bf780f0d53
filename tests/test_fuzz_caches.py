"""Fuzzing the caches' stored entries: whatever a disk or Redis cache holds,
a lookup is a hit equal to a valid response or a miss, and the call ends in
a result or a ``td.errors`` type, in bounded time, with nothing left open.

Most examples drive the one decoder both caches use; fewer go through a
whole ``td.LM`` call, since each of those does disk or network I/O.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import event, given
from hypothesis import strategies as st

import trio_dspy as td
from trio_dspy.lm import DiskCache, LMRequest, LMResponse, Message, ToolCall
from trio_dspy.lm.cache import cache_key
from trio_dspy.lm.cache_codec import decode_response, encode_response, read_response
from trio_dspy.lm.redis_conn import RedisConnector
from trio_dspy.primitives import Usage
from trio_dspy.testing import SimConfig, serve_sim

from .hostile import fuzz_settings, mutated
from .redis_fixture import namespace
from .test_lm_support import Scripted, ok

REQUEST = LMRequest([Message("user", "What is the capital of France?")])
STORED = LMResponse(
    text="Paris",
    tool_calls=(ToolCall("c1", "lookup", '{"city": "Paris"}'),),
    usage=Usage(3, 4, 7),
    finish_reason="stop",
    model="sim-1",
    alternatives=(LMResponse(text="Lyon", finish_reason="length"),),
)
DOCUMENT = json.loads(encode_response(STORED))
# Entries this library could have written, so that hits are fuzzed too.
valid_entries = st.builds(
    lambda text, count: encode_response(
        LMResponse(text=text, usage=Usage(count, 0, count))
    ).encode(),
    st.text(max_size=50),
    st.integers(0, 2**63 - 1),
)
# What a store may hold: a valid entry spoiled in one place, any bytes at all, or a valid one.
hostile_entries = st.one_of(mutated(DOCUMENT), st.binary(max_size=300), valid_entries)
# Seconds one decode, or one whole call, may take on a slow shared machine.
DECODE_BOUND = 2.0
CALL_BOUND = 10.0


def check_valid(response: LMResponse) -> None:
    """``response`` is one a cache could have stored: its fields are of their
    types, its text is UTF-8 clean, and it survives a round trip unchanged."""
    encoded = encode_response(response)
    encoded.encode("utf-8")  # no lone surrogate
    assert read_response(encoded) == response


@fuzz_settings(400)
@given(raw=hostile_entries)
def test_the_shared_decoder_reads_any_entry_as_a_valid_response_or_a_miss(raw: bytes) -> None:
    start = time.monotonic()
    for entry in (raw, raw.decode("utf-8", "replace")):  # Redis gives bytes, text columns str
        decoded = decode_response(entry)
        assert decoded is None or isinstance(decoded, LMResponse)
        event("hit" if decoded is not None else "miss")
        if decoded is not None:
            check_valid(decoded)
    assert time.monotonic() - start < DECODE_BOUND


def test_the_unspoiled_document_is_read_back_as_stored() -> None:
    # The fuzzing tests spoil this document: it must read as itself untouched.
    assert decode_response(json.dumps(DOCUMENT).encode()) == STORED


def put_row(path: Path, key: str, value: bytes) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )
        conn.execute("INSERT OR REPLACE INTO responses (key, value) VALUES (?, ?)", (key, value))
        conn.commit()
    finally:
        conn.close()


def get_row(path: Path, key: str) -> bytes:
    conn = sqlite3.connect(path)
    try:
        (value,) = conn.execute(
            "SELECT CAST(value AS BLOB) FROM responses WHERE key = ?", (key,)
        ).fetchone()
    finally:
        conn.close()
    return bytes(value)


async def call_through(lm: Any) -> LMResponse | td.errors.TrioDSPyError:
    """One call, bounded in (wall-clock) time: its response, or the typed error it raised."""
    with trio.fail_after(CALL_BOUND):
        try:
            response: LMResponse = await lm.request(REQUEST)
        except td.errors.TrioDSPyError as exc:
            return exc
    return response


def check_lookup(raw: bytes, outcome: object, model_calls: int, stored_after: bytes | None) -> None:
    """A hit is the stored entry read back, with no model call; a miss is the
    model's answer, which replaced the entry."""
    assert isinstance(outcome, LMResponse), outcome  # these servers always answer
    expected = decode_response(raw)
    event("hit" if expected is not None else "miss")
    if expected is not None:
        check_valid(expected)
        assert outcome == td.lm.cache.as_cached(expected) and model_calls == 0
    else:
        assert not outcome.cached and model_calls == 1
        assert stored_after is not None and decode_response(stored_after) == outcome


@fuzz_settings(40)
@given(raw=hostile_entries)
async def test_a_disk_cache_entry_is_a_hit_or_a_miss_whatever_it_holds(
    raw: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "cache.sqlite3"
    cache = DiskCache(path)
    server = Scripted(ok("fresh"))
    lm = server.lm(cache=cache)
    key = cache_key("openai", "m", lm.base_url, REQUEST)
    put_row(path, key, raw)
    async with lm:
        outcome = await call_through(lm)
    assert cache._conn is None  # closed with the LM
    check_lookup(raw, outcome, len(server.requests), get_row(path, key))
    if not getattr(outcome, "cached", True):
        assert isinstance(outcome, LMResponse) and outcome.text == "fresh"


@fuzz_settings(20)
@given(raw=hostile_entries)
async def test_a_redis_cache_entry_is_a_hit_or_a_miss_whatever_it_holds(
    raw: bytes, redis_url: str
) -> None:
    ns = namespace()
    async with serve_sim(SimConfig(latency=0.0)) as sim:
        async with td.LM(
            "openai/sim",
            base_url=sim.base_url,
            api_key="k",
            cache=td.RedisCache(redis_url, namespace=ns),
        ) as lm:
            key = cache_key("openai", "sim", lm.base_url, REQUEST)
            # The cache's own key for this request: the namespace, "cache", the LM's key.
            stored = f"{ns}:cache:{key}"
            async with RedisConnector(redis_url).client() as client:
                await client.set(stored, raw)
            outcome = await call_through(lm)
            async with RedisConnector(redis_url).client() as client:
                stored_after = await client.get(stored)
                # Nothing left open: no lock outlives the call.
                assert not await client.keys(f"{ns}:cache-lock:*")
                await client.delete([stored])
        model_calls = sim.stats.requests
    check_lookup(raw, outcome, model_calls, stored_after)


async def test_the_fuzzed_redis_key_is_the_one_the_cache_reads(redis_url: str) -> None:
    ns = namespace()
    async with serve_sim(SimConfig(latency=0.0)) as sim:
        async with td.LM(
            "openai/sim",
            base_url=sim.base_url,
            api_key="k",
            cache=td.RedisCache(redis_url, namespace=ns),
        ) as lm:
            key = cache_key("openai", "sim", lm.base_url, REQUEST)
            async with RedisConnector(redis_url).client() as client:
                await client.set(f"{ns}:cache:{key}", json.dumps(DOCUMENT))
            hit = await call_through(lm)
        assert sim.stats.requests == 0
    assert hit == td.lm.cache.as_cached(STORED)
