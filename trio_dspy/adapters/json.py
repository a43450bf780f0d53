"""The JSON wire format: the model answers with one JSON object of the outputs.

:meth:`JSONAdapter.response_format` asks for ``json_schema`` structured output
(strict). Servers that refuse it are stepped down to ``json_object`` and then
to plain prompting by the LM client, which is why the schema is also spelled
out in the prompt itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..messages import ResponseFormat
from ..signature import Signature
from ..types import unstructure
from ..types.custom import custom_types_in
from .base import Adapter
from .inputs import refuse_images
from .markers import sections
from .outputs import parse_json_outputs
from .plan import str_input_headers
from .prompt import (
    STRUCTURE_INTRO,
    field_descriptions,
    format_value,
    objective,
    outputs_schema,
    requirement_hint,
)
from .streaming import JSONFieldParser

__all__ = ["JSONAdapter", "JSONFallback"]


class JSONAdapter(Adapter):
    """Outputs as a JSON object, with ``response_format`` structured output.

    Args:
        use_native_function_calling: a ``td.ToolCalls`` output is answered by
            the model's native tool calls, its ``list[td.Tool]`` input sent as
            tool definitions (DSPy's default for this adapter); ``False``: both
            are text, as in the other formats.
    """

    name = "JSONAdapter"

    def __init__(self, *, use_native_function_calling: bool = True) -> None:
        self.use_native_function_calling = use_native_function_calling

    def system_prompt(self, signature: type[Signature]) -> str:
        """Fields, the input layout, the output JSON schema, the instructions."""
        inputs = sections({n: f"{{{n}}}" for n in signature.input_fields})
        schema = json.dumps(outputs_schema(signature, strict=False), ensure_ascii=False)
        parts = [
            field_descriptions(signature),
            STRUCTURE_INTRO,
            "Inputs will have the following structure:",
            inputs,
            "Outputs will be a JSON object with the following fields, matching this JSON schema:",
            schema,
            objective(signature),
        ]
        return "\n\n".join(p for p in parts if p)

    def input_headers(self, signature: type[Signature]) -> tuple[tuple[str, str], ...] | None:
        """Each ``str`` input's ``[[ ## name ## ]]`` line (``None`` when an input is
        not ``str``, or a subclass formats inputs its own way)."""
        if type(self).format_inputs is not JSONAdapter.format_inputs:
            return None
        return str_input_headers(signature)

    def format_inputs(self, signature: type[Signature], values: Mapping[str, Any]) -> str:
        """Input sections for the inputs given."""
        return sections(
            {
                n: format_value(values[n], f.annotation, field=n)
                for n, f in signature.input_fields.items()
                if n in values
            }
        )

    def output_requirements(self, signature: type[Signature]) -> str:
        """``Respond with a JSON object in the following order of fields: ...``."""
        fields = ", then ".join(
            f"`{n}`{requirement_hint(f)}" for n, f in signature.output_fields.items()
        )
        return f"Respond with a JSON object in the following order of fields: {fields}."

    def format_outputs(self, signature: type[Signature], values: Mapping[str, Any]) -> str:
        """Output values as one JSON object (used for demos)."""
        data = {}
        for n, f in signature.output_fields.items():
            if n in values:
                refuse_images(values[n], f.annotation, n)
                data[n] = unstructure(values[n], f.annotation)
        return json.dumps(data, ensure_ascii=False)

    def response_format(self, signature: type[Signature]) -> ResponseFormat:
        """A strict ``json_schema`` request for the output object; ``json_object``
        when an output is ``td.ToolCalls`` (its free-form ``args`` fit no strict
        schema; DSPy steps down the same way)."""
        if not all(
            c.td_strict_schema
            for f in signature.output_fields.values()
            for c in custom_types_in(f.annotation)
        ):
            return ResponseFormat("json_object", name=signature.__name__)
        return ResponseFormat(
            "json_schema",
            name=signature.__name__,
            schema=outputs_schema(signature, strict=True),
            strict=True,
        )

    def stream_parser(self, signature: type[Signature], fields: Sequence[str]) -> JSONFieldParser:
        """A fresh :class:`~trio_dspy.adapters.streaming.JSONFieldParser` of ``fields``."""
        return JSONFieldParser(fields)

    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        """Find the JSON object in ``completion`` and structure each output field.

        Raises:
            AdapterParseError: no JSON object, a missing field, or a wrong value.
        """
        return parse_json_outputs(signature, completion, adapter=self.name)


_FALLBACK = JSONAdapter()


class JSONFallback:
    """For adapters of a text format (chat sections, XML): after an answer that
    does not parse, re-ask once with :class:`JSONAdapter`'s structured request,
    as DSPy's text adapters fall back to its JSONAdapter.

    ``use_json_adapter_fallback=False`` re-asks in the adapter's own format,
    showing the error. Mixed in before :class:`~trio_dspy.adapters.base.Adapter`.
    """

    def __init__(
        self, *, use_json_adapter_fallback: bool = True, use_native_function_calling: bool = False
    ) -> None:
        self.use_json_adapter_fallback = use_json_adapter_fallback
        # As DSPy's: a td.ToolCalls output answered by native tool calls (opt in).
        self.use_native_function_calling = use_native_function_calling

    def structured_fallback(self) -> Adapter | None:
        """A :class:`JSONAdapter`, unless ``use_json_adapter_fallback`` is false."""
        return _FALLBACK if self.use_json_adapter_fallback else None

    def __repr__(self) -> str:
        shown = [
            *([] if self.use_json_adapter_fallback else ["use_json_adapter_fallback=False"]),
            *(["use_native_function_calling=True"] if self.use_native_function_calling else []),
        ]
        return f"{type(self).__name__}({', '.join(shown)})"
