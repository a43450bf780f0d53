"""Tool approval: a call to a ``td.Tool(fn, requires_approval=True)`` runs only once approved.

* Inside ``td.durable`` an agent's call waits for a decision recorded in the
  journal (:meth:`~trio_dspy.journal.store.JournalStore.decide`), or made by
  the ``approver`` of ``td.context`` (then recorded too); without either the
  run stops with :class:`~trio_dspy.errors.ApprovalRequired`.
* Elsewhere the ``approver`` of ``td.context(approver=async_fn)`` decides
  inline: ``async_fn(request)`` returns ``True``/``False`` or a
  :class:`~trio_dspy.journal.store.Decision` with a note. Without one, the
  call raises :class:`~trio_dspy.errors.ApprovalRequired`, which no run can
  resume (it has no run id).

A denied call raises :class:`~trio_dspy.errors.ToolDenied`; inside an agent
that is the observation the model sees, with the note.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import ApprovalRequired, ToolDenied
from ..settings import current
from .active import ACTIVE_RUN
from .store import ApprovalRequest, Decision

if TYPE_CHECKING:
    from ..modules.tool import Tool

__all__ = ["approve", "denied_message"]


def denied_message(tool: str, note: str | None) -> str:
    """What a denied call of ``tool`` tells the model (with the decision's note)."""
    return f"the call to {tool} was not approved" + (f": {note}" if note else "")


async def approve(tool: Tool, values: Mapping[str, Any]) -> None:
    """Return once the call of ``tool`` with ``values`` may run.

    Raises:
        ApprovalRequired: no approver is set (``run_id`` is ``None``: no resume).
        ToolDenied: the approver denied the call.
    """
    run = ACTIVE_RUN.get()
    if run is not None and run.approved():
        return  # the durable run found its decision in the journal
    request = ApprovalRequest(f"{tool.name}-{uuid.uuid4().hex[:12]}", tool.name, dict(values))
    approver = current().approver
    if approver is None:
        raise ApprovalRequired(
            f"tool {tool.name} needs approval and no approver is set: decide inline with "
            "td.context(approver=async_fn), or run inside td.durable(run_id, journal) to "
            "stop and resume the run once decided",
            run_id=None,
            requests=(request,),
        )
    verdict = await approver(request)
    decision = Decision.of(verdict)
    if not decision.approved:
        raise ToolDenied(
            denied_message(tool.name, decision.note), tool=tool.name, note=decision.note
        )
