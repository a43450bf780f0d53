"""``ChainOfThought``: ``Predict`` that reasons before it answers."""

from __future__ import annotations

from typing import Any

from ..signature import OutputField, Signature, ensure_signature
from .predict import Predict

__all__ = ["ChainOfThought"]

REASONING_DESC = "Think step by step in order to produce the outputs."


class ChainOfThought(Predict):
    """Like :class:`Predict`, with a ``reasoning: str`` output before the others.

    The prediction carries ``reasoning`` next to the signature's outputs.
    """

    def __init__(self, signature: str | type[Signature], **lm_kwargs: Any) -> None:
        sig = ensure_signature(signature)
        if "reasoning" not in sig.output_fields:
            sig = sig.prepend("reasoning", OutputField(desc=REASONING_DESC), str)
        super().__init__(sig, **lm_kwargs)
