"""Loading examples from JSONL and CSV, and seeded shuffles and splits."""

from __future__ import annotations

import enum
from pathlib import Path

import pytest

import trio_dspy as td
from trio_dspy.errors import TrioDSPyError


class Size(enum.Enum):
    small = "small"
    large = "large"


def test_jsonl_examples_know_their_inputs_and_typed_fields(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"q": "big?", "size": "LARGE"}\n\n{"q": "tiny?", "size": "small"}\n')
    examples = td.datasets.load_jsonl(path, input_keys=["q"], types={"size": Size})
    assert [e.size for e in examples] == [Size.large, Size.small]
    assert dict(examples[0].inputs()) == {"q": "big?"}


def test_bad_lines_name_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"q": "a"}\n[1, 2]\n')
    with pytest.raises(TrioDSPyError, match=r"d\.jsonl:2: expected a JSON object"):
        td.datasets.load_jsonl(path, input_keys=["q"])
    path.write_text('{"q": "a"}\n{"x": 1}\n')
    with pytest.raises(TrioDSPyError, match=r"d\.jsonl:2: missing input field\(s\) q"):
        td.datasets.load_jsonl(path, input_keys=["q"])
    path.write_text('{"q": "a", "size": "huge"}\n')
    with pytest.raises(TrioDSPyError, match=r"d\.jsonl:1: size: 'huge' is not one of"):
        td.datasets.load_jsonl(path, input_keys=["q"], types={"size": Size})
    path.write_bytes(b'{"q": "\xff"}\n')
    with pytest.raises(TrioDSPyError, match="not UTF-8"):
        td.datasets.load_jsonl(path, input_keys=["q"])
    path.write_text("[" * 5000 + "\n")
    with pytest.raises(TrioDSPyError, match="not valid JSON"):
        td.datasets.load_jsonl(path, input_keys=["q"])


def test_csv_rows_become_examples(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("question,answer,n\nWhy?,Because,3\n")
    (ex,) = td.datasets.load_csv(path, input_keys=["question"], types={"n": int})
    assert ex == {"question": "Why?", "answer": "Because", "n": 3}
    with pytest.raises(TrioDSPyError, match=r"no column\(s\) query; columns: question, answer"):
        td.datasets.load_csv(path, input_keys=["query"])


def test_shuffle_and_split_are_seeded() -> None:
    items = list(range(20))
    assert td.datasets.shuffle(items, seed=1) == td.datasets.shuffle(items, seed=1)
    assert td.datasets.shuffle(items, seed=1) != td.datasets.shuffle(items, seed=2)
    train, dev = td.datasets.split(items, 0.75, seed=3)
    assert len(train) == 15 and sorted(train + dev) == items
    assert td.datasets.split(items, 5, seed=None) == (items[:5], items[5:])
    with pytest.raises(ValueError):
        td.datasets.split(items, 1.5)
    with pytest.raises(ValueError):
        td.datasets.split(items, 21)


def test_a_lone_surrogate_in_a_jsonl_file_becomes_a_replacement_character(
    tmp_path: Path,
) -> None:
    path = tmp_path / "d.jsonl"
    # The JSON escapes of lone surrogates, as a file written by another program may hold them.
    path.write_text('{"q": "caf\\ud800", "a\\udfff": "ok", "size": "small"}\n', encoding="utf-8")
    (example,) = td.datasets.load_jsonl(path, input_keys=["q"], types={"size": Size})
    assert dict(example) == {"q": "caf\ufffd", "a\ufffd": "ok", "size": Size.small}
    assert dict(example.inputs()) == {"q": "caf\ufffd"}


def test_a_csv_file_cannot_smuggle_a_surrogate_it_is_refused_as_not_utf8(
    tmp_path: Path,
) -> None:
    # CSV has no escapes: a surrogate could only come as its UTF-8 bytes, which
    # are not UTF-8 text; an escape written as text stays the six characters.
    path = tmp_path / "d.csv"
    path.write_bytes(b"q,a\ncaf\xed\xa0\x80,ok\n")
    with pytest.raises(TrioDSPyError, match="not UTF-8"):
        td.datasets.load_csv(path, input_keys=["q"])
    path.write_text("q,a\ncaf\\ud800,ok\n", encoding="utf-8")
    (example,) = td.datasets.load_csv(path, input_keys=["q"])
    assert example.q == "caf\\ud800"
