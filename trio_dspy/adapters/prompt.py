"""The prompt pieces every wire format shares: field lists, type notes, values as text.

A wire format (``ChatAdapter``, ``JSONAdapter``, ``XMLAdapter``) lays these out
its own way; what a field value looks like in a prompt, and how the fields
and the objective are described, is the same for all of them.
"""

from __future__ import annotations

import enum
import json
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args, get_origin

from ..primitives import Prediction
from ..signature import Field, Signature
from ..types import image_annotation, json_schema, unstructure
from ..types.custom import custom_note, custom_requirement, type_descriptions
from .inputs import image_text, refuse_images

__all__ = [
    "STRUCTURE_INTRO",
    "describe_fields",
    "field_descriptions",
    "format_value",
    "objective",
    "outputs_schema",
    "requirement_hint",
    "type_note",
    "usable_demos",
]

STRUCTURE_INTRO = (
    "All interactions will be structured in the following way, "
    "with the appropriate values filled in."
)


def format_value(value: Any, annotation: Any = Any, *, field: str = "value") -> str:
    """A field value as prompt text: strings as written, images as markers that
    become image parts (:func:`~trio_dspy.adapters.inputs.user_content`), a
    ``Prediction`` in a ``str`` (or ``Any``) field as ``str(prediction)``, as
    DSPy sends it, the rest as JSON.

    ``field`` names the field in errors.

    Raises:
        TypeError: a field typed ``td.Image`` holds something else.
        SignatureError: a field not typed ``td.Image`` holds an image
            (:func:`~trio_dspy.adapters.inputs.refuse_images`).
    """
    if type(value) is str and annotation is str:  # the common case, on every call's hot path
        return value
    if image_annotation(annotation):
        marks = image_text(value)
        if marks is not None:
            return marks
    if type(value) is str:
        return value
    if isinstance(value, Prediction) and (annotation is str or annotation is Any):
        # DSPy sends a Prediction's text form (``str(pred)``), not its fields as JSON.
        return str(value)
    refuse_images(value, annotation, field)
    data = unstructure(value, annotation)
    return data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)


def describe_fields(fields: Mapping[str, Field]) -> str:
    """``1. `name` (type): description`` lines, DSPy's layout."""
    lines = []
    for i, (name, f) in enumerate(fields.items(), start=1):
        line = f"{i}. `{name}` ({f.type_name})"
        if desc := f.desc + type_descriptions(f.annotation):  # DSPy's custom-type lines
            line += f": {desc}"
        lines.append(line)
    return "\n".join(lines)


def field_descriptions(signature: type[Signature]) -> str:
    """The opening of every system prompt: the input and output fields."""
    return (
        f"Your input fields are:\n{describe_fields(signature.input_fields)}\n"
        f"Your output fields are:\n{describe_fields(signature.output_fields)}"
    )


def objective(signature: type[Signature]) -> str:
    """The closing of every system prompt: the signature's instructions."""
    body = ("\n" + " " * 8).join(["", *textwrap.dedent(signature.instructions).splitlines()])
    return f"In adhering to this structure, your objective is: {body}"


def type_note(annotation: Any) -> str:
    """What the value of a field of this type must look like ('' for ``str``)."""
    if annotation is str:
        return ""
    if (note := custom_note(annotation)) is not None:
        return note
    if annotation is bool:
        return "must be True or False"
    if annotation in (int, float):
        return f"must be a single {annotation.__name__} value"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return f"must be one of: {'; '.join(str(m.value) for m in annotation)}"
    if get_origin(annotation) is Literal:
        choices = "; ".join(
            str(a.value if isinstance(a, enum.Enum) else a) for a in get_args(annotation)
        )
        return f"must exactly match (no extra characters) one of: {choices}"
    schema = json.dumps(json_schema(annotation), ensure_ascii=False)
    return f"must adhere to the JSON schema: {schema}"


def requirement_hint(field: Field) -> str:
    """`` (must be formatted as a valid Python float)`` for non-string fields."""
    if (hint := custom_requirement(field.annotation)) is not None:
        return hint
    return (
        ""
        if field.annotation is str
        else f" (must be formatted as a valid Python {field.type_name})"
    )


def usable_demos(
    signature: type[Signature], demos: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """Demos with at least one input and one output field; others say nothing."""
    return [
        d
        for d in demos
        if any(k in d for k in signature.input_fields)
        and any(k in d for k in signature.output_fields)
    ]


def outputs_schema(signature: type[Signature], *, strict: bool) -> dict[str, Any]:
    """The JSON schema of an object holding every output field."""
    props = {
        n: json_schema(f.annotation, strict=strict) for n, f in signature.output_fields.items()
    }
    return {
        "type": "object",
        "properties": props,
        "required": list(props),
        "additionalProperties": False,
    }
