"""Fuzzing: whatever a metric returns, an evaluation ends with a finite score."""

from __future__ import annotations

import json
import math
from typing import Any

import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

import trio_dspy as td
from trio_dspy.evaluate import MetricError

from .hostile import fuzz_settings, hostile_values


class Echo(td.Module):
    async def forward(self, question: str) -> td.Prediction:
        await trio.sleep(0.1)
        return td.Prediction(answer=question)


def _decoded(raw: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # too many digits, too deep: the text itself
        return raw


@fuzz_settings(60)
@given(
    raw=hostile_values,
    number=st.floats() | st.integers() | st.booleans(),
    feedback=st.booleans(),
)
def test_no_metric_value_makes_the_score_nan_or_infinite(
    raw: str, number: float, feedback: bool
) -> None:
    returned = [_decoded(raw), number, 1.0]
    if feedback:
        returned = [td.Prediction(score=v, feedback="f") for v in returned]

    def metric(example: td.Example, pred: td.Prediction) -> Any:
        return returned[int(example.question)]

    devset = [td.Example(question=str(i)).with_inputs("question") for i in range(3)]

    async def main() -> td.EvaluationResult:
        with trio.fail_after(10):
            return await td.Evaluate(devset, metric, progress=False)(Echo())

    result = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert result.complete and math.isfinite(result.score)
    for _, outcome, score in result.results:
        assert math.isfinite(score)
        assert isinstance(outcome, td.Prediction | MetricError)
    assert result.results[2][2] == 1.0
