"""Hostile input for the fuzzing tests (``tests/test_fuzz_*.py``).

Strategies for what a broken or malicious server, file or store can send:
numbers ``int()`` cannot take, deep nesting, lone surrogates, invalid UTF-8,
JSON of the wrong type at any position, and truncations. Each fuzzing test
asserts that such input ends in a result or one of ``td.errors``' types,
within a bounded time, with nothing left open.

The example count is modest by default so that CI stays fast; set
``TRIO_DSPY_FUZZ_EXAMPLES`` to raise it for a long local run, e.g.
``TRIO_DSPY_FUZZ_EXAMPLES=5000 python -m pytest tests/test_fuzz_*.py``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

__all__ = [
    "fuzz_settings",
    "hostile_numbers",
    "hostile_strings",
    "hostile_values",
    "mutated",
]


def fuzz_examples(default: int) -> int:
    """``TRIO_DSPY_FUZZ_EXAMPLES`` when set, else ``default``."""
    raw = os.environ.get("TRIO_DSPY_FUZZ_EXAMPLES")
    return int(raw) if raw else default


def fuzz_settings(default: int = 60) -> settings:
    """Hypothesis settings for one fuzzing test: ``default`` examples (or the
    environment's count), no deadline (hostile input is slow by design; each
    test bounds its own time on trio's clock), derandomized in CI."""
    return settings(
        max_examples=fuzz_examples(default),
        deadline=None,
        derandomize=bool(os.environ.get("CI")),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# Raw JSON number tokens that json.loads accepts but int() or arithmetic may not.
hostile_numbers: st.SearchStrategy[str] = st.sampled_from(
    [
        "Infinity",
        "-Infinity",
        "NaN",
        "1e400",
        "-1e400",
        "1e-400",
        "9" * 5000,
        "-" + "9" * 5000,
        "1.5",
        "-1",
        "0",
        "18446744073709551617",
        "true",
        "null",
        '"3"',
        "[]",
        "{}",
    ]
)

_SURROGATES = ["\\ud800", "\\udfff", "\\udc80x", "a\\ud83d", "\\ude00\\ud83d"]

# JSON string tokens (with their quotes) that decode to hostile text.
hostile_strings: st.SearchStrategy[str] = st.one_of(
    st.sampled_from([f'"{s}"' for s in _SURROGATES]),
    st.text(max_size=20).map(lambda s: json.dumps(s)),
    st.sampled_from(['"' + "x" * 100_000 + '"', '""', '"\\u0000"', '"[[ ## completed ## ]]"']),
)


def _nested(depth: int, leaf: str) -> str:
    return "[" * depth + leaf + "]" * depth


# Any JSON value token, hostile or not, including deep nesting.
hostile_values: st.SearchStrategy[str] = st.recursive(
    st.one_of(hostile_numbers, hostile_strings),
    lambda children: st.one_of(
        st.lists(children, max_size=3).map(lambda xs: "[" + ",".join(xs) + "]"),
        st.dictionaries(
            st.sampled_from(['"a"', '"index"', '"id"', '"type"']), children, max_size=3
        ).map(lambda d: "{" + ",".join(f"{k}:{v}" for k, v in d.items()) + "}"),
        st.sampled_from([10, 1000, 100_000]).map(lambda n: _nested(n, "1")),
    ),
    max_leaves=6,
)


def mutated(document: Any) -> st.SearchStrategy[bytes]:
    """Bytes derived from a valid JSON ``document``: each scalar or member in
    turn replaced with a hostile value, truncated anywhere, or spoiled with
    invalid UTF-8."""
    text = json.dumps(document)
    paths = list(_paths(document))

    def replace(path_and_value: tuple[tuple[Any, ...], str]) -> bytes:
        path, raw = path_and_value
        return _replace_at(document, path, raw).encode("utf-8", "surrogatepass")

    replaced = st.tuples(st.sampled_from(paths), hostile_values).map(replace)
    truncated = st.integers(0, len(text)).map(lambda n: text[:n].encode())
    spoiled = st.tuples(
        st.integers(0, len(text)), st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"])
    ).map(lambda t: text.encode()[: t[0]] + t[1] + text.encode()[t[0] :])
    return st.one_of(replaced, truncated, spoiled)


_MARK = "\x00HOSTILE\x00"


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Any:
    yield prefix
    if isinstance(value, dict):
        for key, member in value.items():
            yield from _paths(member, (*prefix, key))
    elif isinstance(value, list):
        for index, member in enumerate(value):
            yield from _paths(member, (*prefix, index))


def _replace_at(document: Any, path: tuple[Any, ...], raw: str) -> str:
    """``document`` as JSON text with the value at ``path`` replaced by the raw token ``raw``."""
    if not path:
        return raw
    copy = json.loads(json.dumps(document))
    node = copy
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = _MARK
    return json.dumps(copy).replace(json.dumps(_MARK), raw)


def mutated_numbers(document: Any) -> st.SearchStrategy[bytes]:
    """Bytes of a valid JSON ``document`` with one of its numbers (an index, a
    count, a code) replaced by a hostile value: where a reader calls ``int()``.
    Falls back to :func:`mutated` when the document holds no number."""
    paths = [p for p in _paths(document) if _is_number(_at(document, p))]
    if not paths:
        return mutated(document)

    def replace(path_and_value: tuple[tuple[Any, ...], str]) -> bytes:
        path, raw = path_and_value
        return _replace_at(document, path, raw).encode("utf-8", "surrogatepass")

    return st.tuples(st.sampled_from(paths), st.one_of(hostile_numbers, hostile_values)).map(
        replace
    )


def _at(document: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        document = document[step]
    return document


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, left for its reaper, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = f"/proc/{pid}/stat"
    if os.path.exists(stat):  # Linux: the state follows the command's closing parenthesis
        with open(stat) as file:
            return file.read().rsplit(")", 1)[1].split()[0] != "Z"
    return True  # pragma: no cover - without /proc (macOS) a zombie counts as alive
