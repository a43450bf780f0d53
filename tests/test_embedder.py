"""td.Embedder: hosted embeddings over the simulated server and a mock transport, and functions."""

from __future__ import annotations

import json
import math
import threading
from typing import Any

import httpx
import pytest
import structlog
import trio

import trio_dspy as td
from trio_dspy.errors import (
    ConfigurationError,
    LMAuthError,
    LMBadRequestError,
    LMServerError,
    TrioDSPyError,
)
from trio_dspy.telemetry import InMemoryExporter, SpanKind, collect
from trio_dspy.testing import Fault, SimConfig, serve_sim
from trio_dspy.testing.sim_embeddings import embed_text
from trio_dspy.vectors import VectorizerError, dot

KEY = "sk-embed-very-secret-key-456"


def embeddings(vectors: list[Any], *, order: list[int] | None = None) -> dict[str, Any]:
    """An OpenAI embeddings response body (items in ``order``, each with its index)."""
    order = list(range(len(vectors))) if order is None else order
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": vectors[i]} for i in order],
        "model": "emb-1",
        "usage": {"prompt_tokens": 7, "total_tokens": 7},
    }


def mock(*bodies: bytes | dict[str, Any], status: int = 200, **kw: Any) -> td.Embedder:
    """An embedder whose requests get ``bodies`` in turn (the last repeats)."""
    replies = list(bodies)
    sent: list[dict[str, Any]] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        body = replies.pop(0) if len(replies) > 1 else replies[0]
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.Response(status, content=content, headers={"content-type": "application/json"})

    embedder = td.Embedder(
        "openai/emb",
        base_url="http://emb.test/v1",
        api_key=KEY,
        transport=httpx.MockTransport(handler),
        **kw,
    )
    embedder.sent = sent  # type: ignore[attr-defined]
    return embedder


# ------------------------------------------------------------------ the simulated server
async def test_the_simulated_server_puts_texts_sharing_words_near_each_other() -> None:
    async with serve_sim() as sim:
        embedder = td.Embedder("openai/emb", base_url=sim.base_url, api_key="x")
        cats, kittens, stocks = await embedder(
            ["cats eat fish", "the cats eat", "stock market prices fell"]
        )
        again = await embedder("cats eat fish")
    assert len(cats) == 64 and math.isclose(dot(cats, cats), 1.0)
    assert dot(cats, kittens) > 0.5 > dot(cats, stocks)
    assert again == cats == embed_text("cats eat fish")


async def test_the_simulated_server_serves_the_dimensions_asked_for() -> None:
    async with serve_sim(SimConfig(embedding_dimensions=16)) as sim:
        embedder = td.Embedder("openai/emb", base_url=sim.base_url, api_key="x")
        assert len(await embedder("a b c")) == 16
        assert len(await embedder("a b c", dimensions=8)) == 8
        fixed = td.Embedder("openai/emb", base_url=sim.base_url, api_key="x", dimensions=32)
        assert len(await fixed("a b c")) == 32
        assert sim.requests[-1]["dimensions"] == 32


async def test_the_simulated_server_refuses_a_missing_key() -> None:
    async with serve_sim(SimConfig(api_key=KEY)) as sim:
        embedder = td.Embedder("openai/emb", base_url=sim.base_url, api_key="sk-wrong")
        with pytest.raises(LMAuthError) as info:
            await embedder(["hi"])
    assert "sk-wrong" not in str(info.value)


# ------------------------------------------------------------------ batching and order
async def test_450_texts_in_batches_of_200_make_three_concurrent_requests(
    autojump_clock: trio.abc.Clock,
) -> None:
    texts = [f"text number {i}" for i in range(450)]
    async with serve_sim(SimConfig(latency=1.0)) as sim:
        embedder = td.Embedder("openai/emb", base_url=sim.base_url, api_key="x")
        start = trio.current_time()
        vectors = await embedder(texts)
        elapsed = trio.current_time() - start
    assert sorted(len(r["input"]) for r in sim.requests) == [50, 200, 200]
    assert sim.stats.max_in_flight == 3 and elapsed < 1.5
    assert vectors == [embed_text(t) for t in texts]


async def test_max_concurrency_bounds_the_batches_in_flight(autojump_clock: trio.abc.Clock) -> None:
    async with serve_sim(SimConfig(latency=1.0)) as sim:
        embedder = td.Embedder(
            "openai/emb", base_url=sim.base_url, api_key="x", batch_size=10, max_concurrency=2
        )
        await embedder([str(i) for i in range(100)], batch_size=20)
    assert sim.stats.requests == 5 and sim.stats.max_in_flight == 2


async def test_vectors_follow_their_index_not_their_place_in_the_answer() -> None:
    vectors = [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]
    embedder = mock(embeddings(vectors, order=[2, 0, 1]))
    assert await embedder(["a", "b", "c"]) == vectors


async def test_a_single_string_gives_one_vector_and_no_texts_no_request() -> None:
    embedder = mock(embeddings([[0.25, 0.75]]))
    assert await embedder("one") == [0.25, 0.75]
    assert await embedder([]) == []
    assert embedder.sent == [  # type: ignore[attr-defined]
        {"model": "emb", "input": ["one"]}
    ]


async def test_lone_surrogates_are_sent_as_replacement_characters() -> None:
    embedder = mock(embeddings([[1.0]]))
    await embedder(["a\ud800b"])
    assert embedder.sent[0]["input"] == ["a\ufffdb"]  # type: ignore[attr-defined]


# ------------------------------------------------------------------ failures
async def test_rate_limits_and_server_errors_are_retried(autojump_clock: trio.abc.Clock) -> None:
    faults = [Fault("rate_limit", first=1, retry_after=2.0), Fault("server_error", first=2)]
    async with serve_sim(SimConfig(faults=faults)) as sim:
        embedder = td.Embedder("openai/emb", base_url=sim.base_url, api_key="x")
        assert await embedder("cats") == embed_text("cats")
    assert sim.stats.faults == {"rate_limit": 1, "server_error": 1}
    assert sim.stats.requests == 3


async def test_a_server_error_that_persists_is_an_lm_server_error(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with serve_sim(SimConfig(faults=[Fault("unavailable")])) as sim:
        embedder = td.Embedder("openai/emb", base_url=sim.base_url, api_key="x", max_retries=2)
        with pytest.raises(LMServerError, match="HTTP 503"):
            await embedder("cats")
    assert sim.stats.requests == 3


async def test_an_answer_missing_a_vector_is_refused(autojump_clock: trio.abc.Clock) -> None:
    async with serve_sim(SimConfig(faults=[Fault("truncate")])) as sim:
        embedder = td.Embedder("openai/emb", base_url=sim.base_url, api_key="x")
        with pytest.raises(LMServerError, match=r"one embedding per text \(3\)"):
            await embedder(["a", "b", "c"])


async def test_a_cut_off_answer_is_retried(autojump_clock: trio.abc.Clock) -> None:
    async with serve_sim(SimConfig(faults=[Fault("malformed", first=1)])) as sim:
        embedder = td.Embedder("openai/emb", base_url=sim.base_url, api_key="x")
        assert await embedder(["a b"]) == [embed_text("a b")]
    assert sim.stats.requests == 2


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (embeddings([[1.0]]), r"one embedding per text \(2\)"),
        (embeddings([[1.0], [1.0]], order=[0, 0]), r"data\[\]\.index"),
        (b'{"data": [{"index": 0, "embedding": [NaN]}, {"index": 1, "embedding": [1]}]}', "NaN"),
        (b'{"data": [{"index": 0, "embedding": [1e400]}, {"index": 1, "embedding": [1]}]}', "inf"),
        (embeddings([[1.0], ["1"]]), r"data\[1\]\.embedding\[0\]='1' where a finite number"),
        (embeddings([[1.0], [True]]), r"data\[1\]\.embedding\[0\]=True"),
        (embeddings([[1.0, 2.0], [1.0]]), "2 like the first"),
        (embeddings([[1.0], []]), r"data\[1\]\.embedding=\[\]"),
        (embeddings([[1.0], "AAAA"]), "encoding_format 'float'"),
        (b'{"data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
        (b'{"data": {"0": [1.0]}}', "a list of embedding objects"),
        (b"[1, 2]", "not in the openai format"),
    ],
)
async def test_a_malformed_answer_is_a_typed_error(body: Any, match: str) -> None:
    embedder = mock(body, max_retries=0)
    with pytest.raises(LMServerError, match=match):
        await embedder(["a", "b"])


async def test_a_refused_request_is_a_bad_request_error() -> None:
    error = {"error": {"message": "input too long", "type": "invalid_request_error"}}
    embedder = mock(error, status=400)
    with pytest.raises(LMBadRequestError, match="input too long"):
        await embedder(["a"])


async def test_the_key_never_reaches_reprs_logs_spans_or_errors(
    autojump_clock: trio.abc.Clock,
) -> None:
    exporter = InMemoryExporter()
    leak = {"error": {"message": f"rate limited for {KEY}", "type": "requests"}}
    embedder = mock(leak, embeddings([[1.0]]), status=429, max_retries=1)
    with structlog.testing.capture_logs() as logs, pytest.raises(TrioDSPyError) as info:
        async with collect(exporter):
            await embedder("a")
    assert any(entry["event"] == "lm.retry" for entry in logs)
    shown = [repr(embedder), repr(embedder.client), repr(logs), str(info.value)]
    shown += [repr(s.attributes) for s in exporter.spans]
    assert not [text for text in shown if KEY in text]


# ------------------------------------------------------------------ usage and telemetry
async def test_usage_is_counted_per_request() -> None:
    async with serve_sim() as sim:
        embedder = td.Embedder("openai/emb", base_url=sim.base_url, api_key="x", batch_size=2)
        with td.track_usage() as usage:
            await embedder(["a" * 40, "b" * 40, "c" * 80])
    assert (usage.prompt_tokens, usage.total_tokens, usage.requests) == (40, 40, 2)


async def test_each_request_is_an_embeddings_client_span() -> None:
    exporter = InMemoryExporter()
    async with serve_sim() as sim, collect(exporter):
        embedder = td.Embedder("openai/emb", base_url=sim.base_url, api_key="x", batch_size=2)
        await embedder(["a b", "c", "d"])
    spans = [s for s in exporter.spans if s.name == "embeddings emb"]
    assert len(spans) == 2 and all(s.kind == SpanKind.CLIENT for s in spans)
    attributes = spans[0].attributes
    assert attributes["gen_ai.operation.name"] == "embeddings"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.request.model"] == "emb"
    assert attributes["gen_ai.embeddings.dimension.count"] == 64
    assert attributes["server.port"] == sim.port
    assert sorted(int(str(s.attributes["gen_ai.usage.input_tokens"])) for s in spans) == [1, 2]


# ------------------------------------------------------------------ functions
async def test_a_sync_function_embeds_one_batch_at_a_time_off_the_event_loop() -> None:
    running: list[int] = []
    threads: set[int] = set()
    loop = threading.get_ident()

    def encode(texts: list[str], *, scale: float) -> list[list[float]]:
        running.append(len(running))
        threads.add(threading.get_ident())
        return [[scale * len(t), 1.0] for t in texts]

    embedder = td.Embedder(encode, batch_size=2, scale=2.0)
    assert await embedder(["a", "bb", "ccc"]) == [[2.0, 1.0], [4.0, 1.0], [6.0, 1.0]]
    assert len(running) == 2 and loop not in threads


async def test_an_async_function_runs_its_batches_at_once(autojump_clock: trio.abc.Clock) -> None:
    async def encode(texts: list[str]) -> list[list[float]]:
        await trio.sleep(1)
        return [[float(len(t))] for t in texts]

    embedder = td.Embedder(encode, batch_size=1)
    start = trio.current_time()
    assert await embedder.acall(["a", "bb", "ccc"]) == [[1.0], [2.0], [3.0]]
    assert trio.current_time() - start < 1.5


@pytest.mark.parametrize(
    "answer",
    [[[1.0]], [[1.0], [math.nan]], [[1.0], "x"], 3, [[1.0], [1.0, 2.0]]],
)
async def test_a_function_answer_that_is_not_one_finite_vector_per_text_is_refused(
    answer: Any,
) -> None:
    embedder = td.Embedder(lambda texts: answer)
    with pytest.raises(VectorizerError):
        await embedder(["a", "b"])


async def test_batches_of_different_lengths_are_refused() -> None:
    embedder = td.Embedder(lambda texts: [[1.0] * len(texts[0])] * len(texts), batch_size=1)
    with pytest.raises(VectorizerError, match="different lengths"):
        await embedder(["a", "bb"])


# ------------------------------------------------------------------ construction
def test_wrong_arguments_are_refused_with_the_fix() -> None:
    with pytest.raises(ConfigurationError, match="serve no embeddings"):
        td.Embedder("anthropic/claude", api_key="x")
    with pytest.raises(TypeError, match="did you mean 'max_concurrency'"):
        td.Embedder("openai/emb", api_key="x", max_concurency=2)
    with pytest.raises(TypeError, match="'max_retries' here"):
        td.Embedder("openai/emb", api_key="x", num_retries=2)
    with pytest.raises(TypeError, match="hosted model"):
        td.Embedder(lambda texts: texts, base_url="http://x")
    with pytest.raises(TypeError, match="function"):
        td.Embedder(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size"):
        td.Embedder("openai/emb", api_key="x", batch_size=0)


async def test_wrong_call_arguments_are_refused() -> None:
    embedder = mock(embeddings([[1.0]]))
    with pytest.raises(TypeError, match="input 1 is int"):
        await embedder(["a", 2])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="belong to Embedder"):
        await embedder(["a"], max_retries=3)
    with pytest.raises(ValueError, match="batch_size"):
        await embedder(["a"], batch_size=0)
    assert embedder.sent == []  # type: ignore[attr-defined]


# ------------------------------------------------------------------ cache
async def test_cached_texts_are_not_sent_again_and_cost_nothing() -> None:
    async with serve_sim() as sim:
        embedder = td.Embedder("openai/emb", base_url=sim.base_url, api_key="x", cache=True)
        first = await embedder(["cats eat", "dogs run"])
        with td.track_usage() as usage:
            second = await embedder(["dogs run", "fish swim", "cats eat"])
            again = await embedder("fish swim")
    assert [r["input"] for r in sim.requests] == [["cats eat", "dogs run"], ["fish swim"]]
    assert second == [first[1], embed_text("fish swim"), first[0]] and again == second[1]
    assert (usage.prompt_tokens, usage.requests) == (2, 1)


async def test_the_request_fields_are_part_of_the_cache_key() -> None:
    async with serve_sim() as sim:
        embedder = td.Embedder("openai/emb", base_url=sim.base_url, api_key="x", cache=True)
        assert len(await embedder("a", dimensions=8)) == 8
        assert len(await embedder("a", dimensions=16)) == 16
        assert len(await embedder("a", dimensions=8)) == 8
    assert sim.stats.embeddings == 2


async def test_a_disk_cache_outlives_the_embedder(tmp_path: Any) -> None:
    path = tmp_path / "embeddings.sqlite3"
    async with serve_sim() as sim:
        for _ in range(2):
            async with td.Embedder(
                "openai/emb", base_url=sim.base_url, api_key="x", cache=path
            ) as embedder:
                assert await embedder(["a b", "c"]) == [embed_text("a b"), embed_text("c")]
    assert sim.stats.embeddings == 1


async def test_a_poisoned_cache_entry_is_a_miss() -> None:
    class Poisoned(td.lm.MemoryCache):
        async def get(self, key: str) -> td.LMResponse | None:
            await trio.lowlevel.checkpoint()
            return td.LMResponse(text=next(garbage))

    garbage = iter(["[NaN]", "not json", '{"a": 1}', "[[1.0]]", "[]", "[" * 10_000])
    async with serve_sim() as sim:
        embedder = td.Embedder("openai/emb", base_url=sim.base_url, api_key="x", cache=Poisoned())
        texts = [f"text {i}" for i in range(6)]
        with structlog.testing.capture_logs() as logs:
            assert await embedder(texts) == [embed_text(t) for t in texts]
    assert sim.requests[0]["input"] == texts
    assert sum(e["event"] == "embeddings.cache_entry_unreadable" for e in logs) == 6


async def test_a_failing_cache_does_not_fail_the_call() -> None:
    class Broken(td.lm.MemoryCache):
        async def get(self, key: str) -> td.LMResponse | None:
            raise OSError("disk gone")

        async def put(self, key: str, response: td.LMResponse) -> None:
            raise OSError("disk gone")

    async with serve_sim() as sim:
        embedder = td.Embedder("openai/emb", base_url=sim.base_url, api_key="x", cache=Broken())
        assert await embedder("a") == embed_text("a")


async def test_a_cancelled_call_gives_back_its_slots(autojump_clock: trio.abc.Clock) -> None:
    async with serve_sim(SimConfig(latency=1.0)) as sim:
        embedder = td.Embedder(
            "openai/emb", base_url=sim.base_url, api_key="x", batch_size=1, max_concurrency=2
        )
        with trio.move_on_after(0.5):
            await embedder(["a", "b", "c", "d"])
        assert await embedder(["e", "f"]) == [embed_text("e"), embed_text("f")]
        assert sim.stats.in_flight == 0


async def test_a_stalled_server_times_out_within_the_embedder_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with serve_sim(SimConfig(faults=[Fault("stall", stall=100.0)])) as sim:
        embedder = td.Embedder("openai/emb", base_url=sim.base_url, api_key="x", timeout=30)
        start = trio.current_time()
        with pytest.raises(td.errors.LMTimeoutError, match="within 30 s"):
            await embedder(["a"])
    assert trio.current_time() - start == pytest.approx(30)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "m", "input": [1, 2]}, "a list of strings"),
        ({"model": "m", "input": []}, "1 to 2048 texts"),
        ({"model": "m", "input": "a", "dimensions": 0}, "`dimensions`"),
        ({"model": "m", "input": "a", "encoding_format": "base64"}, "'float'"),
    ],
)
async def test_the_simulated_server_refuses_a_bad_embeddings_request(
    body: dict[str, Any], message: str
) -> None:
    async with serve_sim() as sim, httpx.AsyncClient() as client:
        reply = await client.post(f"{sim.base_url}/embeddings", json=body)
    assert reply.status_code == 400 and message in reply.json()["error"]["message"]
    assert sim.stats.errors == 1 and sim.stats.ok == 0
