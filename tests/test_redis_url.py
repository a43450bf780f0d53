"""Redis URLs: refused when a Redis-backed object is built, never shown with their password."""

from __future__ import annotations

import traceback
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest
import structlog

import trio_dspy as td
from trio_dspy.lm import LMRequest, Message
from trio_dspy.lm.redis_conn import RedisConnector
from trio_dspy.testing import SimConfig, serve_sim

from .redis_fixture import namespace

REQUEST = LMRequest([Message("user", "What is the capital of France?")])
SECRET = "Sekrit"
BUILDERS: list[Callable[[str], Any]] = [td.RedisCache, td.RedisLimits]
BUILDER_IDS = ["RedisCache", "RedisLimits"]


def refusal(build: Callable[[str], Any], url: str) -> ValueError:
    """The error ``build(url)`` raises, checked to carry nothing of the password."""
    with structlog.testing.capture_logs() as logs, pytest.raises(ValueError) as info:
        build(url)
    shown = "".join(traceback.format_exception(info.value)) + repr(logs)
    assert SECRET not in shown and SECRET.lower() not in shown.lower()
    return info.value


@pytest.mark.parametrize("build", BUILDERS, ids=BUILDER_IDS)
@pytest.mark.parametrize("mark", ["#", "/", "?"])
@pytest.mark.parametrize("user", ["", "worker"])
def test_a_password_with_an_unencoded_hash_slash_or_question_mark_is_refused(
    build: Callable[[str], Any], mark: str, user: str
) -> None:
    url = f"redis://{user}:{SECRET}a{mark}{SECRET}b@127.0.0.1:6379/0"
    error = refusal(build, url)
    assert "percent-encode" in str(error)


@pytest.mark.parametrize("build", BUILDERS, ids=BUILDER_IDS)
@pytest.mark.parametrize(
    ("url", "says"),
    [
        (f"127.0.0.1:6379/0?password={SECRET}", "redis://"),
        (f"worker:{SECRET}@localhost:6379", "redis://"),
        (f"{SECRET}@localhost", "redis://"),
        (f"http://:{SECRET}@localhost:6379/0", "redis://"),
        (f"redis://:{SECRET}@localhost:port/0", "port"),
        (f"redis://:{SECRET}@localhost:70000/0", "port"),
        (f"redis://:{SECRET}@localhost:0/0", "port"),
        (f"redis://:{SECRET}@/0", "host"),
        ("redis://", "host"),
        ("redis:localhost", "host"),
        (f"redis://:{SECRET}@localhost/zero", "database"),
        (f"redis://:{SECRET}@localhost/0?db=one", "db"),
        (f"redis://localhost/0?password={SECRET}&stream_timeout=soon", "stream_timeout"),
        (f"redis://localhost/0?password={SECRET}&max_connections=-1", "max_connections"),
        (f"redis://:{SECRET}@localhost/0#{SECRET}", "#"),
        (f"unix://:{SECRET}@", "socket"),
        (f"unix://:{SECRET}@localhost/tmp/redis.sock", "host"),
        (f"unix:///tmp/redis.sock?password={SECRET}&db=x", "db"),
    ],
)
def test_malformed_redis_urls_are_refused_at_construction(
    build: Callable[[str], Any], url: str, says: str
) -> None:
    error = refusal(build, url)
    assert says in str(error)


VALID = [
    f"redis://:{SECRET}@localhost:6379/0",
    f"redis://worker:{SECRET}@localhost/1",
    f"REDIS://:{SECRET}@LOCALHOST:6379",
    f"rediss://:{SECRET}@redis.example.com:6380/0?ssl_cert_reqs=none",
    f"redis://localhost?password={SECRET}&db=2",
    f"redis://:{SECRET}@[::1]:6379/0",
    f"redis://:p%23{SECRET}%2F%3F@localhost/0",
    f"unix://:{SECRET}@/tmp/redis.sock?db=0",
    f"unix:///tmp/redis.sock?password={SECRET}",
    "unix:/tmp/redis.sock",
]


@pytest.mark.parametrize("build", BUILDERS, ids=BUILDER_IDS)
@pytest.mark.parametrize("url", VALID)
def test_every_accepted_form_hides_its_password_in_the_repr(
    build: Callable[[str], Any], url: str
) -> None:
    shown = repr(build(url)) + repr(RedisConnector(url))
    assert SECRET not in shown and SECRET.lower() not in shown.lower()
    assert "***" in shown or "unix:/tmp" in shown


@pytest.mark.parametrize("url", VALID)
async def test_every_accepted_form_gives_coredis_a_place_to_connect(url: str) -> None:
    import coredis

    pool = coredis.ConnectionPool.from_url(url, decode_components=True)
    assert pool.location is not None  # else every call fails in a coredis assertion


async def test_a_percent_encoded_password_reaches_redis_decoded(redis_url: str) -> None:
    password = f"{SECRET}#/?@%: x"
    user = f"user-{namespace()}"
    async with RedisConnector(redis_url).client() as client:
        await client.acl_setuser(user, "on", f">{password}", "~*", "+@all")
    try:
        parts = urllib.parse.urlsplit(redis_url)
        encoded = urllib.parse.quote(password, safe="")
        url = f"redis://{user}:{encoded}@{parts.netloc}{parts.path}"
        ns = namespace()
        async with serve_sim(SimConfig(latency=0.0)) as sim:
            for _ in range(2):
                cache = td.RedisCache(url, namespace=ns, retry_interval=0)
                lm = td.LM("openai/sim", base_url=sim.base_url, api_key="k", cache=cache)
                with structlog.testing.capture_logs() as logs:
                    response = await lm.request(REQUEST)
                assert not [e for e in logs if e["log_level"] == "warning"], logs
            assert response.cached and sim.stats.requests == 1
        assert SECRET not in repr(cache)
    finally:
        async with RedisConnector(redis_url).client() as client:
            await client.acl_deluser([user])
