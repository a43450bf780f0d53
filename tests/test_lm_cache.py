"""The opt-in response cache: keys, memory LRU, SQLite on disk, single-flight."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import structlog
import trio

import trio_dspy as td
from trio_dspy.errors import LMAuthError
from trio_dspy.lm import Cache, DiskCache, LMRequest, LMResponse, MemoryCache, Message
from trio_dspy.lm.cache import cache_key

from .test_lm_support import KEY, Scripted, chat, error, ok


def ask(text: str = "hi", **params: Any) -> LMRequest:
    return LMRequest([Message("user", text)], params=params)


def test_key_depends_on_what_shapes_the_answer() -> None:
    base = cache_key("openai", "m", "http://a/v1", ask())
    assert base == cache_key("openai", "m", "http://a/v1", ask())
    assert len(base) == 64
    others = {
        cache_key("anthropic", "m", "http://a/v1", ask()),
        cache_key("openai", "m2", "http://a/v1", ask()),
        cache_key("openai", "m", "http://b/v1", ask()),
        cache_key("openai", "m", "http://a/v1", ask("bye")),
        cache_key("openai", "m", "http://a/v1", ask(temperature=0.5)),
        cache_key("openai", "m", "http://a/v1", attrs.evolve(ask(), tool_choice="auto")),
    }
    assert base not in others and len(others) == 6
    # the timeout does not change the answer, and credentials never enter the key
    assert cache_key("openai", "m", "http://a/v1", attrs.evolve(ask(), timeout=3)) == base
    assert cache_key("openai", "m", "http://a/v1", ask(api_key=KEY)) == base


async def test_identical_calls_are_served_from_memory() -> None:
    server = Scripted(ok("first", usage=(10, 5)), ok("second"))
    lm = server.lm(cache=True)
    with td.track_usage() as usage:
        one = await lm.request(ask())
        two = await lm.request(ask())
        other = await lm.request(ask("different"))
    assert (one.text, one.cached) == ("first", False)
    assert (two.text, two.cached, two.usage.total_tokens) == ("first", True, 0)
    assert other.text == "second"
    assert len(server.requests) == 2
    assert usage.total_tokens == 15 + other.usage.total_tokens  # cached calls cost nothing
    assert usage.requests == 2  # and are no model call


async def test_the_cache_is_keyed_without_credentials() -> None:
    server = Scripted(ok("shared"))
    cache = MemoryCache()
    await server.lm(cache=cache, api_key="key-one").request(ask())
    hit = await server.lm(cache=cache, api_key="key-two").request(ask())
    assert hit.cached and len(server.requests) == 1


async def test_memory_cache_evicts_least_recently_used() -> None:
    cache = MemoryCache(maxsize=2)
    for key in ("a", "b"):
        await cache.put(key, LMResponse(text=key))
    assert await cache.get("a") is not None  # a is now the most recent
    await cache.put("c", LMResponse(text="c"))
    assert await cache.get("b") is None
    assert [await cache.get(k) for k in ("a", "c")] == [LMResponse(text="a"), LMResponse(text="c")]
    assert len(cache) == 2


def test_disk_cache_survives_new_lms_and_trio_runs(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "lm.sqlite3"
    server = Scripted(ok("stored", tool_calls=[], usage=(3, 4)))

    async def call() -> LMResponse:
        async with server.lm(cache=str(path)) as lm:
            return await lm.request(ask())

    first = trio.run(call)
    second = trio.run(call)
    assert (first.cached, second.cached) == (False, True)
    assert second.text == "stored" and second.model == first.model
    assert len(server.requests) == 1
    assert KEY.encode() not in path.read_bytes()


async def test_disk_cache_round_trips_tool_calls(tmp_path: Path) -> None:
    calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    server = Scripted(httpx.Response(200, json=_tool_reply(calls)))
    lm = server.lm(cache=DiskCache(tmp_path / "c.sqlite3"))
    await lm.request(ask())
    hit = await lm.request(ask())
    assert hit.cached and hit.tool_calls[0].name == "f" and hit.finish_reason == "tool_calls"
    await lm.aclose()


def _tool_reply(calls: list[dict[str, Any]]) -> dict[str, Any]:
    return chat(None, tool_calls=calls, finish="tool_calls")


def delayed(seconds: float, reply: httpx.Response) -> Any:
    async def handler(request: httpx.Request) -> httpx.Response:
        await trio.sleep(seconds)
        return reply

    return handler


async def test_concurrent_identical_calls_share_one_request(autojump_clock: Any) -> None:
    server = Scripted(delayed(1.0, ok("shared", usage=(10, 5))))
    lm = server.lm(cache=True)
    results: list[LMResponse] = []

    async def call() -> None:
        results.append(await lm.request(ask()))

    with td.track_usage() as usage:
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(call)
    assert len(server.requests) == 1
    assert [r.text for r in results] == ["shared"] * 10
    assert sum(not r.cached for r in results) == 1
    assert usage.total_tokens == 15


async def test_a_waiter_takes_over_when_the_leader_is_cancelled(autojump_clock: Any) -> None:
    server = Scripted(delayed(5.0, ok("from the follower")))
    lm = server.lm(cache=True)
    follower: list[LMResponse] = []

    async def lead(task_status: Any) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            await lm.request(ask())

    async def follow() -> None:
        follower.append(await lm.request(ask()))

    async with trio.open_nursery() as nursery:
        leader_scope = await nursery.start(lead)
        nursery.start_soon(follow)
        await trio.sleep(1)
        leader_scope.cancel()
    assert follower[0].text == "from the follower"
    assert not follower[0].cached  # it made the call itself
    assert len(server.requests) == 2
    assert trio.current_time() == pytest.approx(6.0)


async def test_waiters_share_the_leaders_failure(autojump_clock: Any) -> None:
    server = Scripted(delayed(1.0, error(401, "bad key")))
    lm = server.lm(cache=True)
    failures: list[BaseException] = []

    async def call() -> None:
        try:
            await lm.request(ask())
        except LMAuthError as exc:
            failures.append(exc)

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(call)
    assert len(failures) == 5 and len(server.requests) == 1
    assert all("bad key" in str(f) for f in failures)
    assert len({id(f) for f in failures}) == 5  # each task raises its own exception object


async def test_failures_are_not_cached() -> None:
    server = Scripted(error(400, "bad"), ok("fine"))
    lm = server.lm(cache=True)
    with pytest.raises(td.errors.LMBadRequestError):
        await lm.request(ask())
    assert (await lm.request(ask())).text == "fine"


async def test_a_broken_cache_does_not_fail_calls() -> None:
    class Broken(Cache):
        async def get(self, key: str) -> LMResponse | None:
            raise OSError("disk on fire")

        async def put(self, key: str, response: LMResponse) -> None:
            raise OSError("disk on fire")

    server = Scripted(ok("still works"))
    assert (await server.lm(cache=Broken()).request(ask())).text == "still works"


# Stored entries no version of this library wrote: each must read as a miss.
BAD_ENTRIES: dict[str, str | bytes] = {
    "deep nesting": "[" * 100_000,
    "deeply nested alternatives": '{"alternatives": [' * 150 + "{}" + "]}" * 150,
    "a number for the text": '{"text": 5}',
    "a list for the text": '{"text": ["stored"]}',
    "an object for the tool calls": '{"tool_calls": {}}',
    "a tool call without a name": '{"tool_calls": [{"id": "c1"}]}',
    "a float token count": '{"usage": {"total_tokens": 1.5}}',
    "a boolean token count": '{"usage": {"total_tokens": true}}',
    "a non-finite token count": '{"usage": {"total_tokens": Infinity}}',
    "a huge token count": '{"usage": {"total_tokens": 1' + "0" * 40 + "}}",
    "a 5000-digit token count": '{"usage": {"total_tokens": ' + "9" * 5000 + "}}",
    "a string for cached": '{"text": "stored", "cached": "no"}',
    "not an object": '"stored"',
    "truncated": '{"text": "stor',
    "invalid UTF-8": b'{"text": "\xff"}',
    "an encoded surrogate": b'{"text": "\xed\xa0\x80"}',
    "empty": "",
}


def poison_disk(path: Path, key: str, value: str | bytes) -> None:
    """Store ``value`` under ``key`` in the disk cache at ``path`` as another program might."""
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )
        conn.execute("INSERT OR REPLACE INTO responses (key, value) VALUES (?, ?)", (key, value))
        conn.commit()
    finally:
        conn.close()


@pytest.mark.parametrize("entry", list(BAD_ENTRIES), ids=list(BAD_ENTRIES))
async def test_a_poisoned_disk_cache_entry_is_a_miss_and_is_replaced(
    tmp_path: Path, entry: str
) -> None:
    path = tmp_path / "c.sqlite3"
    server = Scripted(ok("fresh"))
    lm = server.lm(cache=DiskCache(path))
    poison_disk(path, cache_key("openai", "m", lm.base_url, ask()), BAD_ENTRIES[entry])
    with structlog.testing.capture_logs() as logs:
        first = await lm.request(ask())
        second = await lm.request(ask())
    await lm.aclose()
    assert (first.text, first.cached) == ("fresh", False)
    assert (second.text, second.cached) == ("fresh", True)  # the entry was overwritten
    assert len(server.requests) == 1
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == [
        "lm.cache_entry_unreadable"
    ]


async def test_a_poisoned_entry_is_logged_once_however_often_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    # The model keeps failing, so the bad entry is never replaced.
    server = Scripted(*[error(400, "bad")] * 5)
    lm = server.lm(cache=DiskCache(path))
    poison_disk(path, cache_key("openai", "m", lm.base_url, ask()), "[" * 100_000)
    with structlog.testing.capture_logs() as logs:
        for _ in range(5):
            with pytest.raises(td.errors.LMBadRequestError):
                await lm.request(ask())
    await lm.aclose()
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [e["event"] for e in warnings] == ["lm.cache_entry_unreadable"]
    assert warnings[0]["reason"] and "[[[" not in repr(warnings[0])


async def test_a_lone_surrogate_in_a_stored_entry_reads_as_a_replacement_character(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.sqlite3"
    server = Scripted(ok("fresh"))
    lm = server.lm(cache=DiskCache(path))
    poison_disk(path, cache_key("openai", "m", lm.base_url, ask()), '{"text": "a\\ud800b"}')
    hit = await lm.request(ask())
    await lm.aclose()
    assert (hit.text, hit.cached) == ("a\ufffdb", True)
    assert not server.requests
