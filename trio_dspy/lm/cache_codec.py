"""What a cache stores: a response as JSON text, and the strict way back.

Every cache that keeps responses as text (:class:`~trio_dspy.lm.cache.DiskCache`,
:class:`~trio_dspy.lm.redis_cache.RedisCache`) reads them through
:func:`read_response`, so they agree on what a bad entry is: anything but
UTF-8 JSON, nested at most :data:`~trio_dspy.types.text.MAX_JSON_DEPTH`
levels, shaped as :func:`encode_response` writes it, with every value of the
type its field declares (no coercion: ``5`` is not a text, ``1.5`` or
``true`` not a token count). A store is shared with other programs, other
versions and whoever can write to it, so a bad entry is a miss, never an
error: the call goes to the model and its answer replaces the entry.
:class:`EntryReader` logs each bad entry once per key.

Lone surrogates (``"\\ud800"`` escapes) follow the text policy of
:mod:`trio_dspy.unicode`: they read as U+FFFD.
"""

from __future__ import annotations

import collections
import functools
import json
import types
import typing
from typing import Any

import attrs
import cattrs

from ..logs import get_logger
from ..messages import LMResponse
from ..types.text import loads_json
from ..unicode import clean_text

__all__ = ["EntryReader", "decode_response", "encode_response", "read_response"]

log = get_logger(__name__)
_converter = cattrs.Converter()
# Token counts are non-negative and fit a signed 64-bit integer (what
# providers and SQLite use); anything larger is not a count a model reported.
_MAX_COUNT = 2**63 - 1


class _Unreadable(ValueError):
    """A stored entry is not a response this library could have written."""


def encode_response(response: LMResponse) -> str:
    """``response`` as the JSON text a cache stores."""
    return json.dumps(_converter.unstructure(response), ensure_ascii=False)


def read_response(raw: str | bytes) -> LMResponse:
    """The response in a stored entry (bytes must be UTF-8).

    Raises:
        ValueError: the entry is not one :func:`encode_response` could have
            written; the message says why, without quoting the entry.
    """
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")  # strict: an encoded surrogate is invalid too
        except UnicodeDecodeError:
            raise _Unreadable("not UTF-8") from None
    try:
        document = loads_json(raw)  # depth-bounded: no RecursionError past this point
    except ValueError as exc:
        # The reason of json's own errors names a position, never the text.
        raise _Unreadable(f"not JSON: {str(exc)[:100]}") from None
    response: LMResponse = _read(document, LMResponse, "response")
    return response


def decode_response(raw: str | bytes) -> LMResponse | None:
    """The response in a stored entry, or ``None`` if it is not one (see :func:`read_response`)."""
    try:
        return read_response(raw)
    except ValueError:
        return None


def _read(value: Any, tp: Any, path: str) -> Any:
    """``value`` (decoded JSON) as a ``tp``, refusing any other JSON kind.

    Recursion follows the document, whose depth :func:`loads_json` bounds.
    """
    if tp is str:
        if not isinstance(value, str):
            raise _Unreadable(f"{path}: expected a string")
        return clean_text(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise _Unreadable(f"{path}: expected true or false")
        return value
    if tp is int:
        # bool is an int in Python, never a count in a stored entry.
        if type(value) is not int or not 0 <= value <= _MAX_COUNT:
            raise _Unreadable(f"{path}: expected a count from 0 to 2**63-1")
        return value
    if tp is float:  # a cost in US dollars
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Unreadable(f"{path}: expected a number")
        if not 0 <= value <= _MAX_COUNT:  # NaN fails too
            raise _Unreadable(f"{path}: expected a number from 0 to 2**63-1")
        return float(value)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [m for m in typing.get_args(tp) if m is not type(None)]
        if value is None and len(options) < len(typing.get_args(tp)):
            return None
        if len(options) != 1:
            raise TypeError(f"no stored form for {tp!r}")  # a field type this codec lacks
        return _read(value, options[0], path)
    if origin is tuple:
        item_type, _ = typing.get_args(tp)
        if not isinstance(value, list):
            raise _Unreadable(f"{path}: expected an array")
        return tuple(_read(item, item_type, f"{path}[{i}]") for i, item in enumerate(value))
    if attrs.has(tp):
        if not isinstance(value, dict):
            raise _Unreadable(f"{path}: expected an object")
        members: dict[str, Any] = {}
        for field, field_type in _fields(tp):
            if field.name in value:
                members[field.name] = _read(value[field.name], field_type, f"{path}.{field.name}")
            elif field.default is attrs.NOTHING:
                raise _Unreadable(f"{path}: {field.name} is missing")
        return tp(**members)  # keys this version does not know are left out
    raise TypeError(f"no stored form for {tp!r}")


@functools.cache
def _fields(cls: type) -> tuple[tuple[attrs.Attribute[Any], Any], ...]:
    hints = typing.get_type_hints(cls)
    return tuple((field, hints[field.name]) for field in attrs.fields(cls))


class EntryReader:
    """Reads one cache's stored entries; a bad entry is a miss, logged once per key.

    The last ``remember`` keys reported are kept, so a bad entry read in a
    hot loop (its call failing each time, so nothing replaces it) logs one
    warning, ``lm.cache_entry_unreadable``, not one per call.
    """

    def __init__(self, remember: int = 1024) -> None:
        self.remember = remember
        self._reported: collections.OrderedDict[str, None] = collections.OrderedDict()

    def read(self, cache: object, key: str, raw: str | bytes) -> LMResponse | None:
        """The response stored as ``raw`` under ``key`` in ``cache``, or ``None`` if it is bad."""
        try:
            return read_response(raw)
        except ValueError as exc:
            self._report(cache, key, str(exc))
            return None

    def _report(self, cache: object, key: str, reason: str) -> None:
        if key in self._reported:
            self._reported.move_to_end(key)
            return
        self._reported[key] = None
        while len(self._reported) > self.remember:
            self._reported.popitem(last=False)
        log.warning(
            "lm.cache_entry_unreadable",
            cache=repr(cache),
            key=key,
            reason=reason,
            effect="treated as a miss; the call's answer replaces it",
        )
