"""Conversation sessions in Redis: one process, several, and Redis away."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import trio

import trio_dspy as td
from trio_dspy.errors import SessionCorruptError, SessionUnavailableError
from trio_dspy.lm import LMRequest
from trio_dspy.lm.redis_conn import RedisConnector
from trio_dspy.sessions import RedisSession, Session
from trio_dspy.testing import DummyLM

from .redis_fixture import free_port, namespace

ROOT = Path(__file__).resolve().parents[1]
TURNS = [
    ({"question": "Capital of France?"}, {"answer": "Paris"}),
    ({"question": "And of Germany?"}, {"answer": "Berlin"}),
    ({"question": "And of Italy?"}, {"answer": "Rome"}),
]
MESSAGES = [{**i, **o} for i, o in TURNS]
QA = "question, history: History -> answer"


def earlier_turns(request: LMRequest) -> dict[str, Any]:
    return {"answer": str(sum(m.role == "assistant" for m in request.messages))}


async def test_a_redis_session_gives_back_its_turns_in_order(redis_url: str) -> None:
    ns = namespace()
    session = RedisSession(redis_url, "ada", namespace=ns)
    assert isinstance(session, Session)
    for inputs, outputs in TURNS:
        await session.append(inputs, outputs)
    assert (await session.history()).messages == MESSAGES
    # Another process's object for the conversation reads the same; others are apart.
    assert (await RedisSession(redis_url, "ada", namespace=ns).history()).messages == MESSAGES
    assert (await RedisSession(redis_url, "bob", namespace=ns).history()).messages == []
    assert (await RedisSession(redis_url, "ada", namespace=namespace()).history()).messages == []
    assert (
        await RedisSession(redis_url, "ada", namespace=ns, max_turns=2).history()
    ).messages == MESSAGES[1:]
    assert (
        await RedisSession(redis_url, "ada", namespace=ns, max_turns=0).history()
    ).messages == []
    await session.clear()
    assert (await session.history()).messages == []


async def test_a_conversation_expires_ttl_after_its_latest_turn(redis_url: str) -> None:
    ns = namespace()
    session = RedisSession(redis_url, "ada", namespace=ns, ttl=600)
    await session.append(*TURNS[0])
    async with RedisConnector(redis_url).client() as client:
        assert 590_000 < await client.pttl(f"{ns}:session:ada") <= 600_000
    await RedisSession(redis_url, "bob", namespace=ns).append(*TURNS[0])
    async with RedisConnector(redis_url).client() as client:
        assert await client.pttl(f"{ns}:session:bob") == -1  # kept for ever without ttl


async def test_concurrent_turns_of_one_redis_session_run_one_after_another(redis_url: str) -> None:
    ns = namespace()
    lm = DummyLM(earlier_turns, latency=0.05)
    # Two objects, as two requests of one server would make them.
    bots = [td.chat(td.Predict(QA), RedisSession(redis_url, "ada", namespace=ns)) for _ in range(3)]
    with td.context(lm=lm), trio.fail_after(10):
        await td.gather(*(lambda b=b: b(question="hi") for b in bots))
    history = await RedisSession(redis_url, "ada", namespace=ns).history()
    assert [m["answer"] for m in history.messages] == ["0", "1", "2"]


async def test_turns_wait_for_another_process_s_lock(redis_url: str) -> None:
    ns = namespace()
    lm = DummyLM(earlier_turns)
    bot = td.chat(td.Predict(QA), RedisSession(redis_url, "ada", namespace=ns))
    async with RedisConnector(redis_url).client() as client:
        await client.set(f"{ns}:session-lock:ada", "another-process", px=60_000)
    with td.context(lm=lm), trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: bot(question="hi"))
            await trio.sleep(0.2)
            assert len(lm.history) == 0  # still waiting for the lock
            async with RedisConnector(redis_url).client() as client:
                await client.delete([f"{ns}:session-lock:ada"])
    assert len(lm.history) == 1
    async with RedisConnector(redis_url).client() as client:
        assert await client.exists([f"{ns}:session-lock:ada"]) == 0  # released after the turn


async def test_the_lock_of_a_vanished_process_expires(redis_url: str) -> None:
    ns = namespace()
    session = RedisSession(redis_url, "ada", namespace=ns, lock_ttl=0.3)
    async with RedisConnector(redis_url).client() as client:
        await client.set(f"{ns}:session-lock:ada", "killed-process", px=300)
    with td.context(lm=DummyLM(earlier_turns)), trio.fail_after(5):
        assert (await td.chat(td.Predict(QA), session)(question="hi")).answer == "0"


@pytest.mark.slow
async def test_two_processes_chatting_in_one_session_each_see_every_earlier_turn(
    redis_url: str,
) -> None:
    ns = namespace()
    reports: list[list[str]] = [[], []]
    start_at = str(time.time() + 2.0)  # after both have imported trio_dspy

    async def process(worker: int) -> None:
        command = [sys.executable, "-m", "tests.session_worker", "redis", redis_url, "ada"]
        options = ["--namespace", ns, "--turns", "10", "--worker", str(worker)]
        options += ["--start-at", start_at]
        done = await trio.run_process(
            [*command, *options], cwd=ROOT, check=True, capture_stdout=True
        )
        reports[worker] = json.loads(done.stdout.decode().strip().splitlines()[-1])["answers"]

    async with trio.open_nursery() as nursery:
        for worker in range(2):
            nursery.start_soon(process, worker)
    history = await RedisSession(redis_url, "ada", namespace=ns).history()
    # Serialized across the processes: each turn was shown all the turns before it.
    assert [m["answer"] for m in history.messages] == [str(i) for i in range(20)]
    assert sorted(int(a) for a in reports[0] + reports[1]) == list(range(20))


async def test_an_unreachable_redis_is_a_session_unavailable_error_without_the_password() -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    session = RedisSession(url, "ada")
    calls = [session.history, lambda: session.append(*TURNS[0]), session.clear]
    for call in calls:
        with pytest.raises(SessionUnavailableError) as caught:
            await call()
        assert "hunter2" not in str(caught.value) and "127.0.0.1" in str(caught.value)
        assert caught.value.session_id == "ada"
    lm = DummyLM([{"answer": "a"}])
    with td.context(lm=lm), pytest.raises(SessionUnavailableError):
        await td.chat(td.Predict(QA), session)(question="hi")
    assert len(lm.history) == 0  # nothing was spent
    assert "hunter2" not in repr(session)


def test_a_bad_url_is_refused_when_the_session_is_built() -> None:
    with pytest.raises(ValueError, match="percent-encode") as caught:
        RedisSession("redis://:pa#ss@localhost:6379/0", "ada")
    assert "pa#ss" not in str(caught.value)
    with pytest.raises(ValueError, match="ttl"):
        RedisSession("redis://localhost", "ada", ttl=0)
    with pytest.raises(ValueError, match="max_turns"):
        RedisSession("redis://localhost", "ada", max_turns=-2)


async def test_a_turn_another_program_stored_is_a_corrupt_session(redis_url: str) -> None:
    ns = namespace()
    session = RedisSession(redis_url, "ada", namespace=ns)
    await session.append(*TURNS[0])
    async with RedisConnector(redis_url).client() as client:
        await client.rpush(f"{ns}:session:ada", ["[1, 2]"])
    with pytest.raises(SessionCorruptError, match="turn 1 of session 'ada'"):
        await session.history()
    await session.clear()
    assert (await session.history()).messages == []


async def test_strings_read_back_from_redis_follow_the_text_policy(redis_url: str) -> None:
    ns = namespace()
    session = RedisSession(redis_url, "ada", namespace=ns)
    await session.append({"question": "caf\udce9?"}, {"answer": "ok"})
    async with RedisConnector(redis_url).client() as client:
        await client.rpush(
            f"{ns}:session:ada",
            [
                b'{"inputs": {"question": "a\\ud800"}, "outputs": {"answer": "\\ud83d\\ude00"}}',
                b'{"inputs": {"question": "\xff\xfe"}, "outputs": {}}',
            ],
        )
    assert (await session.history()).messages == [
        {"question": "caf\ufffd?", "answer": "ok"},
        {"question": "a\ufffd", "answer": "😀"},
        {"question": "\ufffd\ufffd"},
    ]


async def test_a_cancelled_turn_releases_its_lock_at_once(redis_url: str) -> None:
    ns = namespace()
    lm = DummyLM(earlier_turns, latency=60.0)
    bot = td.chat(td.Predict(QA), RedisSession(redis_url, "ada", namespace=ns))
    with td.context(lm=lm), trio.move_on_after(0.3) as scope:
        await bot(question="slow")
    assert scope.cancelled_caught
    async with RedisConnector(redis_url).client() as client:
        assert await client.exists([f"{ns}:session-lock:ada"]) == 0
        assert await client.exists([f"{ns}:session:ada"]) == 0


async def connections_received(redis_url: str) -> int:
    async with RedisConnector(redis_url).client() as client:
        stats = await client.info("stats")
    received = stats["total_connections_received"]
    assert isinstance(received, int)
    return received


async def test_a_turn_opens_one_redis_connection_for_its_lock_history_and_append(
    redis_url: str,
) -> None:
    bot = td.chat(td.Predict(QA), RedisSession(redis_url, "ada", namespace=namespace()))
    with td.context(lm=DummyLM(earlier_turns)):
        await bot(question="warm-up")  # loads the scripts
        before = await connections_received(redis_url)
        for _ in range(3):
            await bot(question="hi")
    # Each turn one, and one for each of the two counts.
    assert await connections_received(redis_url) - before == 3 + 1
