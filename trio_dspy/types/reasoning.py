"""``td.Reasoning``: a model's reasoning as an output field, written or native.

As DSPy's ``dspy.Reasoning``: a string for every purpose (it *is* a ``str``
here, so ``pred.reasoning.strip()``, ``==`` with text and JSON all work), and
a prompt shows its type as ``str``. A model that reasons natively (one asked
with ``reasoning_effort``) returns its reasoning beside the answer
(``reasoning_content``, Anthropic's ``thinking`` blocks); a ``Reasoning``
output then takes that text and is not asked for in the prompt
(:mod:`trio_dspy.adapters.native`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from ..unicode import clean_text
from .custom import CustomType

__all__ = ["Reasoning"]


class Reasoning(str, CustomType):
    """The reasoning of a model: ``reasoning: td.Reasoning = td.OutputField()``.

    A ``str`` subclass: ``Reasoning("because ...") == "because ..."``.
    ``content`` is the text, as DSPy names it.
    """

    __slots__ = ()
    td_accepts_str: ClassVar[bool] = True

    def __new__(cls, content: object = "") -> Reasoning:
        """The reasoning ``content`` (a string; lone surrogates become U+FFFD).

        Raises:
            TypeError: ``content`` is not a string.
        """
        if not isinstance(content, str):
            raise TypeError(f"td.Reasoning holds text, got {type(content).__name__}")
        return super().__new__(cls, clean_text(str.__str__(content)))

    @property
    def content(self) -> str:
        """The reasoning as a plain ``str`` (DSPy's ``reasoning.content``)."""
        return str.__str__(self)

    @classmethod
    def td_type_name(cls) -> str:
        """``str``: DSPy shows a Reasoning field as a string field."""
        return "str"

    @classmethod
    def td_type_note(cls) -> str:
        """No note, as for ``str``."""
        return ""

    @classmethod
    def td_structure(cls, value: Any) -> Reasoning:
        """A ``Reasoning`` from text, or ``{"content": "..."}`` (DSPy's saved form).

        Raises:
            ValueError: anything else.
        """
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, Mapping) and isinstance(value.get("content"), str):
            return cls(value["content"])
        raise ValueError(f"expected the reasoning as text, got {type(value).__name__}")

    @classmethod
    def td_from_text(cls, text: str) -> Reasoning:
        """The section's text as written."""
        return cls(text)

    def td_unstructure(self) -> str:
        """The text."""
        return self.content

    def __add__(self, other: str) -> str:
        if isinstance(other, Reasoning):  # DSPy: Reasoning + Reasoning stays one
            return Reasoning(self.content + other.content)
        return self.content + other

    def __reduce__(self) -> tuple[Any, ...]:
        return (Reasoning, (self.content,))
