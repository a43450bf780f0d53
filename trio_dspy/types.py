"""Python type hints as JSON schema, and typed values from model output.

Every supported field type goes through this one module:

* :func:`json_schema` turns a type hint into the JSON schema sent to models
  (in prompts, ``response_format`` and tool definitions);
* :func:`structure` turns JSON-like data into the typed value, with a cattrs
  converter tuned for what models actually write (``"3"`` for ``3``, ``"Small"``
  for ``Size.small``); a failure raises :class:`~trio_dspy.errors.StructuringError`
  naming the path and the value (``action.size: 'huge' is not one of small,
  medium, large``);
* :func:`unstructure` turns typed values back into JSON-like data;
* :func:`parse_text` does text -> JSON -> typed value for one field.

Supported: ``str``, ``int``, ``float``, ``bool``, ``None``, ``Any``, enums,
``Literal``, ``list``/``tuple``/``dict`` of supported types, ``Optional`` and
unions, attrs classes and dataclasses (nested). A union of attrs classes (or
dataclasses) is a JSON object tagged ``"_type": "<ClassName>"``.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, Union, get_args, get_origin

import attrs
import cattrs
from cattrs.cols import (
    homogenous_tuple_structure_factory,
    list_structure_factory,
    mapping_structure_factory,
)
from cattrs.errors import (
    AttributeValidationNote,
    BaseValidationError,
    IterableValidationError,
    IterableValidationNote,
)

from .errors import SignatureError, StructuringError

__all__ = [
    "TAG",
    "accepts_str",
    "check_supported",
    "converter",
    "find_json",
    "is_record",
    "json_schema",
    "parse_text",
    "strip_code_fences",
    "structure",
    "type_name",
    "unstructure",
    "unstructure_as",
    "unstructure_tagged",
]

TAG = "_type"
"""The key that names the class of a tagged-union member in JSON."""

_NONE_WORDS = frozenset({"null", "none", ""})
_TRUE_WORDS = frozenset({"true", "yes", "y", "1"})
_FALSE_WORDS = frozenset({"false", "no", "n", "0"})


# --------------------------------------------------------------------------- kinds
def is_record(tp: Any) -> bool:
    """True for attrs classes and dataclasses (JSON objects with fixed keys)."""
    return isinstance(tp, type) and (attrs.has(tp) or dataclasses.is_dataclass(tp))


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _is_enum(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, enum.Enum)


def _non_none(args: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(a for a in args if a is not type(None))


def _is_tagged_union(tp: Any) -> bool:
    members = _non_none(get_args(tp)) if _is_union(tp) else ()
    return len(members) > 1 and all(is_record(m) for m in members)


@functools.cache
def _record_fields(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    """(name, type, has_default) for each field of an attrs class or dataclass."""
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
    return _is_union(tp) and str in get_args(tp)


def type_name(tp: Any) -> str:
    """A short readable name for a type hint, as prompts show it (``list[str]``)."""
    if tp is type(None):
        return "None"
    if tp is Any:
        return "Any"
    origin = get_origin(tp)
    if origin is Literal:
        return f"Literal[{', '.join(repr(a) for a in get_args(tp))}]"
    if _is_union(tp):
        args = get_args(tp)
        members = _non_none(args)
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
    """Raise :class:`SignatureError` naming ``where`` if ``tp`` is not supported."""
    try:
        _check(tp, set())
    except _Unsupported as exc:
        raise SignatureError(f"{where}: unsupported type {exc.args[0]}") from None


class _Unsupported(Exception):
    pass


def _check(tp: Any, seen: set[Any]) -> None:
    if tp in _SCALARS or _is_enum(tp):
        return
    origin = get_origin(tp)
    if origin is Literal:
        for a in get_args(tp):
            if not isinstance(a, str | int | float | bool | None | enum.Enum):
                raise _Unsupported(f"Literal value {a!r}")
        return
    if _is_union(tp) or origin in (list, tuple, dict):
        args = get_args(tp)
        wanted = {list: 1, dict: 2}.get(origin)
        if wanted is not None and len(args) != wanted:
            raise _Unsupported(
                f"{type_name(tp)} ({origin.__name__} takes {wanted} type argument(s))"
            )
        if origin is dict and args and args[0] not in (str, int) and not _is_enum(args[0]):
            raise _Unsupported(f"{type_name(tp)} (JSON object keys must be str, int or enums)")
        for a in args:
            if a is not Ellipsis:
                _check(a, seen)
        return
    if is_record(tp):
        if tp in seen:
            raise _Unsupported(f"{tp.__name__} (recursive classes are not supported)")
        seen = seen | {tp}
        try:
            fields = _record_fields(tp)
        except NameError as exc:
            raise _Unsupported(f"{tp.__name__} (cannot resolve annotation: {exc})") from None
        for _, ftp, _ in fields:
            _check(ftp, seen)
        return
    if tp in (list, tuple, dict):  # bare containers: elements of any JSON type
        return
    raise _Unsupported(type_name(tp))


# ----------------------------------------------------------------------- schemas
def json_schema(tp: Any, *, strict: bool = False) -> dict[str, Any]:
    """The JSON schema of a type hint.

    With ``strict=True`` the schema follows the rules of OpenAI's strict
    structured outputs: every object lists all its properties as required and
    forbids additional ones.
    """
    if tp is str:
        return {"type": "string"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is type(None):
        return {"type": "null"}
    if tp is Any:
        return {}
    if _is_enum(tp):
        values = [m.value for m in tp]
        return {**_enum_type(values), "enum": values, "title": tp.__name__}
    origin = get_origin(tp)
    args = get_args(tp)
    if origin is Literal:
        values = [a.value if isinstance(a, enum.Enum) else a for a in args]
        return {**_enum_type(values), "enum": values}
    if _is_tagged_union(tp):
        members = [_record_schema(m, strict, tag=m.__name__) for m in _non_none(args)]
        if type(None) in args:
            members.append({"type": "null"})
        return {"anyOf": members}
    if _is_union(tp):
        return {"anyOf": [json_schema(a, strict=strict) for a in args]}
    if origin is list or tp is list:
        return {"type": "array", "items": json_schema(args[0], strict=strict) if args else {}}
    if origin is tuple or tp is tuple:
        if not args or (len(args) == 2 and args[1] is Ellipsis):
            return {"type": "array", "items": json_schema(args[0], strict=strict) if args else {}}
        return {
            "type": "array",
            "prefixItems": [json_schema(a, strict=strict) for a in args],
            "minItems": len(args),
            "maxItems": len(args),
        }
    if origin is dict or tp is dict:
        value = json_schema(args[1], strict=strict) if args else {}
        return {"type": "object", "additionalProperties": value}
    if is_record(tp):
        return _record_schema(tp, strict)
    raise SignatureError(f"unsupported type {type_name(tp)}")


def _enum_type(values: list[Any]) -> dict[str, Any]:
    kinds = {type(v) for v in values}
    if kinds <= {str}:
        return {"type": "string"}
    if kinds <= {int}:
        return {"type": "integer"}
    return {}


def _record_schema(cls: type, strict: bool, tag: str | None = None) -> dict[str, Any]:
    props: dict[str, Any] = {}
    required: list[str] = []
    if tag is not None:
        props[TAG] = {"type": "string", "enum": [tag]}
        required.append(TAG)
    for name, ftp, has_default in _record_fields(cls):
        props[name] = json_schema(ftp, strict=strict)
        if strict or not has_default:
            required.append(name)
    schema: dict[str, Any] = {"type": "object", "title": cls.__name__, "properties": props}
    schema["required"] = required
    schema["additionalProperties"] = False
    return schema


# -------------------------------------------------------------------- structuring
class _Invalid(ValueError):
    """A leaf failure inside cattrs; becomes a StructuringError with its path."""

    def __init__(self, value: Any, reason: str) -> None:
        self.value = value
        self.reason = reason
        super().__init__(reason)


def _choices(values: list[Any]) -> str:
    return ", ".join(str(v) for v in values)


def _structure_str(value: Any, _: type) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    raise _Invalid(value, f"expected a string, got {value!r}")


_THOUSANDS = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d+)?")


def _number_text(value: str) -> str:
    """``1,234.5`` -> ``1234.5``; a comma anywhere else (``1,5``) is left to fail."""
    text = value.strip().replace("_", "")
    return text.replace(",", "") if _THOUSANDS.fullmatch(text) else text


def _enum_aware(hook: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def structure(value: Any, cls: Any) -> Any:
        if _is_enum(cls):
            return _structure_enum(value, cls)
        return hook(value, cls)

    return structure


def _structure_int(value: Any, _: type) -> int:
    if isinstance(value, bool):
        raise _Invalid(value, f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = _number_text(value)
        try:
            return int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                pass
            else:
                if number.is_integer():
                    return int(number)
    raise _Invalid(value, f"expected an integer, got {value!r}")


def _structure_float(value: Any, _: type) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(_number_text(value))
        except ValueError:
            pass
    raise _Invalid(value, f"expected a number, got {value!r}")


def _structure_bool(value: Any, _: type) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    raise _Invalid(value, f"expected true or false, got {value!r}")


def _structure_none(value: Any, _: type) -> None:
    if value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS):
        return None
    raise _Invalid(value, f"expected null, got {value!r}")


def _match_choice(value: Any, choices: list[tuple[Any, Any]]) -> Any:
    """Pick the result whose key equals ``value``, then case-insensitively as text."""
    for key, result in choices:
        if value == key and type(value) is type(key):
            return result
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        text = str(value).strip().strip("'\"").lower()
        for key, result in choices:
            if str(key).lower() == text:
                return result
    raise LookupError


def _structure_enum(value: Any, cls: type[enum.Enum]) -> enum.Enum:
    members = list(cls)
    choices = [(m.value, m) for m in members] + [(m.name, m) for m in members]
    if isinstance(value, cls):
        return value
    try:
        return typing.cast(enum.Enum, _match_choice(value, choices))
    except LookupError:
        raise _Invalid(
            value, f"{value!r} is not one of {_choices([m.value for m in members])}"
        ) from None


def _structure_literal(value: Any, tp: Any) -> Any:
    allowed = list(get_args(tp))
    choices = [(a.value if isinstance(a, enum.Enum) else a, a) for a in allowed]
    try:
        return _match_choice(value, choices)
    except LookupError:
        raise _Invalid(
            value, f"{value!r} is not one of {_choices([k for k, _ in choices])}"
        ) from None


def _structure_any(value: Any, _: Any) -> Any:
    return value


def _make_union_hook(tp: Any) -> Callable[[Any, Any], Any]:
    args = get_args(tp)
    optional = type(None) in args
    members = _non_none(args)

    if len(members) > 1 and all(is_record(m) for m in members):
        by_tag = {m.__name__.lower(): m for m in members}
        names = ", ".join(m.__name__ for m in members)

        def tagged(value: Any, _: Any) -> Any:
            if optional and _is_noneish(value, members):
                return None
            if isinstance(value, members):
                return value
            if not isinstance(value, Mapping):
                raise _Invalid(value, f"expected an object tagged {TAG!r} (one of {names})")
            tag = value.get(TAG)
            if tag is None:
                # Untagged: try members whose fields cover every key first.
                keys = set(value)
                covering = [m for m in members if keys <= {n for n, _, _ in _record_fields(m)}]
                for member in [*covering, *(m for m in members if m not in covering)]:
                    try:
                        return converter.structure(dict(value), member)
                    except Exception:
                        continue
                raise _Invalid(value, f"missing {TAG!r}: expected one of {names}")
            member = by_tag.get(str(tag).lower())
            if member is None:
                raise _Invalid(tag, f"{TAG} {tag!r} is not one of {names}")
            body = {k: v for k, v in value.items() if k != TAG}
            return converter.structure(body, member)

        return tagged

    def untagged(value: Any, _: Any) -> Any:
        if optional and _is_noneish(value, members):
            return None
        for member in members:  # an exact type match wins over coercion
            if type(value) is member:
                return value
        reasons = []
        for member in members:
            try:
                return converter.structure(value, member)
            except Exception as exc:
                reasons.append(f"{type_name(member)}: {_leaf_reason(exc)}")
        raise _Invalid(value, f"{value!r} matches none of {type_name(tp)} ({'; '.join(reasons)})")

    return untagged


def _is_literal(tp: Any) -> bool:
    return get_origin(tp) is Literal


def _is_any(tp: Any) -> bool:
    return tp is Any


def _is_noneish(value: Any, members: tuple[Any, ...]) -> bool:
    """None, or a word meaning none where a string would not be a valid member."""
    if value is None:
        return True
    return isinstance(value, str) and str not in members and value.strip().lower() in _NONE_WORDS


def _leaf_reason(exc: BaseException) -> str:
    if isinstance(exc, _Invalid):
        return exc.reason
    if isinstance(exc, BaseExceptionGroup):
        return _leaf_reason(exc.exceptions[0])
    return str(exc)


def _guarded(factory: Callable[[Any, Any], Any], kind: str, ok: tuple[type, ...]) -> Any:
    """Wrap a cattrs collection-hook factory so it refuses the wrong JSON kind.

    cattrs happily iterates a string into a list of characters; a model that
    writes ``"abc"`` for ``list[str]`` deserves an error instead.
    """

    def make(tp: Any, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
        inner = factory(tp, conv)

        def hook(value: Any, t: Any) -> Any:
            if not isinstance(value, ok) or isinstance(value, str | bytes):
                raise _Invalid(value, f"expected {kind}, got {value!r}")
            return inner(value, t)

        return hook

    return make


def _hetero_tuple_factory(tp: Any, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    args = get_args(tp)

    def hook(value: Any, _: Any) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise _Invalid(value, f"expected a list of {len(args)} items, got {value!r}")
        if len(value) != len(args):
            raise _Invalid(value, f"expected {len(args)} items, got {len(value)}")
        out: list[Any] = []
        errors: list[Exception] = []
        for i, (item, arg) in enumerate(zip(value, args, strict=True)):
            try:
                out.append(conv.structure(item, arg))
            except Exception as exc:
                exc.__notes__ = [*getattr(exc, "__notes__", []), IterableValidationNote("", i, arg)]
                errors.append(exc)
        if errors:
            raise IterableValidationError(f"While structuring {type_name(tp)}", errors, tp)
        return tuple(out)

    return hook


def _is_list(tp: Any) -> bool:
    return get_origin(tp) is list or tp is list


def _is_homogenous_tuple(tp: Any) -> bool:
    args = get_args(tp)
    return (get_origin(tp) is tuple or tp is tuple) and (
        not args or (len(args) == 2 and args[1] is Ellipsis)
    )


def _is_hetero_tuple(tp: Any) -> bool:
    return get_origin(tp) is tuple and not _is_homogenous_tuple(tp)


def _is_dict(tp: Any) -> bool:
    return get_origin(tp) is dict or tp is dict


def _record_structure_guard(tp: Any, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    inner = cattrs.gen.make_dict_structure_fn(tp, conv)

    def hook(value: Any, t: Any) -> Any:
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise _Invalid(value, f"expected an object for {tp.__name__}, got {value!r}")
        body = {k: v for k, v in value.items() if k != TAG}
        missing = [
            n for n, _, has_default in _record_fields(tp) if not has_default and n not in body
        ]
        if missing:
            raise _Invalid(value, f"missing field(s) {', '.join(missing)} for {tp.__name__}")
        return inner(body, t)

    return hook


def _build_converter() -> cattrs.Converter:
    conv = cattrs.Converter(detailed_validation=True, forbid_extra_keys=False)
    # cattrs dispatches these by class, so they also receive subclasses such
    # as IntEnum or a (str, Enum): _enum_aware sends those to the enum hook.
    for exact, hook in (
        (str, _structure_str),
        (int, _structure_int),
        (float, _structure_float),
        (bool, _structure_bool),
    ):
        conv.register_structure_hook(exact, _enum_aware(hook))
    conv.register_structure_hook(type(None), _structure_none)
    conv.register_structure_hook_func(_is_any, _structure_any)
    conv.register_structure_hook_func(_is_enum, _structure_enum)
    conv.register_structure_hook_func(_is_literal, _structure_literal)
    conv.register_structure_hook_factory(_is_union, lambda t: _make_union_hook(t))
    conv.register_structure_hook_factory(
        _is_list, _guarded(list_structure_factory, "a list", (list, tuple))
    )
    conv.register_structure_hook_factory(
        _is_homogenous_tuple,
        _guarded(homogenous_tuple_structure_factory, "a list", (list, tuple)),
    )
    conv.register_structure_hook_factory(_is_hetero_tuple, _hetero_tuple_factory)
    conv.register_structure_hook_factory(
        _is_dict, _guarded(mapping_structure_factory, "an object", (Mapping,))
    )
    conv.register_structure_hook_factory(is_record, _record_structure_guard)

    # Unstructuring: enums by value; tagged unions get their tag back.
    conv.register_unstructure_hook_func(_is_enum, lambda e: e.value)
    return conv


converter: cattrs.Converter = _build_converter()
"""The converter behind :func:`structure` and :func:`unstructure`."""


def structure(value: Any, tp: Any, *, path: str = "") -> Any:
    """Turn JSON-like ``value`` into an instance of ``tp``.

    Raises:
        StructuringError: naming the dotted ``path`` to the first value that
            does not fit and why (``action.size: 'huge' is not one of ...``).
    """
    try:
        return converter.structure(value, tp)
    except Exception as exc:
        sub_path, leaf_value, reason = _first_leaf(exc, value)
        full = _join(path, sub_path)
        raise StructuringError(full, leaf_value, reason) from None


def _join(path: str, sub: str) -> str:
    if not sub:
        return path
    if sub.startswith("["):
        return f"{path}{sub}"
    return f"{path}.{sub}" if path else sub


def _first_leaf(exc: BaseException, value: Any) -> tuple[str, Any, str]:
    """Walk a cattrs exception tree down to its first leaf: (path, value, reason)."""
    if isinstance(exc, BaseValidationError):
        with_notes, without_notes = exc.group_exceptions()  # type: ignore[attr-defined]
        if not with_notes:
            return _first_leaf(without_notes[0], value)
        inner, note = with_notes[0]
        if isinstance(note, AttributeValidationNote):
            child = value.get(note.name) if isinstance(value, Mapping) else None
            sub, leaf, reason = _first_leaf(inner, child)
            return _join(note.name, sub), leaf, reason
        if isinstance(note, IterableValidationNote):
            child = _index(value, note.index)
            sub, leaf, reason = _first_leaf(inner, child)
            return _join(f"[{note.index}]", sub), leaf, reason
        return _first_leaf(inner, value)
    if isinstance(exc, _Invalid):
        return "", exc.value, exc.reason
    if isinstance(exc, StructuringError):
        return exc.path, exc.value, exc.reason
    if isinstance(exc, KeyError):
        return "", value, f"missing field {exc.args[0]!r}"
    return "", value, f"{value!r} is invalid: {exc}"


def _index(value: Any, index: Any) -> Any:
    try:
        return value[index]
    except (TypeError, LookupError):
        return None


def unstructure(value: Any) -> Any:
    """Turn typed values into JSON-like data (enums by value, tagged unions tagged)."""
    if is_record(type(value)):
        data = converter.unstructure(value)
        return data
    if isinstance(value, list | tuple):
        return [unstructure(v) for v in value]
    if isinstance(value, dict):
        return {
            (k.value if isinstance(k, enum.Enum) else k): unstructure(v) for k, v in value.items()
        }
    return converter.unstructure(value)


def unstructure_tagged(value: Any) -> Any:
    """Like :func:`unstructure`, tagging every class instance with ``_type``.

    For when the declared type is unknown (scripted test answers): the tag
    is what a union needs and is ignored where a single class is expected.
    """
    cls: type = type(value)
    if is_record(cls):
        names = [name for name, _, _ in _record_fields(cls)]
        return {TAG: cls.__name__} | {n: unstructure_tagged(getattr(value, n)) for n in names}
    if isinstance(value, list | tuple):
        return [unstructure_tagged(v) for v in value]
    if isinstance(value, dict):
        return {
            (k.value if isinstance(k, enum.Enum) else k): unstructure_tagged(v)
            for k, v in value.items()
        }
    return unstructure(value)


def unstructure_as(value: Any, tp: Any) -> Any:
    """Like :func:`unstructure`, adding the ``_type`` tag where ``tp`` is a tagged union."""
    if _is_tagged_union(tp) and is_record(type(value)):
        return {TAG: type(value).__name__, **unstructure(value)}
    origin = get_origin(tp)
    args = get_args(tp)
    if origin in (list, tuple) and args and isinstance(value, list | tuple):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return [unstructure_as(v, a) for v, a in zip(value, args, strict=False)]
        return [unstructure_as(v, args[0]) for v in value]
    if origin is dict and len(args) == 2 and isinstance(value, dict):
        return {unstructure(k): unstructure_as(v, args[1]) for k, v in value.items()}
    if is_record(tp) and isinstance(value, tp):
        data = unstructure(value)
        for name, ftp, _ in _record_fields(tp):
            if name in data:
                data[name] = unstructure_as(getattr(value, name), ftp)
        return data
    if _is_union(tp):
        for member in _non_none(get_args(tp)):
            if is_record(member) and isinstance(value, member):
                return unstructure_as(value, member)
    return unstructure(value)


# ------------------------------------------------------------------ text parsing
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
    members = _non_none(get_args(tp)) if _is_union(tp) else ()
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
    if _is_union(tp):
        return "".join(dict.fromkeys("".join(_wanted_openers(m) for m in _non_none(get_args(tp)))))
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
