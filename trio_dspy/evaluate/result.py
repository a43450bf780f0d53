"""``EvaluationResult``: the scored rows of an evaluation, and how to read them out."""

from __future__ import annotations

import csv
import enum
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from ..primitives import Example, Prediction
from ..types import unstructure

__all__ = ["EvaluationResult", "Row"]

Row = tuple[Example, Prediction | BaseException | Any, float]
"""``(example, prediction or the exception it raised, score)``."""


@attrs.define(eq=False)
class EvaluationResult:
    """What an evaluation found, one row per finished example in devset order.

    Attributes:
        total: how many examples the devset holds.
        complete: every example ran (false after ``max_errors`` or a cancellation).

    ``results`` holds ``(example, prediction or exception, score)`` for each
    finished example, in devset order whatever order they finished in;
    ``score`` is the mean score of those rows as a percentage (DSPy's
    convention), so a complete run scores the whole devset.
    """

    total: int
    _rows: list[Row | None] = attrs.field(repr=False)
    complete: bool = False

    @classmethod
    def empty(cls, total: int) -> EvaluationResult:
        """A result with room for ``total`` rows and none filled yet."""
        return cls(total, [None] * total)

    def set_row(self, index: int, row: Row) -> None:
        """Record the row of devset example ``index``."""
        self._rows[index] = row

    @property
    def results(self) -> list[Row]:
        """The finished rows, in devset order."""
        return [r for r in self._rows if r is not None]

    @property
    def scores(self) -> list[float]:
        """The score of each finished row, in devset order."""
        return [r[2] for r in self._rows if r is not None]

    @property
    def score(self) -> float:
        """Mean score of the finished rows as a percentage, rounded to 2 places."""
        scores = self.scores
        if not scores:
            return 0.0
        # Each share summed, not the sum shared: large scores cannot overflow
        # the total, so the mean of scores within MAX_SCORE is a finite float.
        n = len(scores)
        return round(100 * math.fsum(s / n for s in scores), 2)

    @property
    def finished(self) -> int:
        """How many examples have a row."""
        return sum(r is not None for r in self._rows)

    @property
    def errors(self) -> int:
        """How many finished examples raised instead of predicting."""
        return sum(1 for r in self._rows if r is not None and isinstance(r[1], BaseException))

    def __iter__(self) -> Iterator[Row]:
        return iter(self.results)

    def __len__(self) -> int:
        return self.finished

    # ------------------------------------------------------------- reading out
    def summary(self, max_rows: int = 10, width: int = 40) -> str:
        """A text table of the first ``max_rows`` rows and a closing score line."""
        rows = self.results[:max_rows]
        lines = []
        if rows:
            header = ["#", "inputs", "prediction", "score"]
            body = [
                [str(i), _cut(_inputs_text(ex), width), _cut(_outcome_text(out), width), f"{s:g}"]
                for i, (ex, out, s) in enumerate(rows, start=1)
            ]
            widths = [max(len(r[c]) for r in [header, *body]) for c in range(4)]
            for r in [header, *body]:
                lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
            if self.finished > len(rows):
                lines.append(f"... {self.finished - len(rows)} more")
        state = "" if self.complete else f", stopped after {self.finished} of {self.total}"
        errors = f", {self.errors} error(s)" if self.errors else ""
        lines.append(f"score {self.score:.2f}% over {self.finished} example(s){errors}{state}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def to_records(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per finished row: example, prediction, error, score."""
        records = []
        for example, outcome, score in self.results:
            failed = isinstance(outcome, BaseException)
            records.append(
                {
                    "example": _jsonable(dict(example)),
                    "prediction": None if failed else _jsonable(_fields(outcome)),
                    "error": _error_text(outcome) if isinstance(outcome, BaseException) else None,
                    "score": score,
                }
            )
        return records

    def to_jsonl(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_records` to ``path``, one JSON object per line.

        Raises:
            OSError: the file cannot be written.
        """
        with Path(path).open("w", encoding="utf-8") as f:
            for record in self.to_records():
                f.write(json.dumps(record, ensure_ascii=False) + "\n")

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """Write one row per example: its fields, ``pred_<field>`` columns, error, score.

        Non-string values are written as JSON.

        Raises:
            OSError: the file cannot be written.
        """
        records = self.to_records()
        example_keys = _ordered_keys(r["example"] for r in records)
        pred_keys = _ordered_keys(r["prediction"] or {} for r in records)
        header = [*example_keys, *(f"pred_{k}" for k in pred_keys), "error", "score"]
        with Path(path).open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            for r in records:
                pred = r["prediction"] or {}
                writer.writerow(
                    [
                        *(_cell(r["example"].get(k)) for k in example_keys),
                        *(_cell(pred.get(k)) for k in pred_keys),
                        r["error"] or "",
                        r["score"],
                    ]
                )


def _fields(outcome: Any) -> dict[str, Any]:
    if isinstance(outcome, Example):
        # A trajectory or other rich object is kept as text, not expanded.
        return dict(outcome)
    return {"value": outcome}


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _jsonable(value: Any) -> Any:
    """``value`` as JSON-ready data: records and enums unstructured, the rest as text."""
    try:
        data = unstructure(value)
        json.dumps(data)
        return data
    except (TypeError, ValueError):
        if isinstance(value, dict):
            return {str(k): _jsonable(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [_jsonable(v) for v in value]
        if isinstance(value, enum.Enum):
            return _jsonable(value.value)
        return str(value)


def _ordered_keys(dicts: Any) -> list[str]:
    keys: dict[str, None] = {}
    for d in dicts:
        keys.update(dict.fromkeys(d))
    return list(keys)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _inputs_text(example: Example) -> str:
    try:
        shown: Any = example.inputs()
    except ValueError:
        shown = example
    return ", ".join(f"{k}={v}" for k, v in dict(shown).items())


def _outcome_text(outcome: Any) -> str:
    if isinstance(outcome, BaseException):
        return _error_text(outcome)
    if isinstance(outcome, Example):
        return ", ".join(f"{k}={v}" for k, v in outcome.items() if k != "reasoning")
    return str(outcome)


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
