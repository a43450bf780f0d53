"""Load examples from JSONL and CSV files; shuffle and split them with a seed.

::

    examples = td.datasets.load_jsonl("qa.jsonl", input_keys=["question"])
    trainset, devset = td.datasets.split(examples, 0.5, seed=0)

Every loaded example already knows its inputs (``with_inputs``), so it can go
straight to :class:`~trio_dspy.Evaluate` or an optimizer. ``types`` structures
chosen fields into typed values (enums, attrs classes, numbers) with the same
converter the adapters use, so labels compare with predictions as values.
"""

from __future__ import annotations

import csv
import json
import os
import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .errors import StructuringError, TrioDSPyError
from .primitives import Example
from .types import structure
from .unicode import clean_json

__all__ = ["load_csv", "load_jsonl", "shuffle", "split"]

T = TypeVar("T")


def load_jsonl(
    path: str | os.PathLike[str],
    input_keys: Sequence[str],
    *,
    types: Mapping[str, Any] | None = None,
) -> list[Example]:
    """One example per line of a JSON Lines file (blank lines skipped).

    Lone surrogates (``"\\ud800"``) in keys and values become U+FFFD.

    Raises:
        OSError: the file cannot be read.
        TrioDSPyError: a line is not a JSON object, lacks an input key, or a
            value does not fit its type in ``types`` (the line number is named).
    """
    examples = []
    text = _read(path)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise TrioDSPyError(f"{path}:{number}: not valid JSON ({exc})") from None
        if not isinstance(record, dict):
            raise TrioDSPyError(f"{path}:{number}: expected a JSON object, got {record!r:.80}")
        examples.append(_example(record, input_keys, types, f"{path}:{number}"))
    return examples


def load_csv(
    path: str | os.PathLike[str],
    input_keys: Sequence[str],
    *,
    types: Mapping[str, Any] | None = None,
    delimiter: str = ",",
) -> list[Example]:
    """One example per row of a CSV file whose first row names the fields.

    Values are strings unless ``types`` says otherwise.

    Raises:
        OSError: the file cannot be read.
        TrioDSPyError: the header lacks an input key, or a value does not fit its type.
    """
    rows = csv.DictReader(_read(path).splitlines(), delimiter=delimiter)
    missing = [k for k in input_keys if k not in (rows.fieldnames or [])]
    if missing:
        raise TrioDSPyError(
            f"{path}: no column(s) {', '.join(missing)}; "
            f"columns: {', '.join(rows.fieldnames or [])}"
        )
    return [
        _example(dict(row), input_keys, types, f"{path}:{number}")
        for number, row in enumerate(rows, start=2)
    ]


def shuffle(items: Iterable[T], seed: int = 0) -> list[T]:
    """A new list of ``items`` in an order fixed by ``seed``."""
    shuffled = list(items)
    random.Random(seed).shuffle(shuffled)
    return shuffled


def split(
    items: Sequence[T], first: float | int = 0.5, *, seed: int | None = 0
) -> tuple[list[T], list[T]]:
    """Split ``items`` in two, after a seeded shuffle (``seed=None``: keep the order).

    ``first`` is the size of the first part: a fraction in (0, 1) or a count.

    Raises:
        ValueError: ``first`` is out of range.
    """
    if isinstance(first, float):
        if not 0.0 < first < 1.0:
            raise ValueError(f"a fraction must be between 0 and 1, got {first}")
        count = round(len(items) * first)
    else:
        count = first
    if not 0 <= count <= len(items):
        raise ValueError(f"cannot take {count} of {len(items)} items")
    ordered = list(items) if seed is None else shuffle(items, seed)
    return ordered[:count], ordered[count:]


def _read(path: str | os.PathLike[str]) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TrioDSPyError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _example(
    record: dict[str, Any], input_keys: Sequence[str], types: Mapping[str, Any] | None, where: str
) -> Example:
    # A file is where text enters: JSON's escapes can spell lone surrogates,
    # which become U+FFFD here (a CSV row, read as strict UTF-8, holds none).
    record = clean_json(record)
    missing = [k for k in input_keys if k not in record]
    if missing:
        raise TrioDSPyError(f"{where}: missing input field(s) {', '.join(missing)}")
    if types:
        for key, annotation in types.items():
            if key in record:
                try:
                    record[key] = structure(record[key], annotation, path=key)
                except StructuringError as exc:
                    raise TrioDSPyError(f"{where}: {exc}") from None
    return Example(record).with_inputs(*input_keys)
