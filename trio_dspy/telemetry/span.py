"""Spans shaped like OpenTelemetry's, and the current span of a task.

A :class:`Span` records one timed operation: its name, ids, parent, kind,
start and end (``time.time_ns``), attributes, events and status. Open one with
:func:`start_span`, a *synchronous* context manager that is meant to be used
from async code::

    with start_span("chat gpt-4o", kind=SpanKind.CLIENT) as span:
        reply = await lm.request(...)
        span.set_attribute("gen_ai.usage.output_tokens", reply.usage.completion_tokens)

The current span lives in a :class:`contextvars.ContextVar`. trio copies the
spawner's context into every new task, so a task spawned inside a span is that
span's child, whichever nursery runs it. A span opened with no current span
(or with ``new_trace=True``) starts a new trace, or joins the trace of the
current OpenTelemetry span if the application has one (see :func:`start_span`).

Recording is off unless a collector is active (see
:func:`trio_dspy.telemetry.collect`): without one, :func:`start_span` hands out
a shared non-recording span and touches no context variable, so instrumented
code costs a contextvar lookup and two method calls. That is also why log
correlation (``trace_id`` / ``span_id`` bound into ``structlog.contextvars``)
only happens while a collector is active: ids that reach no exporter would
correlate log lines with nothing. For correlation without exporting, open
``collect()`` with no exporters.
"""

from __future__ import annotations

import contextvars
import enum
import os
import random
import sys
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from types import TracebackType
from typing import Any, Final, Protocol, TypeAlias

import attrs
import structlog
import trio

__all__ = [
    "AttributeValue",
    "Event",
    "NonRecordingSpan",
    "Span",
    "SpanKind",
    "SpanSink",
    "Status",
    "StatusCode",
    "clean_attributes",
    "current_span",
    "detach_from_tracing",
    "error_type",
    "opentelemetry_span_context",
    "recording",
    "send_spans_to",
    "start_span",
]

AttributeValue: TypeAlias = (
    str | bool | int | float | Sequence[str] | Sequence[bool] | Sequence[int] | Sequence[float]
)
"""What an attribute may hold: a scalar or a homogeneous sequence of scalars."""


class SpanKind(enum.Enum):
    """The role of a span; the values are OTLP's ``SPAN_KIND_*`` numbers."""

    INTERNAL = 1
    SERVER = 2
    CLIENT = 3
    PRODUCER = 4
    CONSUMER = 5


class StatusCode(enum.Enum):
    """The outcome of a span; the values are OTLP's ``STATUS_CODE_*`` numbers."""

    UNSET = 0
    OK = 1
    ERROR = 2


@attrs.frozen
class Status:
    """A span's status: a :class:`StatusCode` and, for errors, a description."""

    code: StatusCode = StatusCode.UNSET
    description: str | None = None


_UNSET_STATUS: Final = Status()


@attrs.frozen
class Event:
    """Something that happened at one instant during a span."""

    name: str
    time_ns: int
    attributes: dict[str, AttributeValue] = attrs.field(factory=dict)


def clean_attributes(attributes: Mapping[str, Any] | None) -> dict[str, AttributeValue]:
    """Copy ``attributes``, dropping ``None`` values and freezing sequences as tuples."""
    out: dict[str, AttributeValue] = {}
    if attributes:
        for key, value in attributes.items():
            if value is None:
                continue
            if isinstance(value, list | tuple):
                value = tuple(value)
            out[key] = value
    return out


def error_type(exc: BaseException) -> str:
    """The ``error.type`` of an exception: its class's qualified name.

    Cancellation (``trio.Cancelled``, or a group made only of them) is
    ``"cancelled"``, so dashboards can tell a cancelled request from a failed one.
    """
    if isinstance(exc, trio.Cancelled):
        return "cancelled"
    if isinstance(exc, BaseExceptionGroup) and exc.split(trio.Cancelled)[1] is None:
        return "cancelled"
    return type(exc).__qualname__


@attrs.define(eq=False)
class Span:
    """One timed operation of a trace (mutable until it ends).

    Attributes:
        name: low-cardinality operation name, e.g. ``"chat gpt-4o"``.
        trace_id: 32 lowercase hex digits shared by every span of the trace.
        span_id: 16 lowercase hex digits, unique to this span.
        parent_id: the parent's ``span_id``, ``None`` for a trace's root.
        kind: the span's :class:`SpanKind`.
        start_ns / end_ns: wall-clock nanoseconds (``time.time_ns``);
            ``end_ns`` is ``None`` while the span is open.
        attributes: key/value pairs (see the names in ``telemetry.semconv``).
        status: :class:`Status`; ``ERROR`` when an exception escaped the span.
        events: timestamped :class:`Event` records (exceptions among them).
    """

    name: str
    trace_id: str
    span_id: str
    parent_id: str | None = None
    kind: SpanKind = SpanKind.INTERNAL
    start_ns: int = attrs.field(factory=time.time_ns)
    end_ns: int | None = None
    attributes: dict[str, AttributeValue] = attrs.field(factory=dict)
    status: Status = _UNSET_STATUS
    events: list[Event] = attrs.field(factory=list)

    @property
    def is_recording(self) -> bool:
        """Whether this span records anything (``False`` with no collector active).

        Check it before computing costly attributes such as message contents.
        """
        return True

    @property
    def duration_ns(self) -> int | None:
        """``end_ns - start_ns``, or ``None`` while the span is open."""
        return None if self.end_ns is None else self.end_ns - self.start_ns

    def set_attribute(self, key: str, value: AttributeValue | None) -> None:
        """Set one attribute; ``None`` is ignored, a list is stored as a tuple."""
        if value is None:
            return
        if isinstance(value, list | tuple):
            value = tuple(value)
        self.attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, AttributeValue | None]) -> None:
        """Set several attributes at once, with the rules of :meth:`set_attribute`."""
        self.attributes.update(clean_attributes(attributes))

    def add_event(
        self, name: str, attributes: Mapping[str, AttributeValue | None] | None = None
    ) -> None:
        """Record that ``name`` happened now, with optional attributes."""
        self.events.append(Event(name, time.time_ns(), clean_attributes(attributes)))

    def record_exception(self, exc: BaseException) -> None:
        """Add an ``exception`` event with the exception's type, message and traceback.

        The status is left alone; a span whose block an exception escapes is
        marked ``ERROR`` automatically.
        """
        self.add_event(
            "exception",
            {
                "exception.type": type(exc).__qualname__,
                "exception.message": str(exc),
                "exception.stacktrace": "".join(traceback.format_exception(exc)),
            },
        )

    def set_status(self, code: StatusCode, description: str | None = None) -> None:
        """Set the status; a description is kept only for ``ERROR`` (as in OpenTelemetry)."""
        self.status = Status(code, description if code is StatusCode.ERROR else None)


class _DiscardDict(dict[str, AttributeValue]):
    """A dict that ignores writes, for the shared non-recording span."""

    def __setitem__(self, key: str, value: AttributeValue) -> None:
        pass

    def update(self, *args: Any, **kwargs: Any) -> None:
        pass


class NonRecordingSpan(Span):
    """The span handed out when no collector is active: every write is ignored.

    Its ids are the all-zero "invalid" ids of OpenTelemetry, it is never
    current and never exported. There is one shared instance.
    """

    __slots__ = ()

    @property
    def is_recording(self) -> bool:
        """Always ``False``."""
        return False

    def set_attribute(self, key: str, value: AttributeValue | None) -> None:
        """Ignored."""

    def set_attributes(self, attributes: Mapping[str, AttributeValue | None]) -> None:
        """Ignored."""

    def add_event(
        self, name: str, attributes: Mapping[str, AttributeValue | None] | None = None
    ) -> None:
        """Ignored."""

    def record_exception(self, exc: BaseException) -> None:
        """Ignored."""

    def set_status(self, code: StatusCode, description: str | None = None) -> None:
        """Ignored."""


# A private generator so that code seeding the ``random`` module cannot make
# two processes produce the same ids.
_ids = random.Random(os.urandom(16))
_randbytes = _ids.randbytes
# A forked child inherits the generator's state: reseed it, or parent and
# child would hand out the same trace and span ids.
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(16)))
_ZERO_TRACE_ID: Final = "0" * 32
_ZERO_SPAN_ID: Final = "0" * 16


def _new_span_id() -> str:
    while (span_id := _randbytes(8).hex()) == _ZERO_SPAN_ID:
        pass
    return span_id


_NON_RECORDING: Final = NonRecordingSpan(
    "non-recording", _ZERO_TRACE_ID, _ZERO_SPAN_ID, start_ns=0, end_ns=0, attributes=_DiscardDict()
)


class SpanSink(Protocol):
    """Where finished spans go (a :class:`~trio_dspy.telemetry.Collector`)."""

    def submit(self, span: Span) -> None:
        """Take a finished span without waiting (called as each span ends)."""


_current: contextvars.ContextVar[Span | None] = contextvars.ContextVar(
    "trio_dspy.telemetry.span", default=None
)
# The sink that receives finished spans; set by send_spans_to() for its block.
_active: contextvars.ContextVar[SpanSink | None] = contextvars.ContextVar(
    "trio_dspy.telemetry.collector", default=None
)


def recording() -> bool:
    """Whether a collector records the spans started here (else :func:`start_span`
    is a no-op, and a hot path need not build a span's name). Raises nothing."""
    return _active.get() is not None


def current_span() -> Span | None:
    """The innermost recording span of the calling task, or ``None``."""
    return _current.get()


@contextmanager
def send_spans_to(sink: SpanSink) -> Iterator[None]:
    """Record spans in the block (and the tasks spawned inside it) into ``sink``.

    This is what turns recording on; :func:`~trio_dspy.telemetry.collect`
    uses it for its body. Blocks nest: the innermost sink wins.
    """
    token = _active.set(sink)
    try:
        yield
    finally:
        _active.reset(token)


def detach_from_tracing() -> None:
    """Stop recording in the calling task: no sink, no current span, no trace ids in logs.

    For a task that must not trace itself into the spans it handles, such as
    a collector's drain task (it was spawned inside the trace it drains).
    """
    _active.set(None)
    _current.set(None)
    structlog.contextvars.unbind_contextvars("trace_id", "span_id")


class _NoopScope:
    """Context manager of :func:`start_span` when nothing records."""

    __slots__ = ()

    def __enter__(self) -> Span:
        return _NON_RECORDING

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


_NOOP_SCOPE: Final = _NoopScope()


def _structlog_vars() -> tuple[contextvars.ContextVar[Any], contextvars.ContextVar[Any]]:
    """The context variables behind ``structlog.contextvars`` keys trace_id and span_id.

    Found once through the public API (in a throwaway context): setting them
    directly costs a fraction of ``bind_contextvars`` + ``reset_contextvars``,
    and is exactly what those do.
    """
    tokens = contextvars.Context().run(
        structlog.contextvars.bind_contextvars, trace_id=None, span_id=None
    )
    return tokens["trace_id"].var, tokens["span_id"].var


_TRACE_ID_VAR, _SPAN_ID_VAR = _structlog_vars()


def _restore(parent: object) -> None:
    """Make ``parent`` (a span, or anything else for none) current again."""
    if isinstance(parent, Span):
        _current.set(parent)
        structlog.contextvars.bind_contextvars(trace_id=parent.trace_id, span_id=parent.span_id)
    else:
        _current.set(None)
        structlog.contextvars.unbind_contextvars("trace_id", "span_id")


class _SpanScope:
    """Context manager of :func:`start_span` while a collector is active."""

    __slots__ = ("_sink", "_span", "_span_token", "_token", "_trace_token")

    def __init__(self, sink: SpanSink, span: Span) -> None:
        self._sink = sink
        self._span = span

    def __enter__(self) -> Span:
        span = self._span
        self._token = _current.set(span)
        self._trace_token = _TRACE_ID_VAR.set(span.trace_id)
        self._span_token = _SPAN_ID_VAR.set(span.span_id)
        return span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        span = self._span
        span.end_ns = time.time_ns()
        if exc is not None:
            kind = error_type(exc)
            span.attributes["error.type"] = kind
            if kind == "cancelled":
                span.status = Status(StatusCode.ERROR, "cancelled")
            else:
                span.status = Status(StatusCode.ERROR, str(exc) or kind)
                span.record_exception(exc)
        try:
            _SPAN_ID_VAR.reset(self._span_token)
            _TRACE_ID_VAR.reset(self._trace_token)
            _current.reset(self._token)
        except ValueError:
            # Exited in another context than it was entered in (e.g. across an
            # async generator's yield): restore by value instead of by token.
            _restore(self._token.old_value)
        self._sink.submit(span)
        return None


def opentelemetry_span_context() -> Any | None:
    """The ``SpanContext`` of the current OpenTelemetry span, or ``None``.

    ``None`` as well when there is no valid current span, or when the
    application has not imported ``opentelemetry.trace``: a program without
    OpenTelemetry pays one dictionary lookup and imports nothing.
    """
    otel_trace = sys.modules.get("opentelemetry.trace")
    if otel_trace is None:
        return None
    context = otel_trace.get_current_span().get_span_context()
    return context if context.is_valid else None


def _opentelemetry_parent() -> tuple[str, str] | None:
    """The trace id and span id of the current OpenTelemetry span (see above)."""
    context = opentelemetry_span_context()
    if context is None:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def start_span(
    name: str,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, AttributeValue | None] | None = None,
    *,
    new_trace: bool = False,
    remote_parent: tuple[str, str] | None = None,
) -> AbstractContextManager[Span]:
    """Open a span around a block: ``with start_span("name") as span: ...``.

    The span is the child of the current span. With none, or with
    ``new_trace=True`` (which ignores the current span: a request handled
    inside a batch's span is a trace of its own), it joins the trace of the
    current OpenTelemetry span if the application uses OpenTelemetry and one
    is active (that span is its parent: the application's context comes
    first), and otherwise starts a new trace. The span becomes the current
    span for the block and for tasks spawned inside it, and binds ``trace_id`` / ``span_id`` into
    ``structlog.contextvars`` (restored on exit). On exit it records the end
    time; if an exception escapes it sets status ``ERROR`` and ``error.type``
    (``"cancelled"`` for cancellation) and records an ``exception`` event;
    then it hands the span to the active collector without waiting. The
    exception itself always propagates unchanged.

    With no collector active this returns a shared no-op context manager
    whose span (:class:`NonRecordingSpan`) ignores every write. It raises
    nothing of its own.

    ``remote_parent`` (a trace id and span id, as an incoming ``traceparent``
    header carries them, see :func:`~trio_dspy.telemetry.propagation.parse_traceparent`)
    makes the span that remote span's child: a server joins its caller's trace.
    """
    sink = _active.get()
    if sink is None:
        return _NOOP_SCOPE
    parent = None if new_trace else _current.get()
    if remote_parent is not None:
        trace_id, parent_id = remote_parent
    elif parent is None:
        joined = _opentelemetry_parent()
        if joined is None:
            while (trace_id := _randbytes(16).hex()) == _ZERO_TRACE_ID:
                pass
            parent_id = None
        else:
            trace_id, parent_id = joined
    else:
        trace_id, parent_id = parent.trace_id, parent.span_id
    span = Span(
        name,
        trace_id,
        _new_span_id(),
        parent_id,
        kind,
        time.time_ns(),
        None,
        clean_attributes(attributes) if attributes else {},
    )
    return _SpanScope(sink, span)
