"""Fixtures shared by every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
