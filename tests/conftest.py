"""Fixtures shared by every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trio

from trio_dspy import settings


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    """Each test starts from default process-wide settings."""
    saved = settings._global
    settings._global = settings.Settings()
    try:
        yield
    finally:
        settings._global = saved


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of a redis-server started for this test session (stopped after it)."""
    from .redis_fixture import RedisProcess

    server = RedisProcess()
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def slow_100_continue(monkeypatch: pytest.MonkeyPatch) -> None:
    """Servers write ``100 Continue`` 0.2 s late (on the clock in use), so a client
    that does not wait for it sends its body while the 100 is being written."""
    send_all = trio.SocketStream.send_all

    async def slow_interim(self: trio.SocketStream, data: bytes) -> None:
        if bytes(data).startswith(b"HTTP/1.1 100"):
            await trio.sleep(0.2)
        await send_all(self, data)

    monkeypatch.setattr(trio.SocketStream, "send_all", slow_interim)
