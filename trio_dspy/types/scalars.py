"""Reading the scalars models write: lenient structure hooks for one value.

Models write ``"3"`` for ``3``, ``"yes"`` for ``true``, ``"Small"`` for
``Size.small`` and ``1,234.5`` for a number; these hooks accept that and
raise :class:`Invalid` with a readable reason for what they cannot read.
:mod:`trio_dspy.types.convert` registers them on the converter.
"""

from __future__ import annotations

import enum
import json
import re
import typing
from collections.abc import Callable
from typing import Any, get_args

from .support import is_enum

__all__ = [
    "Invalid",
    "enum_aware",
    "is_noneish",
    "structure_any",
    "structure_bool",
    "structure_enum",
    "structure_float",
    "structure_int",
    "structure_literal",
    "structure_none",
    "structure_str",
]

_NONE_WORDS = frozenset({"null", "none", ""})
_TRUE_WORDS = frozenset({"true", "yes", "y", "1"})
_FALSE_WORDS = frozenset({"false", "no", "n", "0"})


class Invalid(ValueError):
    """A leaf failure inside cattrs; :func:`~trio_dspy.types.structure` turns it
    into a :class:`~trio_dspy.errors.StructuringError` with its path."""

    def __init__(self, value: Any, reason: str) -> None:
        self.value = value
        self.reason = reason
        super().__init__(reason)


def _choices(values: list[Any]) -> str:
    return ", ".join(str(v) for v in values)


def structure_str(value: Any, _: type) -> str:
    """A string as is; a JSON number, boolean, list or object as its JSON text.

    Raises:
        Invalid: ``value`` is ``None`` or not JSON-like.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    raise Invalid(value, f"expected a string, got {value!r}")


_THOUSANDS = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d+)?")


def _number_text(value: str) -> str:
    """``1,234.5`` -> ``1234.5``; a comma anywhere else (``1,5``) is left to fail."""
    text = value.strip().replace("_", "")
    return text.replace(",", "") if _THOUSANDS.fullmatch(text) else text


def enum_aware(hook: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """``hook``, except that enum classes (``IntEnum``, ``(str, Enum)``) go to
    :func:`structure_enum` (cattrs dispatches scalar hooks to subclasses too)."""

    def structure(value: Any, cls: Any) -> Any:
        if is_enum(cls):
            return structure_enum(value, cls)
        return hook(value, cls)

    return structure


def structure_int(value: Any, _: type) -> int:
    """An integer from an int, a whole float, or text such as ``"3"``, ``"1,000"``, ``"2.0"``.

    Raises:
        Invalid: ``value`` is a boolean or does not read as a whole number.
    """
    if isinstance(value, bool):
        raise Invalid(value, f"expected an integer, got {value!r}")
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
    raise Invalid(value, f"expected an integer, got {value!r}")


def structure_float(value: Any, _: type) -> float:
    """A float from a number or from text such as ``"0.25"`` or ``"1,234.5"``.

    Raises:
        Invalid: ``value`` is a boolean or does not read as a number.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(_number_text(value))
        except ValueError:
            pass
    raise Invalid(value, f"expected a number, got {value!r}")


def structure_bool(value: Any, _: type) -> bool:
    """A boolean from ``true``/``false``, ``0``/``1`` or words such as ``"yes"``, ``"n"``.

    Raises:
        Invalid: ``value`` means neither true nor false.
    """
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
    raise Invalid(value, f"expected true or false, got {value!r}")


def structure_none(value: Any, _: type) -> None:
    """``None`` from ``null`` or the words ``"null"``, ``"none"``, ``""``.

    Raises:
        Invalid: ``value`` means something else.
    """
    if value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS):
        return None
    raise Invalid(value, f"expected null, got {value!r}")


def is_noneish(value: Any, members: tuple[Any, ...]) -> bool:
    """None, or a word meaning none where a string would not be a valid member."""
    if value is None:
        return True
    return isinstance(value, str) and str not in members and value.strip().lower() in _NONE_WORDS


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


def structure_enum(value: Any, cls: type[enum.Enum]) -> enum.Enum:
    """The member of ``cls`` whose value or name ``value`` is (case-insensitively).

    Raises:
        Invalid: no member matches; the reason lists the allowed values.
    """
    members = list(cls)
    choices = [(m.value, m) for m in members] + [(m.name, m) for m in members]
    if isinstance(value, cls):
        return value
    try:
        return typing.cast(enum.Enum, _match_choice(value, choices))
    except LookupError:
        raise Invalid(
            value, f"{value!r} is not one of {_choices([m.value for m in members])}"
        ) from None


def structure_literal(value: Any, tp: Any) -> Any:
    """The value of the ``Literal`` type ``tp`` that ``value`` is (case-insensitively).

    Raises:
        Invalid: no allowed value matches; the reason lists them.
    """
    allowed = list(get_args(tp))
    choices = [(a.value if isinstance(a, enum.Enum) else a, a) for a in allowed]
    try:
        return _match_choice(value, choices)
    except LookupError:
        raise Invalid(
            value, f"{value!r} is not one of {_choices([k for k, _ in choices])}"
        ) from None


def structure_any(value: Any, _: Any) -> Any:
    """``value`` unchanged (for fields typed ``Any``)."""
    return value
