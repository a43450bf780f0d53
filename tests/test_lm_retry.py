"""Retries, backoff, Retry-After, timeouts, cancellation and error mapping."""

from __future__ import annotations

import email.utils
import time
from typing import Any, cast

import httpx
import pytest
import trio

from trio_dspy.errors import (
    ContextWindowExceededError,
    LMAuthError,
    LMBadRequestError,
    LMError,
    LMRateLimitError,
    LMServerError,
    LMTimeoutError,
)
from trio_dspy.lm import Backoff, LMRequest, Message
from trio_dspy.lm.errors import ErrorBody, parse_retry_after, read_error_body

from .test_lm_support import KEY, Scripted, error, ok

REQUEST = LMRequest([Message("user", "hi")])


def stall(seconds: float, then: httpx.Response | None = None) -> Any:
    async def reply(request: httpx.Request) -> httpx.Response:
        await trio.sleep(seconds)
        return then or ok()

    return reply


# ------------------------------------------------------------------ pure helpers
def test_retry_after_forms() -> None:
    assert parse_retry_after(httpx.Headers({"retry-after": "3"})) == 3.0
    assert parse_retry_after(httpx.Headers({"Retry-After": "1.5"})) == 1.5
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "250", "retry-after": "9"})) == 0.25
    assert parse_retry_after(httpx.Headers({})) is None
    assert parse_retry_after(httpx.Headers({"retry-after": "soon"})) is None
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (parse_retry_after(httpx.Headers({"retry-after": date})) or 0) <= 31
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert parse_retry_after(httpx.Headers({"retry-after": past})) == 0.0


def test_full_jitter_stays_within_the_exponential_envelope() -> None:
    backoff = Backoff(base=0.5, cap=4.0)
    for retry, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (6, 4.0)]:
        # Without a Retry-After the backoff never gives up: always a float.
        delays = [cast(float, backoff.delay(retry)) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2  # really spread over the range, not fixed
    assert backoff.delay(0, retry_after=7.0) == 7.0
    assert Backoff(max_retry_after=10).delay(0, retry_after=11.0) is None


def test_error_body_understands_common_shapes() -> None:
    assert read_error_body({"error": {"message": "bad", "code": "x"}}, "raw") == ErrorBody(
        "bad", "x"
    )
    assert read_error_body({"error": "plain"}, "raw") == ErrorBody("plain")
    vllm = {"object": "error", "message": "vllm says"}
    assert read_error_body(vllm, "raw") == ErrorBody("vllm says")
    assert read_error_body({"detail": "fastapi says"}, "raw") == ErrorBody("fastapi says")
    assert read_error_body(None, "raw text") == ErrorBody("raw text")
    assert read_error_body({"error": {"message": ""}}, "raw") == ErrorBody("raw")


def test_error_body_reads_the_code_and_blamed_parameter() -> None:
    openai = {
        "error": {"message": "m", "type": "invalid_request_error", "param": "tools", "code": "x"}
    }
    assert read_error_body(openai, "raw") == ErrorBody("m", "x", "tools")
    untyped = {"error": {"message": "m", "type": "invalid_request_error", "param": None}}
    assert read_error_body(untyped, "raw") == ErrorBody("m", "invalid_request_error")
    anthropic = {"type": "error", "error": {"type": "overloaded_error", "message": "m"}}
    assert read_error_body(anthropic, "raw") == ErrorBody("m", "overloaded_error")
    vllm = {"object": "error", "message": "m", "type": "BadRequestError", "param": "n", "code": 400}
    assert read_error_body(vllm, "raw") == ErrorBody("m", "400", "n")


# ------------------------------------------------------------------ retries
async def test_429_with_retry_after_is_retried_after_exactly_that_long(autojump_clock: Any) -> None:
    server = Scripted(error(429, "slow down", **{"retry-after": "2"}), ok("done"))
    seen: list[tuple[int, float, LMError]] = []
    lm = server.lm(on_retry=lambda attempt, delay, err: seen.append((attempt, delay, err)))
    start = trio.current_time()
    response = await lm.request(REQUEST)
    assert response.text == "done"
    assert trio.current_time() - start == pytest.approx(2.0)
    assert [(a, d) for a, d, _ in seen] == [(1, 2.0)]
    assert isinstance(seen[0][2], LMRateLimitError)


async def test_retry_after_ms_wins_over_retry_after(autojump_clock: Any) -> None:
    headers = {"retry-after": "5", "retry-after-ms": "300"}
    server = Scripted(error(429, "slow down", **headers), ok())
    start = trio.current_time()
    await server.lm().request(REQUEST)
    assert trio.current_time() - start == pytest.approx(0.3)


async def test_persistent_429_raises_rate_limit_error_after_max_retries(
    autojump_clock: Any,
) -> None:
    server = Scripted(error(429, "Rate limit reached for gpt", **{"retry-after": "1"}))
    with pytest.raises(LMRateLimitError) as info:
        await server.lm(max_retries=3).request(REQUEST)
    assert len(server.requests) == 4
    err = info.value
    assert err.retry_after == 1.0 and err.status_code == 429
    assert "Rate limit reached for gpt" in str(err) and "3 retries" in str(err)
    assert (err.provider, err.model) == ("openai", "m")


@pytest.mark.parametrize("status", [408, 409, 500, 502, 503, 504])
async def test_transient_statuses_are_retried(autojump_clock: Any, status: int) -> None:
    server = Scripted(error(status, "temporary"), error(status, "temporary"), ok("done"))
    assert (await server.lm().request(REQUEST)).text == "done"
    assert len(server.requests) == 3


async def test_backoff_grows_exponentially_with_jitter(autojump_clock: Any) -> None:
    server = Scripted(error(500, "down"))
    delays: list[float] = []
    lm = server.lm(max_retries=4, backoff=Backoff(base=1.0, cap=100.0))
    lm.on_retry = lambda attempt, delay, err: delays.append(delay)
    with pytest.raises(LMServerError, match="kept failing after 4 retries"):
        await lm.request(REQUEST)
    assert len(delays) == 4
    assert all(0 <= d <= 2**i for i, d in enumerate(delays))


@pytest.mark.parametrize(
    "failure",
    [httpx.ConnectError("refused"), httpx.ReadError("reset"), httpx.RemoteProtocolError("eof")],
)
async def test_connection_failures_are_retried(autojump_clock: Any, failure: Exception) -> None:
    server = Scripted(failure, ok("back"))
    assert (await server.lm().request(REQUEST)).text == "back"


async def test_connection_failures_after_retries_are_server_errors(autojump_clock: Any) -> None:
    server = Scripted(httpx.ConnectError("connection refused"))
    with pytest.raises(LMServerError, match="could not get a response from sim.test:80"):
        await server.lm(max_retries=2).request(REQUEST)
    assert len(server.requests) == 3


async def test_read_timeouts_are_retried_then_reported(autojump_clock: Any) -> None:
    server = Scripted(httpx.ReadTimeout("read timed out"), httpx.ReadTimeout("again"))
    with pytest.raises(LMTimeoutError, match="timed out"):
        await server.lm(max_retries=1).request(REQUEST)
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, LMBadRequestError),
        (401, LMAuthError),
        (403, LMAuthError),
        (404, LMBadRequestError),
        (422, LMBadRequestError),
    ],
)
async def test_client_errors_fail_at_once_with_the_provider_message(
    status: int, kind: type[LMError]
) -> None:
    server = Scripted(error(status, f"provider says {status}"))
    with pytest.raises(kind) as info:
        await server.lm().request(REQUEST)
    assert len(server.requests) == 1
    assert info.value.status_code == status
    assert f"provider says {status}" in str(info.value)
    assert not isinstance(info.value, ContextWindowExceededError)


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (
            "This model's maximum context length is 8192 tokens. However ...",
            "context_length_exceeded",
        ),
        ("This model's maximum context length is 4096 tokens", None),
        ("the request exceeds the available context size, try increasing it", None),
        ("prompt is too long: 5000 tokens > 4096 maximum", None),
    ],
)
async def test_context_length_errors_are_recognised(message: str, code: str | None) -> None:
    server = Scripted(error(400, message, code))
    with pytest.raises(ContextWindowExceededError, match="shorten the prompt") as info:
        await server.lm().request(REQUEST)
    assert message in str(info.value)
    assert isinstance(info.value, LMBadRequestError)


async def test_auth_error_never_echoes_the_key() -> None:
    server = Scripted(error(401, f"Incorrect API key provided: {KEY}"))
    with pytest.raises(LMAuthError) as info:
        await server.lm().request(REQUEST)
    assert KEY not in str(info.value) and KEY not in repr(info.value)
    assert "OPENAI_API_KEY" in str(info.value)


async def test_non_json_error_body_is_carried(autojump_clock: Any) -> None:
    server = Scripted(httpx.Response(502, text="Bad Gateway from nginx"))
    with pytest.raises(LMServerError, match="Bad Gateway from nginx"):
        await server.lm(max_retries=1).request(REQUEST)


# ------------------------------------------------------------------ deadlines
async def test_timeout_bounds_a_stalled_call(autojump_clock: Any) -> None:
    server = Scripted(stall(60))
    start = trio.current_time()
    with pytest.raises(LMTimeoutError, match="no response within 0.5 s"):
        await server.lm(timeout=0.5).request(REQUEST)
    assert trio.current_time() - start == pytest.approx(0.5)


async def test_timeout_includes_retries_and_backoff(autojump_clock: Any) -> None:
    server = Scripted(stall(2, error(500, "down")))
    start = trio.current_time()
    with pytest.raises((LMTimeoutError, LMServerError)):
        await server.lm(timeout=7, max_retries=10, backoff=Backoff(base=0.1, cap=0.2)).request(
            REQUEST
        )
    assert trio.current_time() - start <= 7.0
    assert len(server.requests) == 4  # at 0, ~2.1, ~4.2, ~6.3: the fourth is cut off


async def test_request_timeout_overrides_the_lm_timeout(autojump_clock: Any) -> None:
    server = Scripted(stall(5))
    lm = server.lm(timeout=100)
    start = trio.current_time()
    with pytest.raises(LMTimeoutError):
        await lm.request(LMRequest([Message("user", "hi")], timeout=1.0))
    assert trio.current_time() - start == pytest.approx(1.0)
    assert (await server.lm(timeout=0.1).request(LMRequest(REQUEST.messages, timeout=10))).text


async def test_retry_after_beyond_the_deadline_gives_up_at_once(autojump_clock: Any) -> None:
    server = Scripted(error(429, "busy", **{"retry-after": "30"}))
    start = trio.current_time()
    with pytest.raises(LMRateLimitError) as info:
        await server.lm(timeout=5).request(REQUEST)
    assert trio.current_time() - start < 0.01
    assert info.value.retry_after == 30.0
    assert len(server.requests) == 1


async def test_retry_after_beyond_max_retry_after_gives_up(autojump_clock: Any) -> None:
    server = Scripted(error(503, "maintenance", **{"retry-after": "3600"}))
    with pytest.raises(LMServerError, match="maintenance"):
        await server.lm(backoff=Backoff(max_retry_after=60)).request(REQUEST)
    assert len(server.requests) == 1


async def test_attempt_timeout_retries_a_stalled_attempt(autojump_clock: Any) -> None:
    server = Scripted(stall(1000), ok("second try"))
    start = trio.current_time()
    response = await server.lm(attempt_timeout=2, backoff=Backoff(base=0.1)).request(REQUEST)
    assert response.text == "second try"
    assert 2.0 <= trio.current_time() - start <= 2.2


# ------------------------------------------------------------------ cancellation
async def test_cancel_scope_stops_a_call_during_backoff(autojump_clock: Any) -> None:
    server = Scripted(error(429, "busy", **{"retry-after": "50"}))
    lm = server.lm()
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lm.request, REQUEST)
        await trio.sleep(3)  # the call is sleeping 50 s before its retry
        nursery.cancel_scope.cancel()
    assert trio.current_time() - start == pytest.approx(3.0)
    assert len(server.requests) == 1
    assert len(lm.history) == 0


async def test_cancel_scope_stops_the_http_request(autojump_clock: Any) -> None:
    finished: list[bool] = []

    async def slow(request: httpx.Request) -> httpx.Response:
        await trio.sleep(100)
        finished.append(True)
        return ok()

    lm = Scripted(slow).lm()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lm.request, REQUEST)
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert finished == []
    assert trio.current_time() == pytest.approx(1.0)
