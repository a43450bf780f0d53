"""The OTLP/HTTP JSON exporter: encoding, retries, secrets, and a loopback receiver."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import httpx
import pytest
import structlog
import trio

from trio_dspy.telemetry import (
    Event,
    OtlpExportError,
    OtlpHttpExporter,
    Span,
    SpanKind,
    Status,
    StatusCode,
    collect,
    encode_spans,
    start_span,
)
from trio_dspy.testing.http_server import Request, Response, serve_http

SECRET = "Bearer s3cret-token-value"


def _span(**overrides: Any) -> Span:
    fields: dict[str, Any] = {
        "name": "chat gpt-4o",
        "trace_id": "5b8efff798038103d269b633813fc60c",
        "span_id": "eee19b7ec3c1b174",
        "parent_id": "eee19b7ec3c1b173",
        "kind": SpanKind.CLIENT,
        "start_ns": 1544712660000000000,
        "end_ns": 1544712661000000000,
        "attributes": {
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 12,
            "stream": False,
            "temperature": 0.5,
            "gen_ai.response.finish_reasons": ("stop", "length"),
        },
        "status": Status(StatusCode.ERROR, "rate limited"),
        "events": [Event("retry", 1544712660500000000, {"attempt": 2})],
    }
    fields.update(overrides)
    return Span(**fields)


def test_encoding_matches_the_otlp_json_mapping() -> None:
    body = encode_spans([_span()], service_name="shop")
    (resource_spans,) = body["resourceSpans"]
    resource = {a["key"]: a["value"] for a in resource_spans["resource"]["attributes"]}
    assert resource["service.name"] == {"stringValue": "shop"}
    assert resource["telemetry.sdk.language"] == {"stringValue": "python"}
    (scope_spans,) = resource_spans["scopeSpans"]
    assert scope_spans["scope"]["name"] == "trio_dspy"
    assert isinstance(scope_spans["scope"]["version"], str)
    (span,) = scope_spans["spans"]
    assert span == {
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "parentSpanId": "eee19b7ec3c1b173",
        "name": "chat gpt-4o",
        "kind": 3,
        "startTimeUnixNano": "1544712660000000000",
        "endTimeUnixNano": "1544712661000000000",
        "attributes": [
            {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
            {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "12"}},
            {"key": "stream", "value": {"boolValue": False}},
            {"key": "temperature", "value": {"doubleValue": 0.5}},
            {
                "key": "gen_ai.response.finish_reasons",
                "value": {
                    "arrayValue": {"values": [{"stringValue": "stop"}, {"stringValue": "length"}]}
                },
            },
        ],
        "events": [
            {
                "timeUnixNano": "1544712660500000000",
                "name": "retry",
                "attributes": [{"key": "attempt", "value": {"intValue": "2"}}],
            }
        ],
        "status": {"code": 2, "message": "rate limited"},
    }


def test_encoding_of_roots_kinds_statuses_and_odd_values() -> None:
    spans = [
        _span(parent_id=None, kind=kind, status=Status(code), attributes={}, events=[])
        for kind, code in zip(SpanKind, [*StatusCode, StatusCode.OK, StatusCode.UNSET])
    ]
    encoded = encode_spans(spans)["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert [s["kind"] for s in encoded] == [1, 2, 3, 4, 5]
    assert [s["status"] for s in encoded] == [
        {"code": 0},
        {"code": 1},
        {"code": 2},
        {"code": 1},
        {"code": 0},
    ]
    assert all("parentSpanId" not in s for s in encoded)
    odd = encode_spans(
        [_span(attributes={"nan": math.nan, "inf": -math.inf, "blob": b"\x00\xff", "big": 2**63})]
    )
    attrs = {
        a["key"]: a["value"]
        for a in odd["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"]
    }
    assert attrs == {
        "nan": {"doubleValue": "NaN"},
        "inf": {"doubleValue": "-Infinity"},
        "blob": {"bytesValue": "AP8="},
        "big": {"intValue": str(2**63)},
    }


class _Recorder:
    """An httpx.MockTransport handler answering from a script of responses."""

    def __init__(self, *responses: httpx.Response) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []
        self.times: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.times.append(trio.current_time())
        return self.responses.pop(0) if self.responses else httpx.Response(200, json={})


def _exporter(recorder: _Recorder, **kwargs: Any) -> OtlpHttpExporter:
    return OtlpHttpExporter(
        "http://collector:4318/",
        headers={"Authorization": SECRET},
        transport=httpx.MockTransport(recorder),
        **kwargs,
    )


async def test_posts_json_to_v1_traces_with_headers() -> None:
    recorder = _Recorder()
    exporter = _exporter(recorder)
    await exporter.export([_span()])
    await exporter.aclose()
    (request,) = recorder.requests
    assert request.method == "POST"
    assert str(request.url) == "http://collector:4318/v1/traces"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["authorization"] == SECRET
    assert json.loads(request.content) == encode_spans([_span()])


def test_endpoint_already_ending_in_v1_traces_is_kept() -> None:
    assert OtlpHttpExporter("https://x/otlp/v1/traces").url == "https://x/otlp/v1/traces"
    assert OtlpHttpExporter("https://x/otlp").url == "https://x/otlp/v1/traces"


async def test_retries_with_exponential_backoff_then_gives_up(
    autojump_clock: trio.abc.Clock,
) -> None:
    recorder = _Recorder(*[httpx.Response(502)] * 4)
    exporter = _exporter(recorder, max_retries=3, backoff=1.0)
    with pytest.raises(OtlpExportError, match="not delivered after 4 attempts") as info:
        await exporter.export([_span()])
    gaps = [b - a for a, b in zip(recorder.times, recorder.times[1:])]
    # Jittered between half and all of 1, 2, 4 seconds.
    for gap, ceiling in zip(gaps, [1, 2, 4]):
        assert ceiling / 2 <= gap <= ceiling
    assert len(recorder.requests) == 4
    assert SECRET not in str(info.value)


async def test_honours_retry_after(autojump_clock: trio.abc.Clock) -> None:
    recorder = _Recorder(httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(200))
    exporter = _exporter(recorder)
    await exporter.export([_span()])
    assert len(recorder.requests) == 2
    assert recorder.times[1] - recorder.times[0] == pytest.approx(7)


async def test_retry_after_beyond_max_backoff_fails_at_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    recorder = _Recorder(httpx.Response(503, headers={"Retry-After": "3600"}))
    exporter = _exporter(recorder, max_backoff=30)
    start = trio.current_time()
    with pytest.raises(OtlpExportError, match="retry after 3600s"):
        await exporter.export([_span()])
    assert trio.current_time() == start and len(recorder.requests) == 1


@pytest.mark.parametrize("status", [400, 401, 413, 500])
async def test_other_statuses_are_not_retried(status: int) -> None:
    recorder = _Recorder(httpx.Response(status, text="nope"))
    exporter = _exporter(recorder)
    with pytest.raises(OtlpExportError, match=f"HTTP {status}"):
        await exporter.export([_span()])
    assert len(recorder.requests) == 1


async def test_connection_errors_are_retried(autojump_clock: trio.abc.Clock) -> None:
    calls = 0

    def flaky(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200)

    exporter = OtlpHttpExporter("http://c", transport=httpx.MockTransport(flaky))
    await exporter.export([_span()])
    assert calls == 2


async def test_secrets_stay_out_of_reprs_errors_and_logs(autojump_clock: trio.abc.Clock) -> None:
    recorder = _Recorder(*[httpx.Response(503)] * 2, httpx.Response(401))
    exporter = _exporter(recorder, max_retries=5)
    assert SECRET not in repr(exporter) and "Authorization" in repr(exporter)
    with structlog.testing.capture_logs() as logs:
        async with collect(exporter) as collector:
            with start_span("op"):
                pass
    assert collector.stats.export_failures == 1
    assert len(logs) >= 3  # two retries and the failure
    assert SECRET not in repr(logs)
    assert "s3cret" not in repr(logs)


async def test_partial_success_is_logged_not_retried() -> None:
    recorder = _Recorder(
        httpx.Response(
            200, json={"partialSuccess": {"rejectedSpans": "1", "errorMessage": "too old"}}
        )
    )
    exporter = _exporter(recorder)
    with structlog.testing.capture_logs() as logs:
        await exporter.export([_span()])
    assert len(recorder.requests) == 1
    (event,) = [e for e in logs if e["event"] == "otlp partial success"]
    assert event["rejected"] == 1 and event["message"] == "too old"


# --- a real receiver on loopback ------------------------------------------------

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")


class _Receiver:
    def __init__(self, *statuses: tuple[int, dict[str, str]]) -> None:
        self.script = list(statuses)
        self.requests: list[Request] = []
        self.times: list[float] = []

    async def __call__(self, request: Request) -> Response:
        self.requests.append(request)
        self.times.append(trio.current_time())
        if self.script:
            status, headers = self.script.pop(0)
            return Response.from_json({}, status=status, headers=headers)
        return Response.from_json({})

    def spans(self) -> list[dict[str, Any]]:
        return [
            span
            for request in self.requests
            if request.path == "/v1/traces"
            for resource in request.json()["resourceSpans"]
            for scope in resource["scopeSpans"]
            for span in scope["spans"]
        ]


async def test_loopback_receiver_gets_a_valid_payload() -> None:
    receiver = _Receiver()
    async with serve_http(receiver) as server:
        exporter = OtlpHttpExporter(server.base_url, headers={"Authorization": SECRET})
        async with collect(exporter, policy="unbounded"):
            with start_span("invoke_agent qa", attributes={"gen_ai.agent.name": "qa"}):
                with start_span("chat m", kind=SpanKind.CLIENT) as chat_span:
                    chat_span.set_attributes({"gen_ai.usage.input_tokens": 3, "temperature": 0.2})
                    chat_span.set_attribute("gen_ai.response.finish_reasons", ["stop"])
                with pytest.raises(ZeroDivisionError), start_span("execute_tool calc"):
                    _ = 1 / 0
    assert receiver.requests
    for request in receiver.requests:
        assert request.method == "POST" and request.path == "/v1/traces"
        assert request.header("content-type") == "application/json"
        assert request.header("authorization") == SECRET
    spans = {s["name"]: s for s in receiver.spans()}
    assert set(spans) == {"invoke_agent qa", "chat m", "execute_tool calc"}
    agent, chat, tool = spans["invoke_agent qa"], spans["chat m"], spans["execute_tool calc"]
    for span in spans.values():
        assert HEX32.match(span["traceId"]) and HEX16.match(span["spanId"])
        assert isinstance(span["startTimeUnixNano"], str)
        assert int(span["endTimeUnixNano"]) >= int(span["startTimeUnixNano"]) > 10**18
        assert span["traceId"] == agent["traceId"]
    assert "parentSpanId" not in agent
    assert chat["parentSpanId"] == tool["parentSpanId"] == agent["spanId"]
    assert (agent["kind"], chat["kind"]) == (1, 3)
    chat_attrs = {a["key"]: a["value"] for a in chat["attributes"]}
    assert chat_attrs == {
        "gen_ai.usage.input_tokens": {"intValue": "3"},
        "temperature": {"doubleValue": 0.2},
        "gen_ai.response.finish_reasons": {"arrayValue": {"values": [{"stringValue": "stop"}]}},
    }
    assert tool["status"] == {"code": 2, "message": "division by zero"}
    tool_attrs = {a["key"]: a["value"] for a in tool["attributes"]}
    assert tool_attrs["error.type"] == {"stringValue": "ZeroDivisionError"}
    assert tool["events"][0]["name"] == "exception"
    assert isinstance(tool["events"][0]["timeUnixNano"], str)


async def test_loopback_retry_on_503_honours_retry_after(autojump_clock: trio.abc.Clock) -> None:
    # With the autojump clock, any pending deadline fires as soon as every task
    # waits on the real socket. So: no HTTP timeout (timeout=None), and the
    # exporter is driven directly rather than under collect()'s drain deadline;
    # the only deadline left is the Retry-After wait itself.
    receiver = _Receiver((503, {"Retry-After": "4"}))
    async with serve_http(receiver) as server:
        exporter = OtlpHttpExporter(server.base_url, timeout=None)
        try:
            await exporter.export([_span()])
        finally:
            await exporter.aclose()
    assert len(receiver.requests) == 2
    assert receiver.times[1] - receiver.times[0] == pytest.approx(4)
    assert receiver.requests[0].body == receiver.requests[1].body
    assert receiver.spans()[0]["spanId"] == _span().span_id


def test_exporter_makes_a_new_client_in_each_trio_run() -> None:
    exporter = OtlpHttpExporter("http://127.0.0.1:1")  # replaced per run below

    clients: list[object] = []

    async def main(name: str) -> list[str]:
        receiver = _Receiver()
        async with serve_http(receiver) as server:
            exporter.url = server.base_url + "/v1/traces"
            # No aclose() between the runs: the client of the first run is
            # bound to that run and must not be reused.
            await exporter.export([_span(name=name)])
            clients.append(exporter._client)
        return [s["name"] for s in receiver.spans()]

    assert trio.run(main, "first") == ["first"]
    assert trio.run(main, "second") == ["second"]
    assert clients[0] is not clients[1]
