"""``inspect_history``: print a model's last calls in a readable form."""

from __future__ import annotations

import datetime as dt
import sys
from typing import TextIO

from ..errors import ConfigurationError
from .base import BaseLM, HistoryEntry

__all__ = ["format_history", "inspect_history"]

_RULE = "─" * 72


def _entry(entry: HistoryEntry, index: int, total: int) -> str:
    request, response = entry.request, entry.response
    when = dt.datetime.fromtimestamp(entry.started_at).isoformat(timespec="seconds")
    usage = response.usage
    head = (
        f"[{index}/{total}] {when}  model={response.model or '?'}  "
        f"{entry.duration:.3f} s  tokens: {usage.prompt_tokens} prompt + "
        f"{usage.completion_tokens} completion = {usage.total_tokens}"
    )
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
        lines.extend(["", f"{label}:", "", m.content])
        lines.extend(f"  -> tool call {c.name}({c.arguments}) [id={c.id}]" for c in m.tool_calls)
    lines.extend(["", f"Response (finish_reason={response.finish_reason}):", "", response.text])
    lines.extend(f"  -> tool call {c.name}({c.arguments}) [id={c.id}]" for c in response.tool_calls)
    return "\n".join(lines)


def format_history(n: int = 1, lm: BaseLM | None = None) -> str:
    """The last ``n`` calls of ``lm`` (the configured model if ``None``) as text.

    Raises:
        ConfigurationError: ``lm`` is ``None`` and no model is configured.
    """
    if lm is None:
        from ..settings import current

        lm = current().lm
        if lm is None:
            raise ConfigurationError(
                "inspect_history needs a model: pass lm=... or td.configure(lm=...)"
            )
    entries = list(lm.history)[-n:] if n > 0 else []
    if not entries:
        return f"(no calls recorded for {lm!r})"
    total = len(entries)
    body = "\n\n".join(_entry(e, i, total) for i, e in enumerate(entries, start=1))
    return f"{body}\n{_RULE}"


def inspect_history(n: int = 1, lm: BaseLM | None = None, file: TextIO | None = None) -> None:
    """Print the last ``n`` calls of ``lm`` (default: the configured model).

    Each call shows its messages by role, the response text and tool calls,
    the token usage, the duration and the model that answered. Credentials
    are never part of a recorded call, so none are printed.

    Raises:
        ConfigurationError: ``lm`` is ``None`` and no model is configured.
    """
    print(format_history(n, lm), file=file if file is not None else sys.stdout)
