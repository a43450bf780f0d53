"""What an adapter does, and the prompt pieces both wire formats share.

An adapter turns (signature, demos, inputs) into chat messages and the
model's completion back into typed output values. It never talks to a model:
``Predict`` owns the call, the retries and the fallbacks.
"""

from __future__ import annotations

import abc
import enum
import json
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args, get_origin

from ..errors import AdapterParseError
from ..messages import Message, ResponseFormat
from ..signature import Field, Signature
from ..types import json_schema, unstructure

__all__ = ["Adapter", "format_value"]

STRUCTURE_INTRO = (
    "All interactions will be structured in the following way, "
    "with the appropriate values filled in."
)


class Adapter(abc.ABC):
    """The interface of a wire format (``ChatAdapter``, ``JSONAdapter``)."""

    name: str = "adapter"
    _CACHE_SIZE = 256

    def cached_system_prompt(self, signature: type[Signature]) -> str:
        """:meth:`system_prompt`, built once per signature (it depends on nothing else)."""
        cache: dict[type[Signature], str] = self.__dict__.setdefault("_system_prompts", {})
        prompt = cache.get(signature)
        if prompt is None:
            if len(cache) >= self._CACHE_SIZE:
                cache.clear()
            prompt = cache[signature] = self.system_prompt(signature)
        return prompt

    @abc.abstractmethod
    def system_prompt(self, signature: type[Signature]) -> str:
        """The system message: field list, structure and instructions."""

    def format(
        self,
        signature: type[Signature],
        demos: Sequence[Mapping[str, Any]],
        inputs: Mapping[str, Any],
    ) -> list[Message]:
        """The messages that ask the model for ``signature``'s outputs given ``inputs``.

        The system prompt, then each demo as a user turn (its inputs) and an
        assistant turn (its outputs), then the inputs and what to answer.
        """
        messages = [Message("system", self.cached_system_prompt(signature))]
        for demo in usable_demos(signature, demos):
            messages.append(Message("user", self.format_inputs(signature, demo)))
            messages.append(Message("assistant", self.format_outputs(signature, demo)))
        body = self.format_inputs(signature, inputs)
        messages.append(Message("user", f"{body}\n\n{self.output_requirements(signature)}"))
        return messages

    @abc.abstractmethod
    def format_inputs(self, signature: type[Signature], values: Mapping[str, Any]) -> str:
        """Input values as a user message shows them."""

    @abc.abstractmethod
    def format_outputs(self, signature: type[Signature], values: Mapping[str, Any]) -> str:
        """Output values as the model should write them (demos show this)."""

    @abc.abstractmethod
    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        """The typed output values in ``completion``.

        Raises:
            AdapterParseError: a field is missing or has a value of the wrong type.
        """

    @abc.abstractmethod
    def output_requirements(self, signature: type[Signature]) -> str:
        """The sentence that tells the model how to lay out its answer."""

    def response_format(self, signature: type[Signature]) -> ResponseFormat | None:
        """The structured-output request to send with the prompt, if any."""
        return None

    def format_retry(
        self, completion: str, error: AdapterParseError, signature: type[Signature]
    ) -> list[Message]:
        """Messages appended to the conversation to re-ask after a parse failure."""
        return [
            Message("assistant", completion),
            Message(
                "user",
                f"Your previous response could not be used: {error.args[0]}\n\n"
                + self.output_requirements(signature),
            ),
        ]

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# --------------------------------------------------------------- shared pieces
def format_value(value: Any, annotation: Any = Any) -> str:
    """A field value as prompt text: strings as written, the rest as JSON."""
    if type(value) is str:  # the common case, on every call's hot path
        return value
    data = unstructure(value, annotation)
    return data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)


def describe_fields(fields: Mapping[str, Field]) -> str:
    """``1. `name` (type): description`` lines, DSPy's layout."""
    lines = []
    for i, (name, f) in enumerate(fields.items(), start=1):
        line = f"{i}. `{name}` ({f.type_name})"
        if f.desc:
            line += f": {f.desc}"
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
