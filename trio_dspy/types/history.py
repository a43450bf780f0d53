"""``td.History``: earlier turns of a conversation, as the input of a signature field."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

__all__ = ["History"]


def _messages(value: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        raise TypeError(f"History(messages=...) takes a list of dicts, got {type(value).__name__}")
    out = []
    for i, message in enumerate(value):
        if not isinstance(message, Mapping):
            raise TypeError(
                f"History message {i} must be a dict of the signature's fields, "
                f"got {type(message).__name__}"
            )
        out.append(dict(message))
    return out


@attrs.frozen
class History:
    """Earlier turns, for an input field typed ``td.History`` (at most one per signature).

    Each message is a dict of the signature's fields, inputs and outputs::

        td.History(messages=[{"question": "Capital of France?", "answer": "Paris"}])

    Adapters show each message as a user turn (its inputs) and an assistant
    turn (its outputs), before the current inputs, as DSPy does. Keys that
    are not fields of the signature are ignored. ``messages`` is a list:
    append a turn to carry the conversation on.

    Raises:
        TypeError: ``messages`` is not a list of dicts.
    """

    messages: list[dict[str, Any]] = attrs.field(factory=list, converter=_messages)
