"""Conversation sessions in memory and in SQLite, and ``td.chat`` over them."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest
import structlog
import trio

import trio_dspy as td
from trio_dspy.errors import (
    SessionCorruptError,
    SessionError,
    SessionUnavailableError,
    SignatureError,
)
from trio_dspy.lm import LMRequest
from trio_dspy.sessions import MemorySession, Session, SQLiteSession
from trio_dspy.testing import DummyLM, SimConfig, SimReply, serve_sim

ROOT = Path(__file__).resolve().parents[1]
TURNS = [
    ({"question": "Capital of France?"}, {"answer": "Paris"}),
    ({"question": "And of Germany?"}, {"answer": "Berlin"}),
    ({"question": "And of Italy?"}, {"answer": "Rome"}),
]
MESSAGES = [{**i, **o} for i, o in TURNS]


class QA(td.Signature):
    """Answer the question."""

    question: str = td.InputField()
    history: td.History = td.InputField()
    answer: str = td.OutputField()


MakeSession = Callable[..., Any]


@pytest.fixture(params=["memory", "sqlite"])
def make_session(request: pytest.FixtureRequest, tmp_path: Path) -> MakeSession:
    """A factory of sessions of one store: ``make_session(session_id, max_turns=...)``."""
    if request.param == "memory":
        kept: dict[str, MemorySession] = {}

        def memory(session_id: str = "s", **options: Any) -> MemorySession:
            # One conversation per id, as a store keeps it; options apply to the latest.
            session = MemorySession(**options)
            if session_id in kept:
                session._turns = kept[session_id]._turns
            kept[session_id] = session
            return session

        return memory

    def in_file(session_id: str = "s", **options: Any) -> SQLiteSession:
        return SQLiteSession(tmp_path / "sessions.db", session_id, **options)

    return in_file


def echo_earlier_turns(request: LMRequest) -> dict[str, Any]:
    """An answer saying how many earlier turns (assistant messages) the model was shown."""
    return {"answer": f"after {sum(m.role == 'assistant' for m in request.messages)}"}


# ------------------------------------------------------------------ the stores
async def test_each_store_gives_back_its_turns_in_order(make_session: MakeSession) -> None:
    session = make_session()
    assert isinstance(session, Session)
    assert (await session.history()).messages == []
    for inputs, outputs in TURNS:
        await session.append(inputs, outputs)
    assert (await session.history()).messages == MESSAGES
    # Another object for the same conversation reads the same turns.
    assert (await make_session().history()).messages == MESSAGES


async def test_clear_forgets_one_conversation_only(make_session: MakeSession) -> None:
    first, second = make_session("first"), make_session("second")
    await first.append(*TURNS[0])
    await second.append(*TURNS[1])
    await first.clear()
    assert (await first.history()).messages == []
    assert (await second.history()).messages == [MESSAGES[1]]


async def test_max_turns_gives_the_latest_turns(make_session: MakeSession) -> None:
    writer = make_session()
    for inputs, outputs in TURNS:
        await writer.append(inputs, outputs)
    assert (await make_session(max_turns=2).history()).messages == MESSAGES[1:]
    assert (await make_session(max_turns=5).history()).messages == MESSAGES
    assert (await make_session(max_turns=0).history()).messages == []
    assert (await make_session().history()).messages == MESSAGES  # every turn is kept


@attrs.frozen
class Order:
    drink: str
    shots: int


async def test_records_are_stored_as_their_json_objects(make_session: MakeSession) -> None:
    session = make_session()
    await session.append({"question": "usual?"}, {"order": Order("latte", 2), "sizes": ("s", "m")})
    assert (await session.history()).messages == [
        {"question": "usual?", "order": {"drink": "latte", "shots": 2}, "sizes": ["s", "m"]}
    ]


async def test_a_stored_turn_does_not_change_with_the_values_it_was_given() -> None:
    session = MemorySession()
    context = ["a"]
    await session.append({"context": context}, {"answer": "x"})
    context.append("b")
    (message,) = (await session.history()).messages
    assert message["context"] == ["a"]
    message["context"].append("c")  # nor with the history it gave
    assert (await session.history()).messages[0]["context"] == ["a"]


async def test_a_value_no_session_can_store_is_refused_naming_the_field(
    make_session: MakeSession,
) -> None:
    session = make_session()
    with pytest.raises(TypeError, match="'when'.*object"):
        await session.append({"question": "q", "when": object()}, {"answer": "a"})
    with pytest.raises(ValueError, match="answer"):
        await session.append({"answer": "q"}, {"answer": "a"})
    with pytest.raises(TypeError, match="dict"):
        await session.append(["question"], {"answer": "a"})
    assert (await session.history()).messages == []


def test_session_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_turns"):
        MemorySession(max_turns=-1)
    with pytest.raises(ValueError, match="max_turns"):
        SQLiteSession(tmp_path / "x.db", "s", max_turns=True)
    with pytest.raises(ValueError, match="MemorySession"):
        SQLiteSession(":memory:", "s")
    with pytest.raises(ValueError, match="empty"):
        SQLiteSession(tmp_path / "x.db", "")
    with pytest.raises(TypeError, match="string"):
        SQLiteSession(tmp_path / "x.db", 42)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- SQLite
async def test_a_session_waiting_for_a_locked_file_leaves_the_event_loop_running(
    tmp_path: Path,
) -> None:
    path = tmp_path / "chats.db"
    session = SQLiteSession(path, "s")
    await session.clear()  # creates the file
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process is writing
    stored = trio.Event()

    async def append() -> None:
        await session.append(*TURNS[0])
        stored.set()

    ticks = 0
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(append)
            for _ in range(5):  # other tasks run while the append waits in its thread
                await trio.sleep(0.02)
                ticks += 1
            assert not stored.is_set()
            blocker.execute("COMMIT")
            blocker.close()
    assert ticks == 5 and (await session.history()).messages == [MESSAGES[0]]


async def test_a_file_locked_for_longer_than_the_timeout_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "chats.db"
    await SQLiteSession(path, "s").clear()
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(SessionUnavailableError, match="locked"):
            await SQLiteSession(path, "s", timeout=0.05).append(*TURNS[0])
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert (await SQLiteSession(path, "s").history()).messages == []


async def test_the_first_calls_on_a_new_file_all_succeed_when_they_come_at_once(
    tmp_path: Path,
) -> None:
    # SQLite may refuse the switch to WAL at once ("database is locked",
    # without waiting busy_timeout) while other connections open the same
    # new file: about one new file in ten failed so before the switch waited.
    with trio.fail_after(60):  # real time: the calls run in worker threads
        for n in range(100):
            async with trio.open_nursery() as nursery:
                for i in range(6):
                    session = SQLiteSession(tmp_path / f"{n}.db", f"customer-{i}")
                    nursery.start_soon(session.history)
    for n in range(100):
        with sqlite3.connect(tmp_path / f"{n}.db") as db:
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_the_session_file_is_in_wal_mode_with_a_versioned_layout(tmp_path: Path) -> None:
    await SQLiteSession(tmp_path / "chats.db", "s").append(*TURNS[0])
    with sqlite3.connect(tmp_path / "chats.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("SELECT * FROM trio_dspy_session_meta").fetchall() == [("schema", "1")]


async def test_sessions_live_beside_the_application_s_own_tables(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        db.execute("INSERT INTO customers (name) VALUES ('Ada')")
    session = SQLiteSession(path, "ada")
    await session.append(*TURNS[0])
    assert (await session.history()).messages == [MESSAGES[0]]
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT name FROM customers").fetchall() == [("Ada",)]


@pytest.mark.parametrize(
    "content",
    [b"this is not a database\n" * 100, b"SQLite format 3\x00" + b"\xff" * 4000],
    ids=["text", "damaged-header"],
)
async def test_a_file_that_is_not_a_session_database_is_refused_and_left_as_it_was(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "chats.db"
    path.write_bytes(content)
    session = SQLiteSession(path, "s")
    for call in (session.history, lambda: session.append(*TURNS[0]), session.clear):
        with pytest.raises(SessionCorruptError) as caught:
            await call()
        assert str(path) in str(caught.value) and caught.value.store == str(path)
    assert path.read_bytes() == content
    assert sorted(p.name for p in await trio.Path(tmp_path).iterdir()) == ["chats.db"]  # no journal


async def test_a_file_of_a_later_layout_is_refused_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "chats.db"
    await SQLiteSession(path, "s").append(*TURNS[0])
    with sqlite3.connect(path) as db:
        db.execute("UPDATE trio_dspy_session_meta SET value = '2' WHERE key = 'schema'")
    with pytest.raises(SessionError, match="layout 2"):
        await SQLiteSession(path, "s").append(*TURNS[1])
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM trio_dspy_session_turns").fetchone() == (1,)


async def test_a_file_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    session = SQLiteSession(tmp_path / "missing-dir" / "chats.db", "s")
    with pytest.raises(SessionUnavailableError, match="missing-dir"):
        await session.history()


async def test_a_turn_another_program_wrote_is_a_corrupt_session_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "chats.db"
    session = SQLiteSession(path, "s")
    await session.append(*TURNS[0])
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO trio_dspy_session_turns (session_id, turn, created_at) VALUES (?, ?, 0)",
            ("s", '{"question": "half'),
        )
    with pytest.raises(SessionCorruptError, match=r"turn 1 of session 's'.*clear\(\)"):
        await session.history()
    assert (await SQLiteSession(path, "s", max_turns=0).history()).messages == []
    await session.clear()
    assert (await session.history()).messages == []


@pytest.mark.slow
async def test_two_processes_appending_to_one_session_lose_no_turn(tmp_path: Path) -> None:
    path = tmp_path / "chats.db"
    await SQLiteSession(path, "shared").clear()  # the file exists before both start
    command = [sys.executable, "-m", "tests.session_worker", "sqlite", str(path), "shared"]
    command += ["--turns", "200", "--start-at", str(time.time() + 2.0)]  # after both imported

    async def run_worker(w: int) -> None:
        await trio.run_process([*command, "--worker", str(w)], cwd=ROOT, check=True)

    async with trio.open_nursery() as nursery:
        for w in range(2):
            nursery.start_soon(run_worker, w)
    questions = [m["question"] for m in (await SQLiteSession(path, "shared").history()).messages]
    assert len(questions) == 400
    for worker in range(2):  # each process's turns are all there, in its order
        assert [q for q in questions if q.startswith(f"{worker}-")] == [
            f"{worker}-{i}" for i in range(200)
        ]


# ------------------------------------------------------------------ text policy
async def test_lone_surrogates_become_replacement_characters(make_session: MakeSession) -> None:
    session = make_session()
    await session.append({"question": "caf\udce9?"}, {"answer": "\ud83d"})
    assert (await session.history()).messages == [{"question": "caf\ufffd?", "answer": "\ufffd"}]


async def test_a_surrogate_escape_stored_by_another_program_is_read_as_a_replacement(
    tmp_path: Path,
) -> None:
    path = tmp_path / "chats.db"
    session = SQLiteSession(path, "s")
    await session.clear()
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO trio_dspy_session_turns (session_id, turn, created_at) VALUES (?, ?, 0)",
            ("s", '{"inputs": {"q\\udc80": "a\\ud800"}, "outputs": {"answer": "\\ud83d\\ude00"}}'),
        )
    assert (await session.history()).messages == [{"q\ufffd": "a\ufffd", "answer": "😀"}]


# -------------------------------------------------------------------- td.chat
def turns_of(body: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(role, text) of each non-system message of a request body."""
    return [(m["role"], m["content"]) for m in body["messages"] if m["role"] != "system"]


async def test_chat_sends_earlier_turns_as_user_and_assistant_messages(
    make_session: MakeSession,
) -> None:
    answers = iter(["Paris", "Berlin"])
    config = SimConfig(script=lambda body: SimReply(outputs={"answer": next(answers)}))
    session = make_session()
    async with serve_sim(config) as sim:
        lm = td.LM("openai/sim-model", base_url=sim.base_url, api_key="k")
        bot = td.chat(td.Predict(QA), session)
        with td.context(lm=lm):
            first = await bot(question="Capital of France?")
            second = await bot(question="And of Germany?")
        await lm.aclose()
    assert (first.answer, second.answer) == ("Paris", "Berlin")
    assert [role for role, _ in turns_of(sim.requests[0])] == ["user"]
    sent = turns_of(sim.requests[1])
    assert sent[:2] == [
        ("user", "[[ ## question ## ]]\nCapital of France?"),
        ("assistant", "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]"),
    ]
    assert sent[2][0] == "user" and sent[2][1].startswith("[[ ## question ## ]]\nAnd of Germany?")
    assert (await session.history()).messages == [
        {"question": "Capital of France?", "answer": "Paris"},
        {"question": "And of Germany?", "answer": "Berlin"},
    ]


async def test_two_turns_of_one_session_run_one_after_another(
    make_session: MakeSession, autojump_clock: trio.testing.MockClock
) -> None:
    lm = DummyLM(echo_earlier_turns, latency=1.0)
    bot = td.chat(td.Predict(QA), make_session())
    start = trio.current_time()
    with td.context(lm=lm):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: bot(question="one"))
            await trio.lowlevel.checkpoint()
            nursery.start_soon(lambda: bot(question="two"))
    assert trio.current_time() - start == pytest.approx(2.0)
    # The second turn saw the first one, and both were kept in order.
    assert [m["answer"] for m in (await bot.session.history()).messages] == ["after 0", "after 1"]
    assert [m.role for m in lm.history[-1].request.messages] == [
        "system",
        "user",
        "assistant",
        "user",
    ]


async def test_turns_of_different_sessions_run_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    lm = DummyLM(echo_earlier_turns, latency=1.0)
    bots = [td.chat(td.Predict(QA), MemorySession()) for _ in range(4)]
    start = trio.current_time()
    with td.context(lm=lm):
        results = await td.gather(*(lambda b=b: b(question="hi") for b in bots))
    assert trio.current_time() - start == pytest.approx(1.0)  # one latency, not four
    assert [r.answer for r in results] == ["after 0"] * 4


class Barrier(td.Module):
    """A program whose calls all wait until ``parties`` of them are running at once."""

    def __init__(self, parties: int) -> None:
        self.qa = td.Predict(QA)
        self.parties = parties
        self.running = 0
        self.all_in = trio.Event()

    async def forward(self, question: str, history: td.History) -> td.Prediction:
        self.running += 1
        if self.running == self.parties:
            self.all_in.set()
        await self.all_in.wait()
        return td.Prediction(answer=f"{question} after {len(history.messages)}")


async def test_turns_of_different_sessions_in_one_store_run_at_once(
    make_session: MakeSession,
) -> None:
    # Real time (worker threads would move an autojump clock): the bound only
    # stops a test that would otherwise wait for ever on serialized turns.
    program = Barrier(4)
    bots = [td.chat(program, make_session(f"customer-{i}")) for i in range(4)]
    with trio.fail_after(60):
        for round in range(2):
            results = await td.gather(*(lambda b=b: b(question="hi") for b in bots))
            assert [r.answer for r in results] == [f"hi after {round}"] * 4
            program.running, program.all_in = 0, trio.Event()


async def test_max_turns_caps_the_history_the_model_is_sent(make_session: MakeSession) -> None:
    lm = DummyLM(echo_earlier_turns)
    bot = td.chat(td.Predict(QA), make_session(max_turns=2))
    with td.context(lm=lm):
        answers = [(await bot(question=f"q{i}")).answer for i in range(5)]
    assert answers == ["after 0", "after 1", "after 2", "after 2", "after 2"]
    sent = [m.text for m in lm.history[-1].request.messages if m.role == "user"]
    assert "q2" in sent[0] and "q3" in sent[1] and "q4" in sent[2]


async def test_chat_needs_exactly_one_history_input() -> None:
    with pytest.raises(SignatureError, match=r"exactly one td.History input.*has none"):
        td.chat(td.Predict("question -> answer"), MemorySession())

    class TwoHistories(td.Module):
        def __init__(self) -> None:
            self.a = td.Predict("question, history: History -> answer")
            self.b = td.Predict("answer, log: History -> summary")

    with pytest.raises(SignatureError, match="has 2: history, log"):
        td.chat(TwoHistories(), MemorySession())

    class ForgetsIt(td.Module):
        def __init__(self) -> None:
            self.qa = td.Predict(QA)

        async def forward(self, question: str) -> td.Prediction:
            return await self.qa(question=question)

    with pytest.raises(SignatureError, match="does not take it"):
        td.chat(ForgetsIt(), MemorySession())


async def test_chat_finds_the_history_input_among_forward_s_parameters() -> None:
    class Support(td.Module):
        def __init__(self) -> None:
            self.reply = td.Predict("message, earlier: History -> reply")
            self.tone = td.Predict("reply -> polite: bool")

        async def forward(self, message: str, earlier: td.History) -> td.Prediction:
            reply = (await self.reply(message=message, earlier=earlier)).reply
            return td.Prediction(reply=reply, polite=(await self.tone(reply=reply)).polite)

    lm = DummyLM([{"reply": "Hello!"}, {"polite": True}, {"reply": "Again!"}, {"polite": True}])
    bot = td.chat(Support(), MemorySession())
    assert bot.history_input == "earlier"
    assert [name for name, _ in bot.named_predictors()] == ["program.reply", "program.tone"]
    with td.context(lm=lm):
        await bot(message="hi")
        await bot(message="hi again")
    assert (await bot.session.history()).messages[0] == {
        "message": "hi",
        "reply": "Hello!",
        "polite": True,
    }
    assert [m.role for m in lm.history[2].request.messages] == [
        "system",
        "user",
        "assistant",
        "user",
    ]


async def test_passing_the_history_yourself_is_refused() -> None:
    bot = td.chat(td.Predict(QA), MemorySession())
    with pytest.raises(TypeError, match="fills 'history' from the session"):
        await bot(question="q", history=td.History([]))


async def test_an_input_no_session_can_store_fails_before_the_model_is_called() -> None:
    lm = DummyLM([{"answer": "a"}])
    bot = td.chat(
        td.Predict("question, attachment: dict[str, str], history: History -> answer"),
        MemorySession(),
    )
    with td.context(lm=lm), pytest.raises(TypeError, match="attachment"):
        await bot(question="q", attachment={"file": object()})
    assert lm.history == type(lm.history)()


async def test_a_failed_call_stores_no_turn(make_session: MakeSession) -> None:
    session = make_session()
    bot = td.chat(td.Predict(QA), session)
    with td.context(lm=DummyLM([])), pytest.raises(td.errors.ConfigurationError):
        await bot(question="q")
    assert (await session.history()).messages == []


async def test_a_corrupt_session_file_stops_the_turn_before_the_model_is_called(
    tmp_path: Path,
) -> None:
    path = tmp_path / "chats.db"
    path.write_bytes(b"not a database" * 100)
    lm = DummyLM([{"answer": "a"}])
    with td.context(lm=lm), pytest.raises(SessionCorruptError):
        await td.chat(td.Predict(QA), SQLiteSession(path, "s"))(question="q")
    assert len(lm.history) == 0


class ForgetfulStore:
    """A session of one's own (no turn()), whose appends fail when told to."""

    def __init__(self) -> None:
        self.turns: list[dict[str, Any]] = []
        self.down = False

    async def history(self) -> td.History:
        await trio.lowlevel.checkpoint()
        return td.History(self.turns)

    async def append(self, inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> None:
        await trio.lowlevel.checkpoint()
        if self.down:
            raise SessionUnavailableError("the store is down", store="mine", session_id="s")
        self.turns.append({**inputs, **outputs})

    async def clear(self) -> None:
        self.turns.clear()


async def test_a_session_of_your_own_needs_only_history_append_and_clear(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = ForgetfulStore()
    assert isinstance(store, Session)
    bot = td.chat(td.Predict(QA), store)
    start = trio.current_time()
    with td.context(lm=DummyLM(echo_earlier_turns, latency=1.0)):
        await td.gather(lambda: bot(question="one"), lambda: bot(question="two"))
    assert trio.current_time() - start == pytest.approx(2.0)  # serialized in this process
    assert [t["answer"] for t in store.turns] == ["after 0", "after 1"]


async def test_a_turn_the_session_cannot_store_hands_back_its_prediction() -> None:
    store = ForgetfulStore()
    store.down = True
    with (
        td.context(lm=DummyLM([{"answer": "Paris"}])),
        pytest.raises(SessionUnavailableError) as caught,
    ):
        await td.chat(td.Predict(QA), store)(question="Capital of France?")
    assert isinstance(caught.value.prediction, td.Prediction)
    assert caught.value.prediction.answer == "Paris"


async def test_chain_of_thought_turns_keep_the_reasoning_as_dspy_s_do() -> None:
    lm = DummyLM([{"reasoning": "It is.", "answer": "Paris"}])
    session = MemorySession()
    with td.context(lm=lm):
        await td.chat(td.ChainOfThought(QA), session)(question="Capital of France?")
    assert (await session.history()).messages == [
        {"question": "Capital of France?", "reasoning": "It is.", "answer": "Paris"}
    ]


class Drink(td.Signature):
    """Take the order."""

    request: str = td.InputField()
    history: td.History = td.InputField()
    order: Order = td.OutputField()


async def test_typed_outputs_are_stored_as_json_and_sent_back_as_the_model_wrote_them() -> None:
    lm = DummyLM(
        [{"order": {"drink": "latte", "shots": 2}}, {"order": {"drink": "mocha", "shots": 1}}]
    )
    session = MemorySession()
    bot = td.chat(td.Predict(Drink), session)
    with td.context(lm=lm):
        first = await bot(request="a double latte")
        await bot(request="make it a mocha")
    assert first.order == Order("latte", 2)
    assert (await session.history()).messages[0]["order"] == {"drink": "latte", "shots": 2}
    earlier = lm.history[1].request.messages[2]
    assert earlier.role == "assistant"
    assert json.loads(earlier.text.split("\n", 1)[1].split("\n\n")[0]) == {
        "drink": "latte",
        "shots": 2,
    }


def test_chat_takes_a_module_and_a_session() -> None:
    with pytest.raises(TypeError, match="td.Module"):
        td.chat(lambda: None, MemorySession())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="session"):
        td.chat(td.Predict(QA), object())  # type: ignore[arg-type]


async def test_turns_of_an_earlier_version_of_the_program_are_left_out_with_a_warning() -> None:
    session = MemorySession()
    await session.append({"query": "old field names"}, {"reply": "old answer"})
    await session.append({"question": "Capital of France?"}, {"answer": "Paris"})
    lm = DummyLM(echo_earlier_turns)
    with td.context(lm=lm), structlog.testing.capture_logs() as logs:
        assert (await td.chat(td.Predict(QA), session)(question="And Italy?")).answer == "after 1"
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["sessions.turn_skipped"]
    assert "old" not in str([m.text for m in lm.history[-1].request.messages])


async def test_a_value_nested_too_deeply_to_read_back_is_refused(make_session: MakeSession) -> None:
    session = make_session()
    deep: list[Any] = []
    for _ in range(300):
        deep = [deep]
    with pytest.raises(TypeError, match="'context'.*nested deeper"):
        await session.append({"question": "q", "context": deep}, {"answer": "a"})
    assert (await session.history()).messages == []


async def test_connections_are_kept_open_for_a_few_files_only(tmp_path: Path) -> None:
    from trio_dspy.sessions import sqlite as store

    for i in range(store.MAX_FILES + 5):
        await SQLiteSession(tmp_path / f"customer-{i}.db", "s").append(*TURNS[0])
    kept = [idle for path, idle in store._IDLE.items() if path.startswith(str(tmp_path))]
    assert len(kept) <= store.MAX_FILES
    assert sum(len(idle.connections) for idle in kept) <= store.MAX_FILES


async def test_a_cancelled_turn_stores_nothing_and_lets_the_next_turn_go(
    make_session: MakeSession,
) -> None:
    session = make_session()
    # The slow question hangs, wherever the cancellation finds its turn.
    lm = DummyLM(
        echo_earlier_turns,
        latency=lambda request: 60.0 if "slow" in request.messages[-1].text else 0,
    )
    bot = td.chat(td.Predict(QA), session)
    with td.context(lm=lm), trio.fail_after(10):
        with trio.move_on_after(0.05) as scope:
            await bot(question="slow")
        assert scope.cancelled_caught
        assert (await bot(question="next")).answer == "after 0"
    assert [m["question"] for m in (await session.history()).messages] == ["next"]


async def test_an_input_nested_too_deeply_is_refused_before_the_model_is_called() -> None:
    deep: list[Any] = []
    for _ in range(5000):
        deep = [deep]
    lm = DummyLM([{"answer": "a"}])
    bot = td.chat(
        td.Predict("question, context: list, history: History -> answer"), MemorySession()
    )
    with td.context(lm=lm), pytest.raises(TypeError, match="'context'"):
        await bot(question="q", context=deep)
    assert len(lm.history) == 0
