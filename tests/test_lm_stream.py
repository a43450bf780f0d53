"""LM.stream over real loopback HTTP against the simulated server's SSE answers.

Every test runs on the autojump clock: chunk delays, stalls and timeouts are
trio sleeps, so time is virtual and the comparisons of ``trio.current_time()``
below are exact, not timing measurements.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
import trio.testing

import trio_dspy as td
from trio_dspy.errors import LMServerError, LMTimeoutError
from trio_dspy.http.transport import H11Transport
from trio_dspy.lm import LM, LMRequest, Message, ToolSpec
from trio_dspy.lm.streaming import BUFFER
from trio_dspy.telemetry import InMemoryExporter, collect
from trio_dspy.testing import Fault, SimConfig, SimReply, SimServer, serve_sim
from trio_dspy.testing.sim_answers import SimToolCall

TEXT = "The quick brown fox jumps over the lazy dog, twice over."
ASK = LMRequest([Message("user", "tell me")])
PROVIDERS = ["openai", "anthropic"]


def config(**kw: Any) -> SimConfig:
    kw.setdefault("script", lambda body: SimReply(text=TEXT))
    kw.setdefault("stream_chunk_chars", 8)
    kw.setdefault("stream_delay", 0.5)
    return SimConfig(**kw)


def make_lm(sim: SimServer, provider: str = "openai", **kw: Any) -> LM:
    base = sim.base_url if provider == "openai" else sim.root_url
    kw.setdefault("max_retries", 2)
    return LM(f"{provider}/sim-model", base_url=base, **kw)


def pool(lm: LM) -> H11Transport:
    transport = lm._http._pools.get().transport
    assert isinstance(transport, H11Transport)
    return transport


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_text_arrives_in_pieces_before_the_completion_ends(
    autojump_clock: Any, provider: str
) -> None:
    async with serve_sim(config()) as sim, make_lm(sim, provider) as lm:
        start = trio.current_time()
        async with lm.stream(ASK) as stream:
            pieces: list[str] = []
            async for piece in stream:
                if not pieces:
                    first_at = trio.current_time()
                pieces.append(piece)
        end = trio.current_time()
    assert len(pieces) == 7 and all(pieces)
    assert "".join(pieces) == stream.response.text == TEXT
    # The first piece came within three chunk delays, the rest one by one after it.
    assert first_at - start <= 1.5 and end - first_at >= 3
    assert stream.response.finish_reason == "stop"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_tool_call_argument_pieces_are_assembled(autojump_clock: Any, provider: str) -> None:
    calls = [
        SimToolCall("lookup", {"item": "latte", "size": "large"}),
        SimToolCall("price", {"item": "mocha"}),
    ]
    script = config(script=lambda body: SimReply(tool_calls=calls), stream_chunk_chars=3)
    tools = (ToolSpec("lookup", "find an item", {"type": "object"}),)
    request = LMRequest([Message("user", "find a latte")], tools=tools)
    async with serve_sim(script) as sim, make_lm(sim, provider) as lm, lm.stream(request) as stream:
        pieces = [piece async for piece in stream]
    response = stream.response
    assert pieces == [] and response.text == ""
    assert [(c.name, json.loads(c.arguments)) for c in response.tool_calls] == [
        ("lookup", {"item": "latte", "size": "large"}),
        ("price", {"item": "mocha"}),
    ]
    assert all(c.id for c in response.tool_calls)
    assert response.finish_reason == "tool_calls"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_streamed_usage_reaches_track_usage_history_and_the_span(
    autojump_clock: Any, provider: str
) -> None:
    exporter = InMemoryExporter()
    async with serve_sim(config()) as sim, make_lm(sim, provider) as lm, collect(exporter):
        with td.track_usage() as usage:
            async with lm.stream(ASK) as stream:
                _ = [piece async for piece in stream]
    assert usage.completion_tokens == len(TEXT) // 4
    assert usage.prompt_tokens > 0
    assert usage.total_tokens == stream.response.usage.total_tokens
    assert lm.history[-1].response == stream.response
    (span,) = [s for s in exporter.spans if s.name == "chat sim-model"]
    assert span.attributes["gen_ai.request.stream"] is True
    assert span.attributes["gen_ai.usage.output_tokens"] == len(TEXT) // 4
    ttfc = span.attributes["gen_ai.response.time_to_first_chunk"]
    assert isinstance(ttfc, float) and ttfc >= 0


async def test_leaving_early_closes_the_connection_and_frees_the_slot(
    autojump_clock: Any,
) -> None:
    async with serve_sim(config()) as sim, make_lm(sim, max_concurrency=1) as lm:
        async with lm.stream(ASK) as stream:
            async for _ in stream:
                break  # one piece is enough
        assert pool(lm).connections_in_use == 0
        assert pool(lm).idle_connections == 0  # closed, not pooled
        await trio.sleep(5)  # the server notices at its next write
        assert sim.stats.streams_abandoned == 1
        # The only slot is free again: the next call goes through at once.
        with trio.fail_after(1):
            assert (await lm.request(ASK)).text == TEXT


async def test_a_stream_read_to_the_end_keeps_its_connection_for_reuse(
    autojump_clock: Any,
) -> None:
    async with serve_sim(config()) as sim, make_lm(sim) as lm:
        for _ in range(2):
            async with lm.stream(ASK) as stream:
                _ = [piece async for piece in stream]
        assert sim.http is not None and sim.http.connections_accepted == 1
    assert sim.stats.streams_abandoned == 0


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_reset_mid_stream_raises_its_typed_error_without_retrying(
    autojump_clock: Any, provider: str
) -> None:
    faults = [Fault("stream_reset", after=4)]
    async with serve_sim(config(faults=faults)) as sim, make_lm(sim, provider) as lm:
        pieces: list[str] = []
        with pytest.raises(LMServerError, match="could not get a response"):
            async with lm.stream(ASK) as stream:
                async for piece in stream:
                    pieces.append(piece)
    assert pieces  # the reader had some text: a retry would repeat it
    assert sim.stats.requests == 1
    assert not stream.finished


async def test_a_stall_mid_stream_times_out_after_read_timeout(autojump_clock: Any) -> None:
    faults = [Fault("stream_stall", after=3, stall=1000)]
    async with serve_sim(config(faults=faults)) as sim, make_lm(sim, read_timeout=7) as lm:
        with pytest.raises(LMTimeoutError, match="timed out"):
            async with lm.stream(ASK) as stream:
                async for _ in stream:
                    last_piece_at = trio.current_time()
        assert trio.current_time() - last_piece_at == pytest.approx(7, abs=0.5)
        assert sim.stats.requests == 1
        assert pool(lm).connections_in_use == 0


@pytest.mark.parametrize(
    ("fault", "requests"),
    [
        (Fault("server_error", first=2), 3),  # an error status, as for a whole call
        (Fault("stream_reset", after=1, first=1), 2),  # only the role chunk was sent
    ],
    ids=["error-status", "reset-before-text"],
)
async def test_a_failure_before_any_text_is_retried(
    autojump_clock: Any, fault: Fault, requests: int
) -> None:
    async with (
        serve_sim(config(faults=[fault])) as sim,
        make_lm(sim) as lm,
        lm.stream(ASK) as stream,
    ):
        text = "".join([piece async for piece in stream])
    assert text == TEXT
    assert sim.stats.requests == requests


async def test_attempt_timeout_bounds_the_first_event_not_a_long_stream(
    autojump_clock: Any,
) -> None:
    slow = config(stream_delay=3.0, stream_chunk_chars=2)  # 28 pieces, ~84 s in all
    async with serve_sim(slow) as sim, make_lm(sim, attempt_timeout=10) as lm:
        async with lm.stream(ASK) as stream:
            text = "".join([piece async for piece in stream])
        assert text == TEXT and sim.stats.requests == 1
    stalled = config(faults=[Fault("stall", first=1, stall=100)])
    async with serve_sim(stalled) as sim, make_lm(sim, attempt_timeout=10) as lm:
        async with lm.stream(ASK) as stream:
            text = "".join([piece async for piece in stream])
        assert text == TEXT and sim.stats.requests == 2  # the silent first attempt was retried


async def test_cancelled_from_outside_propagates_and_closes_the_connection(
    autojump_clock: Any,
) -> None:
    async with serve_sim(config()) as sim, make_lm(sim) as lm:
        with trio.move_on_after(1.2) as scope:
            async with lm.stream(ASK) as stream:
                async for _ in stream:
                    pass
        assert scope.cancelled_caught
        assert pool(lm).connections_in_use == 0 and pool(lm).idle_connections == 0
        await trio.sleep(5)
        assert sim.stats.streams_abandoned == 1
    assert len(lm.history) == 0  # nothing complete to record


async def test_an_error_raised_by_the_reader_comes_out_as_itself(autojump_clock: Any) -> None:
    async with serve_sim(config()) as sim, make_lm(sim) as lm:
        with pytest.raises(KeyError):
            async with lm.stream(ASK) as stream:
                async for _ in stream:
                    raise KeyError("reader")
        assert pool(lm).connections_in_use == 0


async def test_a_cached_stream_is_stored_once_complete_and_replayed_whole(
    autojump_clock: Any,
) -> None:
    async with serve_sim(config()) as sim, make_lm(sim, cache=True) as lm:
        async with lm.stream(ASK) as first:
            streamed = [piece async for piece in first]
        async with lm.stream(ASK) as second:
            replayed = [piece async for piece in second]
    assert len(streamed) > 1 and replayed == [TEXT]
    assert second.response.cached and not first.response.cached
    assert sim.stats.requests == 1


async def test_tpm_settles_with_the_streamed_usage(autojump_clock: Any) -> None:
    # No chunk delay: no time passes, so the bucket has not refilled at all.
    async with serve_sim(config(stream_delay=0)) as sim, make_lm(sim, tpm=100_000) as lm:
        async with lm.stream(ASK) as stream:
            _ = [piece async for piece in stream]
        bucket = lm.limits._state.get().tokens
        assert bucket is not None
        spent = stream.response.usage.total_tokens
        assert bucket.capacity - bucket.level == pytest.approx(spent, abs=2)


async def test_a_slow_reader_holds_back_the_reading(autojump_clock: Any) -> None:
    long_text = "word " * 400  # 250 pieces of 8 characters, sent without delay
    fast = config(script=lambda body: SimReply(text=long_text), stream_delay=0)
    async with serve_sim(fast) as sim, make_lm(sim) as lm, lm.stream(ASK) as stream:
        pieces = [await stream.__anext__()]
        await trio.sleep(100)  # the reader dawdles; the producer must wait
        assert not stream.finished
        deltas = stream._deltas
        assert isinstance(deltas, trio.MemoryReceiveChannel)
        assert deltas.statistics().current_buffer_used <= BUFFER
        pieces += [piece async for piece in stream]
    assert "".join(pieces) == long_text


async def test_timeout_bounds_the_whole_stream(autojump_clock: Any) -> None:
    async with serve_sim(config()) as sim, make_lm(sim, timeout=2) as lm:
        with pytest.raises(LMTimeoutError, match="no response within 2 s"):
            async with lm.stream(ASK) as stream:
                async for _ in stream:
                    pass


async def test_streaming_a_cached_answer_is_still_a_checkpoint(autojump_clock: Any) -> None:
    async with serve_sim(config()) as sim, make_lm(sim, cache=True) as lm:
        async with lm.stream(ASK) as stream:
            _ = [piece async for piece in stream]
        with trio.testing.assert_checkpoints():
            async with lm.stream(ASK) as stream:
                pass
