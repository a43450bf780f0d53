"""Fuzzing what an embeddings server sends: every answer ends in vectors or a typed error.

Hostile bodies are built from a valid embeddings response with
``mutated(...)`` / ``mutated_numbers(...)`` (``tests/hostile.py``). Each
example must end, within bounded virtual and real time, either in one
finite vector per text, all of one length, or in one of ``td.errors``'
types, with the limiter's slot given back.
"""

from __future__ import annotations

import math
import time
from typing import Any
from unittest import mock

import httpx
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

import trio_dspy as td
from trio_dspy.errors import TrioDSPyError
from trio_dspy.lm import params

from .hostile import fuzz_settings, mutated, mutated_numbers

WALL_BOUND = 5.0
VIRTUAL_BOUND = 600.0
TEXTS = ["first text", "second text"]
BODY: dict[str, Any] = {
    "object": "list",
    "data": [
        {"object": "embedding", "index": 1, "embedding": [0.5, -0.25, 1.0]},
        {"object": "embedding", "index": 0, "embedding": [0.0, 1, 2.5e-3]},
    ],
    "model": "emb-1",
    "usage": {"prompt_tokens": 4, "total_tokens": 4},
}


@fuzz_settings(80)
@given(st.one_of(mutated(BODY), mutated_numbers(BODY)), st.sampled_from([200, 200, 429, 500]))
def test_a_hostile_embeddings_answer_ends_in_vectors_or_a_typed_error(
    body: bytes, status: int
) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"content-type": "application/json"})

    embedder = td.Embedder(
        "openai/emb",
        base_url="http://emb.test/v1",
        api_key="sk-fuzz",
        transport=httpx.MockTransport(handle),
        max_retries=1,
        max_concurrency=1,
    )
    assert embedder.client is not None
    lm = embedder.client.lm

    async def main() -> None:
        with trio.fail_after(VIRTUAL_BOUND):
            try:
                vectors = await embedder(TEXTS)
            except TrioDSPyError as error:
                str(error).encode("utf-8")  # a log line or a span can take it
            else:
                assert len(vectors) == len(TEXTS)
                assert len({len(v) for v in vectors}) == 1
                assert all(type(x) is float and math.isfinite(x) for v in vectors for x in v)
            slots = lm.limits._state.get().slots
            assert slots is not None and slots.value == 1
        await embedder.aclose()

    start = time.monotonic()
    clock = trio.testing.MockClock(autojump_threshold=0)
    # Large bodies decoded on the event loop: the autojump clock would otherwise
    # jump to the bound while a worker thread decodes.
    with mock.patch.object(params, "_THREAD_THRESHOLD", 1 << 62):
        trio.run(main, clock=clock)
    assert time.monotonic() - start < WALL_BOUND
