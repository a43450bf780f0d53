"""``MultiChainComparison``: compare several reasoning attempts, answer once more.

DSPy's module of the same name: given ``M`` completions of a signature (each
with a ``reasoning`` or ``rationale`` and the final output), a model reads
them as "student attempts" and writes a corrected rationale and the outputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..primitives import Prediction
from ..signature import InputField, OutputField, Signature, ensure_signature
from .module import Module
from .predict import Predict

__all__ = ["MultiChainComparison", "format_attempt"]

RATIONALE_PREFIX = "Accurate Reasoning: Thank you everyone. Let's step back and holistically"
RATIONALE_DESC = "${corrected reasoning}"


def _first_line(value: Any) -> str:
    return str(value).strip().split("\n")[0].strip()


def format_attempt(completion: Mapping[str, Any], answer_field: str) -> str:
    """One attempt as DSPy shows it: its first line of reasoning and of answer.

    The reasoning is the completion's ``rationale``, else its ``reasoning``,
    else empty.

    Raises:
        KeyError: the completion has no ``answer_field``.
    """
    reasoning = completion.get("rationale", completion.get("reasoning", ""))
    return (
        f"«I'm trying to {_first_line(reasoning)} I'm not sure but my prediction is "
        f"{_first_line(completion[answer_field])}»"
    )


class MultiChainComparison(Module):
    """Read ``M`` attempts at ``signature`` and produce the final outputs with a rationale.

    ::

        cot = td.ChainOfThought("question -> answer")
        attempts = [await cot(question=q) for _ in range(3)]  # or concurrently
        compare = td.MultiChainComparison("question -> answer", M=3)
        final = await compare(completions=attempts, question=q)
        final.rationale, final.answer

    The inner :class:`~trio_dspy.Predict` has ``signature``'s inputs plus
    ``reasoning_attempt_1`` .. ``reasoning_attempt_M`` (each attempt shown
    as ``«I'm trying to <reasoning> I'm not sure but my prediction is
    <answer>»``, first lines only), and a ``rationale`` output before
    ``signature``'s outputs. The answer shown is the last output field's.

    Args:
        signature: a :class:`~trio_dspy.Signature` subclass or a string spec.
        M: how many attempts each call compares.
        temperature: the inner predictor's temperature (DSPy's default, 0.7).
        **lm_kwargs: further sampling parameters for the inner predictor.

    Raises:
        ValueError: ``M`` is below 1 (from the constructor).
    """

    def __init__(
        self,
        signature: str | type[Signature],
        M: int = 3,
        temperature: float = 0.7,
        **lm_kwargs: Any,
    ) -> None:
        if M < 1:
            raise ValueError(f"M must be at least 1, got {M!r}")
        sig = ensure_signature(signature)
        self.M = M
        self.last_key = list(sig.output_fields)[-1]
        for i in range(1, M + 1):
            sig = sig.append(
                f"reasoning_attempt_{i}",
                InputField(prefix=f"Student Attempt #{i}:", desc="${reasoning attempt}"),
                str,
            )
        sig = sig.prepend("rationale", OutputField(prefix=RATIONALE_PREFIX, desc=RATIONALE_DESC))
        self.predict = Predict(sig, temperature=temperature, **lm_kwargs)

    if TYPE_CHECKING:

        async def __call__(self, **inputs: Any) -> Prediction: ...

    async def forward(
        self, *, completions: Sequence[Mapping[str, Any]], **inputs: Any
    ) -> Prediction:
        """Compare ``completions`` (exactly ``M``) and return ``rationale`` and the outputs.

        Raises:
            ValueError: there are not exactly ``M`` completions.
            KeyError: a completion lacks the signature's last output field.
            TypeError: an input field is missing or unknown.
            trio_dspy.errors.AdapterParseError: the model's answer did not parse.
        """
        if len(completions) != self.M:
            raise ValueError(
                f"MultiChainComparison(M={self.M}) needs {self.M} completions, "
                f"got {len(completions)}"
            )
        attempts = {
            f"reasoning_attempt_{i}": format_attempt(c, self.last_key)
            for i, c in enumerate(completions, start=1)
        }
        return await self.predict(**inputs, **attempts)
