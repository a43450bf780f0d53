"""Which models keep losing the text format: asked in structured-output mode at once.

A small model that rambles past the ``[[ ## field ## ]]`` sections costs
two calls per answer: the free-text one that does not parse, then the
structured-output re-ask that does. Once a model has needed that rescue
:data:`STRUCTURED_AFTER` times in a row, :class:`~trio_dspy.Predict` asks it
in structured-output mode from the start, as the LM client remembers a
``response_format`` a server refused. An answer that parses in the text
format resets the count, so a model that only slips now and then is never
switched.

The memory belongs to the model object (it goes with the
model), so every program and task sharing a model shares what was learned.
"""

from __future__ import annotations

import weakref

from ..lm.base import BaseLM
from ..logs import get_logger

__all__ = ["STRUCTURED_AFTER", "forget", "note_parsed", "note_rescued", "prefers_structured"]

log = get_logger(__name__)

#: Structured-output rescues in a row after which a model is asked that way first.
STRUCTURED_AFTER = 2

# Rescues in a row by model, keyed by the model's id while it lives (a
# finalizer drops the entry with the model): a plain dict answers the check
# every call makes without building a weak reference for it.
_rescues: dict[int, int] = {}


def prefers_structured(lm: BaseLM) -> bool:
    """Whether ``lm`` has needed the structured re-ask often enough to be asked so first."""
    return _rescues.get(id(lm), 0) >= STRUCTURED_AFTER


def note_parsed(lm: BaseLM) -> None:
    """An answer of ``lm`` in the text format parsed: start counting again."""
    if _rescues.get(id(lm)):
        _rescues[id(lm)] = 0


def note_rescued(lm: BaseLM) -> None:
    """An answer of ``lm`` in the text format failed and the structured re-ask worked."""
    key = id(lm)
    if key not in _rescues:
        weakref.finalize(lm, _rescues.pop, key, None)
    count = _rescues[key] = _rescues.get(key, 0) + 1
    if count == STRUCTURED_AFTER:
        log.info("lm.structured_first", model=getattr(lm, "model", repr(lm)), rescues=count)


def forget(lm: BaseLM) -> None:
    """Forget what was learned about ``lm`` (it is asked in the text format again)."""
    note_parsed(lm)
