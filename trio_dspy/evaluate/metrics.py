"""Ready-made metrics: exact match, passage match and token-level F1.

Each has DSPy's metric shape, ``metric(example, prediction, trace=None)``,
and compares the prediction's ``answer`` field with the example's (``field=``
names another). Text is normalised as in SQuAD's evaluation: lower case, no
punctuation, no articles (``a``, ``an``, ``the``), single spaces. An example
answer may be a list of acceptable answers; the best match counts. Values
that are not strings (enums, numbers, attrs classes) are compared as values.
"""

from __future__ import annotations

import collections
import enum
import re
import string
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "answer_exact_match",
    "answer_passage_match",
    "exact_match",
    "f1_score",
    "normalize_text",
    "token_f1",
]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_text(text: str) -> str:
    """SQuAD's normalisation: NFD, lower case, no punctuation or articles, one space."""
    text = unicodedata.normalize("NFD", text).lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _text(value: Any) -> str | None:
    """The value as text to normalise, or ``None`` when it is compared as a value."""
    if isinstance(value, str):
        return value
    if isinstance(value, enum.Enum) and isinstance(value.value, str):
        return value.value
    return None


def exact_match(prediction: Any, reference: Any) -> bool:
    """Whether the two are the same answer (normalised text, or equal values)."""
    p, r = _text(prediction), _text(reference)
    if p is not None and r is not None:
        return normalize_text(p) == normalize_text(r)
    return bool(prediction == reference)


def f1_score(prediction: str, reference: str) -> float:
    """Token-level F1 of two texts after normalisation (0.0 to 1.0)."""
    predicted = normalize_text(prediction).split()
    wanted = normalize_text(reference).split()
    if not predicted or not wanted:
        return float(predicted == wanted)
    common = collections.Counter(predicted) & collections.Counter(wanted)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(wanted)
    return 2 * precision * recall / (precision + recall)


def _answers(example: Any, field: str) -> list[Any]:
    value = _get(example, field, "example")
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def _get(record: Any, field: str, what: str) -> Any:
    try:
        return record[field]
    except (KeyError, TypeError):
        try:
            return getattr(record, field)
        except AttributeError:
            raise KeyError(f"the {what} has no field {field!r}") from None


def answer_exact_match(
    example: Any, pred: Any, trace: Any = None, *, frac: float = 1.0, field: str = "answer"
) -> bool:
    """Whether ``pred.answer`` matches one of the example's answers.

    With ``frac < 1`` a text answer whose token F1 reaches ``frac`` counts too.

    Raises:
        KeyError: the example or the prediction has no such field.
    """
    predicted = _get(pred, field, "prediction")
    answers = _answers(example, field)
    if frac >= 1.0 or _text(predicted) is None:
        return any(exact_match(predicted, a) for a in answers)
    text = _text(predicted) or ""
    return max(f1_score(text, _text(a) or "") for a in answers) >= frac


def answer_passage_match(
    example: Any, pred: Any, trace: Any = None, *, field: str = "answer", context: str = "context"
) -> bool:
    """Whether one of the example's answers appears in a passage of ``pred.context``.

    Raises:
        KeyError: the example has no answer or the prediction no context.
    """
    passages = _get(pred, context, "prediction")
    if isinstance(passages, str):
        passages = [passages]
    wanted = [normalize_text(str(a)) for a in _answers(example, field)]
    return any(_contains(normalize_text(str(p)), wanted) for p in passages)


def _contains(passage: str, answers: Iterable[str]) -> bool:
    padded = f" {passage} "
    return any(a and f" {a} " in padded for a in answers)


def token_f1(example: Any, pred: Any, trace: Any = None, *, field: str = "answer") -> float:
    """The best token-level F1 of ``pred.answer`` against the example's answers.

    Raises:
        KeyError: the example or the prediction has no such field.
    """
    predicted = str(_get(pred, field, "prediction"))
    answers: Sequence[Any] = _answers(example, field)
    return max(f1_score(predicted, str(a)) for a in answers)
