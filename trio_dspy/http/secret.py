"""A wrapper that keeps credentials out of reprs, logs and saved state."""

from __future__ import annotations

from typing import Any, NoReturn

__all__ = ["Secret"]


class Secret:
    """A credential (API key) whose ``repr``/``str`` never show the value.

    Read the value with :meth:`reveal`, only where it is put on the wire.
    Pickling and JSON-encoding are refused, so a key cannot end up in a file.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The credential itself."""
        return self._value

    def scrub(self, text: str) -> str:
        """``text`` with every occurrence of the credential replaced by ``***``.

        Values shorter than 8 characters are left alone: they are no real
        key (tests use ``"k"``), and replacing them would garble the text.
        """
        return text.replace(self._value, "***") if len(self._value) >= 8 else text

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled: pass the key again when loading")

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self
