"""``SemanticF1``: a metric whose judge is a language model, written as a module.

Because the judge is an ordinary :class:`~trio_dspy.ChainOfThought`, its calls
are traced, rate-limited, cached and counted like every other call, and an
optimizer can even compile it.
"""

from __future__ import annotations

from typing import Any

from ..modules.chain_of_thought import ChainOfThought
from ..modules.module import Module
from ..signature import InputField, OutputField, Signature

__all__ = ["SemanticF1"]


class SemanticRecallPrecision(Signature):
    """Compare a system's response to the ground truth to compute its recall and precision.
    If asked to reason, enumerate key ideas in each response, and whether they are present
    in the other response."""

    question: str = InputField()
    ground_truth: str = InputField()
    system_response: str = InputField()
    recall: float = OutputField(
        desc="fraction (out of 1.0) of ground truth covered by the system response"
    )
    precision: float = OutputField(
        desc="fraction (out of 1.0) of system response covered by the ground truth"
    )


class DecompositionalSemanticRecallPrecision(Signature):
    """Compare a system's response to the ground truth to compute recall and precision of key
    ideas. You will first enumerate key ideas in each response, discuss their overlap, and then
    report recall and precision."""

    question: str = InputField()
    ground_truth: str = InputField()
    system_response: str = InputField()
    ground_truth_key_ideas: str = OutputField(desc="enumeration of key ideas in the ground truth")
    system_response_key_ideas: str = OutputField(
        desc="enumeration of key ideas in the system response"
    )
    discussion: str = OutputField(
        desc="discussion of the overlap between ground truth and system response"
    )
    recall: float = OutputField(
        desc="fraction (out of 1.0) of ground truth covered by the system response"
    )
    precision: float = OutputField(
        desc="fraction (out of 1.0) of system response covered by the ground truth"
    )


def _f1(precision: float, recall: float) -> float:
    precision, recall = max(0.0, min(1.0, precision)), max(0.0, min(1.0, recall))
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


class SemanticF1(Module):
    """An LM-judged F1 of a response against the ground truth (DSPy's ``SemanticF1``).

    Call it as a metric: ``await judge(example, pred)``, as DSPy's tutorials
    do, or ``await judge(example=..., pred=..., trace=None)`` (``td.Evaluate``
    and the optimizers do so). It reads ``example.question``,
    ``example.<field>`` and ``pred.<field>``; ``field`` defaults to DSPy's
    ``response``. Without a trace it returns the F1 in [0, 1]; with one
    (inside an optimizer) whether the F1 reaches ``threshold``.

    Args:
        threshold: the F1 a traced run must reach to count as passing.
        decompositional: have the judge list and compare key ideas first.
        field: the name of the answer field.
        question: the name of the question field.
    """

    def __init__(
        self,
        threshold: float = 0.66,
        decompositional: bool = False,
        *,
        field: str = "response",
        question: str = "question",
    ) -> None:
        self.threshold = threshold
        self.field = field
        self.question = question
        signature = (
            DecompositionalSemanticRecallPrecision if decompositional else SemanticRecallPrecision
        )
        self.module = ChainOfThought(signature)

    async def forward(self, example: Any, pred: Any, trace: Any = None) -> float | bool:
        """Ask the judge for recall and precision and return their F1 (or pass/fail).

        Raises:
            KeyError: the example or the prediction lacks a field the judge reads.
            trio_dspy.errors.LMError, AdapterParseError: the judge's call failed.
        """
        scores = await self.module(
            question=str(example[self.question]),
            ground_truth=str(example[self.field]),
            system_response=str(pred[self.field]),
        )
        score = _f1(scores.precision, scores.recall)
        return score if trace is None else score >= self.threshold
