"""How a step is named in the journal, and how a changed request is noticed.

A step's key is ``{kind}-{identity}-{occurrence}``: ``identity`` hashes what
makes the step *that* step, and ``occurrence`` counts the earlier steps of
the run with the same identity. Neither depends on the order in which
concurrent tasks run or finish, so a run whose examples or tool calls run
at once replays each step under the key it was recorded with.

* A model request's identity is its provider, model, messages and rollout id
  (the conversation); its **fingerprint** the rest of what shapes the
  answer: tools, tool choice, response format, sampling parameters. The same
  conversation sent with another fingerprint is a changed program
  (:class:`~trio_dspy.errors.JournalMismatch`). A different conversation is a
  different step: it runs live.
* A tool call's identity is the tool's name and its arguments; its
  fingerprint the tool's definition (description and parameters).

Credentials are never part of either: the parameters the response cache
leaves out of its keys are left out here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from ..lm.cache import digest, request_settings

if TYPE_CHECKING:
    from ..lm.base import BaseLM
    from ..messages import LMRequest
    from ..modules.tool import Tool

__all__ = ["lm_identity", "tool_identity"]


def lm_identity(lm: BaseLM, request: LMRequest) -> tuple[str, str]:
    """The identity and fingerprint of a model request (both SHA-256 hex digests)."""
    identity = {
        "provider": lm.provider,
        "model": lm.model,
        "messages": [attrs.asdict(m) for m in request.messages],
        "rollout_id": request.rollout_id,
    }
    return digest(identity), digest(request_settings(request))


def tool_identity(name: str, arguments: Any, tool: Tool | None) -> tuple[str, str]:
    """The identity and fingerprint of an agent's call of tool ``name`` with
    ``arguments`` (as :func:`~trio_dspy.modules.trajectory.call_arguments`
    decodes them), as SHA-256 hex digests."""
    definition = None if tool is None else attrs.asdict(tool.spec())
    return digest({"tool": name, "arguments": arguments}), digest(definition)
