"""Traces of predictor calls: what each predictor was asked and what it answered.

While a program runs inside :func:`collect_trace`, every ``Predict`` call that
succeeds appends ``(predictor, inputs, prediction)`` to the trace, DSPy's
shape. The trace lives in a :class:`contextvars.ContextVar`, so it belongs to
the task that opened it and to the tasks that task spawns inside the block:
two examples evaluated concurrently, each in its own child task with its own
``collect_trace()``, never see each other's calls. Outside a block nothing is
recorded and a call pays one ``ContextVar.get``.

Optimizers read traces to turn a successful run into few-shot demos; metrics
receive them as their ``trace`` argument.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeAlias

__all__ = ["Trace", "TraceEntry", "collect_trace", "current_trace", "record"]

TraceEntry: TypeAlias = tuple[Any, dict[str, Any], Any]
"""``(predictor, inputs, prediction)`` for one predictor call."""

Trace: TypeAlias = list[TraceEntry]

_trace: contextvars.ContextVar[Trace | None] = contextvars.ContextVar(
    "trio_dspy.trace", default=None
)


@contextmanager
def collect_trace() -> Iterator[Trace]:
    """Record the predictor calls made inside the block (child tasks included).

    Yields the list the calls are appended to, in the order they finish.
    Blocks nest: the inner block collects its own calls and the outer one
    does not see them.
    """
    trace: Trace = []
    token = _trace.set(trace)
    try:
        yield trace
    finally:
        _trace.reset(token)


def current_trace() -> Trace | None:
    """The trace being collected for the calling task, or ``None``."""
    return _trace.get()


def record(predictor: Any, inputs: Mapping[str, Any], prediction: Any) -> None:
    """Append one predictor call to the active trace, if there is one."""
    trace = _trace.get()
    if trace is not None:
        trace.append((predictor, dict(inputs), prediction))
