"""OpenTelemetry interop: spans re-emitted through the SDK, trace join, ``traceparent``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import pytest
import trio
import trio.testing
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

import trio_dspy as td
from trio_dspy.messages import LMRequest, Message
from trio_dspy.telemetry import (
    InMemoryExporter,
    OpenTelemetryExporter,
    Span,
    collect,
    start_span,
)
from trio_dspy.testing import DummyLM, SimServer, serve_sim

from .test_lm_support import KEY, Scripted, error, ok

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
SPAN_ID = 0xB7AD6B7169203331


@pytest.fixture
def otel() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """An SDK provider whose finished spans land in memory."""
    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    yield provider, memory
    provider.shutdown()


@contextmanager
def remote_parent(flags: int = TraceFlags.SAMPLED, state: str = "") -> Iterator[None]:
    """Make a span of a caller (as a propagator would extract it) the current OTel span."""
    context = SpanContext(
        TRACE_ID,
        SPAN_ID,
        is_remote=True,
        trace_flags=TraceFlags(flags),
        trace_state=TraceState.from_header([state]) if state else TraceState(),
    )
    with otel_trace.use_span(NonRecordingSpan(context)):
        yield


@asynccontextmanager
async def sim_lm() -> AsyncIterator[tuple[SimServer, td.LM]]:
    async with serve_sim() as sim, td.LM("openai/sim", base_url=sim.base_url, api_key="k") as lm:
        yield sim, lm


async def ask(lm: td.LM) -> None:
    with td.context(lm=lm):
        await td.Predict("question -> answer")(question="?")


def by_name(spans: list[Span], prefix: str) -> Span:
    (span,) = [s for s in spans if s.name.startswith(prefix)]
    return span


async def run_program() -> None:
    """A module call (agent, predictor, LM call) and a span that fails."""
    with td.context(lm=DummyLM([{"answer": "4"}])):
        await td.Predict("question -> answer")(question="2+2?")
    with pytest.raises(ValueError), start_span("step", attributes={"n": 3, "tags": ["a", "b"]}):
        raise ValueError("bad step")


async def test_opentelemetry_gets_every_span_with_its_ids_times_and_attributes(
    otel: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, memory = otel
    ours = InMemoryExporter()
    async with collect(ours, OpenTelemetryExporter(provider)) as collector:
        await run_program()
    assert collector.stats.exported == len(ours.spans) >= 3
    theirs = {span.context.span_id: span for span in memory.get_finished_spans()}
    assert len(theirs) == len(ours.spans)
    for span in ours.spans:
        other = theirs[int(span.span_id, 16)]
        assert other.context.trace_id == int(span.trace_id, 16)
        parent = None if other.parent is None else f"{other.parent.span_id:016x}"
        assert parent == span.parent_id
        assert other.name == span.name
        assert other.kind.name == span.kind.name
        assert (other.start_time, other.end_time) == (span.start_ns, span.end_ns)
        assert dict(other.attributes or {}) == span.attributes
        assert other.status.status_code.name == span.status.code.name
        assert other.status.description == span.status.description
        assert [(e.name, dict(e.attributes or {}), e.timestamp) for e in other.events] == [
            (e.name, e.attributes, e.time_ns) for e in span.events
        ]
        assert other.resource is provider.resource
        assert other.instrumentation_scope is not None
        assert other.instrumentation_scope.name == "trio_dspy"
    chat = by_name(ours.spans, "chat")
    assert theirs[int(chat.span_id, 16)].kind is otel_trace.SpanKind.CLIENT
    step = theirs[int(by_name(ours.spans, "step").span_id, 16)]
    assert step.status.status_code is otel_trace.StatusCode.ERROR
    assert step.status.description == "bad step"
    assert [e.name for e in step.events] == ["exception"]
    assert step.attributes is not None and step.attributes["tags"] == ("a", "b")


async def test_the_global_tracer_provider_is_used_when_none_is_given(
    otel: tuple[TracerProvider, InMemorySpanExporter], monkeypatch: pytest.MonkeyPatch
) -> None:
    provider, memory = otel
    monkeypatch.setattr(otel_trace, "get_tracer_provider", lambda: provider)
    async with collect(OpenTelemetryExporter()):
        with start_span("work"):
            pass
    assert [span.name for span in memory.get_finished_spans()] == ["work"]


async def test_a_provider_without_span_processors_is_refused_with_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(TypeError, match="ProxyTracerProvider.*set_tracer_provider"):
        OpenTelemetryExporter(otel_trace.ProxyTracerProvider())  # type: ignore[arg-type]
    # The global provider is looked up at export: the collector counts the failure.
    monkeypatch.setattr(otel_trace, "get_tracer_provider", otel_trace.NoOpTracerProvider)
    async with collect(OpenTelemetryExporter()) as collector:
        with start_span("work"):
            pass
    assert collector.stats.export_failures == 1
    assert collector.stats.exporters[0].failed == 1


async def test_spans_started_inside_an_opentelemetry_span_join_its_trace(
    otel: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, memory = otel
    ours = InMemoryExporter()
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("handle request") as request:
        async with collect(ours, OpenTelemetryExporter(provider)), trio.open_nursery() as nursery:
            nursery.start_soon(run_program)  # a child task joins too
    context = request.get_span_context()
    trace_id, request_id = f"{context.trace_id:032x}", f"{context.span_id:016x}"
    assert {span.trace_id for span in ours.spans} == {trace_id}
    roots = [span for span in ours.spans if span.parent_id == request_id]
    assert {span.name.split(" ")[0] for span in roots} == {"Predict", "step"}
    # In OpenTelemetry it is one tree: every parent is a span it has.
    finished = memory.get_finished_spans()
    ids = {span.context.span_id for span in finished}
    assert all(span.parent is None or span.parent.span_id in ids for span in finished)
    assert sum(span.parent is None for span in finished) == 1


async def test_without_a_current_opentelemetry_span_a_new_trace_starts() -> None:
    ours = InMemoryExporter()
    async with collect(ours):
        with start_span("outside"):
            pass
        with remote_parent(flags=TraceFlags.DEFAULT), start_span("joins even unsampled"):
            pass
    outside, joined = ours.spans
    assert outside.parent_id is None and outside.trace_id != f"{TRACE_ID:032x}"
    assert (joined.trace_id, joined.parent_id) == (f"{TRACE_ID:032x}", f"{SPAN_ID:016x}")


async def test_request_scopes_inside_an_opentelemetry_span_join_it_not_each_other() -> None:
    ours = InMemoryExporter()
    async with collect(ours):
        # A request scope starts a new trace: "nested" is not "customer"'s child.
        with remote_parent(), td.request_scope("customer"), td.request_scope("nested"):
            pass
    nested, customer = ours.spans
    for span in (nested, customer):
        assert (span.trace_id, span.parent_id) == (f"{TRACE_ID:032x}", f"{SPAN_ID:016x}")


async def test_lm_requests_carry_the_traceparent_of_their_chat_span() -> None:
    ours = InMemoryExporter()
    async with sim_lm() as (sim, lm), collect(ours):
        with td.context(lm=lm):
            await td.Predict("question -> answer")(question="2+2?")
    chat = by_name(ours.spans, "chat")
    (headers,) = sim.request_headers
    assert headers["traceparent"] == f"00-{chat.trace_id}-{chat.span_id}-01"
    assert "tracestate" not in headers
    assert "authorization" not in headers  # the recorder leaves credentials out


async def test_streamed_requests_carry_the_traceparent_of_their_chat_span() -> None:
    ours = InMemoryExporter()
    request = LMRequest([Message("user", "2+2?")])
    async with sim_lm() as (sim, lm), collect(ours), lm.stream(request) as stream:
        text = "".join([piece async for piece in stream])
    assert text == stream.response.text
    chat = by_name(ours.spans, "chat")
    (headers,) = sim.request_headers
    assert headers["traceparent"] == f"00-{chat.trace_id}-{chat.span_id}-01"


async def test_streamed_requests_through_a_given_transport_carry_the_traceparent() -> None:
    server = Scripted(ok("4"))
    ours = InMemoryExporter()
    request = LMRequest([Message("user", "2+2?")])
    async with collect(ours), server.lm() as lm, lm.stream(request) as stream:  # httpx's path
        assert [piece async for piece in stream] == ["4"]
    chat = by_name(ours.spans, "chat")
    (sent,) = server.requests
    assert sent.headers["traceparent"] == f"00-{chat.trace_id}-{chat.span_id}-01"


async def test_every_retry_carries_the_traceparent_beside_the_clients_headers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = Scripted(error(503, "busy"), ok("4"))
    ours = InMemoryExporter()
    async with collect(ours), server.lm() as lm:  # an injected transport: httpx's path
        await lm.request(LMRequest([Message("user", "2+2?")]))
    chat = by_name(ours.spans, "chat")
    assert len(server.requests) == 2
    for request in server.requests:
        assert request.headers["traceparent"] == f"00-{chat.trace_id}-{chat.span_id}-01"
        assert request.headers["authorization"] == f"Bearer {KEY}"


async def test_traceparent_keeps_the_tracestate_of_a_joined_trace() -> None:
    ours = InMemoryExporter()
    async with sim_lm() as (sim, lm), collect(ours):
        with remote_parent(state="vendor=abc,other=1"):
            await ask(lm)
    chat = by_name(ours.spans, "chat")
    assert chat.trace_id == f"{TRACE_ID:032x}"
    (headers,) = sim.request_headers
    assert headers["traceparent"] == f"00-{chat.trace_id}-{chat.span_id}-01"
    assert headers["tracestate"] == "vendor=abc,other=1"


@pytest.mark.parametrize("flags", [TraceFlags.SAMPLED, TraceFlags.DEFAULT])
async def test_without_a_collector_requests_carry_the_opentelemetry_context(flags: int) -> None:
    async with sim_lm() as (sim, lm):
        with remote_parent(flags, state="vendor=abc"):
            await ask(lm)
    (headers,) = sim.request_headers
    assert headers["traceparent"] == f"00-{TRACE_ID:032x}-{SPAN_ID:016x}-{flags:02x}"
    assert headers["tracestate"] == "vendor=abc"


async def test_propagate_trace_false_sends_no_trace_headers() -> None:
    async with sim_lm() as (sim, lm), collect(InMemoryExporter()):
        with td.context(propagate_trace=False), remote_parent(state="vendor=abc"):
            await ask(lm)
        td.configure(propagate_trace=False)
        await ask(lm)
    assert len(sim.request_headers) == 2
    for headers in sim.request_headers:
        assert "traceparent" not in headers and "tracestate" not in headers


async def test_with_no_span_anywhere_no_trace_headers_are_sent() -> None:
    async with sim_lm() as (sim, lm):
        await ask(lm)
    (headers,) = sim.request_headers
    assert "traceparent" not in headers


def test_the_exporter_describes_its_provider(
    otel: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, _ = otel
    assert repr(OpenTelemetryExporter()) == "<OpenTelemetryExporter tracer_provider=global>"
    assert repr(OpenTelemetryExporter(provider)) == (
        "<OpenTelemetryExporter tracer_provider=TracerProvider>"
    )
