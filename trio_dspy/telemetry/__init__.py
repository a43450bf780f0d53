"""Telemetry: OpenTelemetry-shaped spans, collected in the background and exported.

::

    from trio_dspy import telemetry

    async with telemetry.collect(telemetry.OtlpHttpExporter("http://127.0.0.1:4318")):
        with telemetry.start_span("handle request", new_trace=True):
            ...

Spans record only while a :func:`collect` block is active; elsewhere
:func:`start_span` is a near-free no-op. Attribute names for LM calls, agents
and tools are in :mod:`trio_dspy.telemetry.semconv`.

With the extra ``otel``, :class:`OpenTelemetryExporter` hands spans to the
application's OpenTelemetry SDK, and spans started inside an OpenTelemetry
span join its trace. LM requests carry the W3C ``traceparent`` header of the
current span (``td.configure(propagate_trace=False)`` turns it off).
"""

import importlib
from typing import TYPE_CHECKING, Any

from . import semconv
from .codec import span_from_dict, span_to_dict
from .collector import Collector, CollectorStats, Exporter, ExporterStats, collect
from .exporters import InMemoryExporter, JsonlExporter, StructlogExporter, read_jsonl
from .span import (
    AttributeValue,
    Event,
    NonRecordingSpan,
    Span,
    SpanKind,
    Status,
    StatusCode,
    current_span,
    error_type,
    start_span,
)

__all__ = [
    "AttributeValue",
    "Collector",
    "CollectorStats",
    "Event",
    "Exporter",
    "ExporterStats",
    "InMemoryExporter",
    "JsonlExporter",
    "NonRecordingSpan",
    "OpenTelemetryExporter",
    "OtlpExportError",
    "OtlpHttpExporter",
    "Span",
    "SpanKind",
    "Status",
    "StatusCode",
    "StructlogExporter",
    "collect",
    "current_span",
    "encode_spans",
    "error_type",
    "read_jsonl",
    "semconv",
    "span_from_dict",
    "span_to_dict",
    "start_span",
]

# The OTLP exporter brings httpx and the HTTP layer, the OpenTelemetry one the
# OpenTelemetry SDK (extra ``otel``); each loads on first use.
_LAZY = {
    "OtlpExportError": "otlp",
    "OtlpHttpExporter": "otlp",
    "encode_spans": "otlp",
    "OpenTelemetryExporter": "otel",
}

if TYPE_CHECKING:
    from .otel import OpenTelemetryExporter
    from .otlp import OtlpExportError, OtlpHttpExporter, encode_spans
else:

    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value
        return value
