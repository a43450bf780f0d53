"""DSPy's two-step format: a free answer, then a second model extracts the fields.

Reasoning models answer best when they may write freely, and keep to a
structured format worst. :class:`TwoStepAdapter` asks the main model in plain
words, DSPy 3.4's wording: what it is given (``name: value`` lines), which
outputs its answer must contain, "lay out your outputs in detail so that your
answer can be understood by another agent". Then a second, usually smaller,
model reads the typed outputs out of that answer, through
:class:`~trio_dspy.ChatAdapter`, with the signature
``text -> <the outputs>`` and no demos.

How that fits adapters that never call a model: instead of parsing, the
adapter describes the second request (:meth:`TwoStepAdapter.extraction`
returns an :class:`~trio_dspy.adapters.base.Extraction`: the model, the chat
adapter and the extraction signature), and ``Predict`` sends it, once per
completion, as it sends any request: with its limits, retries, spans, usage
accounting, and the chat adapter's re-asks when the extraction's answer does
not parse (the JSON structured re-ask first, as DSPy's ChatAdapter falls
back). If the extraction still does not parse, the call fails with
:class:`~trio_dspy.errors.AdapterParseError` holding the main model's answer;
the main model is not asked again (its answer is not the part that failed).
The extraction request carries the extraction model's own defaults, not the
main call's sampling parameters. Inside :func:`~trio_dspy.streamify` nothing
streams from the free answer (it has no fields); the fields are sent when
extracted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import AdapterParseError
from ..lm.base import BaseLM
from ..signature import Field, Signature, signature_from_fields
from .base import Adapter, Extraction
from .chat import ChatAdapter
from .prompt import describe_fields, format_value

__all__ = ["TwoStepAdapter"]


class TwoStepAdapter(Adapter):
    """A free-form prompt for the main model; ``extraction_model`` extracts the fields.

    ::

        td.configure(lm=reasoning_lm, adapter=td.TwoStepAdapter(small_lm))

    Args:
        extraction_model: the model (a :class:`~trio_dspy.lm.base.BaseLM`)
            that reads the outputs out of the main model's answer.

    Raises:
        TypeError: ``extraction_model`` is not a ``BaseLM``.
    """

    name = "TwoStepAdapter"

    def __init__(self, extraction_model: BaseLM) -> None:
        if not isinstance(extraction_model, BaseLM):
            raise TypeError(
                "extraction_model must be a trio_dspy BaseLM (td.LM(...), td.testing.DummyLM, "
                f"...), got {type(extraction_model).__name__}"
            )
        self.extraction_model = extraction_model
        self._reader = ChatAdapter()
        self._extractions: dict[type[Signature], Extraction] = {}

    def __repr__(self) -> str:
        return f"TwoStepAdapter({self.extraction_model!r})"

    def system_prompt(self, signature: type[Signature]) -> str:
        """What the task is, the inputs, the outputs the answer must contain (DSPy's words)."""
        parts = [
            "You are a helpful assistant that can solve tasks based on user input.",
            "As input, you will be provided with:\n" + describe_fields(signature.input_fields),
            "Your outputs must contain:\n" + describe_fields(signature.output_fields),
            "You should lay out your outputs in detail so that your answer can be understood "
            "by another agent",
        ]
        if signature.instructions:
            parts.append(f"Specific instructions: {signature.instructions}")
        return "\n".join(parts)

    def format_inputs(self, signature: type[Signature], values: Mapping[str, Any]) -> str:
        """``name: value`` for each input given; non-string values as JSON."""
        return "\n\n".join(
            f"{n}: {format_value(values[n], f.annotation, field=n)}"
            for n, f in signature.input_fields.items()
            if n in values
        )

    def format_outputs(self, signature: type[Signature], values: Mapping[str, Any]) -> str:
        """``name: value`` for each output given (used for demos)."""
        return "\n\n".join(
            f"{n}: {format_value(values[n], f.annotation, field=n)}"
            for n, f in signature.output_fields.items()
            if n in values
        )

    def output_requirements(self, signature: type[Signature]) -> str:
        """Nothing: the main model answers freely."""
        return ""

    def extraction(self, signature: type[Signature]) -> Extraction:
        """The request that reads ``signature``'s outputs out of the answer's ``text``."""
        found = self._extractions.get(signature)
        if found is None:
            if len(self._extractions) >= self._CACHE_SIZE:
                self._extractions.clear()
            found = self._extractions[signature] = Extraction(
                self.extraction_model, self._reader, *extractor_signature(signature)
            )
        return found

    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        """Refuse: the answer is free text, read by :meth:`extraction`'s request.

        Raises:
            AdapterParseError: always (``Predict`` never calls this).
        """
        raise AdapterParseError(
            "a TwoStepAdapter answer is free text: its outputs are read by the extraction "
            "model (Predict sends that request; call adapter.extraction(signature) to build it)",
            completion=completion,
            adapter=self.name,
            signature=signature.__name__,
        )


def extractor_signature(signature: type[Signature]) -> tuple[type[Signature], str]:
    """``text -> <signature's outputs>`` with DSPy's extraction instructions, and the input's name.

    The input is ``text``, or ``source_text`` when an output is already named ``text``.
    """
    field = "source_text" if "text" in signature.output_fields else "text"
    outputs = ", ".join(f"`{n}`" for n in signature.output_fields)
    instructions = (
        "The input is a text that should contain all the necessary information to produce "
        f"the fields {outputs}. Your job is to extract the fields from the text verbatim. "
        "Extract precisely the appropriate value (content) for each field."
    )
    fields = [Field("input", name=field, annotation=str), *signature.output_fields.values()]
    return signature_from_fields(f"{signature.__name__}Extraction", fields, instructions), field
