"""``LabeledFewShot``: demos straight from the labelled trainset."""

from __future__ import annotations

import random
from collections.abc import Sequence

from ..checkpoint import entered
from ..modules.module import Module
from ..primitives import Example
from .base import ModuleT, Optimizer, check_trainset
from .stats import OptimizerStats, measure

__all__ = ["LabeledFewShot"]


class LabeledFewShot(Optimizer):
    """Give every predictor ``k`` examples of the trainset as demos.

    Args:
        k: demos per predictor (fewer when the trainset is smaller).
        sample: pick them at random (seeded by ``seed``, as DSPy does with 0)
            rather than the first ``k``.

    After :meth:`compile`, :attr:`stats` says what it cost (no model or
    metric calls: only its time).
    """

    def __init__(self, k: int = 16, *, sample: bool = True, seed: int = 0) -> None:
        if k < 0:
            raise ValueError(f"k must be 0 or more, got {k}")
        self.k = k
        self.sample = sample
        self.seed = seed
        self.stats = OptimizerStats()

    async def compile(
        self,
        student: ModuleT,
        *,
        trainset: Sequence[Example],
        valset: Sequence[Example] | None = None,
        teacher: Module | None = None,
    ) -> ModuleT:
        """A copy of ``student`` whose predictors hold ``k`` trainset examples as demos.

        Raises:
            TrioDSPyError: the trainset is empty or does not mark inputs.
        """
        self.stats = OptimizerStats()
        with measure(self.stats):
            await entered()
            examples = check_trainset(trainset)
            compiled = student.reset_copy()
            size = min(self.k, len(examples))
            for predictor in compiled.predictors():
                if self.sample:
                    predictor.demos = list(random.Random(self.seed).sample(examples, size))
                else:
                    predictor.demos = list(examples[:size])
        return compiled

    def __repr__(self) -> str:
        return f"LabeledFewShot(k={self.k})"
