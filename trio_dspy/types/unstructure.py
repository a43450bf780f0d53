"""Typed values -> JSON-like data: :func:`unstructure`, the inverse of ``structure``."""

from __future__ import annotations

import enum
import functools
from typing import Any, get_args, get_origin

from .convert import converter
from .custom import CustomType
from .support import (
    TAG,
    is_pydantic_model,
    is_record,
    is_tagged_union,
    is_union,
    non_none,
    record_fields,
)

__all__ = ["unstructure"]


def unstructure(value: Any, annotation: Any = Any, *, tag_all: bool = False) -> Any:
    """Turn a typed value into JSON-like data that :func:`~trio_dspy.types.structure`
    reads back as the same value.

    Records (attrs classes, dataclasses) become objects of their ``__init__``
    fields, pydantic models what ``model_dump(mode="json")`` gives, enums
    their values, tuples lists; dict keys that are enums become their values.
    ``annotation`` is the type ``value`` is declared as. Where the declared
    type of a value -- ``annotation`` itself, or a record field, list item or
    dict value inside it -- is a union of records, the record's
    object is tagged ``"_type": "<ClassName>"``, as :func:`~trio_dspy.types.json_schema`
    describes it. A record declared as a single class (or as ``Any``) is
    written without a tag, unless ``tag_all`` is true: then every record is
    tagged, for callers that do not know the declared type (scripted test
    answers); ``structure`` ignores the tag where one class is expected.

    Values that are none of these are returned as the converter unstructures
    them (usually unchanged). Raises nothing of its own.
    """
    return _unstructure(value, annotation, tag_all)


_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})


def _unstructure(value: Any, tp: Any, tag_all: bool) -> Any:
    cls: type = type(value)
    if cls in _JSON_SCALARS:  # exact types: a (str, Enum) member is not one
        return value
    if isinstance(value, CustomType):
        return value.td_unstructure()
    tagged, members = _declared(tp)
    if members:
        tp = _member_for(value, members)
    fields = _fields_of(cls)
    if fields is not None:
        data = {TAG: cls.__name__} if tagged or tag_all else {}
        for name, ftp in fields:
            data[name] = _unstructure(getattr(value, name), ftp, tag_all)
        return data
    if isinstance(value, enum.Enum):
        return value.value
    if is_pydantic_model(cls):
        from .pydantic_models import dump_model

        return dump_model(value)
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


@functools.cache
def _fields_of(cls: type) -> tuple[tuple[str, Any], ...] | None:
    """``(name, type)`` of each field of a record class; ``None`` for other classes."""
    return tuple((n, t) for n, t, _ in record_fields(cls)) if is_record(cls) else None


def _declared(tp: Any) -> tuple[bool, tuple[Any, ...]]:
    """Whether values declared as ``tp`` are tagged, and the members of ``tp``
    (other than ``None``) if it is a union."""
    try:
        return _declared_cached(tp)
    except TypeError:  # an unhashable annotation: work it out each time
        return _declared_uncached(tp)


def _declared_uncached(tp: Any) -> tuple[bool, tuple[Any, ...]]:
    return is_tagged_union(tp), non_none(get_args(tp)) if is_union(tp) else ()


_declared_cached = functools.cache(_declared_uncached)


def _member_for(value: Any, members: tuple[Any, ...]) -> Any:
    """The first of a union's ``members`` that ``value`` is an instance of (else ``Any``).

    Lists and tuples count as each other: both are JSON arrays.
    """
    for member in members:
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
