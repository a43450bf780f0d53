"""Fuzzing td.XMLAdapter's parser and its stream parser with what a model may write.

Arbitrary text, hostile values inside the elements (``tests/hostile.py``),
hostile XML (deep nesting, entity and DOCTYPE declarations, character
references to nothing or to a lone surrogate, tags cut anywhere): each
example ends in typed values, or in :class:`~trio_dspy.errors.AdapterParseError`
holding the raw text, within a wall-clock bound, and every string it gives
can be sent on as UTF-8. The stream parser, fed the same text split
anywhere, gives each text field exactly the value the parser gives.
"""

from __future__ import annotations

import json
import time
from typing import Any

import attrs
from hypothesis import given
from hypothesis import strategies as st

import trio_dspy as td
from trio_dspy.errors import AdapterParseError
from trio_dspy.unicode import clean_text

from .hostile import fuzz_settings, hostile_values

WALL_CLOCK_BOUND = 5.0  # seconds for one parse of at most a few hundred kB


@attrs.frozen
class Line:
    sku: str
    qty: int


class Fuzzed(td.Signature):
    """Everything at once."""

    q: str = td.InputField()
    answer: str = td.OutputField()
    n: int = td.OutputField()
    ok: bool = td.OutputField()
    tags: list[str] = td.OutputField()
    lines: list[Line] = td.OutputField()
    extra: dict[str, float] | None = td.OutputField()


VALID = td.XMLAdapter().format_outputs(
    Fuzzed,
    {
        "answer": "fine & dandy",
        "n": 2,
        "ok": True,
        "tags": ["x"],
        "lines": [Line("a", 1)],
        "extra": {"k": 0.5},
    },
)

HOSTILE_XML = [
    "<tags>" + "<item>" * 5000 + "x" + "</item>" * 5000 + "</tags>",
    "<lines>" + "<item>" * 150 + "</item>" * 150 + "</lines>",
    '<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">]>',
    '<!ENTITY lol "lol">&lol;',
    "&#xD800;",
    "&#0;",
    "&#x110000;",
    "&#99999999;",
    "<![CDATA[ <answer>inside</answer> ]]>",
    "<?xml version='1.0'?>",
    "<answer",
    "</answer>",
    "<answer/>",
    "<n attr='" + "x" * 300 + "'>",
    "<item key='&quot;'>",
    "\x00",
    "\ud800",
    "<" * 1000,
    "&" * 1000,
    "<answer>" * 200,
]

TAGS = ["<answer>", "</answer>", "<n>", "</n>", "<tags>", "</tags>", "<lines>", "</lines>"]

fragments = st.one_of(
    st.text(max_size=30),
    st.sampled_from(HOSTILE_XML),
    st.sampled_from(TAGS),
    hostile_values,
    st.sampled_from(["&amp;", "&lt;", "&#65;", "&#x42;", "&bogus;", "&am", "  \n"]),
)


def _check(result: dict[str, Any]) -> None:
    """Every string of a parsed result can be sent on as UTF-8."""
    json.dumps(td.types.unstructure(result, dict[str, Any]), ensure_ascii=False).encode("utf-8")


def _parse(completion: str) -> dict[str, Any] | AdapterParseError:
    started = time.monotonic()
    try:
        result: dict[str, Any] | AdapterParseError = td.XMLAdapter().parse(Fuzzed, completion)
        assert isinstance(result, dict)
        _check(result)
    except AdapterParseError as exc:
        assert exc.completion == clean_text(completion)  # the raw text is never lost
        result = exc
    assert time.monotonic() - started < WALL_CLOCK_BOUND
    return result


@fuzz_settings(100)
@given(st.text(max_size=300))
def test_arbitrary_text_ends_in_values_or_a_parse_error(text: str) -> None:
    _parse(text)


@fuzz_settings(100)
@given(st.lists(fragments, max_size=12))
def test_hostile_fragments_end_in_values_or_a_parse_error(parts: list[str]) -> None:
    _parse("".join(parts))


@fuzz_settings(100)
@given(
    st.sampled_from(["answer", "n", "ok", "tags", "lines", "extra"]),
    st.one_of(
        hostile_values, st.sampled_from(HOSTILE_XML), st.lists(fragments, max_size=6).map("".join)
    ),
)
def test_a_hostile_value_inside_a_valid_answer_ends_in_values_or_a_parse_error(
    field: str, value: str
) -> None:
    start = VALID.index(f"<{field}>") + len(f"<{field}>")
    end = VALID.index(f"</{field}>")
    result = _parse(VALID[:start] + value + VALID[end:])
    if isinstance(result, AdapterParseError):
        assert field in str(result) or "missing" in str(result) or "never closed" in str(result)


@fuzz_settings(100)
@given(st.lists(fragments, max_size=10), st.lists(st.integers(1, 40), min_size=1, max_size=8))
def test_the_stream_parser_agrees_with_the_parser_however_the_text_is_split(
    parts: list[str], sizes: list[int]
) -> None:
    sig = td.make_signature("q -> reasoning, answer")
    # Text as it comes from a model client: lone surrogates already replaced.
    # The tail closes what the fragments left open and gives each field an
    # element, so that most examples have values to agree with.
    tail = "</answer></reasoning><answer> a </answer><reasoning> r &amp; </reasoning>"
    completion = clean_text("".join(parts) + tail)
    started = time.monotonic()
    parser = td.XMLAdapter().stream_parser(sig, ["reasoning", "answer"])
    pieces: list[tuple[str, str]] = []
    at, i = 0, 0
    while at < len(completion):
        size = sizes[i % len(sizes)]
        pieces += parser.feed(completion[at : at + size])
        at, i = at + size, i + 1
    pieces += parser.finish()
    assert time.monotonic() - started < WALL_CLOCK_BOUND
    try:
        # The elements alone: a whole answer in JSON is read, but not streamed.
        whole = td.XMLAdapter()._parse_elements(sig, completion)
    except AdapterParseError:
        return  # no value to agree with (a field missing or never closed)
    for field in ("reasoning", "answer"):
        assert "".join(c for f, c in pieces if f == field) == whole[field]
