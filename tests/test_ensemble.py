"""Ensemble: members run at once, majority by default, seeded or input-keyed sampling."""

from __future__ import annotations

import re
from typing import Any

import pytest
import trio

import trio_dspy as td
from trio_dspy.errors import ConfigurationError
from trio_dspy.messages import LMRequest, LMResponse
from trio_dspy.testing import DummyLM

QA = "question -> answer"


class Counting(DummyLM):
    """A DummyLM that counts the calls in flight, finished and cancelled."""

    def __init__(self, answer: str, latency: float = 1.0) -> None:
        super().__init__(lambda request: {"answer": answer}, latency=latency)
        self.in_flight = 0
        self.finished = 0
        self.cancelled = 0

    async def send(self, request: LMRequest) -> LMResponse:
        self.in_flight += 1
        try:
            response = await super().send(request)
        except trio.Cancelled:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1
        self.finished += 1
        return response


def member(answer: str, latency: float = 1.0) -> td.Predict:
    program = td.Predict(QA)
    program.lm = Counting(answer, latency)
    return program


def lm_of(program: td.Module) -> Counting:
    lm = program.predictors()[0].lm
    assert isinstance(lm, Counting)
    return lm


def questions_asked(program: td.Module) -> list[str]:
    return [
        re.findall(r"\[\[ ## question ## \]\]\s*(.+)", r.messages[-1].text)[-1].strip()
        for r in lm_of(program).requests
    ]


async def test_ensemble_runs_its_members_at_once(autojump_clock: trio.abc.Clock) -> None:
    programs = [member("yes", latency=1.0) for _ in range(5)]
    ensembled = td.Ensemble().compile(programs)
    start = trio.current_time()
    prediction = await ensembled(question="q")
    assert trio.current_time() - start == pytest.approx(1.0)  # one latency, not five
    assert prediction.answer == "yes"
    assert all(lm_of(p).finished == 1 for p in programs)


async def test_ensemble_reduces_by_majority_unless_told_otherwise(
    autojump_clock: trio.abc.Clock,
) -> None:
    answers = ["blue", "Red", "red.", "blue", "red"]
    prediction = await td.Ensemble().compile([member(a) for a in answers])(question="q")
    assert prediction.answer == "Red"  # normalised "red" has 3 votes; the first such wins
    # DSPy's default, the list of outputs, in member order:
    outputs = await td.Ensemble(reduce_fn=list).compile([member(a) for a in answers])(question="q")
    assert [o.answer for o in outputs] == answers


async def test_ensemble_takes_an_async_reduce_function(autojump_clock: trio.abc.Clock) -> None:
    async def longest(outputs: list[td.Prediction]) -> str:
        await trio.sleep(0.1)
        return str(max((o.answer for o in outputs), key=len))

    ensembled = td.Ensemble(reduce_fn=longest).compile([member("ab"), member("abc"), member("yes")])
    assert await ensembled(question="q") == "abc"


def _chosen(programs: list[td.Predict], before: list[int]) -> tuple[int, ...]:
    return tuple(i for i, p in enumerate(programs) if len(lm_of(p).requests) > before[i])


async def _runs(ensembled: td.optimizers.EnsembledProgram, questions: list[str]) -> list[Any]:
    programs: list[td.Predict] = ensembled.programs  # type: ignore[assignment]
    picks = []
    for q in questions:
        before = [len(lm_of(p).requests) for p in programs]
        await ensembled(question=q)
        picks.append(_chosen(programs, before))
    return picks


async def test_ensemble_size_samples_members_from_a_seeded_sequence(
    autojump_clock: trio.abc.Clock,
) -> None:
    questions = [f"q{i}" for i in range(8)]

    def compiled(seed: int) -> td.optimizers.EnsembledProgram:
        return td.Ensemble(size=2, seed=seed).compile([member("yes") for _ in range(6)])

    first = await _runs(compiled(0), questions)
    again = await _runs(compiled(0), questions)
    other = await _runs(compiled(1), questions)
    assert all(len(pick) == 2 for pick in first)
    assert first == again  # the same seed, the same members call after call
    assert len(set(first)) > 1  # yet each call draws anew
    assert other != first


async def test_ensemble_deterministic_picks_members_by_the_inputs(
    autojump_clock: trio.abc.Clock,
) -> None:
    questions = [f"q{i}" for i in range(10)]

    def compiled() -> td.optimizers.EnsembledProgram:
        return td.Ensemble(size=2, deterministic=True).compile([member("yes") for _ in range(6)])

    forwards = await _runs(compiled(), questions)
    backwards = await _runs(compiled(), list(reversed(questions)))
    assert forwards == list(reversed(backwards))  # the order of calls does not matter
    repeated = await _runs(compiled(), ["q3", "q3", "q3"])
    assert repeated == [forwards[3]] * 3
    assert len(set(forwards)) > 1  # different inputs may use different members
    ensembled = compiled()
    assert ensembled.members({"a": 1, "b": "x"}) == ensembled.members({"b": "x", "a": 1})


async def test_ensemble_member_failure_propagates_and_cancels_the_others(
    autojump_clock: trio.abc.Clock,
) -> None:
    slow = [member("yes", latency=5.0), member("yes", latency=5.0)]
    broken = td.Predict(QA)
    broken.lm = DummyLM([], latency=1.0)  # out of answers: ConfigurationError
    ensembled = td.Ensemble().compile([slow[0], broken, slow[1]])
    start = trio.current_time()
    with pytest.raises(ConfigurationError, match="ran out"):
        await ensembled(question="q")
    assert trio.current_time() - start == pytest.approx(1.0)
    assert [lm_of(p).cancelled for p in slow] == [1, 1]
    assert all(lm_of(p).in_flight == 0 for p in slow)


async def test_cancelling_the_ensemble_cancels_every_member(
    autojump_clock: trio.abc.Clock,
) -> None:
    programs = [member("yes", latency=2.0) for _ in range(4)]
    ensembled = td.Ensemble().compile(programs)
    with trio.move_on_after(1.0) as scope:
        await ensembled(question="q")
    assert scope.cancelled_caught
    assert [lm_of(p).cancelled for p in programs] == [1, 1, 1, 1]
    assert all(lm_of(p).in_flight == 0 and lm_of(p).finished == 0 for p in programs)


def test_ensemble_refuses_what_it_cannot_run() -> None:
    with pytest.raises(ValueError, match="size=3 is more than the 2"):
        td.Ensemble(size=3).compile([member("yes"), member("b")])
    with pytest.raises(ValueError, match="at least one"):
        td.Ensemble().compile([])
    with pytest.raises(TypeError, match="not a td.Module"):
        td.Ensemble().compile([member("yes"), lambda **kw: None])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="size"):
        td.Ensemble(size=-1)
    with pytest.raises(TypeError, match="reduce_fn"):
        td.Ensemble(reduce_fn="majority")  # type: ignore[arg-type]


async def test_ensemble_size_zero_runs_every_member(autojump_clock: trio.abc.Clock) -> None:
    programs = [member("yes") for _ in range(3)]
    await td.Ensemble(size=0).compile(programs)(question="q")
    assert [len(lm_of(p).requests) for p in programs] == [1, 1, 1]


async def test_ensemble_saves_and_loads_its_members(
    autojump_clock: trio.abc.Clock, tmp_path: Any
) -> None:
    programs = [member("yes"), member("b")]
    programs[1].demos = [td.Example(question="x", answer="y")]
    ensembled = td.Ensemble().compile(programs)
    assert [n for n, _ in ensembled.named_predictors()] == ["programs[0]", "programs[1]"]
    ensembled.save(tmp_path / "ensemble.json")
    fresh = td.Ensemble().compile([member("yes"), member("b")])
    fresh.load(tmp_path / "ensemble.json")
    assert fresh.programs[1].predictors()[0].demos == [{"question": "x", "answer": "y"}]
    assert questions_asked(programs[0]) == []
