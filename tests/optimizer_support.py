"""What the optimizer tests share: a model that counts its calls in flight, and the
instruction task's model with random latency (the order calls finish in)."""

from __future__ import annotations

import random

from trio_dspy.lm.base import BaseLM
from trio_dspy.messages import LMRequest, LMResponse
from trio_dspy.testing import DummyLM, InstructionTask


class Watching(BaseLM):
    """A model that counts the calls in flight at once, and all its calls."""

    def __init__(self, inner: BaseLM) -> None:
        super().__init__("watching")
        self.inner = inner
        self.in_flight = 0
        self.most_in_flight = 0
        self.calls = 0

    async def send(self, request: LMRequest) -> LMResponse:
        self.in_flight += 1
        self.calls += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            return await self.inner.send(request)
        finally:
            self.in_flight -= 1


def random_latency_lm(task: InstructionTask, seed: int = 0) -> DummyLM:
    """``task``'s model with latency drawn from ``seed``: the order its calls finish in."""
    rng = random.Random(seed)
    return task.dummy_lm(latency=lambda request: rng.uniform(0.1, 2.0))
