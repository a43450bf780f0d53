"""SIMBA: improves a program from its own runs, concurrently, the same for a seed.

Most tests run the instruction-rewarding task (``td.testing.InstructionTask``,
sampling with some luck at temperature 1.0) in process, with random latency
on the autojump clock; one runs it over loopback against the simulated server.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import trio

import trio_dspy as td
from trio_dspy.errors import TrioDSPyError
from trio_dspy.lm.base import BaseLM
from trio_dspy.messages import LMRequest
from trio_dspy.optimizers.simba_strategies import Outcome, append_a_demo, poisson
from trio_dspy.testing import DummyLM, InstructionTask, SimConfig, serve_sim

from .optimizer_support import Watching, random_latency_lm

TASK = InstructionTask(seed=1, sampling_luck=0.5)
TRAIN = TASK.examples(16)
OPTIONS: dict[str, Any] = {"bsize": 8, "num_candidates": 4, "max_steps": 4, "max_demos": 2}


def program() -> td.Predict:
    return td.Predict(td.make_signature("question -> answer", instructions=TASK.instructions))


def task_lm(seed: int = 0) -> DummyLM:
    """The task's model with random latency drawn from ``seed``."""
    return random_latency_lm(TASK, seed)


def is_rule_request(request: LMRequest) -> bool:
    return "`module_advice`" in request.messages[0].text


async def compile_task(
    lm: BaseLM, student: td.Module | None = None, **options: Any
) -> tuple[td.Module, td.SIMBA]:
    simba = td.SIMBA(TASK.metric, **{**OPTIONS, **options})
    with td.context(lm=lm):
        compiled = await simba.compile(student or program(), trainset=TRAIN)
    return compiled, simba


def instructions(module: td.Module) -> str:
    return module.predictors()[0].signature.instructions


async def test_simba_improves_the_instruction_task(autojump_clock: trio.abc.Clock) -> None:
    compiled, simba = await compile_task(task_lm())
    said = instructions(compiled)
    assert TASK.accuracy(said, range(16)) > TASK.accuracy(TASK.instructions, range(16))
    # Rules were appended (the student's instructions stay first), and they
    # carry over to items never seen.
    assert said.startswith(TASK.instructions + "\n\n")
    assert TASK.accuracy(said, range(100, 140)) > TASK.accuracy(TASK.instructions, range(100, 140))
    scores = [score for score, _ in simba.candidate_programs]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == TASK.accuracy(said, range(16))
    # The student is left as it was.
    assert instructions(program()) == TASK.instructions


async def test_the_result_is_the_same_whatever_order_calls_finish_in(
    autojump_clock: trio.abc.Clock,
) -> None:
    results = []
    for latency_seed in (1, 2, 3):
        compiled, simba = await compile_task(task_lm(latency_seed), limit=5)
        demos = [dict(d) for d in compiled.predictors()[0].demos]
        finals = [(score, instructions(p)) for score, p in simba.candidate_programs]
        results.append((instructions(compiled), demos, finals, simba.stats.metric_calls))
    assert results[0] == results[1] == results[2]
    # And another seed makes other choices.
    _, other = await compile_task(task_lm(1), seed=5)
    assert [instructions(p) for _, p in other.candidate_programs] != [
        text for _, text in results[0][2]
    ]


async def test_trajectories_sample_each_rollout_at_temperature_one(
    autojump_clock: trio.abc.Clock,
) -> None:
    lm = task_lm()
    await compile_task(lm, max_steps=1)
    trajectories = [r for r in lm.requests if r.rollout_id is not None]
    assert len(trajectories) == 8 * 4  # bsize x num_candidates
    assert {r.rollout_id for r in trajectories} == {0, 1, 2, 3}
    assert {r.params.get("temperature") for r in trajectories} == {1.0}
    # Candidates and the final evaluation run with the program's own model settings.
    others = [r for r in lm.requests if r.rollout_id is None and not is_rule_request(r)]
    assert others and all("temperature" not in r.params for r in others)


async def test_runs_and_rule_requests_are_in_flight_at_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    task_model = Watching(task_lm())
    rules = Watching(task_lm(1))
    _, simba = await compile_task(task_model, limit=6, prompt_model=rules)
    assert task_model.most_in_flight == 6  # the limit, and never more
    assert rules.most_in_flight >= 2  # a step's rule requests together
    assert simba.stats.lm_calls > simba.stats.metric_calls


async def test_the_rule_model_reads_the_metric_feedback(autojump_clock: trio.abc.Clock) -> None:
    lm = task_lm()
    await compile_task(lm, max_steps=1, max_demos=0)
    asked = [r.messages[-1].text for r in lm.requests if is_rule_request(r)]
    assert asked
    assert all("worse_reward_info" in text and "should say" in text for text in asked)
    assert all('"self"' in text for text in asked)  # the module names (a bare Predict's)


async def test_stats_count_every_run_and_call(autojump_clock: trio.abc.Clock) -> None:
    lm = task_lm()
    _, simba = await compile_task(lm)
    stats = simba.stats
    runs = [r for r in lm.requests if not is_rule_request(r)]
    assert stats.metric_calls == len(runs)
    assert stats.lm_calls == len(lm.requests)
    # Trajectories: steps x bsize x num_candidates; then at most num_candidates + 1
    # candidates per step on the batch; then the final evaluation on the trainset.
    trajectories = 4 * 8 * 4
    assert trajectories + 16 < stats.metric_calls <= trajectories + 4 * 5 * 8 + 5 * 16
    assert stats.prompt_tokens > 0 and stats.completion_tokens > 0
    assert stats.total_tokens == stats.prompt_tokens + stats.completion_tokens
    assert stats.wall_time >= 0


async def test_the_valset_is_not_used(autojump_clock: trio.abc.Clock) -> None:
    first, _ = await compile_task(task_lm())
    simba = td.SIMBA(TASK.metric, **OPTIONS)
    lm = task_lm()
    with td.context(lm=lm):
        second = await simba.compile(program(), trainset=TRAIN, valset=TASK.examples(5, start=90))
    assert instructions(first) == instructions(second)
    asked = "".join(m.text for r in lm.requests for m in r.messages)
    assert not any(f"Item {i}:" in asked for i in range(90, 95))


# --------------------------------------------------------------------- demos
async def test_appended_demos_never_grow_past_max_demos(autojump_clock: trio.abc.Clock) -> None:
    student = program()
    student.demos = [dict(e) for e in TASK.examples(2, start=200)]
    lm = task_lm()
    await compile_task(lm, student, max_demos=2, max_steps=6)
    runs = [r for r in lm.requests if not is_rule_request(r)]
    # A prompt is the system message, a user/assistant pair per demo, the question.
    demo_counts = {(len(r.messages) - 2) // 2 for r in runs}
    assert max(demo_counts) <= 2  # a program at max_demos drops one before it gains one
    assert 0 in demo_counts and 1 in demo_counts  # Poisson drops happened
    learned = [
        r
        for r in runs
        if any(m.role == "user" and "Item 20" not in m.text for m in r.messages[1:-1])
    ]
    assert learned  # append_a_demo's demos (trainset runs, not items 200+) were shown


def test_append_a_demo_adds_the_best_run_last_call_cut_to_maxlen() -> None:
    student = program()
    (example,) = TASK.examples(1)
    best = Outcome(
        example,
        {"answer": "A-1"},
        [
            ("self", {"question": "first"}, {"answer": "x"}),
            ("self", {"question": "q" * 50}, {"answer": "A-1"}),
        ],
        1.0,
    )
    worst = Outcome(example, {"answer": "no"}, [], 0.0)
    assert not append_a_demo([best, worst], student, p10=1.0, maxlen=10)
    assert student.demos == []
    assert append_a_demo([best, worst], student, p10=0.0, maxlen=10)
    (demo,) = student.demos
    assert demo["answer"] == "A-1" and demo["augmented"] is True
    assert demo["question"].startswith("q" * 10 + "\n\t\t... <TRUNCATED FOR BREVITY>")


async def test_without_demos_only_rules_are_made(autojump_clock: trio.abc.Clock) -> None:
    compiled, simba = await compile_task(task_lm(), max_demos=0)
    assert simba.strategies == ["append_a_rule"]
    assert all(p.predictors()[0].demos == [] for _, p in simba.candidate_programs)
    assert TASK.accuracy(instructions(compiled), range(16)) > TASK.accuracy(
        TASK.instructions, range(16)
    )


def test_the_poisson_draw_is_seeded_and_has_its_mean() -> None:
    first = [poisson(random.Random(3), 1.5) for _ in range(3)]
    assert first == [poisson(random.Random(3), 1.5) for _ in range(3)]
    rng = random.Random(0)
    draws = [poisson(rng, 1.5) for _ in range(20_000)]
    assert sum(draws) / len(draws) == pytest.approx(1.5, abs=0.05)
    assert poisson(rng, 0.0) == 0


# --------------------------------------------------------------------- bad input
async def test_bad_input_gets_a_clear_error() -> None:
    lm = DummyLM(["x"])
    simba = td.SIMBA(TASK.metric, bsize=4)
    with td.context(lm=lm):
        with pytest.raises(TrioDSPyError, match="trainset is empty"):
            await simba.compile(program(), trainset=[])
        with pytest.raises(TrioDSPyError, match=r"bsize=4 is larger than the trainset \(3"):
            await simba.compile(program(), trainset=TASK.examples(3))
        with pytest.raises(TrioDSPyError, match="takes no teacher"):
            await simba.compile(program(), trainset=TRAIN, teacher=program())
        with pytest.raises(TrioDSPyError, match="no predictors"):
            await simba.compile(td.Module(), trainset=TRAIN)
    assert lm.requests == []
    for setting in ("bsize", "num_candidates", "max_steps", "limit"):
        bad: dict[str, Any] = {setting: 0}
        with pytest.raises(ValueError, match=f"{setting} must be at least 1"):
            td.SIMBA(TASK.metric, **bad)
    with pytest.raises(ValueError, match="max_demos must be 0 or more"):
        td.SIMBA(TASK.metric, max_demos=-1)
    with pytest.raises(ValueError, match="temperature_for_sampling must be above 0"):
        td.SIMBA(TASK.metric, temperature_for_sampling=0)
    with pytest.raises(TypeError, match="prompt_model must be a language model"):
        td.SIMBA(TASK.metric, prompt_model="openai/gpt-4o")  # type: ignore[arg-type]


async def test_a_failing_program_or_metric_scores_zero(autojump_clock: trio.abc.Clock) -> None:
    def broken(gold: Any, pred: Any, trace: Any = None) -> float:
        raise RuntimeError("metric down")

    simba = td.SIMBA(broken, **OPTIONS)
    with td.context(lm=task_lm()):
        compiled = await simba.compile(program(), trainset=TRAIN)
    assert instructions(compiled) == TASK.instructions  # the student: nothing beat it
    assert simba.candidate_programs[0][0] == 0.0


# --------------------------------------------------------------------- over the wire
async def test_cancelling_a_compile_leaves_nothing_running(autojump_clock: trio.abc.Clock) -> None:
    async with serve_sim(SimConfig(script=TASK.script(), latency=1.0)) as server:
        lm = td.LM("openai/sim-model", base_url=server.base_url, api_key="k", max_retries=0)
        async with lm:
            simba = td.SIMBA(TASK.metric, **OPTIONS, limit=8)
            with td.context(lm=lm), trio.move_on_after(5.5) as scope:
                await simba.compile(program(), trainset=TRAIN)
            assert scope.cancelled_caught
            assert server.stats.requests > 0
            await trio.sleep(10)  # nothing finishes late: nothing is left to
            assert server.stats.in_flight == 0
            assert simba.stats.wall_time > 0 or simba.stats.lm_calls > 0


async def test_simba_over_loopback_improves_the_task(autojump_clock: trio.abc.Clock) -> None:
    task = InstructionTask(seed=2, sampling_luck=0.5)
    async with serve_sim(SimConfig(script=task.script(), latency=0.5)) as server:
        lm = td.LM("openai/sim-model", base_url=server.base_url, api_key="k", cache=False)
        async with lm:
            simba = td.SIMBA(task.metric, **{**OPTIONS, "max_steps": 6})
            with td.context(lm=lm):
                compiled = await simba.compile(program(), trainset=task.examples(16))
    said = instructions(compiled)
    assert task.accuracy(said, range(16)) > task.accuracy(task.instructions, range(16))
    assert simba.stats.lm_calls > simba.stats.metric_calls  # rule requests counted too


async def test_scores_far_above_one_are_sampled_without_overflow(
    autojump_clock: trio.abc.Clock,
) -> None:
    def thousandfold(gold: Any, pred: Any, trace: Any = None) -> td.Prediction:
        scored = TASK.metric(gold, pred)
        return td.Prediction(score=1000 * scored.score, feedback=scored.feedback)

    simba = td.SIMBA(thousandfold, **OPTIONS)
    with td.context(lm=task_lm()):
        compiled = await simba.compile(program(), trainset=TRAIN)
    assert TASK.accuracy(instructions(compiled), range(16)) > TASK.accuracy(
        TASK.instructions, range(16)
    )
