"""Telemetry: OpenTelemetry-shaped spans, collected in the background and exported.

::

    from trio_dspy import telemetry

    async with telemetry.collect(telemetry.OtlpHttpExporter("http://127.0.0.1:4318")):
        with telemetry.start_span("handle request", new_trace=True):
            ...

Spans record only while a :func:`collect` block is active; elsewhere
:func:`start_span` is a near-free no-op. Attribute names for LM calls, agents
and tools are in :mod:`trio_dspy.telemetry.semconv`.
"""

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

# The OTLP exporter brings httpx and the HTTP layer; it loads on first use.
_OTLP = ("OtlpExportError", "OtlpHttpExporter", "encode_spans")

if TYPE_CHECKING:
    from .otlp import OtlpExportError, OtlpHttpExporter, encode_spans
else:

    def __getattr__(name: str) -> Any:
        if name not in _OTLP:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from . import otlp

        value = getattr(otlp, name)
        globals()[name] = value
        return value
