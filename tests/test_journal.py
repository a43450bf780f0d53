"""Durable runs on the SQLite journal, in one process (the killed-worker tests are in
``test_journal_processes.py``)."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio

import trio_dspy as td
from trio_dspy.errors import (
    ApprovalRequired,
    JournalBusy,
    JournalCorrupt,
    JournalError,
    JournalMismatch,
)
from trio_dspy.journal import Decision, JournalStore
from trio_dspy.lm import LMResponse, ToolCall
from trio_dspy.testing import DummyLM

from .redis_fixture import namespace

QA = "question -> answer"

refunds: list[str] = []


def refund(order_id: str) -> str:
    """Refund an order (a side effect: it must not happen twice)."""
    refunds.append(order_id)
    return f"refunded {order_id}"


def lookup(order_id: str) -> str:
    """Look an order up."""
    return f"order {order_id}: 12 EUR"


def explode(order_id: str) -> str:
    """Fail, and count it."""
    refunds.append(f"explode {order_id}")
    raise RuntimeError("warehouse offline")


def call(id: str, tool: str, /, **args: Any) -> ToolCall:
    return ToolCall(id, tool, json.dumps(args))


def turn(*calls: ToolCall) -> LMResponse:
    return LMResponse("", tool_calls=calls, finish_reason="tool_calls")


def agent_lm(*turns: LMResponse) -> DummyLM:
    return DummyLM(list(turns), supports_tools=True)


def refund_script() -> list[LMResponse]:
    return [
        turn(call("a", "lookup", order_id="A1")),
        turn(call("b", "refund", order_id="A1")),
        turn(call("c", "finish", answer="refunded A1")),
    ]


@pytest.fixture(autouse=True)
def _clear_refunds() -> None:
    refunds.clear()


@pytest.fixture(params=["sqlite", "redis"])
def journal(request: pytest.FixtureRequest, tmp_path: Path) -> JournalStore:
    """A fresh journal of each kind (Redis: the real server, a namespace of its own)."""
    if request.param == "sqlite":
        return td.Journal(tmp_path / "runs.db")
    pytest.importorskip("coredis")  # the redis extra; the floors run has none
    url: str = request.getfixturevalue("redis_url")
    return td.RedisJournal(url, namespace=namespace(), lock_ttl=2)


def observations(pred: td.Prediction) -> list[tuple[str, str, bool]]:
    return [(c.name, c.observation, c.ok) for s in pred.trajectory.steps for c in s.calls]


async def test_a_recorded_run_replays_without_calling_the_model_or_the_tools(
    journal: JournalStore,
) -> None:
    agent = td.ReAct("request -> answer", tools=[lookup, td.Tool(refund, blocking=False)])
    lm = agent_lm(*refund_script())
    with td.context(lm=lm):
        async with td.durable("r1", journal) as run:
            first = await agent(request="refund A1")
        assert (run.live, run.replayed, run.completed) == (5, 0, True)
        replay_lm = agent_lm()  # no answers: any call would fail
        with td.context(lm=replay_lm), td.track_usage() as usage:
            async with td.durable("r1", journal) as again:
                second = await agent(request="refund A1")
    assert again.completed and (again.live, again.replayed) == (0, 5)
    assert replay_lm.requests == [] and refunds == ["A1"]
    assert second.answer == first.answer == "refunded A1"
    assert observations(second) == observations(first)
    assert usage.requests == 0  # a replayed step is not a model call


async def test_a_crash_mid_run_replays_the_recorded_steps_and_runs_the_rest_live(
    journal: JournalStore,
) -> None:
    agent = td.ReAct("request -> answer", tools=[lookup, td.Tool(refund, blocking=False)])
    script = refund_script()
    crashing = agent_lm(*script[:2])  # the third turn fails: the process "dies" there
    with td.context(lm=crashing), pytest.raises(Exception):  # noqa: B017
        async with td.durable("r2", journal):
            await agent(request="refund A1")
    assert refunds == ["A1"]
    resumed = agent_lm(script[2])
    with td.context(lm=resumed):
        async with td.durable("r2", journal) as run:
            pred = await agent(request="refund A1")
    assert pred.answer == "refunded A1"
    assert refunds == ["A1"]  # the refund was replayed, not run again
    assert len(resumed.requests) == 1 and (run.replayed, run.live) == (4, 1)


async def test_a_tool_that_raised_is_replayed_as_the_same_observation(
    journal: JournalStore,
) -> None:
    agent = td.ReAct("request -> answer", tools=[td.Tool(explode, blocking=False)])
    script = [turn(call("a", "explode", order_id="A1")), turn(call("b", "finish", answer="x"))]
    with td.context(lm=agent_lm(*script)):
        async with td.durable("r3", journal):
            first = await agent(request="go")
    with td.context(lm=agent_lm()):
        async with td.durable("r3", journal):
            second = await agent(request="go")
    assert observations(first) == observations(second)
    assert "warehouse offline" in observations(second)[0][1] and not observations(second)[0][2]
    assert refunds == ["explode A1"]


async def test_a_changed_request_at_a_recorded_step_is_a_mismatch(journal: JournalStore) -> None:
    with td.context(lm=DummyLM([{"answer": "4"}])):
        async with td.durable("r4", journal):
            await td.Predict("question -> answer")(question="2+2?")
    changed = DummyLM([{"answer": "5"}])
    predict = td.Predict("question -> answer", temperature=0.9)  # same prompt, other params
    with td.context(lm=changed), pytest.raises(JournalMismatch) as info:
        async with td.durable("r4", journal):
            await predict(question="2+2?")
    assert info.value.kind == "lm" and info.value.step.startswith("lm-")
    assert info.value.run_id == "r4" and changed.requests == []
    with td.context(lm=changed):
        async with td.durable("r4", journal, on_mismatch="rerun") as run:
            pred = await predict(question="2+2?")
    assert pred.answer == "5" and run.live == 1


async def test_concurrent_identical_requests_replay_whatever_order_they_finish_in(
    journal: JournalStore,
) -> None:
    questions = [f"q{i}" for i in range(6)]

    def index(request: Any) -> int:
        text = str(request.messages[-1].content)
        return next(i for i, q in enumerate(questions) if f"{q}\n" in text or text.endswith(q))

    def answer(request: Any) -> dict[str, str]:
        return {"answer": questions[index(request)]}

    # Later questions answer sooner: the finishing order is the reverse of the asking order.
    lm = DummyLM(answer, latency=lambda r: 0.01 * (len(questions) - index(r)))
    predict = td.Predict("question -> answer")
    with td.context(lm=lm):
        async with td.durable("r5", journal):
            first = await td.gather(*(lambda q=q: predict(question=q) for q in questions))
    with td.context(lm=DummyLM([])):
        async with td.durable("r5", journal) as run:
            second = await td.gather(*(lambda q=q: predict(question=q) for q in questions))
    assert [p.answer for p in second] == [p.answer for p in first] == questions
    assert run.replayed == 6 and run.live == 0


async def test_approval_stops_the_run_and_a_recorded_decision_resumes_it(
    journal: JournalStore,
) -> None:
    tool = td.Tool(refund, blocking=False, requires_approval=True)
    agent = td.ReAct("request -> answer", tools=[lookup, tool])
    script = refund_script()
    with td.context(lm=agent_lm(*script[:2])), pytest.raises(ApprovalRequired) as info:
        async with td.durable("r6", journal):
            await agent(request="refund A1")
    assert info.value.run_id == "r6" and refunds == []
    (request,) = info.value.requests
    assert request.tool == "refund" and request.arguments == {"order_id": "A1"}  # type: ignore[attr-defined]
    assert await journal.pending("r6") == [request]
    # Entering again before a decision stops at the same call, calling nothing.
    with td.context(lm=agent_lm()), pytest.raises(ApprovalRequired):
        async with td.durable("r6", journal):
            await agent(request="refund A1")
    await journal.decide("r6", request.call_id, approved=True)  # type: ignore[attr-defined]
    assert await journal.pending("r6") == []
    resumed = agent_lm(script[2])
    with td.context(lm=resumed):
        async with td.durable("r6", journal) as run:
            pred = await agent(request="refund A1")
    assert pred.answer == "refunded A1" and refunds == ["A1"]
    assert len(resumed.requests) == 1 and run.completed


async def test_parallel_calls_run_when_approved_observe_a_denial_and_stop_when_undecided(
    journal: JournalStore,
) -> None:
    tool = td.Tool(refund, blocking=False, requires_approval=True)
    agent = td.ReAct("request -> answer", tools=[tool])
    calls = [call(c, "refund", order_id=o) for c, o in (("a", "A1"), ("b", "B2"), ("c", "C3"))]
    first_turn = turn(*calls)
    with td.context(lm=agent_lm(first_turn)), pytest.raises(ApprovalRequired) as info:
        async with td.durable("r7", journal):
            await agent(request="refund all")
    ids = {r.arguments["order_id"]: r.call_id for r in info.value.requests}  # type: ignore[attr-defined]
    assert sorted(ids) == ["A1", "B2", "C3"]
    await journal.decide("r7", ids["A1"], approved=True)
    await journal.decide("r7", ids["B2"], approved=False, note="B2 was paid by card")
    with td.context(lm=agent_lm()), pytest.raises(ApprovalRequired) as again:
        async with td.durable("r7", journal):
            await agent(request="refund all")
    assert [r.call_id for r in again.value.requests] == [ids["C3"]]  # type: ignore[attr-defined]
    assert refunds == ["A1"]
    await journal.decide("r7", ids["C3"], approved=True)
    lm = agent_lm(turn(call("d", "finish", answer="done")))
    with td.context(lm=lm):
        async with td.durable("r7", journal):
            pred = await agent(request="refund all")
    assert refunds == ["A1", "C3"]  # A1 replayed, B2 denied, C3 ran once approved
    seen = dict((o[1].split()[-1], o) for o in observations(pred) if o[2])
    assert set(seen) == {"A1", "C3"}
    denied = [o for o in observations(pred) if not o[2]]
    assert len(denied) == 1 and "not approved: B2 was paid by card" in denied[0][1]
    # The model saw the denial as the call's result.
    tool_messages = [m for m in lm.requests[0].messages if m.role == "tool"]
    assert any("B2 was paid by card" in str(m.content) for m in tool_messages)


async def test_an_approver_in_the_context_decides_inline() -> None:
    async def only_small(request: td.journal.ApprovalRequest) -> Decision:
        ok = request.arguments["order_id"] != "BIG"
        return Decision(ok, None if ok else "too large")

    tool = td.Tool(refund, blocking=False, requires_approval=True)
    with td.context(approver=only_small):
        assert await tool(order_id="A1") == "refunded A1"
        with pytest.raises(td.errors.ToolDenied, match="too large"):
            await tool(order_id="BIG")
    with pytest.raises(ApprovalRequired) as info:
        await tool(order_id="A2")
    assert info.value.run_id is None and refunds == ["A1"]


async def test_an_agent_without_a_durable_run_or_approver_stops_without_calling_the_tool() -> None:
    agent = td.ReAct(
        "request -> answer", tools=[td.Tool(refund, blocking=False, requires_approval=True)]
    )
    with td.context(lm=agent_lm(*refund_script()[1:])), pytest.raises(ApprovalRequired):
        await agent(request="refund A1")
    assert refunds == []


async def hold_and_queue(journal: JournalStore, unit: float) -> None:
    order: list[str] = []

    async def hold(name: str, seconds: float) -> None:
        async with td.durable("r8", journal):
            order.append(f"{name} in")
            await trio.sleep(seconds)
            order.append(f"{name} out")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold, "first", 5 * unit)
        await trio.sleep(unit)
        nursery.start_soon(hold, "second", unit)
    assert order == ["first in", "first out", "second in", "second out"]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold, "third", 5 * unit)
        await trio.sleep(unit)
        with pytest.raises(JournalBusy):
            async with td.durable("r8", journal, wait=unit):
                pass


async def test_a_second_holder_of_a_run_waits_or_fails_with_a_typed_error(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    await hold_and_queue(td.Journal(tmp_path / "runs.db"), 1.0)


async def test_a_second_holder_of_a_redis_run_waits_or_fails_with_a_typed_error(
    redis_url: str,
) -> None:
    pytest.importorskip("coredis")
    with trio.fail_after(10):  # real time: the hold is a key in the real server
        await hold_and_queue(td.RedisJournal(redis_url, namespace=namespace()), 0.1)


async def test_a_corrupt_or_newer_journal_file_is_a_typed_error_and_left_untouched(
    tmp_path: Path,
) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 100)
    before = garbage.read_bytes()
    with pytest.raises(JournalCorrupt):
        async with td.durable("r", td.Journal(garbage)):
            pass
    assert garbage.read_bytes() == before
    newer = tmp_path / "newer.db"
    journal = td.Journal(newer)
    async with td.durable("r", journal):
        pass
    await journal.aclose()
    with sqlite3.connect(newer) as conn:
        conn.execute("UPDATE trio_dspy_journal_meta SET value = '99' WHERE key = 'schema'")
    conn.close()
    before = newer.read_bytes()
    with pytest.raises(JournalCorrupt, match="layout 99"):
        async with td.durable("r", td.Journal(newer)):
            pass
    assert newer.read_bytes() == before


async def test_a_damaged_step_is_a_typed_error_not_a_wrong_answer(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    journal = td.Journal(path)
    with td.context(lm=DummyLM([{"answer": "4"}])):
        async with td.durable("r9", journal):
            await td.Predict("question -> answer")(question="2+2?")
    await journal.aclose()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE trio_dspy_journal_blobs SET data = '{\"text\": 5}'")
    conn.close()
    with td.context(lm=DummyLM([])), pytest.raises(JournalCorrupt):
        async with td.durable("r9", td.Journal(path)):
            await td.Predict("question -> answer")(question="2+2?")


async def test_deleting_and_pruning_runs_frees_their_steps_and_shared_payloads_once(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    path = tmp_path / "runs.db"
    journal = td.Journal(path)
    for run_id in ("a", "b"):  # the same answer in two runs: one payload
        with td.context(lm=DummyLM([{"answer": "4"}])):
            async with td.durable(run_id, journal):
                await td.Predict("question -> answer")(question="2+2?")

    def count(table: str) -> int:
        with sqlite3.connect(path) as conn:
            (n,) = conn.execute(f"SELECT count(*) FROM trio_dspy_journal_{table}").fetchone()
        conn.close()
        return int(n)

    assert (count("steps"), count("blobs")) == (2, 1)
    await journal.delete("a")
    assert (count("runs"), count("steps"), count("blobs")) == (1, 1, 1)
    assert await journal.prune(older_than=3600) == 0
    assert await journal.prune(older_than=0) == 1
    assert (count("runs"), count("steps"), count("blobs")) == (0, 0, 0)


async def test_deciding_an_unknown_call_is_a_typed_error(journal: JournalStore) -> None:
    with pytest.raises(JournalError, match="no approval request"):
        await journal.decide("r", "nope", approved=True)


def every_byte(directory: Path) -> bytes:
    """The contents of every file in ``directory`` (the journal, its WAL, its lock file)."""
    return b"".join(Path(e.path).read_bytes() for e in os.scandir(directory))


async def test_secrets_in_the_request_are_never_written_to_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    lm = DummyLM([{"answer": "4"}], api_key="sk-very-secret", headers={"X-Key": "hunter2"})
    with td.context(lm=lm):
        async with td.durable("r10", td.Journal(path)):
            await td.Predict("question -> answer")(question="2+2?")
    data = every_byte(tmp_path)
    assert b"sk-very-secret" not in data and b"hunter2" not in data


async def test_an_evaluation_stops_for_an_approval_instead_of_scoring_a_failed_row(
    tmp_path: Path,
) -> None:
    journal = td.Journal(tmp_path / "runs.db")
    agent = td.ReAct(
        "request -> answer", tools=[td.Tool(refund, blocking=False, requires_approval=True)]
    )
    devset = [td.Example(request="refund A1", answer="done").with_inputs("request")]
    evaluation = td.Evaluate(devset=devset, metric=lambda e, p: e.answer == p.answer)
    lm = agent_lm(*refund_script()[1:])
    with td.context(lm=lm), pytest.raises(ApprovalRequired) as info:
        async with td.durable("eval-1", journal):
            await evaluation(agent)
    assert info.value.run_id == "eval-1" and refunds == []


async def test_an_evaluation_stops_at_a_journal_mismatch_instead_of_scoring_a_failed_row(
    tmp_path: Path,
) -> None:
    journal = td.Journal(tmp_path / "runs.db")
    devset = [td.Example(question="2+2?", answer="4").with_inputs("question")]
    evaluation = td.Evaluate(devset=devset, metric=lambda e, p: e.answer == p.answer)
    with td.context(lm=DummyLM([{"answer": "4"}])):
        async with td.durable("eval-2", journal):
            assert (await evaluation(td.Predict("question -> answer"))).score == 100
    changed = td.Predict("question -> answer", temperature=0.5)
    with td.context(lm=DummyLM([{"answer": "4"}])), pytest.raises(JournalMismatch):
        async with td.durable("eval-2", journal):
            await evaluation(changed)


# ------------------------------------------------------------------ optimizers
def doubling_set(n: int) -> list[td.Example]:
    return [
        td.Example(question=f"what is {i} doubled", answer=str(2 * i)).with_inputs("question")
        for i in range(n)
    ]


def doubler(die_after: int | None = None, scope: trio.CancelScope | None = None) -> DummyLM:
    """Right for every question but 1 and 4, a second per answer.

    With ``die_after``, the ``die_after``-th answer cancels ``scope`` instead (the
    process dies there: the calls in flight get no answer).
    """
    answered = 0

    def answer(request: Any) -> dict[str, str]:
        nonlocal answered
        answered += 1
        if die_after is not None and scope is not None and answered >= die_after:
            scope.cancel()
        i = int(str(request.messages[-1].content).rsplit("what is ", 1)[1].split()[0])
        return {"answer": "-1" if i in (1, 4) else str(2 * i)}

    return DummyLM(answer, latency=1.0)


def random_search() -> td.BootstrapFewShotWithRandomSearch:
    return td.BootstrapFewShotWithRandomSearch(
        td.evaluate.answer_exact_match,
        max_bootstrapped_demos=2,
        max_labeled_demos=2,
        num_candidate_programs=3,
        limit=4,
    )


async def test_an_optimizer_run_cut_short_resumes_without_repeating_a_recorded_call(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    journal = td.Journal(tmp_path / "runs.db")
    whole_lm = doubler()
    with td.context(lm=whole_lm):
        async with td.durable("whole", journal):
            whole = await random_search().compile(td.Predict(QA), trainset=doubling_set(10))
    total = len(whole_lm.requests)
    dies = trio.CancelScope()  # the process dies halfway
    with dies, td.context(lm=doubler(die_after=total // 2, scope=dies)):
        async with td.durable("cut", journal):
            await random_search().compile(td.Predict(QA), trainset=doubling_set(10))
    recorded = set((await journal.load("cut")).steps)
    resumed_lm = doubler()
    with td.context(lm=resumed_lm):
        async with td.durable("cut", journal) as run:
            resumed = await random_search().compile(td.Predict(QA), trainset=doubling_set(10))
    assert [dict(d) for d in resumed.demos] == [dict(d) for d in whole.demos]
    # The optimizer cancels the calls in flight once it has enough demos: those
    # reached the model but are no step.
    assert run.replayed > 0 and run.live <= len(resumed_lm.requests) < total
    # Every call made live was a step the cut run had not recorded. (How many calls
    # an optimizer makes before it has enough demos depends on timing, so the
    # total may differ by the calls in flight when it stops.)
    assert len(set((await journal.load("cut")).steps) - recorded) == run.live


class FailingJournal(td.Journal):
    """A journal whose storage fails from the ``after``-th step on."""

    def __init__(self, path: Path, after: int) -> None:
        super().__init__(path)
        self.after = after

    async def record(self, run_id: str, key: str, step: Any) -> None:
        self.after -= 1
        if self.after < 0:
            raise td.errors.JournalUnavailable("disk full", journal=self.path, run_id=run_id)
        await super().record(run_id, key, step)


async def test_an_optimizer_that_scores_failures_still_stops_at_a_journal_failure(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    lm = doubler()
    with td.context(lm=lm), pytest.raises(td.errors.JournalUnavailable, match="disk full"):
        async with td.durable("r", FailingJournal(tmp_path / "runs.db", after=3)):
            await random_search().compile(td.Predict(QA), trainset=doubling_set(10))
    assert len(lm.requests) <= 3 + 4  # the calls in flight then, and no new one


async def test_a_journal_on_a_redis_that_is_down_fails_before_any_model_call() -> None:
    pytest.importorskip("coredis")
    from .redis_fixture import free_port

    journal = td.RedisJournal(f"redis://127.0.0.1:{free_port()}/0", namespace=namespace())
    lm = DummyLM([{"answer": "4"}])
    with td.context(lm=lm), pytest.raises(td.errors.JournalUnavailable) as info:
        async with td.durable("r", journal):
            await td.Predict("question -> answer")(question="2+2?")
    assert lm.requests == [] and info.value.run_id == "r"


async def test_a_streamed_answer_is_recorded_once_read_and_replayed_whole(
    journal: JournalStore,
) -> None:
    from trio_dspy.lm import LMRequest, Message
    from trio_dspy.testing import SimConfig, SimReply, serve_sim

    text = "a streamed answer, in several pieces"
    request = LMRequest([Message("user", "stream it")])
    config = SimConfig(script=lambda body: SimReply(text=text), stream_chunk_chars=5)
    async with serve_sim(config) as sim:
        lm = td.LM("openai/sim-model", base_url=sim.base_url, api_key="k", max_retries=0)
        async with lm:
            for expected_pieces in (len(text) // 5 + 1, 1):
                async with td.durable("s", journal), lm.stream(request) as stream:
                    pieces = [piece async for piece in stream]
                assert "".join(pieces) == stream.response.text == text
                assert len(pieces) == expected_pieces  # live: as sent; replayed: whole
        assert sim.stats.requests == 1


async def test_a_journal_can_trade_power_cut_durability_for_speed_and_refuses_other_modes(
    tmp_path: Path,
) -> None:
    journal = td.Journal(tmp_path / "runs.db", synchronous="normal")
    with td.context(lm=DummyLM([{"answer": "4"}])):
        async with td.durable("r", journal) as run:
            await td.Predict("question -> answer")(question="2+2?")
    assert run.live == 1 and len((await journal.load("r")).steps) == 1
    with pytest.raises(ValueError, match="synchronous"):
        td.Journal(tmp_path / "x.db", synchronous="off")  # type: ignore[arg-type]


async def test_an_approver_decides_inside_a_durable_run_and_its_decision_is_recorded(
    tmp_path: Path,
) -> None:
    journal = td.Journal(tmp_path / "runs.db")
    asked: list[str] = []

    async def refuse(request: td.journal.ApprovalRequest) -> Decision:
        asked.append(request.tool)
        return Decision(False, "not today")

    agent = td.ReAct(
        "request -> answer", tools=[td.Tool(refund, blocking=False, requires_approval=True)]
    )
    with td.context(lm=agent_lm(*refund_script()[1:]), approver=refuse):
        async with td.durable("r11", journal):
            first = await agent(request="refund A1")
    assert asked == ["refund"] and refunds == []
    assert "not approved: not today" in observations(first)[0][1]
    (tool_step,) = [k for k in (await journal.load("r11")).steps if k.startswith("tool-")]
    assert await journal.decision("r11", tool_step) == Decision(False, "not today")
    with td.context(lm=agent_lm()):  # no approver now: the denial is replayed
        async with td.durable("r11", journal):
            second = await agent(request="refund A1")
    assert observations(second) == observations(first) and asked == ["refund"]
