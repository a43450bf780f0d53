"""``td.Code``: source code as a field value, in or out; ``td.Code["java"]`` names the language.

As DSPy's ``dspy.Code``: the prompt describes the type (a fenced Markdown
block in the language), a model's answer is read without its fence, and an
input shows the code as written.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from ..unicode import clean_text
from .custom import CustomType

__all__ = ["Code"]

_LANGUAGES: dict[tuple[type, str], type[Code]] = {}

_FENCE = "```"
# The language of a subscripted class ends up in a class name and a prompt line.
_LANGUAGE = re.compile(r"[A-Za-z0-9_+#.-]{1,40}")


def filter_code(text: str) -> str:
    """The code in ``text``: the inside of its first fenced block, else the text as is.

    What DSPy's two patterns find (``` ```lang\n...``` ```, then
    ``` ```...``` ```), found with ``str.find`` in linear time: as regular
    expressions they take quadratic time on a run of backticks.
    """
    start = text.find(_FENCE)
    if start < 0:
        return text
    # ```info\n ... ```: the info string ends at the first newline; a later
    # opening fence has a later newline, so it cannot find a closing fence
    # the first one does not.
    newline = text.find("\n", start + len(_FENCE))
    if newline >= 0:
        end = text.find(_FENCE, newline + 1)
        if end >= 0:
            return text[newline + 1 : end].strip()
    end = text.find(_FENCE, start + len(_FENCE))  # ```code``` on one line
    return text[start + len(_FENCE) : end].strip() if end >= 0 else text


def _code(value: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"td.Code holds a string of code, got {type(value).__name__}")
    return clean_text(value)


class _Languages(type):
    """The metaclass of ``Code``: ``Code["java"]`` (typed, unlike ``__class_getitem__``)."""

    def __getitem__(cls, language: str) -> type[Code]:
        """``Code["java"]``: the class of code in ``language`` (one class per language).

        Raises:
            TypeError: ``language`` is not a short name (letters, digits, ``+#._-``).
        """
        if not isinstance(language, str) or not _LANGUAGE.fullmatch(language):
            raise TypeError(
                f"td.Code[...] takes a language name such as 'python', got {language!r}"
            )
        made = _LANGUAGES.get((cls, language))
        if made is None:
            # One class per language: Code["java"] is Code["java"], so signatures,
            # caches and isinstance checks agree; named as DSPy names it (Code_java).
            attributes = {"language": language, "__slots__": ()}
            made = typing.cast(
                "type[Code]", type(cls)(f"{cls.__name__}_{language}", (cls,), attributes)
            )
            made = _LANGUAGES.setdefault((cls, language), made)
        return made


@attrs.frozen
class Code(CustomType, metaclass=_Languages):
    """Code in a field: ``code: td.Code = td.OutputField()``, or ``td.Code["java"]``.

    ``code`` is the source text. An output is read from the model's fenced
    block (``` ```python ... ``` ```) without the fence; a string given for an
    input (or to :meth:`td_structure`) loses its fence the same way.
    ``str(code)`` is the code. ``language`` is a class attribute: ``"python"``
    unless the class is subscripted.

    Raises:
        TypeError: ``code`` is not a string.
    """

    code: str = attrs.field(converter=_code)
    language: ClassVar[str] = "python"
    td_accepts_str: ClassVar[bool] = True

    @classmethod
    def td_description(cls) -> str:
        """DSPy's description of the type, naming the language and the fence to write."""
        return (
            "Code represented in a string, specified in the `code` field. If this is an output "
            "field, the code field should follow the markdown code block format, e.g. \n"
            f"```{cls.language.lower()}\n{{code}}\n```\nProgramming language: {cls.language}"
        )

    @classmethod
    def td_type_note(cls) -> str:
        """No note: the description already says how to write it (as DSPy does)."""
        return ""

    @classmethod
    def td_structure(cls, value: Any) -> Code:
        """A ``Code`` from a string (its fence removed) or ``{"code": "..."}``.

        Raises:
            ValueError: anything else.
        """
        if isinstance(value, cls):
            return value
        if isinstance(value, Code):  # another language's: same code
            return cls(value.code)
        if isinstance(value, str):
            return cls(filter_code(value))
        if isinstance(value, Mapping):
            code = value.get("code")
            if not isinstance(code, str):
                raise ValueError("td.Code needs an object with a string `code`")
            return cls(filter_code(code))
        raise ValueError(f"expected code as a string, got {type(value).__name__}")

    @classmethod
    def td_from_text(cls, text: str) -> Code:
        """The code of an output section: its text without the fence."""
        return cls(filter_code(text))

    def td_unstructure(self) -> str:
        """The code itself, as DSPy writes it into prompts and saves."""
        return self.code

    def __str__(self) -> str:
        return self.code
