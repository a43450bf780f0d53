"""The shapes of saved programs, read strictly: attrs classes and a cattrs converter.

Two file formats carry a program's learned state: the one
:meth:`~trio_dspy.Module.save` writes (``"format": "trio_dspy.module/1"``)
and the JSON DSPy's ``program.save`` writes. Their shapes are the attrs
classes here, and :func:`read` structures a decoded file into them with a
converter that takes each value only with the JSON type the format gives it:
a string where a string is written (a number is never turned into its text),
a list where a list is, an object where an object is. Demo values are not
checked here but by the predictor, against its fields' types.

The native format is this library's own and versioned, so a key it does not
have is refused as well; DSPy's format may gain keys from one version to the
next, so those it has that are not read are only checked for their type.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar, get_args, get_origin

import attrs
import cattrs
from cattrs.cols import list_structure_factory
from cattrs.errors import AttributeValidationNote, ClassValidationError

from ..types import structure
from ..types.scalars import Invalid

__all__ = [
    "DSPyField",
    "DSPyPredictor",
    "DSPySignature",
    "SavedField",
    "SavedModule",
    "SavedPredict",
    "describe",
    "read",
]


@attrs.frozen
class SavedField:
    """A field's text in the native format."""

    desc: str
    prefix: str


@attrs.frozen
class SavedPredict:
    """A ``Predict``'s state in the native format (what ``dump_predictor_state`` writes)."""

    signature: str  # the signature's name: shown to a reader, not used
    instructions: str
    fields: dict[str, SavedField]
    demos: list[dict[str, Any]]


@attrs.frozen
class SavedModule:
    """A native save file; each predictor reads its own state."""

    format: str
    predictors: dict[str, Any]


@attrs.frozen
class DSPyField:
    """A field in a DSPy save (in signature order: inputs, then outputs)."""

    prefix: str
    description: str


@attrs.frozen
class DSPySignature:
    """A signature in a DSPy save."""

    instructions: str
    fields: list[DSPyField]


@attrs.frozen
class DSPyPredictor:
    """A predictor in a DSPy save. ``lm``, ``traces``, ``train`` and
    ``metadata`` are not read, only checked for their type."""

    demos: list[dict[str, Any]]
    signature: DSPySignature
    lm: dict[str, Any] | None = None
    traces: list[Any] = attrs.field(factory=list)
    train: list[Any] = attrs.field(factory=list)
    metadata: dict[str, Any] | None = None  # beside the state of a one-predictor program


T = TypeVar("T")

# Classes whose unknown keys are allowed (DSPy's format is not ours to fix).
_OPEN_ENDED = frozenset({DSPyField, DSPySignature, DSPyPredictor})


def describe(value: Any) -> str:
    """A short description of a JSON value for an error message (``a list``, ``12``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, int) and value.bit_length() > 64:
        return "a very large integer"  # repr() of a huge int may even refuse
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def read(value: Any, tp: type[T], path: str = "") -> T:
    """``value`` (decoded JSON) structured strictly as ``tp``, one of the classes here.

    Raises:
        StructuringError: a value has the wrong JSON type, a required key is
            missing, or (native format) a key is unknown; ``path`` names where
            (``signature.fields[2].prefix: expected a string, got 12``).
    """
    result: T = structure(value, tp, path=path, using=_converter)
    return result


# ------------------------------------------------------------------ the converter
def _kind(tp: Any) -> str:
    if tp is str:
        return "a string"
    if get_origin(tp) is list or tp is list:
        return "a list"
    return "an object"  # dicts and records


def _fits(value: Any, tp: Any) -> bool:
    if tp is str:
        return isinstance(value, str)
    if get_origin(tp) is list or tp is list:
        return isinstance(value, list)
    return isinstance(value, Mapping)


def _wrong(value: Any, expected: str) -> Invalid:
    return Invalid(value, f"expected {expected}, got {describe(value)}")


def _at(key: str, tp: Any, error: Exception, owner: Any) -> ClassValidationError:
    """``error`` as the failure of key ``key`` of an object, so its path names the key."""
    error.__notes__ = [*getattr(error, "__notes__", []), AttributeValidationNote("", key, tp)]
    return ClassValidationError(f"While structuring {owner}", [error], owner)


def _string(value: Any, _: Any) -> str:
    if isinstance(value, str):
        return value
    raise _wrong(value, "a string")


def _is_list(tp: Any) -> bool:
    return get_origin(tp) is list


def _is_dict(tp: Any) -> bool:
    return get_origin(tp) is dict


def _is_optional(tp: Any) -> bool:
    args = get_args(tp)
    return len(args) == 2 and type(None) in args


def _list_hook(tp: Any, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    inner = list_structure_factory(tp, conv)

    def hook(value: Any, t: Any) -> Any:
        if not isinstance(value, list):
            raise _wrong(value, "a list")
        return inner(value, t)

    return hook


def _dict_hook(tp: Any, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    # Written out (not cattrs' mapping hook) so that a bad value's path reads
    # ``fields.answer.desc``, as the keys of an object are named.
    item_tp = get_args(tp)[1]

    def hook(value: Any, _: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise _wrong(value, "an object")
        out = {}
        for key, item in value.items():
            try:
                out[key] = conv.structure(item, item_tp)
            except Exception as exc:
                raise _at(key, item_tp, exc, tp) from None
        return out

    return hook


def _optional_hook(tp: Any, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    (inner_tp,) = [a for a in get_args(tp) if a is not type(None)]

    def hook(value: Any, _: Any) -> Any:
        if value is None:
            return None
        if not _fits(value, inner_tp):
            raise _wrong(value, f"{_kind(inner_tp)} or null")
        return conv.structure(value, inner_tp)

    return hook


def _record_hook(cls: Any, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    inner = cattrs.gen.make_dict_structure_fn(cls, conv)
    fields = attrs.fields(cls)
    names = {a.name for a in fields}
    required = [a.name for a in fields if a.default is attrs.NOTHING]
    open_ended = cls in _OPEN_ENDED

    def hook(value: Any, _: Any) -> Any:
        if not isinstance(value, Mapping):
            raise _wrong(value, "an object")
        missing = [n for n in required if n not in value]
        if missing:
            raise Invalid(value, f"missing key(s) {', '.join(missing)}")
        if not open_ended:
            for key in value:
                if key not in names:
                    known = ", ".join(sorted(names))
                    raise _at(key, Any, Invalid(value[key], f"unknown key (known: {known})"), cls)
        return inner(value, cls)

    return hook


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(detailed_validation=True)
    conv.register_structure_hook(str, _string)
    conv.register_structure_hook_factory(_is_list, _list_hook)
    conv.register_structure_hook_factory(_is_dict, _dict_hook)
    conv.register_structure_hook_factory(_is_optional, _optional_hook)
    conv.register_structure_hook_factory(attrs.has, _record_hook)
    return conv


_converter = _make_converter()
