"""Typed values -> JSON-like data: :func:`unstructure`, the inverse of ``structure``."""

from __future__ import annotations

import enum
from typing import Any, get_args, get_origin

from .convert import converter
from .support import TAG, is_record, is_tagged_union, is_union, non_none, record_fields

__all__ = ["unstructure"]


def unstructure(value: Any, annotation: Any = Any, *, tag_all: bool = False) -> Any:
    """Turn a typed value into JSON-like data that :func:`~trio_dspy.types.structure`
    reads back as the same value.

    Records (attrs classes, dataclasses) become objects of their ``__init__``
    fields, enums their values, tuples lists; dict keys that are enums become
    their values. ``annotation`` is the type ``value`` is declared as. Where
    the declared type of a value -- ``annotation`` itself, or a record field,
    list item or dict value inside it -- is a union of records, the record's
    object is tagged ``"_type": "<ClassName>"``, as :func:`json_schema`
    describes it. A record declared as a single class (or as ``Any``) is
    written without a tag, unless ``tag_all`` is true: then every record is
    tagged, for callers that do not know the declared type (scripted test
    answers); ``structure`` ignores the tag where one class is expected.

    Values that are none of these are returned as the converter unstructures
    them (usually unchanged). Raises nothing of its own.
    """
    return _unstructure(value, annotation, tag_all)


def _unstructure(value: Any, tp: Any, tag_all: bool) -> Any:
    tagged = tag_all or is_tagged_union(tp)
    if is_union(tp):
        tp = _member_for(value, tp)
    cls: type = type(value)
    if is_record(cls):
        data = {TAG: cls.__name__} if tagged else {}
        for name, ftp, _ in record_fields(cls):
            data[name] = _unstructure(getattr(value, name), ftp, tag_all)
        return data
    if isinstance(value, list | tuple):
        items = _item_types(tp, len(value))
        return [_unstructure(v, t, tag_all) for v, t in zip(value, items, strict=True)]
    if isinstance(value, dict):
        args = get_args(tp)
        vtp = args[1] if get_origin(tp) is dict and len(args) == 2 else Any
        return {
            (k.value if isinstance(k, enum.Enum) else k): _unstructure(v, vtp, tag_all)
            for k, v in value.items()
        }
    return converter.unstructure(value)


def _member_for(value: Any, union: Any) -> Any:
    """The first member of ``union`` that ``value`` is an instance of (else ``Any``).

    Lists and tuples count as each other: both are JSON arrays.
    """
    for member in non_none(get_args(union)):
        kind = get_origin(member) or member
        if kind in (list, tuple):
            kind = list | tuple
        elif not isinstance(kind, type):
            continue
        if isinstance(value, kind):
            return member
    return Any


def _item_types(tp: Any, count: int) -> list[Any]:
    """The declared type of each of ``count`` items of a list or tuple typed ``tp``."""
    origin = get_origin(tp)
    args = get_args(tp)
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        return [*args[:count], *[Any] * (count - len(args))]
    if origin in (list, tuple) and args:
        return [args[0]] * count
    return [Any] * count
