"""MIPROv2: proposes, then searches concurrently with TPE, deterministically, as DSPy does.

Most tests run the instruction-rewarding task (``td.testing.InstructionTask``)
in process, with random latency on the autojump clock; one runs it over
loopback against the simulated server.
"""

from __future__ import annotations

import re
import sys
from typing import Any, ClassVar

import pytest
import trio

import trio_dspy as td
from trio_dspy.errors import ConfigurationError, TrioDSPyError
from trio_dspy.lm.base import BaseLM
from trio_dspy.messages import LMRequest, LMResponse
from trio_dspy.optimizers.mipro import TIPS, num_trials_for
from trio_dspy.testing import DummyLM, InstructionTask, SimConfig, serve_sim

from .optimizer_support import Watching, random_latency_lm

TASK = InstructionTask(seed=1)
TRAIN = TASK.examples(20)
VAL = TASK.examples(20, start=100)
VAL_ITEMS = range(100, 120)


def program() -> td.Predict:
    return td.Predict(td.make_signature("question -> answer", instructions=TASK.instructions))


def task_lm(seed: int = 0) -> DummyLM:
    """The task's model with random latency drawn from ``seed``."""
    return random_latency_lm(TASK, seed)


def searching(**options: Any) -> td.MIPROv2:
    """A small search over minibatches: 6 candidates, 12 trials, minibatches of 8."""
    settings: dict[str, Any] = {
        "auto": None,
        "num_candidates": 6,
        "num_trials": 12,
        "minibatch_size": 8,
    }
    return td.MIPROv2(TASK.metric, **{**settings, **options})


async def compile_task(lm: BaseLM, mipro: td.MIPROv2 | None = None) -> tuple[td.Module, td.MIPROv2]:
    mipro = mipro or searching()
    with td.context(lm=lm):
        compiled = await mipro.compile(program(), trainset=TRAIN, valset=VAL)
    return compiled, mipro


def instructions_of(module: td.Module) -> str:
    return module.predictors()[0].signature.instructions


async def test_mipro_improves_the_valset_score_over_the_student(
    autojump_clock: trio.abc.Clock,
) -> None:
    compiled, mipro = await compile_task(task_lm())
    stats = mipro.stats
    assert stats.best_score > stats.default_score
    chosen = instructions_of(compiled)
    assert TASK.accuracy(chosen, VAL_ITEMS) > TASK.accuracy(TASK.instructions, VAL_ITEMS)
    # Candidate 0 is the original instruction; the others are the prompt model's.
    candidates = mipro.instruction_candidates[0]
    assert candidates[0] == TASK.instructions
    assert len(candidates) == 6 and chosen in candidates
    assert mipro.demo_candidates is not None and len(mipro.demo_candidates[0]) == 6
    assert mipro.demo_candidates[0][0] == []  # demo set 0 is zero-shot
    # The result is the configuration with the best full-valset score (the earliest of equals).
    full = [t for t in mipro.trials if t.full_eval]
    best = max(full, key=lambda t: t.score)
    assert stats.best_score == best.score
    assert chosen == candidates[best.params["0_predictor_instruction"]]
    assert (
        compiled.predictors()[0].demos == mipro.demo_candidates[0][best.params["0_predictor_demos"]]
    )
    # 12 minibatch trials, a full evaluation after every 5 and one after the last.
    assert stats.trials == 12 and stats.full_evaluations == 3
    # The student's full score, 12 minibatches, 3 full scores, and the teacher's runs.
    assert stats.bootstrap_runs > 0
    assert stats.metric_calls == 20 + 12 * 8 + 3 * 20 + stats.bootstrap_runs
    assert stats.lm_calls > stats.metric_calls and stats.total_tokens > 0
    assert stats.proposals == 5 and stats.demo_sets == 6


async def test_the_result_is_the_same_whatever_order_calls_finish_in(
    autojump_clock: trio.abc.Clock,
) -> None:
    runs = []
    for latency_seed in (1, 2, 3):
        compiled, mipro = await compile_task(task_lm(latency_seed))
        runs.append(
            (
                instructions_of(compiled),
                compiled.predictors()[0].demos,
                mipro.trials,
                mipro.stats.best_score,
            )
        )
    assert runs[0] == runs[1] == runs[2]
    assert max(len(r[2]) for r in runs) == 1 + 12 + 3


async def test_several_trials_are_scored_at_once(autojump_clock: trio.abc.Clock) -> None:
    lm = Watching(task_lm())
    _, mipro = await compile_task(lm, searching(limit=16))
    # TPE draws its first trials at random, whatever it knows: they are all
    # scored at once (as many as their proposals allow), beyond the two that
    # fill a limit of 16 with minibatches of 8 and a third for the tail.
    assert mipro.stats.most_trials_in_flight > 3
    assert lm.most_in_flight == 16


async def test_bootstraps_and_proposals_run_at_once(autojump_clock: trio.abc.Clock) -> None:
    watch = {"in_flight": 0, "most": 0}
    overlapped: list[bool] = []

    class Shelf(td.Module):
        """The task's program, counting its runs in flight while demo sets are bootstrapped."""

        runs: ClassVar[dict[str, int]] = watch

        def __init__(self) -> None:
            super().__init__()
            self.predict = program()

        async def forward(self, question: str) -> td.Prediction:
            bootstrapping = mipro.stats.demo_sets < 6
            self.runs["in_flight"] += bootstrapping
            if bootstrapping:
                self.runs["most"] = max(self.runs["most"], self.runs["in_flight"])
            try:
                return await self.predict(question=question)
            finally:
                self.runs["in_flight"] -= bootstrapping

    class Noting(Watching):
        async def send(self, request: LMRequest) -> LMResponse:
            overlapped.append(watch["in_flight"] > 0)
            return await super().send(request)

    prompt_model = Noting(task_lm(5))
    mipro = td.MIPROv2(
        TASK.metric,
        prompt_model=prompt_model,
        auto=None,
        num_candidates=6,
        num_trials=1,
        minibatch_size=8,
    )
    with td.context(lm=task_lm()):
        await mipro.compile(Shelf(), trainset=TRAIN, valset=VAL)
    # One bootstrap keeps at most 4 teacher runs in flight (the passes it still
    # needs): more means several demo sets were being bootstrapped at once.
    assert watch["most"] > 4
    # The summary and the proposals ran together, and beside the bootstraps.
    assert prompt_model.most_in_flight >= 3
    assert sum(overlapped) > 1
    assert mipro.stats.proposals == 5


async def test_the_search_starts_while_instructions_are_still_being_proposed(
    autojump_clock: trio.abc.Clock,
) -> None:
    # The default program's valset score and the trials that use only the
    # instructions already proposed need no proposal to wait for.
    early: list[bool] = []

    class SlowPrompts(BaseLM):
        """The task's model as the prompt model, 30 s a call."""

        def __init__(self) -> None:
            super().__init__("slow")
            self.inner = task_lm(5)

        async def send(self, request: LMRequest) -> LMResponse:
            await trio.sleep(30)
            return await self.inner.send(request)

    class Noting(BaseLM):
        """The task's model, noting whether each valset run came before the last proposal."""

        def __init__(self) -> None:
            super().__init__("noting")
            self.inner = task_lm()

        async def send(self, request: LMRequest) -> LMResponse:
            if re.search(r"Item 1\d\d:", request.messages[-1].text):  # a valset item
                early.append(mipro.stats.proposals < 5)
            return await self.inner.send(request)

    mipro = searching(prompt_model=SlowPrompts())
    await compile_task(Noting(), mipro)
    assert any(early), "no valset run before every proposal was written"
    # The same search as with proposals that come at once.
    _, quick = await compile_task(task_lm(), searching(prompt_model=task_lm(5)))
    assert mipro.trials == quick.trials
    assert mipro.instruction_candidates == quick.instruction_candidates


async def test_cancelling_a_compile_leaves_nothing_running(autojump_clock: trio.abc.Clock) -> None:
    async with serve_sim(SimConfig(script=TASK.script(), latency=1.0)) as server:
        lm = td.LM("openai/sim-model", base_url=server.base_url, api_key="k", max_retries=0)
        async with lm:
            for seconds in (0.5, 3.5, 12.5):  # during the proposals, then the search
                with td.context(lm=lm), trio.move_on_after(seconds) as scope:
                    await searching(limit=8).compile(program(), trainset=TRAIN, valset=VAL)
                assert scope.cancelled_caught
                await trio.sleep(10)  # nothing finishes late: nothing is left to
                assert server.stats.in_flight == 0


async def test_mipro_over_loopback_improves_the_task(autojump_clock: trio.abc.Clock) -> None:
    task = InstructionTask(seed=2)
    async with serve_sim(SimConfig(script=task.script(), latency=0.5)) as server:
        lm = td.LM("openai/sim-model", base_url=server.base_url, api_key="k", cache=False)
        async with lm:
            mipro = searching()
            with td.context(lm=lm):
                compiled = await mipro.compile(
                    program(), trainset=task.examples(20), valset=task.examples(20, start=50)
                )
    assert mipro.stats.best_score > mipro.stats.default_score
    items = range(50, 70)
    assert task.accuracy(instructions_of(compiled), items) > task.accuracy(task.instructions, items)


async def test_auto_light_on_a_small_valset_scores_every_trial_on_all_of_it(
    autojump_clock: trio.abc.Clock,
) -> None:
    lm = task_lm()
    mipro = td.MIPROv2(TASK.metric, auto="light")
    with td.context(lm=lm):
        compiled = await mipro.compile(program(), trainset=TASK.examples(30))
    # No valset: the last 80% (24 examples) is; at most 50, so no minibatches.
    # light: 6 demo sets, 3 instructions (with demos), 10 trials for one predictor.
    assert len(mipro.instruction_candidates[0]) == 3
    assert mipro.demo_candidates is not None and len(mipro.demo_candidates[0]) == 6
    assert mipro.stats.trials == 10 and mipro.stats.full_evaluations == 0
    assert all(t.full_eval for t in mipro.trials)
    assert mipro.stats.metric_calls == 24 * 11 + mipro.stats.bootstrap_runs
    assert mipro.stats.best_score >= mipro.stats.default_score
    assert instructions_of(compiled) in mipro.instruction_candidates[0]


async def test_zero_shot_searches_instructions_only(autojump_clock: trio.abc.Clock) -> None:
    mipro = searching(max_bootstrapped_demos=0, max_labeled_demos=0)
    compiled, _ = await compile_task(task_lm(), mipro)
    assert mipro.demo_candidates is None
    assert compiled.predictors()[0].demos == []
    assert all(set(t.params) == {"0_predictor_instruction"} for t in mipro.trials)
    assert mipro.stats.best_score > mipro.stats.default_score


def test_num_trials_follows_dspys_table() -> None:
    with_demos = {1: (10, 18, 27), 2: (20, 28, 33), 3: (31, 43, 50), 4: (41, 57, 66)}
    zero_shot = {1: (9, 18, 27), 2: (10, 18, 27), 3: (15, 21, 27), 4: (20, 28, 33)}
    for table, zeroshot in ((with_demos, False), (zero_shot, True)):
        for predictors, expected in table.items():
            got = tuple(num_trials_for(predictors, n, zeroshot=zeroshot) for n in (6, 12, 18))
            assert got == expected, (predictors, zeroshot)


def test_auto_and_candidate_settings_are_checked_as_dspy_does() -> None:
    with pytest.raises(ValueError, match="Invalid value for auto"):
        td.MIPROv2(TASK.metric, auto="extreme")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_trials must also be provided.*recommend.*10 for 1"):
        td.MIPROv2(TASK.metric, auto=None, num_candidates=6)
    with pytest.raises(ValueError, match="num_candidates must also be provided"):
        td.MIPROv2(TASK.metric, auto=None)
    with pytest.raises(ValueError, match="num_candidates must also be provided"):
        td.MIPROv2(TASK.metric, auto=None, num_trials=10)
    with pytest.raises(ValueError, match="If auto is not None"):
        td.MIPROv2(TASK.metric, auto="light", num_trials=10)
    with pytest.raises(ValueError, match="minibatch_size must be at least 1"):
        td.MIPROv2(TASK.metric, minibatch_size=0)
    assert "auto='light'" in repr(td.MIPROv2(TASK.metric))


async def test_unusable_data_or_programs_are_refused() -> None:
    class Nothing(td.Module):
        async def forward(self, **inputs: Any) -> td.Prediction:
            return td.Prediction(answer="x")

    mipro = searching()
    with pytest.raises(TrioDSPyError, match="no predictors"):
        await mipro.compile(Nothing(), trainset=TRAIN)
    with pytest.raises(TrioDSPyError, match="at least 2 examples"):
        await mipro.compile(program(), trainset=TRAIN[:1])
    with pytest.raises(TrioDSPyError, match="valset is empty"):
        await mipro.compile(program(), trainset=TRAIN, valset=[])
    with pytest.raises(TrioDSPyError, match="Minibatch size cannot exceed"):
        await mipro.compile(program(), trainset=TRAIN, valset=VAL[:5])


async def test_a_program_that_always_fails_is_reported_not_optimized(
    autojump_clock: trio.abc.Clock,
) -> None:
    def broken(gold: Any, pred: Any, trace: Any = None) -> Any:
        raise RuntimeError("no judge today")

    mipro = td.MIPROv2(broken, auto=None, num_candidates=3, num_trials=2, minibatch_size=5)
    with td.context(lm=task_lm()), pytest.raises(TrioDSPyError, match="every valset run.*no judge"):
        await mipro.compile(program(), trainset=TRAIN, valset=VAL)


async def test_without_optuna_compile_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ConfigurationError, match=r"pip install 'trio_dspy\[optimize\]'"):
        await searching().compile(program(), trainset=TRAIN, valset=VAL)


def test_the_tips_are_dspys() -> None:
    assert list(TIPS) == ["none", "creative", "simple", "description", "high_stakes", "persona"]
    assert TIPS["persona"].endswith('(ie. "You are a ...")')


async def test_the_dataset_summary_reads_batches_as_dspy_does() -> None:
    from trio_dspy.optimizers.mipro.propose import dataset_summary, strip_prefix

    seen: list[tuple[str, dict[str, Any]]] = []
    answers = iter(["First look.", "COMPLETE", " More.", "COMPLETE"] + ["COMPLETE"] * 10)

    async def call(step: td.Predict, inputs: dict[str, Any]) -> str:
        seen.append((step.signature.__name__, inputs))
        if step.signature.__name__ == "ObservationSummarizer":
            return 'Summary: "It is about shelves."'
        return next(answers)

    text = await dataset_summary(TASK.examples(200), 10, call)
    assert text == "It is about shelves."
    names = [name for name, _ in seen]
    # One description, then at most 9 more batches (stopped by the 5th COMPLETE), one summary.
    assert names[0] == "DatasetDescriptor" and names[-1] == "ObservationSummarizer"
    assert names.count("DatasetDescriptorWithPriorObservations") == 6
    assert seen[-1][1]["observations"] == "First look. More."
    assert "input_keys={'question'}" in seen[0][1]["examples"]

    async def failing(step: td.Predict, inputs: dict[str, Any]) -> str:
        if step.signature.__name__ == "DatasetDescriptorWithPriorObservations":
            raise td.errors.LMError("the model is down")
        return "Observed."

    assert await dataset_summary(TASK.examples(30), 10, failing) == "Observed."

    calls: list[str] = []

    async def chatty(step: td.Predict, inputs: dict[str, Any]) -> str:
        calls.append(step.signature.__name__)
        return "Another thing."

    await dataset_summary(TASK.examples(500), 10, chatty)
    assert calls.count("DatasetDescriptorWithPriorObservations") == 9  # DSPy's cap: 10 calls
    assert strip_prefix("**Proposed Instruction:** Say it.") == "** Say it."
    assert strip_prefix('Instruction: "Say it."') == "Say it."


async def test_a_failing_summary_leaves_proposals_without_it(
    autojump_clock: trio.abc.Clock,
) -> None:
    prompts: list[str] = []

    class NoSummaries(Watching):
        async def send(self, request: LMRequest) -> LMResponse:
            text = " ".join(m.text for m in request.messages)
            prompts.append(text)
            if "observations" in text and "proposed_instruction" not in text:
                raise td.errors.LMBadRequestError("no summaries here")
            return await super().send(request)

    mipro = searching(prompt_model=NoSummaries(task_lm(3)), num_trials=5, num_candidates=3)
    with td.context(lm=task_lm()):
        await mipro.compile(program(), trainset=TRAIN, valset=VAL)
    proposals = [p for p in prompts if "proposed_instruction" in p]
    assert len(proposals) == 2 and not any("dataset_description" in p for p in proposals)
    assert all("program_description" in p for p in proposals)  # still program-aware


async def test_a_proposal_the_prompt_model_cannot_write_keeps_the_original_instruction(
    autojump_clock: trio.abc.Clock,
) -> None:
    inner = task_lm()
    failures = 0

    class Garbling(BaseLM):
        """The task's model, except that two instruction proposals come back unparsable."""

        def __init__(self) -> None:
            super().__init__("garbling")

        async def send(self, request: LMRequest) -> LMResponse:
            nonlocal failures
            if "`proposed_instruction`" in request.messages[0].text and failures < 6:
                failures += 1
                return LMResponse(text="I cannot {{ answer that")
            return await inner.send(request)

    _compiled, mipro = await compile_task(Garbling())
    assert mipro.stats.proposals_failed >= 1
    assert mipro.stats.proposals + mipro.stats.proposals_failed == 5  # candidates 1..5
    assert mipro.instruction_candidates[0].count(TASK.instructions) >= 2
    assert mipro.stats.best_score >= mipro.stats.default_score
