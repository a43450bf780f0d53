"""DSPy's chat wire format: ``[[ ## field ## ]]`` sections ending in ``completed``.

Prompts and demos written for DSPy's ChatAdapter read the same here. Parsing
accepts what models really write: prose before the first marker, a missing
``[[ ## completed ## ]]``, field names in any case, JSON inside code fences.
When the sections cannot be found it tries the completion as a JSON object
(as :class:`~trio_dspy.JSONAdapter` reads it), since models asked for markers
sometimes answer in JSON.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import AdapterParseError
from ..signature import Signature
from ..types import parse_text
from .base import Adapter
from .json import JSONFallback
from .markers import COMPLETED, HEADER_PATTERN, field_header, sections
from .outputs import parse_json_outputs, read_fields
from .plan import str_input_headers
from .prompt import (
    STRUCTURE_INTRO,
    field_descriptions,
    format_value,
    objective,
    requirement_hint,
    type_note,
)
from .streaming import ChatFieldParser

__all__ = ["ChatAdapter"]

_MISSING = "Not supplied for this particular example."
# One shared instance: its system-prompt cache then serves every re-ask.


class ChatAdapter(JSONFallback, Adapter):
    """The ``[[ ## field ## ]]`` format (the default adapter).

    Args:
        use_json_adapter_fallback: when an answer does not parse, re-ask once
            with :class:`~trio_dspy.JSONAdapter`'s request, which asks for
            ``response_format`` ``json_schema`` (stepped down by the LM when
            the server refuses it), as DSPy's ChatAdapter falls back to its
            JSONAdapter. Small models that lose the sections keep to a JSON
            schema. ``False``: re-ask in this format, showing the error.
    """

    name = "ChatAdapter"

    def system_prompt(self, signature: type[Signature]) -> str:
        """Fields, structure and instructions, as DSPy lays them out."""

        def structure(fields: Mapping[str, Any], notes: bool) -> str:
            return sections(
                {
                    n: f"{{{n}}}"
                    + (
                        f"        # note: the value you produce {note}"
                        if notes and (note := type_note(f.annotation))
                        else ""
                    )
                    for n, f in fields.items()
                }
            )

        parts = [
            field_descriptions(signature),
            STRUCTURE_INTRO,
            structure(signature.input_fields, notes=False),
            structure(signature.output_fields, notes=True),
            COMPLETED,
            objective(signature),
        ]
        return "\n\n".join(parts)

    def input_headers(self, signature: type[Signature]) -> tuple[tuple[str, str], ...] | None:
        """Each ``str`` input's ``[[ ## name ## ]]`` line (``None`` when an input is
        not ``str``, or a subclass formats inputs its own way)."""
        if type(self).format_inputs is not ChatAdapter.format_inputs:
            return None
        return str_input_headers(signature)

    def format_inputs(self, signature: type[Signature], values: Mapping[str, Any]) -> str:
        """Input sections; a demo's missing inputs say so."""
        return sections(
            {
                n: format_value(values[n], f.annotation, field=n) if n in values else _MISSING
                for n, f in signature.input_fields.items()
            }
        )

    def output_requirements(self, signature: type[Signature]) -> str:
        """``Respond with the corresponding output fields, starting with ...``."""
        fields = ", then ".join(
            f"`{field_header(n)}`{requirement_hint(f)}" for n, f in signature.output_fields.items()
        )
        return (
            f"Respond with the corresponding output fields, starting with the field {fields}, "
            f"and then ending with the marker for `{COMPLETED}`."
        )

    def format_outputs(self, signature: type[Signature], values: Mapping[str, Any]) -> str:
        """Output values as the model should write them (used for demos)."""
        body = sections(
            {
                n: format_value(values[n], f.annotation, field=n) if n in values else _MISSING
                for n, f in signature.output_fields.items()
            }
        )
        return f"{body}\n\n{COMPLETED}"

    def stream_parser(self, signature: type[Signature], fields: Sequence[str]) -> ChatFieldParser:
        """A fresh :class:`~trio_dspy.adapters.streaming.ChatFieldParser` of ``fields``."""
        return ChatFieldParser(fields)

    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        """Read each output section and structure it to its field's type.

        Raises:
            AdapterParseError: an output section is missing or malformed, and the
                completion is not a usable JSON object either.
        """
        try:
            return self._parse_sections(signature, completion)
        except AdapterParseError as chat_error:
            try:
                return parse_json_outputs(signature, completion, adapter=self.name)
            except AdapterParseError:
                # The chat reading's error is the one to report, with its cause
                # (a value that failed its type) kept.
                raise chat_error from chat_error.__cause__

    def _parse_sections(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        outputs = signature.output_fields
        wanted = _by_lower(tuple(outputs))
        # [text before, name, its text, name, its text, ...]: a section's text
        # runs to the next marker, whatever that one names.
        parts = HEADER_PATTERN.split(completion)
        found: dict[str, str] = {}
        for at in range(1, len(parts), 2):
            name = wanted.get(parts[at].lower())
            if name is not None and name not in found:
                found[name] = parts[at + 1].strip()
        if len(found) < len(outputs):
            missing = [n for n in outputs if n not in found]
            raise AdapterParseError(
                f"missing output field(s) {', '.join(missing)}: expected a "
                f"`{field_header('name')}` section for each",
                completion=completion,
                adapter=self.name,
                signature=signature.__name__,
            )
        values: dict[str, Any] = {}
        for name, field in outputs.items():
            if field.annotation is not str:  # a typed field: structure them all
                return read_fields(found, signature, completion, self.name, _section_value)
            values[name] = found[name]  # text, the usual output, is its section as it is
        return values


@functools.lru_cache(maxsize=256)
def _by_lower(names: tuple[str, ...]) -> dict[str, str]:
    """Output names by their lower case: a model may write a marker in any case."""
    return {n.lower(): n for n in names}


def _section_value(text: str, annotation: Any, path: str) -> Any:
    """A section's (stripped) text as a value of ``annotation``."""
    return text if annotation is str else parse_text(text, annotation, path=path)
