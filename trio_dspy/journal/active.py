"""The durable run in force for the current task, if any.

A leaf module (it imports nothing of the project at run time) so the model
and tool call paths can read it without importing the journals: when no
durable run is active, that read is all a call pays.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .run import DurableRun

__all__ = ["ACTIVE_RUN"]

#: The run of the innermost ``td.durable`` block (``None`` outside one).
ACTIVE_RUN: contextvars.ContextVar[DurableRun | None] = contextvars.ContextVar(
    "trio_dspy.journal.run", default=None
)
