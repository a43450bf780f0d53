"""The JSON wire format: the model answers with one JSON object of the outputs.

:meth:`JSONAdapter.response_format` asks for ``json_schema`` structured output
(strict). Servers that refuse it are stepped down to ``json_object`` and then
to plain prompting by the LM client, which is why the schema is also spelled
out in the prompt itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..errors import AdapterParseError, StructuringError
from ..messages import ResponseFormat
from ..signature import Signature
from ..types import (
    accepts_str,
    find_json,
    parse_text,
    strip_code_fences,
    structure,
    unstructure,
)
from .base import (
    STRUCTURE_INTRO,
    Adapter,
    field_descriptions,
    format_value,
    objective,
    outputs_schema,
    requirement_hint,
)

__all__ = ["JSONAdapter"]


class JSONAdapter(Adapter):
    """Outputs as a JSON object, with ``response_format`` structured output."""

    name = "JSONAdapter"

    def system_prompt(self, signature: type[Signature]) -> str:
        """Fields, the input layout, the output JSON schema, the instructions."""
        inputs = "\n\n".join(f"[[ ## {n} ## ]]\n{{{n}}}" for n in signature.input_fields)
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

    def format_inputs(self, signature: type[Signature], values: Mapping[str, Any]) -> str:
        """Input sections for the inputs given."""
        return "\n\n".join(
            f"[[ ## {n} ## ]]\n{format_value(values[n], f.annotation)}"
            for n, f in signature.input_fields.items()
            if n in values
        )

    def output_requirements(self, signature: type[Signature]) -> str:
        """``Respond with a JSON object in the following order of fields: ...``."""
        fields = ", then ".join(
            f"`{n}`{requirement_hint(f)}" for n, f in signature.output_fields.items()
        )
        return f"Respond with a JSON object in the following order of fields: {fields}."

    def format_outputs(self, signature: type[Signature], values: Mapping[str, Any]) -> str:
        """Output values as one JSON object (used for demos)."""
        data = {
            n: unstructure(values[n], f.annotation)
            for n, f in signature.output_fields.items()
            if n in values
        }
        return json.dumps(data, ensure_ascii=False)

    def response_format(self, signature: type[Signature]) -> ResponseFormat:
        """A strict ``json_schema`` request for the output object."""
        return ResponseFormat(
            "json_schema",
            name=signature.__name__,
            schema=outputs_schema(signature, strict=True),
            strict=True,
        )

    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        """Find the JSON object in ``completion`` and structure each output field.

        Raises:
            AdapterParseError: no JSON object, a missing field, or a wrong value.
        """
        data = self._find_object(completion)
        if data is None:
            raise AdapterParseError(
                "expected a JSON object with the output fields",
                completion=completion,
                adapter=self.name,
                signature=signature.__name__,
            )
        by_lower = {k.lower(): v for k, v in data.items() if isinstance(k, str)}
        missing = [
            n for n in signature.output_fields if n not in data and n.lower() not in by_lower
        ]
        if missing:
            raise AdapterParseError(
                f"missing output field(s) {', '.join(missing)} in the JSON object",
                completion=completion,
                adapter=self.name,
                signature=signature.__name__,
            )
        values: dict[str, Any] = {}
        for name, field in signature.output_fields.items():
            raw = data[name] if name in data else by_lower[name.lower()]
            try:
                if isinstance(raw, str) and not accepts_str(field.annotation):
                    values[name] = parse_text(raw, field.annotation, path=name)
                else:
                    values[name] = structure(raw, field.annotation, path=name)
            except StructuringError as exc:
                raise AdapterParseError(
                    str(exc), completion=completion, adapter=self.name, signature=signature.__name__
                ) from exc
        return values

    @staticmethod
    def _find_object(completion: str) -> dict[str, Any] | None:
        text = strip_code_fences(completion.strip()).strip()
        try:
            data = json.loads(text)
        except ValueError:
            data = find_json(text, "{")  # an object inside prose
        return data if isinstance(data, dict) else None
