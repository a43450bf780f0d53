"""W3C Trace Context headers (``traceparent``, ``tracestate``): outgoing, and read from callers.

A request to a model carries the context of the span it is made in, so a
server (or a gateway in front of it) that traces can join the caller's trace.
The span is trio_dspy's current span (the ``chat`` span of an LM call) or,
with no collector recording, the current OpenTelemetry span when the
application uses OpenTelemetry. :attr:`~trio_dspy.settings.Settings.propagate_trace`
turns the headers off.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence

from .. import settings
from .span import current_span, opentelemetry_span_context

__all__ = ["parse_traceparent", "trace_headers"]

# A trio_dspy span is recorded whenever it is current (the non-recording span
# is never current), so its flags say "sampled".
_SAMPLED = 0x01

# version-traceid-parentid-flags; version ff is forbidden, and a later version
# may append fields after the flags (the spec says to read the first four).
_TRACEPARENT = re.compile(
    r"(?!ff)([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?", re.ASCII
)


def parse_traceparent(value: str | None) -> tuple[str, str] | None:
    """The trace id and parent span id an incoming ``traceparent`` header carries.

    ``None`` for a missing or malformed header, an all-zero id, or version
    ``00`` with anything after the flags: a server then starts a trace of its
    own, as the W3C Trace Context spec asks. Raises nothing.
    """
    if not value:
        return None
    match = _TRACEPARENT.fullmatch(value.strip())
    if match is None:
        return None
    version, trace_id, span_id, _flags, rest = match.groups()
    if version == "00" and rest:
        return None
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return trace_id, span_id


# What a request made outside any trace carries: one shared empty value, not a
# new list per call.
_NO_HEADERS: tuple[tuple[str, str], ...] = ()


def trace_headers() -> Sequence[tuple[str, str]]:
    """The ``traceparent`` (and ``tracestate``) headers for a request made now.

    Empty when no span is current or ``propagate_trace`` is off. The
    ``tracestate`` comes from the current OpenTelemetry span when it belongs
    to the same trace. Raises nothing.
    """
    span = current_span()
    if span is None and "opentelemetry.trace" not in sys.modules:
        return _NO_HEADERS  # the common case without tracing: not even a settings lookup
    if not settings.current().propagate_trace:
        return _NO_HEADERS
    otel = opentelemetry_span_context()
    if span is not None:
        trace_id, span_id, flags = span.trace_id, span.span_id, _SAMPLED
        if otel is not None and f"{otel.trace_id:032x}" != trace_id:
            otel = None  # another trace's state says nothing about ours
    elif otel is not None:
        trace_id, span_id = f"{otel.trace_id:032x}", f"{otel.span_id:016x}"
        flags = otel.trace_flags
    else:
        return []
    headers = [("traceparent", f"00-{trace_id}-{span_id}-{flags:02x}")]
    state = otel.trace_state.to_header() if otel is not None else ""
    if state:
        headers.append(("tracestate", state))
    return headers
