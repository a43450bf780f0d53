"""Re-emit trio_dspy's spans through the application's OpenTelemetry SDK (extra ``otel``).

::

    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    trace.set_tracer_provider(provider := TracerProvider())
    provider.add_span_processor(...)  # any processor and exporter of the SDK
    async with td.telemetry.collect(td.telemetry.OpenTelemetryExporter()):
        ...

How: the OpenTelemetry API makes every span with ids of its own choosing and
has no way to start one with given ids or to end one that finished earlier.
So each finished trio_dspy span becomes an SDK
:class:`~opentelemetry.sdk.trace.ReadableSpan` (the read-only view span
processors and exporters consume) with the span's own trace id, span id,
parent, name, kind, start and end times, attributes, events and status, and
is handed to the provider's span processors as an ended span (``on_end``).
That is the only entry point of a span processor that takes a finished span,
and the way other bridges of foreign spans into the Python SDK work.

Limits, all following from that:

* the provider must be the SDK's ``TracerProvider`` (or a subclass): the API's
  no-op and proxy providers have no processors to hand spans to. Its span
  processors are reached through its ``_active_span_processor`` attribute,
  which the SDK does not document (stable since its 1.0).
* processors see ``on_end`` only, never ``on_start`` (the span was not live
  in the SDK); processors that add attributes at start do not run.
* the provider's sampler and span limits are not applied: a ``collect`` block
  decides what is recorded, and every span it gets is handed on.
* the resource is the provider's; the instrumentation scope is ``trio_dspy``.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from .. import __version__
from .span import Span

try:
    from opentelemetry import trace as otel_trace
    from opentelemetry.sdk.trace import Event as OtelEvent
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
except ImportError as exc:  # pragma: no cover - the extra is installed in development
    raise ImportError(
        "OpenTelemetryExporter needs the OpenTelemetry SDK: pip install 'trio_dspy[otel]'"
    ) from exc

__all__ = ["OpenTelemetryExporter"]

_SCOPE = InstrumentationScope("trio_dspy", __version__)
# Every span a collector exports was recorded, which is what "sampled" means.
_SAMPLED = otel_trace.TraceFlags(otel_trace.TraceFlags.SAMPLED)


def _context(trace_id: str, span_id: str) -> otel_trace.SpanContext:
    return otel_trace.SpanContext(
        int(trace_id, 16), int(span_id, 16), is_remote=False, trace_flags=_SAMPLED
    )


def _readable_span(span: Span, provider: TracerProvider) -> ReadableSpan:
    """The SDK's read-only span for a finished trio_dspy ``span``, in ``provider``'s resource.

    Ids, parent, name, kind, times, attributes, events and status are kept
    as they are (an open span ends at its start). Raises ``ValueError`` for
    ids that are not hexadecimal.
    """
    status = span.status
    return ReadableSpan(
        name=span.name,
        context=_context(span.trace_id, span.span_id),
        parent=_context(span.trace_id, span.parent_id) if span.parent_id else None,
        resource=provider.resource,
        attributes=dict(span.attributes),
        events=[
            OtelEvent(event.name, dict(event.attributes), event.time_ns) for event in span.events
        ],
        kind=otel_trace.SpanKind[span.kind.name],
        status=otel_trace.Status(otel_trace.StatusCode[status.code.name], status.description),
        start_time=span.start_ns,
        end_time=span.end_ns if span.end_ns is not None else span.start_ns,
        instrumentation_scope=_SCOPE,
    )


def _sdk_provider(provider: object) -> TracerProvider:
    """``provider``, checked to be the SDK's ``TracerProvider`` with its span processors.

    Raises:
        TypeError: it is not (the API's no-op or proxy provider, say).
    """
    if not isinstance(provider, TracerProvider) or not hasattr(provider, "_active_span_processor"):
        raise TypeError(
            f"OpenTelemetryExporter needs an opentelemetry.sdk.trace.TracerProvider, got "
            f"{type(provider).__name__}: pass tracer_provider=, or install one with "
            "opentelemetry.trace.set_tracer_provider(TracerProvider()) before exporting"
        )
    return provider


class OpenTelemetryExporter:
    """An exporter for :func:`~trio_dspy.telemetry.collect` that hands spans to OpenTelemetry.

    Each finished span goes to the span processors of ``tracer_provider``
    (default: the global provider, looked up at each export, so it may be
    installed after this exporter is made) with its trio_dspy ids, parent,
    times, attributes, events and status, so any OpenTelemetry processor and
    exporter (batching, OTLP over gRPC, vendors' exporters) sends it on. See
    :mod:`trio_dspy.telemetry.otel` for how and for the limits.

    Processors run in a worker thread (``SimpleSpanProcessor`` exports while
    it runs); the provider belongs to the application, which flushes and
    shuts it down: :meth:`aclose` leaves it alone.

    Raises:
        TypeError: ``tracer_provider`` is not the SDK's ``TracerProvider``
            (a global provider that is not is reported by :meth:`export`).
    """

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self._provider = None if tracer_provider is None else _sdk_provider(tracer_provider)

    def __repr__(self) -> str:
        provider = "global" if self._provider is None else type(self._provider).__name__
        return f"<OpenTelemetryExporter tracer_provider={provider}>"

    async def export(self, spans: Sequence[Span]) -> None:
        """Hand ``spans`` to the provider's span processors as ended spans.

        Raises:
            TypeError: the global provider is not the SDK's ``TracerProvider``.
            Exception: whatever a span processor raises.
        """
        provider = self._provider
        if provider is None:
            provider = _sdk_provider(otel_trace.get_tracer_provider())
        # The one processor that fans out to all the provider's processors.
        processor = provider._active_span_processor
        readable = [_readable_span(span, provider) for span in spans]

        def hand_over() -> None:
            for span in readable:
                processor.on_end(span)

        await trio.to_thread.run_sync(hand_over, abandon_on_cancel=True)

    async def aclose(self) -> None:
        """Nothing to release: the provider is the application's."""
