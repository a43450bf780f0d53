"""inspect_history: a readable account of recent calls."""

from __future__ import annotations

import io

import httpx
import pytest

import trio_dspy as td
from trio_dspy.lm import LMRequest, Message, ToolCall, format_history, inspect_history
from trio_dspy.lm.history import GLOBAL_HISTORY_SIZE, clear_history

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


def test_without_any_call_it_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    clear_history()
    td.inspect_history()
    assert "no calls recorded yet" in capsys.readouterr().out


async def test_it_works_outside_any_context_and_shows_every_models_calls(
    capsys: pytest.CaptureFixture[str],
) -> None:
    clear_history()
    first = Scripted(ok("from the first")).lm("openai/first")
    second = Scripted(ok("from the second")).lm("openai/second")
    await first.request(LMRequest([Message("user", "q1")]))
    await second.request(LMRequest([Message("user", "q2")]))
    td.inspect_history(2)  # no td.context, nothing configured
    printed = capsys.readouterr().out
    assert printed.index("from the first") < printed.index("from the second")
    assert "lm=openai/first" in printed and "lm=openai/second" in printed
    inspect_history(5, lm=first)  # one model's own history still works
    assert "from the second" not in capsys.readouterr().out


async def test_the_process_wide_history_is_bounded() -> None:
    clear_history()
    lm = Scripted().lm(history_size=3)
    for i in range(GLOBAL_HISTORY_SIZE + 5):
        await lm.request(LMRequest([Message("user", f"q{i}")]))
    assert len(lm.history) == 3
    text = format_history(GLOBAL_HISTORY_SIZE + 5)
    assert text.count("User message:") == GLOBAL_HISTORY_SIZE
    assert "q4\n" not in text and f"q{GLOBAL_HISTORY_SIZE + 4}" in text
    assert format_history(0) == format_history(-1)


def test_empty_history_says_so() -> None:
    out = io.StringIO()
    inspect_history(lm=Scripted().lm(), file=out)
    assert "no calls recorded" in out.getvalue()
