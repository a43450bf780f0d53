"""Evaluation: ``Evaluate``, its result, and ready-made metrics.

``td.Evaluate`` and ``td.EvaluationResult`` are re-exported at the top level;
the metrics live here: ``td.evaluate.answer_exact_match``,
``answer_passage_match``, ``token_f1`` and the LM-judged ``SemanticF1``.
"""

from .evaluate import MAX_SCORE, Evaluate, EvaluationError, Metric, MetricError, call_metric
from .judge import SemanticF1
from .metrics import (
    answer_exact_match,
    answer_passage_match,
    exact_match,
    f1_score,
    normalize_text,
    token_f1,
)
from .result import EvaluationResult, Row

__all__ = [
    "MAX_SCORE",
    "Evaluate",
    "EvaluationError",
    "EvaluationResult",
    "Metric",
    "MetricError",
    "Row",
    "SemanticF1",
    "answer_exact_match",
    "answer_passage_match",
    "call_metric",
    "exact_match",
    "f1_score",
    "normalize_text",
    "token_f1",
]
