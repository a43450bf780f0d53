"""What kind of type hint a field declares, and whether trio_dspy supports it.

The predicates here (:func:`is_record`, :func:`is_union`, ...) are shared by
the schema, structuring, unstructuring and text-parsing modules;
:func:`check_supported` is what signatures and tools call when they are
defined.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import sys
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

import attrs

from ..errors import SignatureError
from .custom import is_custom
from .history import History
from .image import Image

__all__ = [
    "TAG",
    "accepts_str",
    "check_field",
    "check_supported",
    "image_annotation",
    "is_enum",
    "is_object_type",
    "is_pydantic_model",
    "is_record",
    "is_tagged_union",
    "is_union",
    "non_none",
    "record_fields",
    "type_name",
]

TAG = "_type"
"""The key that names the class of a tagged-union member in JSON."""


def is_record(tp: Any) -> bool:
    """True for attrs classes and dataclasses (JSON objects with fixed keys);
    not for the types that describe themselves (:func:`~trio_dspy.types.custom.is_custom`)."""
    return (
        isinstance(tp, type)
        and (attrs.has(tp) or dataclasses.is_dataclass(tp))
        and not is_custom(tp)
    )


def is_pydantic_model(tp: Any) -> bool:
    """True for pydantic ``BaseModel`` subclasses.

    Never imports pydantic: a class that is a ``BaseModel`` was defined by
    code that already imported it, so without ``pydantic.main`` loaded the
    answer is no.
    """
    main = sys.modules.get("pydantic.main")
    return main is not None and isinstance(tp, type) and issubclass(tp, main.BaseModel)


def is_object_type(tp: Any) -> bool:
    """True for the classes whose values are JSON objects with fixed keys
    (records and pydantic models)."""
    return is_record(tp) or is_pydantic_model(tp)


def is_union(tp: Any) -> bool:
    """True for ``Union[...]``, ``Optional[...]`` and ``A | B``."""
    return get_origin(tp) in (Union, types.UnionType)


def is_enum(tp: Any) -> bool:
    """True for ``enum.Enum`` subclasses."""
    return isinstance(tp, type) and issubclass(tp, enum.Enum)


def non_none(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """The members of a union's ``args`` other than ``None``."""
    return tuple(a for a in args if a is not type(None))


def is_tagged_union(tp: Any) -> bool:
    """True for a union of two or more records (``None`` aside): tagged with ``_type``."""
    members = non_none(get_args(tp)) if is_union(tp) else ()
    return len(members) > 1 and all(is_record(m) for m in members)


@functools.cache
def record_fields(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    """``(name, type, has_default)`` for each ``__init__`` field of a record class.

    Raises:
        NameError: an annotation names a type that cannot be resolved.
    """
    # Cached: structuring and unstructuring ask for every value of the class.
    hints = typing.get_type_hints(cls)
    if attrs.has(cls):
        return tuple(
            (f.name, hints.get(f.name, Any), f.default is not attrs.NOTHING)
            for f in attrs.fields(cls)
            if f.init
        )
    return tuple(
        (
            f.name,
            hints.get(f.name, Any),
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING,
        )
        for f in dataclasses.fields(cls)
        if f.init
    )


def accepts_str(tp: Any) -> bool:
    """Whether a JSON string is itself a value of ``tp`` (``str``, ``Any``, unions with str)."""
    if tp is str or tp is Any:
        return True
    if is_custom(tp):
        return tp.td_accepts_str
    return is_union(tp) and str in get_args(tp)


def type_name(tp: Any) -> str:
    """A short readable name for a type hint, as prompts show it (``list[str]``)."""
    if tp is type(None):
        return "None"
    if tp is Any:
        return "Any"
    if is_custom(tp):
        return tp.td_type_name()
    origin = get_origin(tp)
    if origin is Literal:
        return f"Literal[{', '.join(repr(a) for a in get_args(tp))}]"
    if is_union(tp):
        args = get_args(tp)
        members = non_none(args)
        if len(members) == 1 and len(args) == 2:
            return f"Optional[{type_name(members[0])}]"
        return " | ".join(type_name(a) for a in args)
    if origin is not None:
        args = get_args(tp)
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    return getattr(tp, "__name__", str(tp))


# ------------------------------------------------------------------- support check
_SCALARS: tuple[Any, ...] = (str, int, float, bool, type(None), Any)


def check_supported(tp: Any, where: str) -> None:
    """Check that ``tp`` is a type trio_dspy can describe, structure and unstructure.

    ``td.Image`` and ``td.History`` are not: they are only ever inputs, which
    :func:`check_field` allows.

    Raises:
        SignatureError: ``tp`` (or a type inside it) is not supported; the
            message names ``where`` and the offending type.
    """
    try:
        _check(tp, set())
    except _Unsupported as exc:
        raise SignatureError(f"{where}: unsupported type {exc.args[0]}") from None


def check_field(tp: Any, where: str, *, is_input: bool) -> None:
    """Check that ``tp`` can be the type of an input (``is_input``) or output field.

    Inputs may also be ``td.History``, or ``td.Image`` alone, in a list, or
    ``Optional``: the forms the adapters send as message parts.

    Raises:
        SignatureError: as :func:`check_supported`; or ``td.Image`` /
            ``td.History`` in an output, or inside a type adapters cannot send.
    """
    if is_input and (tp is History or image_annotation(tp)):
        return
    if not is_input:
        check_supported(tp, where)
        return
    try:
        _check(tp, set(), inputs=True)
    except _Unsupported as exc:
        raise SignatureError(f"{where}: unsupported type {exc.args[0]}") from None


def image_annotation(tp: Any) -> bool:
    """True for the input types sent as image parts: ``Image``, ``list[Image]``
    and either one ``| None``."""
    try:
        return _image_annotation_cached(tp)
    except TypeError:  # an unhashable annotation: work it out each time
        return _image_annotation(tp)


def _image_annotation(tp: Any) -> bool:
    if is_union(tp):
        args = get_args(tp)
        members = non_none(args)
        return len(args) == 2 and len(members) == 1 and _images(members[0])
    return _images(tp)


_image_annotation_cached = functools.cache(_image_annotation)


def _images(tp: Any) -> bool:
    return _is_part(tp) or (
        get_origin(tp) is list and len(get_args(tp)) == 1 and _is_part(get_args(tp)[0])
    )


def _is_part(tp: Any) -> bool:
    """Image, and the input-only types sent as message parts (td.Audio, td.File)."""
    return tp is Image or (is_custom(tp) and tp.td_part)


class _Unsupported(Exception):
    pass


_INPUT_ONLY = (
    "(td.Image, td.Audio, td.File and td.History can only be input types: td.History alone, "
    "the others alone, in a list, or Optional)"
)


def _check(tp: Any, seen: set[Any], *, inputs: bool = False) -> None:
    if tp in _SCALARS or is_enum(tp):
        return
    if tp is Image or tp is History or (is_custom(tp) and tp.td_part):
        raise _Unsupported(f"{tp.__name__} here {_INPUT_ONLY}")
    if is_custom(tp):
        if tp.td_input_only and not inputs:
            raise _Unsupported(f"{tp.__name__} (it can only be an input type)")
        return
    origin = get_origin(tp)
    if origin is Literal:
        for a in get_args(tp):
            if not isinstance(a, str | int | float | bool | None | enum.Enum):
                raise _Unsupported(f"Literal value {a!r}")
        return
    if is_union(tp) or origin in (list, tuple, dict):
        args = get_args(tp)
        wanted = {list: 1, dict: 2}.get(origin)
        if wanted is not None and len(args) != wanted:
            raise _Unsupported(
                f"{type_name(tp)} ({origin.__name__} takes {wanted} type argument(s))"
            )
        if origin is dict and args and args[0] not in (str, int) and not is_enum(args[0]):
            raise _Unsupported(f"{type_name(tp)} (JSON object keys must be str, int or enums)")
        for a in args:
            if a is not Ellipsis:
                _check(a, seen, inputs=inputs)
        return
    if is_record(tp):
        if tp in seen:
            raise _Unsupported(f"{tp.__name__} (recursive classes are not supported)")
        seen = seen | {tp}
        try:
            fields = record_fields(tp)
        except NameError as exc:
            raise _Unsupported(f"{tp.__name__} (cannot resolve annotation: {exc})") from None
        for _, ftp, _ in fields:
            _check(ftp, seen, inputs=inputs)
        return
    if tp in (list, tuple, dict):  # bare containers: elements of any JSON type
        return
    if is_pydantic_model(tp):
        from .pydantic_models import model_schema

        try:
            model_schema(tp, strict=False)  # pydantic says here whether it can describe it
        except SignatureError as exc:
            raise _Unsupported(f"{tp.__name__} ({exc})") from None
        return
    raise _Unsupported(type_name(tp))
