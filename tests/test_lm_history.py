"""inspect_history: a readable account of recent calls."""

from __future__ import annotations

import io

import httpx
import pytest

import trio_dspy as td
from trio_dspy.errors import ConfigurationError
from trio_dspy.lm import LMRequest, Message, ToolCall, inspect_history

from .test_lm_support import KEY, Scripted, chat, ok


async def test_prints_messages_response_usage_and_model() -> None:
    calls = [
        {"id": "c7", "type": "function", "function": {"name": "lookup", "arguments": '{"id": 7}'}}
    ]
    server = Scripted(
        ok("Paris.", usage=(12, 3)), httpx.Response(200, json=chat(None, tool_calls=calls))
    )
    lm = server.lm()
    await lm.request(
        LMRequest([Message("system", "Answer briefly."), Message("user", "Capital of France?")])
    )
    await lm.request(
        LMRequest(
            [
                Message("user", "order?"),
                Message("assistant", "", tool_calls=(ToolCall("c1", "lookup", "{}"),)),
                Message("tool", "not found", tool_call_id="c1"),
            ],
            params={"temperature": 0.0},
        )
    )
    out = io.StringIO()
    inspect_history(n=2, lm=lm, file=out)
    text = out.getvalue()
    assert text.index("Capital of France?") < text.index("order?")  # oldest first
    for expected in (
        "System message:",
        "Answer briefly.",
        "User message:",
        "Paris.",
        "12 prompt + 3 completion = 15",
        "model=m-2024",
        "Tool message (tool_call_id=c1):",
        'tool call lookup({"id": 7}) [id=c7]',
        "temperature=0.0",
        " s ",
    ):
        assert expected in text
    assert KEY not in text


async def test_n_limits_and_default_lm_comes_from_settings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = Scripted(ok("one"), ok("two"))
    lm = server.lm()
    await lm.request(LMRequest([Message("user", "first question")]))
    await lm.request(LMRequest([Message("user", "second question")]))
    td.configure(lm=lm)
    inspect_history()
    printed = capsys.readouterr().out
    assert "second question" in printed and "first question" not in printed


def test_without_any_lm_it_says_what_to_do() -> None:
    with pytest.raises(ConfigurationError, match="configure"):
        inspect_history()


def test_empty_history_says_so() -> None:
    out = io.StringIO()
    inspect_history(lm=Scripted().lm(), file=out)
    assert "no calls recorded" in out.getvalue()
