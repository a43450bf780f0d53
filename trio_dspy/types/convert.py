"""JSON-like data -> typed values: the cattrs converter and :func:`structure`.

The converter combines the lenient scalar hooks of
:mod:`trio_dspy.types.scalars` with hooks for containers (which refuse the
wrong JSON kind instead of iterating a string), records (which name missing
fields) and unions (a union of records is read by its ``"_type"`` tag, or
by the fields present when the tag is missing). :func:`structure` turns the
first failure cattrs reports into a :class:`~trio_dspy.errors.StructuringError`
that names the path to the value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal, get_args, get_origin

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

from ..errors import StructuringError
from .custom import is_custom
from .scalars import (
    Invalid,
    enum_aware,
    is_noneish,
    structure_any,
    structure_bool,
    structure_enum,
    structure_float,
    structure_int,
    structure_literal,
    structure_none,
    structure_str,
)
from .support import (
    TAG,
    is_enum,
    is_pydantic_model,
    is_record,
    is_union,
    non_none,
    record_fields,
    type_name,
)

__all__ = ["converter", "structure"]


def _make_union_hook(tp: Any) -> Callable[[Any, Any], Any]:
    args = get_args(tp)
    optional = type(None) in args
    members = non_none(args)

    if len(members) > 1 and all(is_record(m) for m in members):
        by_tag = {m.__name__.lower(): m for m in members}
        names = ", ".join(m.__name__ for m in members)

        def tagged(value: Any, _: Any) -> Any:
            if optional and is_noneish(value, members):
                return None
            if isinstance(value, members):
                return value
            if not isinstance(value, Mapping):
                raise Invalid(value, f"expected an object tagged {TAG!r} (one of {names})")
            tag = value.get(TAG)
            if tag is None:
                # Untagged: try members whose fields cover every key first.
                keys = set(value)
                covering = [m for m in members if keys <= {n for n, _, _ in record_fields(m)}]
                for member in [*covering, *(m for m in members if m not in covering)]:
                    try:
                        return converter.structure(dict(value), member)
                    except Exception:
                        continue
                raise Invalid(value, f"missing {TAG!r}: expected one of {names}")
            member = by_tag.get(str(tag).lower())
            if member is None:
                raise Invalid(tag, f"{TAG} {tag!r} is not one of {names}")
            body = {k: v for k, v in value.items() if k != TAG}
            return converter.structure(body, member)

        return tagged

    def untagged(value: Any, _: Any) -> Any:
        if optional and is_noneish(value, members):
            return None
        for member in members:  # an exact type match wins over coercion
            if type(value) is member:
                return value
        if len(members) == 1:  # Optional[X]: X's own error, with its path inside the value
            return converter.structure(value, members[0])
        reasons = []
        for member in members:
            try:
                return converter.structure(value, member)
            except Exception as exc:
                reasons.append(f"{type_name(member)}: {_leaf_reason(exc)}")
        raise Invalid(value, f"{value!r} matches none of {type_name(tp)} ({'; '.join(reasons)})")

    return untagged


def _leaf_reason(exc: BaseException) -> str:
    if isinstance(exc, Invalid):
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
                raise Invalid(value, f"expected {kind}, got {value!r}")
            return inner(value, t)

        return hook

    return make


def _hetero_tuple_factory(tp: Any, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    args = get_args(tp)

    def hook(value: Any, _: Any) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise Invalid(value, f"expected a list of {len(args)} items, got {value!r}")
        if len(value) != len(args):
            raise Invalid(value, f"expected {len(args)} items, got {len(value)}")
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


def _is_literal(tp: Any) -> bool:
    return get_origin(tp) is Literal


def _is_any(tp: Any) -> bool:
    return tp is Any


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
            raise Invalid(value, f"expected an object for {tp.__name__}, got {value!r}")
        body = {k: v for k, v in value.items() if k != TAG}
        missing = [
            n for n, _, has_default in record_fields(tp) if not has_default and n not in body
        ]
        if missing:
            raise Invalid(value, f"missing field(s) {', '.join(missing)} for {tp.__name__}")
        return inner(body, t)

    return hook


def _structure_pydantic(value: Any, tp: Any) -> Any:
    # Imported here: only a signature that uses a BaseModel gets this far.
    from .pydantic_models import structure_model

    return structure_model(value, tp)


def _structure_custom(value: Any, tp: Any) -> Any:
    try:
        return tp.td_structure(value)
    except (TypeError, ValueError) as exc:
        raise Invalid(value, str(exc)) from None


def _custom_aware(hook: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """``hook``, except that a type describing itself (``td.Reasoning``, a
    ``str``) goes to its own hook: cattrs dispatches scalar hooks to subclasses."""

    def structure(value: Any, cls: Any) -> Any:
        if is_custom(cls):
            return _structure_custom(value, cls)
        return hook(value, cls)

    return structure


def _build_converter() -> cattrs.Converter:
    conv = cattrs.Converter(detailed_validation=True, forbid_extra_keys=False)
    # cattrs dispatches these by class, so they also receive subclasses such
    # as IntEnum or a (str, Enum): enum_aware sends those to the enum hook.
    for exact, hook in (
        (str, structure_str),
        (int, structure_int),
        (float, structure_float),
        (bool, structure_bool),
    ):
        conv.register_structure_hook(exact, _custom_aware(enum_aware(hook)))
    conv.register_structure_hook(type(None), structure_none)
    conv.register_structure_hook_func(_is_any, structure_any)
    conv.register_structure_hook_func(is_enum, structure_enum)
    conv.register_structure_hook_func(_is_literal, structure_literal)
    conv.register_structure_hook_factory(is_union, lambda t: _make_union_hook(t))
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
    conv.register_structure_hook_func(is_pydantic_model, _structure_pydantic)
    conv.register_structure_hook_func(is_custom, _structure_custom)

    # Enums unstructure to their values. Union tags are added by
    # trio_dspy.types.unstructure, which knows the declared types.
    conv.register_unstructure_hook_func(is_enum, lambda e: e.value)
    return conv


converter: cattrs.Converter = _build_converter()
"""The converter behind :func:`structure` (and the leaves of ``unstructure``)."""


def structure(value: Any, tp: Any, *, path: str = "", using: cattrs.Converter | None = None) -> Any:
    """Turn JSON-like ``value`` into an instance of ``tp``.

    ``using`` is another converter to structure with (one whose hooks raise
    :class:`~trio_dspy.types.scalars.Invalid`, as these do); by default the
    lenient one that reads model output.

    Raises:
        StructuringError: naming the dotted ``path`` to the first value that
            does not fit and why (``action.size: 'huge' is not one of ...``).
    """
    try:
        return (using or converter).structure(value, tp)
    except Exception as exc:
        try:
            sub_path, leaf_value, reason = _first_leaf(exc, value)
        except RecursionError:
            # Hostile nesting: cattrs gave up deep down, and its error tree and
            # the value are too deep to walk or show.
            sub_path, leaf_value, reason = "", None, "nested too deeply"
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
    if isinstance(exc, Invalid):
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
