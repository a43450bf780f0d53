"""Fuzzing what a client sends to a served program: bodies and headers.

Each request body is a valid one mutated (``tests/hostile.py``): a value
replaced by a hostile one (numbers ``int()`` cannot take, deep nesting, lone
surrogates, values of the wrong type), the body cut anywhere or spoiled with
invalid UTF-8. Each must be answered 200 or a 4xx that names the problem
(never a 500: bad input is the client's error), as UTF-8 JSON, in bounded
time, with the program's slot given back.
"""

from __future__ import annotations

import json
import time

import trio
from hypothesis import given
from hypothesis import strategies as st

import trio_dspy as td
from trio_dspy.testing import DummyLM

from .asgi_client import request
from .hostile import fuzz_settings, hostile_strings, mutated

BODY = {"request": "two lattes", "size": "large", "shots": 2, "notes": ["oat", "hot"]}
ANSWER = {"drinks": ["latte"], "reply": "ok"}
WALL_BOUND = 5.0


def _app() -> td.serving.ServingApp:
    sig = td.make_signature(
        "request: str, size: Literal['small', 'large'], shots: int, notes: list[str] "
        "-> drinks: list[str], reply: str"
    )
    return td.serving.app({"order": td.Predict(sig)}, max_concurrency=1, max_body_bytes=50_000)


APP = _app()


async def _send(body: bytes, headers: dict[str, str] | None = None) -> None:
    start = time.monotonic()
    with trio.fail_after(60), td.context(lm=DummyLM([ANSWER], cycle=True)):
        response = await request(APP, "POST", "/programs/order", content=body, headers=headers)
    assert time.monotonic() - start < WALL_BOUND
    assert response.status in (200, 400, 413, 422), response.body[:300]
    decoded = json.loads(response.body.decode("utf-8"))  # strict UTF-8: no lone surrogate
    if response.status != 200:
        assert decoded["error"]["type"] and decoded["error"]["message"]
    assert APP.in_flight == 0


@fuzz_settings(60)
@given(body=mutated(BODY))
async def test_a_mutated_body_is_answered_200_or_a_named_4xx(body: bytes) -> None:
    await _send(body)


@fuzz_settings(30)
@given(seconds=st.one_of(st.text(max_size=30), hostile_strings), rid=st.text(max_size=80))
async def test_hostile_timeout_and_request_id_headers_are_answered_not_crashed_on(
    seconds: str, rid: str
) -> None:
    headers = {
        "x-request-timeout": seconds.encode("utf-8", "replace").decode("latin-1"),
        "x-request-id": rid.encode("utf-8", "replace").decode("latin-1"),
    }
    await _send(json.dumps(BODY).encode(), headers)
