"""The library logs through ``logging``: silent by default, visible when the application asks."""

from __future__ import annotations

import logging

import pytest
import structlog
import trio

from trio_dspy.lm import Backoff, LMRequest, Message
from trio_dspy.logs import get_logger

from .test_lm_support import Scripted, error, ok

REQUEST = LMRequest([Message("user", "hi")])


async def test_a_retry_prints_nothing_by_default(
    autojump_clock: trio.abc.Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    server = Scripted(error(503, "busy"), ok("fine"))
    response = await server.lm(backoff=Backoff(base=0.1)).request(REQUEST)
    assert response.text == "fine" and len(server.requests) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


async def test_a_retry_reaches_logging_at_debug_with_the_bound_ids(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    server = Scripted(error(503, "busy"), ok("fine"))
    caplog.set_level(logging.DEBUG, logger="trio_dspy")
    with structlog.contextvars.bound_contextvars(request_id="req-42"):
        await server.lm(backoff=Backoff(base=0.1)).request(REQUEST)
    retries = [r for r in caplog.records if "lm.retry" in r.getMessage()]
    assert len(retries) == 1
    record = retries[0]
    assert record.levelno == logging.DEBUG
    assert record.name == "trio_dspy.lm.retry"
    assert "attempt=1" in record.getMessage() and "req-42" in record.getMessage()


def test_events_below_the_level_are_dropped_and_above_it_rendered(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(structlog, "is_configured", lambda: False)
    log = get_logger("trio_dspy.test")
    caplog.set_level(logging.INFO, logger="trio_dspy")
    log.debug("hidden", x=1)
    log.warning("shown")
    log.info("with.args %s", "a", y=2)
    assert [r.getMessage() for r in caplog.records] == ["shown", "with.args %s y=2"]


def test_a_configured_structlog_chain_processes_the_events(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_dspy")
    with structlog.testing.capture_logs() as logs:
        get_logger("trio_dspy.test").info("through.app", n=3)
    assert logs == [{"event": "through.app", "n": 3, "log_level": "info"}]


async def test_a_failing_exporter_is_reported_through_logging_only(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from trio_dspy.telemetry import collect, start_span

    class Broken:
        async def export(self, spans: object) -> None:
            raise OSError("disk full")

        async def aclose(self) -> None:
            pass

    caplog.set_level(logging.WARNING, logger="trio_dspy")
    async with collect(Broken()) as collector:
        with start_span("work"):
            pass
    assert collector.stats.export_failures == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    warnings = [r for r in caplog.records if r.name.startswith("trio_dspy.telemetry")]
    assert warnings and "disk full" in warnings[0].getMessage()
