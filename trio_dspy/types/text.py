"""Text a model wrote -> JSON -> the typed value of one field."""

from __future__ import annotations

import json
import re
from typing import Any, get_args, get_origin

from ..errors import StructuringError
from ..unicode import clean_json
from .convert import structure
from .custom import is_custom
from .support import is_object_type, is_union, non_none

__all__ = ["MAX_JSON_DEPTH", "find_json", "loads_json", "parse_text", "strip_code_fences"]

MAX_JSON_DEPTH = 200
"""The deepest nesting of arrays and objects read from a model or a file.

Deeper JSON (hostile or broken output) is refused as invalid, so it can never
reach code that recurses over values (``repr``, ``json.dumps``, cattrs) and
escape as a bare ``RecursionError``.
"""

_TOO_DEEP = f"JSON nested deeper than {MAX_JSON_DEPTH} levels"

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")

_FENCE = re.compile(r"^\s*```[\w+-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


def strip_code_fences(text: str) -> str:
    """Remove one Markdown code fence around ``text`` (```json ... ```), if any."""
    match = _FENCE.match(text)
    return match.group(1) if match else text


def loads_json(text: str) -> Any:
    """``json.loads`` that also refuses JSON nested deeper than :data:`MAX_JSON_DEPTH`.

    Raises:
        ValueError: not JSON, or nested too deeply.
    """
    try:
        value = _lenient_loads(text)
    except RecursionError:
        raise ValueError(_TOO_DEEP) from None
    _check_depth(text, value)
    # A decoded string can hold a lone surrogate only if the text held one or
    # escaped one (``\ud800``): only then is the value walked.
    if not text.isascii() or _SURROGATE_ESCAPE.search(text):
        value = clean_json(value)
    return value


def _lenient_loads(text: str) -> Any:
    """``json.loads``, and when that fails, again allowing raw control characters
    (a newline, a tab) inside strings: small models write multi-line strings
    unescaped, which is the one slip a reader can take without guessing."""
    try:
        return json.loads(text)
    except ValueError as strict_error:
        try:
            return json.loads(text, strict=False)
        except ValueError:
            raise strict_error from None


def _depth_ok(text: str, value: Any) -> bool:
    try:
        _check_depth(text, value)
    except ValueError:
        return False
    return True


def _check_depth(text: str, value: Any) -> None:
    """Raise ``ValueError`` if ``value`` (decoded from ``text``) nests too deeply."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return  # cannot be deeper than its number of brackets
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > MAX_JSON_DEPTH:
            raise ValueError(_TOO_DEEP)
        stack.extend((child, depth + 1) for child in children)


def parse_text(text: str, tp: Any, *, path: str = "") -> Any:
    """Parse the text a model wrote for one field into a value of type ``tp``.

    ``str`` fields take the text as written. Other types are read as JSON
    (code fences removed); text that is not JSON is structured as a plain
    string, so ``medium`` still becomes ``Size.medium``.

    Raises:
        StructuringError: the text does not describe a valid ``tp``.
    """
    if tp is str:
        return text.strip()
    if is_custom(tp):
        try:
            whole = tp.td_from_text(text.strip())
        except (TypeError, ValueError) as exc:
            raise StructuringError(path, text, str(exc)) from None
        if whole is not None:
            return whole
    body = strip_code_fences(text.strip()).strip()
    try:
        data: Any = loads_json(body)
    except ValueError:
        data = _first_json_value(body, tp)
    members = non_none(get_args(tp)) if is_union(tp) else ()
    if str in members and data is not None and type(data) not in members:
        data = body  # "1.10" for Optional[str] stays text, not the float 1.1
    try:
        return structure(data, tp, path=path)
    except StructuringError:
        if data is body:
            raise
        # The text read as JSON did not fit; maybe the text itself does
        # ("true" for Literal["true", "false"]).
        try:
            return structure(body, tp, path=path)
        except StructuringError:
            pass
        raise


def _wanted_openers(tp: Any) -> str:
    """The JSON brackets a value of ``tp`` may start with."""
    if is_union(tp):
        return "".join(dict.fromkeys("".join(_wanted_openers(m) for m in non_none(get_args(tp)))))
    if is_object_type(tp) or get_origin(tp) is dict or tp is dict:
        return "{"
    if get_origin(tp) in (list, tuple) or tp in (list, tuple):
        return "["
    return ""


def find_json(body: str, openers: str) -> Any:
    """The first JSON value starting with one of ``openers`` that decodes, or ``None``.

    Scans past brackets that do not start valid JSON (``Use {this}: {"a": 1}``).
    """
    decoder = json.JSONDecoder(strict=False)  # raw newlines in strings, as loads_json takes them
    start = 0
    while True:
        positions = [i for i in (body.find(o, start) for o in openers) if i >= 0]
        if not positions:
            return None
        at = min(positions)
        try:
            value, end = decoder.raw_decode(body, at)
        except ValueError:
            start = at + 1
            continue
        except RecursionError:
            return None  # hostile nesting: nothing after it is worth the search
        if _depth_ok(body[at:end], value):
            # As loads_json does: a string escaping a lone surrogate gets U+FFFD.
            return clean_json(value)
        start = end  # too deep: skip it whole (its insides are parts of it)


def _first_json_value(body: str, tp: Any) -> Any:
    """Best effort for JSON with prose around it; the text itself otherwise."""
    openers = _wanted_openers(tp)
    found = find_json(body, openers) if openers else None
    return body if found is None else found
