"""``inspect_history``: print the last calls in a readable form.

Every call is kept twice, both bounded: in its model's own
:attr:`~trio_dspy.lm.BaseLM.history` and in one process-wide history of the
calls of every model (:data:`GLOBAL_HISTORY_SIZE` of them), so
``td.inspect_history()`` works anywhere, as DSPy's does.
"""

from __future__ import annotations

import collections
import datetime as dt
import sys
from typing import Protocol, TextIO

from .history_entry import HistoryEntry

__all__ = [
    "GLOBAL_HISTORY_SIZE",
    "HasHistory",
    "HistoryEntry",
    "clear_history",
    "format_history",
    "inspect_history",
    "record",
]


class HasHistory(Protocol):
    """A model as this module sees it (a :class:`~trio_dspy.lm.BaseLM`): its name and calls."""

    model: str
    history: collections.deque[HistoryEntry]


#: How many calls (of every model together) the process-wide history keeps.
GLOBAL_HISTORY_SIZE = 200

# (model, entry) of the last calls of every model, oldest first.
_global: collections.deque[tuple[str, HistoryEntry]] = collections.deque(maxlen=GLOBAL_HISTORY_SIZE)


def record(lm: HasHistory, entry: HistoryEntry) -> None:
    """Keep ``entry`` (a finished call of ``lm``) in ``lm.history`` and the process-wide one."""
    lm.history.append(entry)
    _global.append((lm.model, entry))


def clear_history() -> None:
    """Forget the process-wide history (each model keeps its own)."""
    _global.clear()


_RULE = "─" * 72


def _entry(entry: HistoryEntry, index: int, total: int, lm: str = "") -> str:
    request, response = entry.request, entry.response
    when = dt.datetime.fromtimestamp(entry.started_at).isoformat(timespec="seconds")
    usage = response.usage
    head = (
        f"[{index}/{total}] {when}  model={response.model or '?'}  "
        f"{entry.duration:.3f} s  tokens: {usage.prompt_tokens} prompt + "
        f"{usage.completion_tokens} completion = {usage.total_tokens}"
    )
    if lm:
        head += f"  lm={lm}"
    if response.cached:
        head += "  (cached)"
    lines = [_RULE, head]
    if request.params:
        params = ", ".join(f"{k}={v!r}" for k, v in request.params.items())
        lines.append(f"params: {params}")
    if request.tools:
        lines.append(f"tools: {', '.join(t.name for t in request.tools)}")
    if request.response_format is not None:
        lines.append(f"response_format: {request.response_format.type}")
    for m in request.messages:
        label = f"{m.role.capitalize()} message"
        if m.role == "tool":
            label += f" (tool_call_id={m.tool_call_id})"
        lines.extend(["", f"{label}:", "", m.text])
        lines.extend(f"  -> tool call {c.name}({c.arguments}) [id={c.id}]" for c in m.tool_calls)
    lines.extend(["", f"Response (finish_reason={response.finish_reason}):", "", response.text])
    lines.extend(f"  -> tool call {c.name}({c.arguments}) [id={c.id}]" for c in response.tool_calls)
    return "\n".join(lines)


def format_history(n: int = 1, lm: HasHistory | None = None) -> str:
    """The last ``n`` calls of ``lm`` as text; of any model when ``lm`` is ``None``.

    Raises nothing: with no calls recorded it says so.
    """
    if lm is not None:
        entries = [("", e) for e in list(lm.history)[-n:]] if n > 0 else []
        empty = f"(no calls recorded for {lm!r})"
    else:
        entries = list(_global)[-n:] if n > 0 else []
        empty = "(no calls recorded yet: inspect_history shows the calls made by any LM)"
    if not entries:
        return empty
    total = len(entries)
    body = "\n\n".join(_entry(e, i, total, model) for i, (model, e) in enumerate(entries, start=1))
    return f"{body}\n{_RULE}"


def inspect_history(n: int = 1, lm: HasHistory | None = None, file: TextIO | None = None) -> None:
    """Print the last ``n`` calls of ``lm``, or of any model when ``lm`` is ``None``.

    Works anywhere, inside or outside ``td.context``: without ``lm`` it reads
    the process-wide history of every model's calls (the last
    :data:`GLOBAL_HISTORY_SIZE`), each marked with its model. Each call shows
    its messages by role, the response text and tool calls, the token usage,
    the duration and the model that answered. Credentials are never part of a
    recorded call, so none are printed.
    """
    print(format_history(n, lm), file=file if file is not None else sys.stdout)
