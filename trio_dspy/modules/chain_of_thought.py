"""``ChainOfThought``: ``Predict`` that reasons before it answers."""

from __future__ import annotations

from typing import Any, ClassVar, Self

from ..signature import OutputField, Signature, ensure_signature
from .predict import Predict

__all__ = ["ChainOfThought"]

REASONING_DESC = "Think step by step in order to produce the outputs."


class ChainOfThought(Predict):
    """Like :class:`Predict`, with a ``reasoning: str`` output before the others.

    The prediction carries ``reasoning`` next to the signature's outputs.
    DSPy's ``ChainOfThought`` holds a ``Predict`` at ``.predict``; this one is
    that predictor itself, so ``cot.predict`` is ``cot`` and its name in
    ``named_predictors()``, traces, streams and saves is DSPy's ``"x.predict"``.
    """

    dspy_inner_name: ClassVar[str] = "predict"

    def __init__(self, signature: str | type[Signature], **lm_kwargs: Any) -> None:
        sig = ensure_signature(signature)
        if "reasoning" not in sig.output_fields:
            sig = sig.prepend("reasoning", OutputField(desc=REASONING_DESC), str)
        elif next(iter(sig.output_fields)) != "reasoning":
            # A ``reasoning`` output already declared keeps its type and
            # description but moves first, as DSPy moves it: the model then
            # reasons before it answers, which is the point.
            field = sig.output_fields["reasoning"]
            sig = sig.prepend("reasoning", field, field.annotation)
        super().__init__(sig, **lm_kwargs)

    @property
    def predict(self) -> Self:
        """This predictor, under DSPy's name for a ChainOfThought's inner ``Predict``."""
        return self
