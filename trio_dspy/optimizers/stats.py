"""What an optimizer's run cost: model calls, metric calls, tokens, time, and what was saved."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import attrs

from ..primitives import Usage
from ..usage import count_usage

__all__ = ["OptimizerStats", "measure"]


@attrs.define
class OptimizerStats:
    """The cost of the latest ``compile``, read from ``optimizer.stats``.

    Attributes:
        lm_calls: model calls answered by a model (cache hits not counted), the
            program's and the optimizer's own (proposals, reflection).
        metric_calls: examples scored by running the program and the metric.
        metric_calls_saved: example runs planned and then cancelled, or never
            started, because their outcome could no longer change a decision
            (never counted above).
        metric_calls_replayed: scores read back from a resumed run's journal.
        prompt_tokens: prompt tokens of every model call.
        completion_tokens: completion tokens of every model call.
        wall_time: seconds from the start of ``compile`` to its end.
    """

    lm_calls: int = 0
    metric_calls: int = 0
    metric_calls_saved: int = 0
    metric_calls_replayed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    wall_time: float = 0.0

    @property
    def total_tokens(self) -> int:
        """Prompt and completion tokens together."""
        return self.prompt_tokens + self.completion_tokens


@contextmanager
def measure(stats: OptimizerStats) -> Iterator[OptimizerStats]:
    """Fill ``stats``' model calls, tokens and wall time from the calls made in the block.

    Every model call inside the block counts, child tasks included; the
    metric counts are the optimizer's to keep. The numbers are written when
    the block exits, whether it finishes, fails or is cancelled.
    """
    start = time.perf_counter()
    usage: Usage
    with count_usage() as usage:
        try:
            yield stats
        finally:
            stats.lm_calls = usage.requests
            stats.prompt_tokens = usage.prompt_tokens
            stats.completion_tokens = usage.completion_tokens
            stats.wall_time = time.perf_counter() - start
