"""The durable run in force for the current task, if any.

A leaf module of its package (it imports nothing of the journals) so the
model and tool call paths can read it without importing them: when no
durable run is active, that read is all a call pays. :class:`ActiveRun` is
what those paths call on the run (:class:`~trio_dspy.journal.run.DurableRun`
implements it).
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..lm.base import BaseLM, LMStream
    from ..messages import LMRequest, LMResponse, ToolCall
    from ..modules.tool import Tool
    from ..modules.trajectory import ToolCallRecord

__all__ = ["ACTIVE_RUN", "ActiveRun"]


class ActiveRun(Protocol):
    """A durable run as the model, tool and agent call paths see it."""

    def inside_step(self) -> bool:
        """True inside a live model step of this run (its own calls are not steps)."""

    def approved(self) -> bool:
        """True while a tool call this run found approved in its journal runs."""

    async def lm_request(self, lm: BaseLM, request: LMRequest, trace_content: bool) -> LMResponse:
        """``lm.request(request)`` in this run: replayed, or live and recorded."""

    def lm_stream(
        self, lm: BaseLM, request: LMRequest, trace_content: bool
    ) -> AbstractAsyncContextManager[LMStream]:
        """``lm.stream(request)`` in this run: replayed whole, or live and recorded."""

    async def tool_step(
        self,
        call: ToolCall,
        tool: Tool | None,
        live: Callable[[ToolCall], Awaitable[ToolCallRecord]],
    ) -> ToolCallRecord:
        """An agent's tool call in this run: replayed, approved, denied, waiting or live."""

    async def stop_if_waiting(self, records: Sequence[ToolCallRecord]) -> None:
        """Stop the run if any of one turn's ``records`` waits for a decision."""


#: The run of the innermost ``td.durable`` block (``None`` outside one).
ACTIVE_RUN: contextvars.ContextVar[ActiveRun | None] = contextvars.ContextVar(
    "trio_dspy.journal.run", default=None
)
