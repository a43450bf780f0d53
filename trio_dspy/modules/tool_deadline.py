"""A tool call's deadline, which a call that reports progress pushes back.

:class:`~trio_dspy.Tool` bounds each call by its ``timeout``. A long call
that says it is still working (an MCP server's progress notifications) should
not be cut off while it does, yet must not run for ever: every report gives
the call ``timeout`` seconds from then, up to :data:`MAX_EXTENSION` times
``timeout`` in all. The deadlines of the tool calls in progress in a task
(a tool may wrap a tool) are kept in a context variable; a call captures them
with :func:`current_deadlines` and hands them to whatever receives its
reports, which may run in another task.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

import attrs
import trio

__all__ = ["MAX_EXTENSION", "Deadline", "current_deadlines", "extend", "extendable"]

#: A call that keeps reporting progress ends at this many times its timeout.
MAX_EXTENSION = 10

_DEADLINES: contextvars.ContextVar[tuple[Deadline, ...]] = contextvars.ContextVar(
    "trio_dspy.tool_deadlines", default=()
)


@attrs.define(eq=False)
class Deadline:
    """One tool call's bound: its cancel scope, its timeout, and the latest it may end."""

    scope: trio.CancelScope
    timeout: float
    latest: float


@contextmanager
def extendable(scope: trio.CancelScope, timeout: float) -> Iterator[None]:
    """Let progress reports in the block push ``scope``'s deadline back
    (:func:`extend`): ``timeout`` from each report, up to :data:`MAX_EXTENSION`
    times ``timeout`` from now in all. Raises nothing of its own."""
    deadline = Deadline(scope, timeout, trio.current_time() + timeout * MAX_EXTENSION)
    token = _DEADLINES.set((*_DEADLINES.get(), deadline))
    try:
        yield
    finally:
        _DEADLINES.reset(token)


def current_deadlines() -> tuple[Deadline, ...]:
    """The deadlines of the tool calls in progress in this task, outermost first."""
    return _DEADLINES.get()


def extend(deadlines: tuple[Deadline, ...]) -> None:
    """Give each call in ``deadlines`` its timeout from now, within its latest end.

    Never brings a deadline forward. Raises ``RuntimeError`` outside a trio run.
    """
    now = trio.current_time()
    for deadline in deadlines:
        pushed = min(now + deadline.timeout, deadline.latest)
        if pushed > deadline.scope.deadline:
            deadline.scope.deadline = pushed
