"""Text a model wrote -> JSON -> the typed value of one field."""

from __future__ import annotations

import json
import re
from typing import Any, get_args, get_origin

from ..errors import StructuringError
from .convert import structure
from .support import is_record, is_union, non_none

__all__ = ["find_json", "parse_text", "strip_code_fences"]

_FENCE = re.compile(r"^\s*```[\w+-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


def strip_code_fences(text: str) -> str:
    """Remove one Markdown code fence around ``text`` (```json ... ```), if any."""
    match = _FENCE.match(text)
    return match.group(1) if match else text


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
    body = strip_code_fences(text.strip()).strip()
    try:
        data: Any = json.loads(body)
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
    if is_record(tp) or get_origin(tp) is dict or tp is dict:
        return "{"
    if get_origin(tp) in (list, tuple) or tp in (list, tuple):
        return "["
    return ""


def find_json(body: str, openers: str) -> Any:
    """The first JSON value starting with one of ``openers`` that decodes, or ``None``.

    Scans past brackets that do not start valid JSON (``Use {this}: {"a": 1}``).
    """
    decoder = json.JSONDecoder()
    start = 0
    while True:
        positions = [i for i in (body.find(o, start) for o in openers) if i >= 0]
        if not positions:
            return None
        at = min(positions)
        try:
            value, _ = decoder.raw_decode(body[at:])
            return value
        except ValueError:
            start = at + 1


def _first_json_value(body: str, tp: Any) -> Any:
    """Best effort for JSON with prose around it; the text itself otherwise."""
    openers = _wanted_openers(tp)
    found = find_json(body, openers) if openers else None
    return body if found is None else found
