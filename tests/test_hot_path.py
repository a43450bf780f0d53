"""The shortcuts of a call's common case read what the long way reads."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio

import trio_dspy as td
from trio_dspy.http import Reply
from trio_dspy.http.connection import valid_headers
from trio_dspy.lm.openai_stream import openai_usage
from trio_dspy.lm.params import MAX_TOKEN_COUNT, token_count
from trio_dspy.messages import LMRequest, LMResponse
from trio_dspy.primitives import Usage
from trio_dspy.telemetry import collect
from trio_dspy.telemetry.span import recording
from trio_dspy.testing import DummyLM


def test_a_header_read_from_raw_lines_is_the_first_line_of_its_name() -> None:
    reply = Reply(200, [(b"x-a", b"1"), (b"content-encoding", b"gzip"), (b"x-a", b"2")], b"")
    assert reply.header("x-a") == "1"
    assert reply.header("content-encoding") == "gzip"
    assert reply.header("x-missing") is None
    assert reply.headers.get_list("x-a") == ["1", "2"]


def test_a_bad_header_is_refused_even_beside_lines_already_checked() -> None:
    good = [(b"host", b"example.com"), (b"content-type", b"application/json")]
    assert valid_headers(good) is good
    assert valid_headers(tuple(good)) == good
    with pytest.raises(httpx.LocalProtocolError):
        valid_headers([*good, (b"x-evil", b"a\r\nb")])
    with pytest.raises(httpx.LocalProtocolError):
        valid_headers([*good, (b"bad name", b"v")])


def test_a_content_length_line_is_checked_unless_it_is_all_digits() -> None:
    host = (b"host", b"example.com")
    assert valid_headers([host, (b"content-length", b"123")]) == [host, (b"content-length", b"123")]
    for value in (b"1\r\nx-evil: 1", b"12 \x00", b" 12"):
        with pytest.raises(httpx.LocalProtocolError):
            valid_headers([host, (b"content-length", value)])


def _long_way(usage: Any) -> Usage:
    usage = usage if isinstance(usage, dict) else {}
    prompt = token_count(usage.get("prompt_tokens"))
    completion = token_count(usage.get("completion_tokens"))
    total = token_count(usage.get("total_tokens")) or prompt + completion
    cost = usage.get("cost")
    known = isinstance(cost, (int, float)) and not isinstance(cost, bool) and 0 <= cost <= 1e6
    return Usage(prompt, completion, total, cost=float(cost) if known else None)


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 0},
        {"prompt_tokens": 10, "completion_tokens": 5},
        {"prompt_tokens": -1, "completion_tokens": 5, "total_tokens": 4},
        {"prompt_tokens": MAX_TOKEN_COUNT + 1, "completion_tokens": 5, "total_tokens": 9},
        {"prompt_tokens": True, "completion_tokens": 5, "total_tokens": 6},
        {"prompt_tokens": "10", "completion_tokens": 5.0, "total_tokens": 15},
        {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2, "cost": 0.25},
        {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2, "cost": float("nan")},
        None,
        [],
    ],
)
def test_usage_read_the_short_way_is_usage_read_the_long_way(usage: Any) -> None:
    read, expected = openai_usage(usage), _long_way(usage)
    assert read == expected
    assert read.cost == expected.cost


async def test_spans_are_recorded_only_inside_a_collector() -> None:
    assert not recording()
    async with collect():
        assert recording()
    assert not recording()


class _CountingLM(DummyLM):
    """A model that defines its own request, as a wrapper of models does."""

    asked = 0

    async def request(self, request: LMRequest, *, trace_content: bool = False) -> LMResponse:
        type(self).asked += 1
        return await super().request(request, trace_content=trace_content)


async def test_a_model_that_defines_its_own_request_is_asked_through_it() -> None:
    lm = _CountingLM([{"answer": "4"}], cycle=True)
    qa = td.Predict("question -> answer")
    qa.lm = lm
    assert (await qa(question="2+2?")).answer == "4"
    assert _CountingLM.asked == 1
    assert len(lm.history) == 1


async def test_a_predict_called_in_a_cancelled_scope_asks_no_model() -> None:
    lm = DummyLM([{"answer": "4"}], cycle=True)
    qa = td.Predict("question -> answer")
    qa.lm = lm
    with trio.CancelScope() as scope:
        scope.cancel()
        await qa(question="2+2?")
    assert scope.cancelled_caught
    assert len(lm.history) == 0
