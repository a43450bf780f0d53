"""``COPRO``: coordinate ascent over instructions that a language model proposes.

For each predictor in turn (a coordinate), a prompt model proposes new
instructions; every proposal is scored on the trainset as its own candidate
program, all of them concurrently under one limit, and the best is kept
before moving to the next predictor. Later rounds show the prompt model the
instructions tried so far with their scores and ask for better ones. This is
DSPy's COPRO, with the proposals and the candidates run as child tasks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
import trio

from ..checkpoint import entered
from ..concurrency import gather
from ..evaluate.evaluate import Limiter, Metric
from ..lm.base import BaseLM
from ..modules.module import Module
from ..modules.predict import Predict
from ..primitives import Example
from ..signature import InputField, OutputField, Signature
from .base import ModuleT, Optimizer, check_trainset
from .race import Builder, Race
from .stats import OptimizerStats, measure

__all__ = ["COPRO", "InstructionAttempt"]


class BasicGenerateInstruction(Signature):
    """You are an instruction optimizer for large language models. I will give you a
    ``signature`` of fields (inputs and outputs) in English. Your task is to propose an
    instruction that will lead a good language model to perform the task well. Don't be
    afraid to be creative."""

    basic_instruction: str = InputField(desc="The initial instructions before optimization")
    proposed_instruction: str = OutputField(desc="The improved instructions for the language model")


class GenerateInstructionGivenAttempts(Signature):
    """You are an instruction optimizer for large language models. I will give some task
    instructions I've tried, along with their corresponding validation scores. The
    instructions are arranged in increasing order based on their scores, where higher scores
    indicate better quality.

    Your task is to propose a new instruction that will lead a good language model to perform
    the task even better. Don't be afraid to be creative."""

    attempted_instructions: list[str] = InputField(
        desc="instructions tried so far, each with its score, worst first"
    )
    proposed_instruction: str = OutputField(desc="The improved instructions for the language model")


@attrs.frozen
class InstructionAttempt:
    """One instruction tried for one predictor, and the trainset percentage it scored."""

    predictor: str
    instruction: str
    score: float
    depth: int


class COPRO(Optimizer):
    """Optimize every predictor's instructions by coordinate ascent.

    Args:
        metric: ``metric(example, prediction, trace=None)``.
        prompt_model: the model that proposes instructions (default: the
            configured model).
        breadth: candidate instructions per predictor and round (the current
            one included in the first round).
        depth: rounds of proposals.
        init_temperature: sampling temperature of the proposals; each proposal
            of a round uses a slightly different temperature so that they differ
            (and do not share a cache entry).
        limit: the most program runs in flight.
        early_stopping: cancel candidates that can no longer win a round (their
            scores, shown to the prompt model later, are then partial).

    After :meth:`compile`, :attr:`attempts` lists every instruction tried and
    :attr:`stats` what the compile cost: the proposals' model calls count
    there with the candidates', and ``metric_calls_saved`` the runs that
    early stopping cancelled.
    """

    def __init__(
        self,
        metric: Metric,
        *,
        prompt_model: BaseLM | None = None,
        breadth: int = 10,
        depth: int = 3,
        init_temperature: float = 1.4,
        limit: int = 16,
        early_stopping: bool = False,
        max_score: float = 1.0,
    ) -> None:
        if breadth < 2:
            raise ValueError(f"breadth must be at least 2, got {breadth}")
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.metric = metric
        self.prompt_model = prompt_model
        self.breadth = breadth
        self.depth = depth
        self.init_temperature = init_temperature
        self.limit = limit
        self.early_stopping = early_stopping
        self.max_score = max_score
        self.attempts: list[InstructionAttempt] = []
        self.stats = OptimizerStats()

    async def compile(
        self,
        student: ModuleT,
        *,
        trainset: Sequence[Example],
        valset: Sequence[Example] | None = None,
        teacher: Module | None = None,
    ) -> ModuleT:
        """A copy of ``student`` with the best instructions found for each predictor.

        Candidates are scored on ``trainset`` (``valset`` is not used, as in DSPy).
        :attr:`stats` is filled in even when compiling fails or is cancelled.

        Raises:
            TrioDSPyError: the trainset is unusable.
            trio_dspy.errors.LMError: a proposal call failed.
        """
        self.stats = OptimizerStats()
        with measure(self.stats):
            return await self._compile(student, trainset)

    async def _compile(self, student: ModuleT, trainset: Sequence[Example]) -> ModuleT:
        await entered()
        examples = check_trainset(trainset)
        best = student.deepcopy()
        self.attempts = []
        proposals = {
            name: [p.signature.instructions, *await self._propose_initial(p.signature.instructions)]
            for name, p in best.named_predictors()
        }
        for depth in range(self.depth):
            for name, _ in best.named_predictors():
                best = await self._round(best, name, proposals[name], examples, depth)
            if depth + 1 < self.depth:
                for name, _ in best.named_predictors():
                    proposals[name] = await self._propose_more(name)
        return best

    async def _round(
        self,
        current: ModuleT,
        name: str,
        instructions: list[str],
        trainset: list[Example],
        depth: int,
    ) -> ModuleT:
        """Score ``instructions`` for predictor ``name``; the program with the best one."""
        tried = {a.instruction for a in self.attempts if a.predictor == name}
        unique = list(dict.fromkeys(i for i in instructions if i.strip()))
        fresh = [i for i in unique if i not in tried] or unique[:1]
        builders: list[tuple[str, Builder]] = [
            (text, _builder(_with_instruction(current, name, text))) for text in fresh
        ]
        race = Race(
            trainset,
            self.metric,
            max_score=self.max_score,
            early_stopping=self.early_stopping,
            stats=self.stats,
        )
        winner = await race.run(builders, self.limit)
        for candidate in race.candidates:
            self.attempts.append(InstructionAttempt(name, candidate.label, candidate.score, depth))
        previous = [a for a in self.attempts if a.predictor == name and a.depth < depth]
        if previous and max(a.score for a in previous) > winner.score:
            return current  # an earlier round's instruction (already installed) stays best
        assert winner.program is not None
        return winner.program  # type: ignore[return-value]

    def _proposer(self, signature: type[Signature]) -> Predict:
        proposer = Predict(signature)
        proposer.lm = self.prompt_model
        return proposer

    async def _propose_initial(self, instruction: str) -> list[str]:
        proposer = self._proposer(BasicGenerateInstruction)
        return await self._sample(proposer, self.breadth - 1, basic_instruction=instruction)

    async def _propose_more(self, name: str) -> list[str]:
        ranked = sorted((a for a in self.attempts if a.predictor == name), key=lambda a: a.score)
        shown = [f"Instruction: {a.instruction}\nScore: {a.score:.2f}" for a in ranked[-10:]]
        proposer = self._proposer(GenerateInstructionGivenAttempts)
        return await self._sample(proposer, self.breadth, attempted_instructions=shown)

    async def _sample(self, proposer: Predict, n: int, **inputs: Any) -> list[str]:
        def one(i: int) -> Callable[[], Awaitable[Any]]:
            async def call() -> Any:
                proposer_i = proposer.deepcopy()
                proposer_i.lm_kwargs = {"temperature": self.init_temperature + 0.001 * i}
                pred = await proposer_i(**inputs)
                return str(pred.proposed_instruction).strip()

            return call

        return list(await gather(*(one(i) for i in range(n)), limit=self.limit))

    def __repr__(self) -> str:
        return f"COPRO(breadth={self.breadth}, depth={self.depth})"


def _with_instruction(program: ModuleT, name: str, instruction: str) -> ModuleT:
    clone = program.deepcopy()
    predictor = dict(clone.named_predictors())[name]
    predictor.signature = predictor.signature.with_instructions(instruction)
    return clone


def _builder(program: Module) -> Builder:
    async def build(slots: Limiter) -> Module:
        await trio.lowlevel.checkpoint()
        return program

    return build
