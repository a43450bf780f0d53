"""Value types that describe themselves: how they look in prompts, schemas and JSON.

``td.Code``, ``td.Reasoning`` and ``td.ToolCalls`` are neither scalars nor
plain records: a ``Code`` is written as a fenced block and read back without
its fence, a ``Reasoning`` is text, ``ToolCalls`` accepts the shapes models
and providers write calls in. Each subclasses :class:`CustomType` and answers
for itself; the schema, structuring, unstructuring and text-parsing modules
ask :func:`is_custom` first and hand such a type its own hooks, so no module
there needs to know any of them by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeGuard, get_args

if TYPE_CHECKING:
    from ..messages import ToolCall

__all__ = [
    "CustomType",
    "custom_note",
    "custom_requirement",
    "custom_types_in",
    "is_custom",
    "type_descriptions",
]


class CustomType:
    """The hooks of a value type that describes itself (a mixin, no state).

    Subclasses override what differs from these defaults: a JSON value read
    by :meth:`td_structure`, written by :meth:`td_unstructure`, described by
    :meth:`td_schema`, named as the class is.
    """

    __slots__ = ()

    #: Whether a bare JSON string is a value of the type (as for ``str``):
    #: adapters then hand the text over as is instead of reading it as JSON.
    td_accepts_str: ClassVar[bool] = False
    #: Whether the type may only be an input (never an output).
    td_input_only: ClassVar[bool] = False
    #: Whether an input of the type is sent as a message part of its own
    #: (audio, a file), as an image is, rather than as text.
    td_part: ClassVar[bool] = False
    #: Whether a strict structured-output schema can describe the type
    #: (free-form objects cannot: ``additionalProperties`` must be false there).
    td_strict_schema: ClassVar[bool] = True

    @classmethod
    def td_type_name(cls) -> str:
        """The type's name as prompts show it (``1. `code` (Code)``)."""
        return cls.__name__

    @classmethod
    def td_description(cls) -> str:
        """A sentence describing the type, shown under its field in the prompt ('' for none)."""
        return ""

    @classmethod
    def td_type_note(cls) -> str | None:
        """What the value must look like in an output section: ``None`` for the
        default (its JSON schema), ``""`` for no note at all."""
        return None

    @classmethod
    def td_requirement(cls) -> str | None:
        """The reminder after the output's name in the user message (``None``: the default)."""
        return None

    @classmethod
    def td_schema(cls, *, strict: bool = False) -> dict[str, Any]:
        """The JSON schema of a value."""
        return {"type": "string"}

    @classmethod
    def td_structure(cls, value: Any) -> Any:
        """A value of the type from JSON-like ``value``.

        Raises:
            ValueError: ``value`` does not describe one (the message says why).
        """
        if isinstance(value, cls):
            return value
        raise ValueError(f"expected a {cls.td_type_name()}, got {type(value).__name__}")

    @classmethod
    def td_from_text(cls, text: str) -> Any | None:
        """A value read from the text of an output section as a whole, or ``None``
        to read the text as JSON first (the default).

        Raises:
            ValueError: the text cannot be one.
        """
        return None

    @classmethod
    def td_from_tool_calls(cls, calls: Sequence[ToolCall]) -> Any | None:
        """A value of the type from a response's native tool calls, or ``None``
        when the type is not the output of native tool calling (the default)."""
        return None

    def td_unstructure(self) -> Any:
        """The value as JSON-like data, read back by :meth:`td_structure`."""
        raise NotImplementedError


def is_custom(tp: Any) -> TypeGuard[type[CustomType]]:
    """True for a class that describes itself (a :class:`CustomType` subclass)."""
    return isinstance(tp, type) and issubclass(tp, CustomType)


def custom_types_in(tp: Any) -> list[type[CustomType]]:
    """The self-describing types in a type hint, nested ones included
    (``Code`` in ``list[Code] | None``), each once, in order."""
    found: list[type[CustomType]] = []
    stack = [tp]
    while stack:
        item = stack.pop()
        if is_custom(item):
            if item not in found:
                found.append(item)
            continue
        stack.extend(reversed(get_args(item)))
    return found


def type_descriptions(tp: Any) -> str:
    """DSPy's lines under a field of a self-describing type
    (``\\n    Type description of Code: ...``); ``""`` for other types."""
    return "".join(
        f"\n    Type description of {c.td_type_name()}: {c.td_description()}"
        for c in custom_types_in(tp)
        if c.td_description()
    )


def custom_note(tp: Any) -> str | None:
    """The output note of a self-describing type (``""``: none), or ``None`` for the default."""
    return tp.td_type_note() if is_custom(tp) else None


def custom_requirement(tp: Any) -> str | None:
    """The reminder of a self-describing output type, or ``None`` for the default."""
    return tp.td_requirement() if is_custom(tp) else None
