"""The incremental field parsers: any split of a completion reads the same as the whole."""

from __future__ import annotations

import itertools
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

import trio_dspy as td
from trio_dspy.adapters.markers import COMPLETED, HEADER_PATTERN, field_header
from trio_dspy.adapters.streaming import FieldParser, Piece

SIG = td.make_signature("question -> answer, notes")
FIELDS = ("answer", "notes")


def split(text: str, cuts: list[int]) -> list[str]:
    """``text`` cut at the given positions (any order, duplicates allowed)."""
    points = sorted({c % (len(text) + 1) for c in cuts})
    edges = [0, *points, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(edges)]


def run(parser: FieldParser, deltas: list[str]) -> list[Piece]:
    pieces: list[Piece] = []
    for delta in deltas:
        pieces.extend(parser.feed(delta))
    pieces.extend(parser.finish())
    return pieces


def joined(pieces: list[Piece]) -> dict[str, str]:
    out: dict[str, str] = {}
    for field, chunk in pieces:
        assert chunk, "pieces are never empty"
        out[field] = out.get(field, "") + chunk
    return out


# Text that exercises the marker look-alikes and the whitespace an adapter strips.
chat_text = st.text(alphabet="ab [ ]#_\n\té", max_size=40).filter(
    lambda t: HEADER_PATTERN.search(t) is None
)
spacing = st.sampled_from(["", " ", "\n", "\n\n", "  \n "])


@st.composite
def chat_completions(draw: st.DrawFn) -> str:
    prose = draw(chat_text)
    parts = [prose]
    for name in FIELDS:
        header = draw(st.sampled_from([field_header(name), f"[[##{name.upper()}##]]"]))
        parts.append(f"{draw(spacing)}{header}{draw(spacing)}{draw(chat_text)}{draw(spacing)}")
    if draw(st.booleans()):
        parts.append(f"{COMPLETED}{draw(chat_text)}")
    return "".join(parts)


@given(chat_completions(), st.lists(st.integers(0, 400), max_size=12))
def test_chat_chunks_join_to_the_parsed_value_however_the_text_is_split(
    completion: str, cuts: list[int]
) -> None:
    parsed = td.ChatAdapter().parse(SIG, completion)
    pieces = run(td.ChatAdapter().stream_parser(SIG, FIELDS), split(completion, cuts))
    got = joined(pieces)
    assert {f: got.get(f, "") for f in FIELDS} == parsed


@given(chat_completions(), st.lists(st.integers(0, 400), max_size=12))
def test_chat_parser_reports_only_the_fields_listened_to(completion: str, cuts: list[int]) -> None:
    pieces = run(td.ChatAdapter().stream_parser(SIG, ["notes"]), split(completion, cuts))
    assert {field for field, _ in pieces} <= {"notes"}
    assert joined(pieces).get("notes", "") == td.ChatAdapter().parse(SIG, completion)["notes"]


def test_a_marker_split_across_deltas_never_leaks_into_a_chunk() -> None:
    completion = (
        f"{field_header('answer')}\nHello world\n\n{field_header('notes')}\nnone\n\n{COMPLETED}"
    )
    for size in (1, 2, 3, 5):
        deltas = [completion[i : i + size] for i in range(0, len(completion), size)]
        pieces = run(td.ChatAdapter().stream_parser(SIG, FIELDS), deltas)
        assert all("[" not in c and "#" not in c and "]" not in c for _, c in pieces)
        assert joined(pieces) == {"answer": "Hello world", "notes": "none"}


def test_chat_text_is_reported_before_the_section_ends() -> None:
    parser = td.ChatAdapter().stream_parser(SIG, ["answer"])
    assert parser.feed("[[ ## answer ## ]]\nHel") == [("answer", "Hel")]
    assert parser.feed("lo [") == [("answer", "lo")]  # " [" may open a marker: held back
    assert parser.feed("1] ") == [("answer", " [1]")]  # it did not; the space waits
    assert parser.feed("\n\n[[ ## notes ## ]]\nx") == []


def test_chat_reading_stops_at_completed() -> None:
    parser = td.ChatAdapter().stream_parser(SIG, ["answer"])
    text = f"{field_header('answer')}\nyes\n{COMPLETED}\n{field_header('answer')}\nno"
    assert joined(run(parser, list(text))) == {"answer": "yes"}


def test_a_section_left_open_reports_its_held_back_text_at_the_end() -> None:
    parser = td.ChatAdapter().stream_parser(SIG, ["answer"])
    assert parser.feed("[[ ## answer ## ]]\nsee [[ ##") == [("answer", "see")]
    assert parser.finish() == [("answer", " [[ ##")]


# ------------------------------------------------------------------------- JSON
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def json_completions(draw: st.DrawFn) -> str:
    data: dict[str, Any] = {}
    for name in draw(st.permutations(["answer", "extra", "notes", "more"])):
        data[name] = draw(st.text()) if name in FIELDS else draw(json_values)
    text = json.dumps(
        data, ensure_ascii=draw(st.booleans()), indent=draw(st.sampled_from([None, 2]))
    )
    if draw(st.booleans()):
        text = f"```json\n{text}\n```"
    return text


@given(json_completions(), st.lists(st.integers(0, 2000), max_size=20))
def test_json_chunks_join_to_the_parsed_value_however_the_text_is_split(
    completion: str, cuts: list[int]
) -> None:
    parsed = td.JSONAdapter().parse(SIG, completion)
    pieces = run(td.JSONAdapter().stream_parser(SIG, FIELDS), split(completion, cuts))
    got = joined(pieces)
    assert {f: got.get(f, "") for f in FIELDS} == {f: parsed[f] for f in FIELDS}


def test_json_escapes_split_inside_a_surrogate_pair_decode_whole() -> None:
    completion = '{"answer": "caf\\u00e9 \\ud83d\\ude00 \\"ok\\"\\n", "notes": "x"}'
    assert json.loads(completion)["answer"] == 'café 😀 "ok"\n'
    pieces = run(td.JSONAdapter().stream_parser(SIG, ["answer"]), list(completion))
    assert joined(pieces) == {"answer": 'café 😀 "ok"\n'}


def test_json_values_grow_as_they_arrive_and_nested_values_are_skipped() -> None:
    parser = td.JSONAdapter().stream_parser(SIG, ["answer"])
    assert parser.feed('{"meta": {"answer": "no", "l": [1, "}"]}, "answer": "He') == [
        ("answer", "He")
    ]
    assert parser.feed('llo", "notes": "n"}') == [("answer", "llo")]
    assert parser.feed(' {"answer": "after"}') == []
