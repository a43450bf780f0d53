"""What a served program takes and gives: its fields, their JSON Schemas, and typed (un)structuring.

A program's served interface comes from a signature when it has one:

* a module with a ``signature`` attribute (``Predict``, ``ChainOfThought``,
  ``ReAct``, or your own module that sets ``self.signature``) is served with
  that signature's inputs and outputs;
* otherwise the first sub-module that has one, outermost first (a module
  whose ``forward(**inputs)`` hands its inputs to a ``ReAct`` agent is served
  as that agent);
* a ``forward`` that names its parameters (``forward(self, question: str,
  k: int = 3)``) decides the inputs instead: each parameter is an input, typed
  by its hint (``str`` without one), optional when it has a default. The
  outputs are still the signature's, if any is found.

A prediction's fields that the outputs do not declare are sent as they are
(JSON-ready values only), so nothing the program returns is hidden.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import typing
from collections.abc import Mapping
from typing import Any

import attrs

from ..errors import SignatureError, StructuringError
from ..modules.module import Module
from ..primitives import Prediction
from ..signature import Signature
from ..types import check_supported, json_schema, structure, unstructure
from ..unicode import clean_json, clean_text

__all__ = ["FieldSpec", "ProgramSpec", "describe"]

_MISSING = object()


@attrs.frozen
class FieldSpec:
    """One input or output field: its name, type, description and default."""

    name: str
    annotation: Any
    desc: str = ""
    default: Any = _MISSING

    @property
    def required(self) -> bool:
        """Whether a request must give this field."""
        return self.default is _MISSING

    def schema(self) -> dict[str, Any]:
        """The field's JSON Schema, with its description and default."""
        out = dict(json_schema(self.annotation))
        if self.desc:
            out["description"] = self.desc
        if not self.required:
            # A default JSON cannot show is still applied; it is just not listed.
            with contextlib.suppress(TypeError, ValueError):
                out["default"] = json.loads(json.dumps(unstructure(self.default, self.annotation)))
        return out


@attrs.frozen
class ProgramSpec:
    """A served program: its name, module and the fields it takes and gives."""

    name: str
    program: Module
    inputs: tuple[FieldSpec, ...]
    outputs: tuple[FieldSpec, ...]
    instructions: str = ""
    # The inputs by name, built once rather than per request.
    _known: dict[str, FieldSpec] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_known", {f.name: f for f in self.inputs})

    def input_schema(self) -> dict[str, Any]:
        """The JSON Schema of a request body: an object of the input fields."""
        return _object_schema(self.inputs, closed=True)

    def output_schema(self) -> dict[str, Any]:
        """The JSON Schema of the ``outputs`` of a response."""
        return _object_schema(self.outputs, closed=False)

    def structure_inputs(self, body: Any) -> dict[str, Any]:
        """The typed keyword arguments for the program from a decoded JSON body.

        Raises:
            StructuringError: the body is not an object, names an unknown
                field, lacks a required one, or a value does not fit its
                field's type; ``path`` names the field (``mood``,
                ``order.size``).
        """
        if not isinstance(body, dict):
            raise StructuringError("", body, "the request body must be a JSON object of inputs")
        known = self._known
        for key in body:
            if key not in known:
                expected = ", ".join(known) or "none"
                raise StructuringError(key, body[key], f"unknown input (expected: {expected})")
        values: dict[str, Any] = {}
        for spec in self.inputs:
            if spec.name not in body:
                if spec.required:
                    raise StructuringError(spec.name, None, "this input is required")
                values[spec.name] = spec.default
                continue
            value = body[spec.name]
            if spec.annotation is str and type(value) is str:
                # What structure gives a str for a str, without its dispatch.
                values[spec.name] = clean_text(value)
                continue
            values[spec.name] = structure(clean_json(value), spec.annotation, path=spec.name)
        return values

    def unstructure_outputs(self, prediction: Any) -> dict[str, Any]:
        """The JSON-ready ``outputs`` of a program's result.

        Declared outputs come first, by their types; other fields follow as
        they are. A result that is not a :class:`~trio_dspy.Prediction` (a
        module may return anything) is given under ``"result"``.
        """
        if not isinstance(prediction, Prediction):
            return {"result": _json_ready(unstructure(prediction))}
        fields = prediction.to_dict()  # a copy at C speed, not through Mapping.items
        out: dict[str, Any] = {}
        for spec in self.outputs:
            if spec.name in fields:
                out[spec.name] = _json_ready(unstructure(fields.pop(spec.name), spec.annotation))
        for name, value in fields.items():
            out[name] = _json_ready(unstructure(value))
        return out


_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})


def _json_ready(value: Any) -> Any:
    """``value`` if JSON can carry it, else its ``repr``: one odd field never fails a response."""
    if type(value) in _JSON_SCALARS:
        return value  # JSON carries every one: no trial encoding
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


def _object_schema(fields: tuple[FieldSpec, ...], *, closed: bool) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {f.name: f.schema() for f in fields},
        "required": [f.name for f in fields if f.required],
    }
    if closed:
        schema["additionalProperties"] = False
    return schema


def find_signature(program: Module) -> type[Signature] | None:
    """The signature a program is served with (see the module's docstring), if any."""
    for _, module in program.named_sub_modules():
        sig = getattr(module, "signature", None)
        if isinstance(sig, type) and issubclass(sig, Signature):
            return sig
    return None


def _forward_inputs(program: Module) -> tuple[FieldSpec, ...] | None:
    """The inputs ``forward``'s named parameters declare; ``None`` for ``forward(**inputs)``."""
    forward = program.forward
    try:
        params = inspect.signature(forward).parameters
    except (TypeError, ValueError):
        return None
    named = [p for p in params.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if not named:
        return None
    try:
        hints = typing.get_type_hints(forward)
    except Exception as exc:
        raise SignatureError(
            f"{type(program).__name__}.forward: cannot resolve its type hints ({exc}); "
            "define the types it names at module level"
        ) from None
    out = []
    for p in named:
        annotation = hints.get(p.name, str)
        check_supported(annotation, f"{type(program).__name__}.forward, parameter {p.name}")
        default = _MISSING if p.default is p.empty else p.default
        out.append(FieldSpec(p.name, annotation, "", default))
    return tuple(out)


def describe(name: str, program: Module) -> ProgramSpec:
    """The :class:`ProgramSpec` of ``program`` served as ``name``.

    Raises:
        TypeError: ``program`` is not a :class:`~trio_dspy.Module`.
        SignatureError: its inputs cannot be described (``forward`` takes
            ``**inputs`` and no signature is found, or a parameter's type is
            not supported).
    """
    if not isinstance(program, Module):
        raise TypeError(f"program {name!r} must be a td.Module, got {type(program).__name__}")
    sig = find_signature(program)
    inputs = _forward_inputs(program)
    if inputs is None:
        if sig is None:
            raise SignatureError(
                f"program {name!r} ({type(program).__name__}) takes **inputs and has no "
                "signature to describe them: name forward's parameters, or set "
                "self.signature to a td.Signature"
            )
        inputs = tuple(
            FieldSpec(f.name, f.annotation, f.desc or "") for f in sig.input_fields.values()
        )
    outputs: tuple[FieldSpec, ...] = ()
    instructions = ""
    if sig is not None:
        outputs = tuple(
            FieldSpec(f.name, f.annotation, f.desc or "") for f in sig.output_fields.values()
        )
        instructions = sig.instructions
    return ProgramSpec(name, program, inputs, outputs, instructions)


def describe_all(programs: Module | Mapping[str, Module]) -> dict[str, ProgramSpec]:
    """Each served program by name: a single module is served as ``"program"``.

    Raises:
        TypeError: a value is not a module, or ``programs`` is neither.
        ValueError: no program, or a name that cannot be a URL path segment.
        SignatureError: see :func:`describe`.
    """
    if isinstance(programs, Module):
        programs = {"program": programs}
    if not isinstance(programs, Mapping):
        raise TypeError(
            f"programs must be a td.Module or a mapping of names to modules, "
            f"got {type(programs).__name__}"
        )
    if not programs:
        raise ValueError("no program to serve: pass at least one")
    out = {}
    for name, program in programs.items():
        if (
            not isinstance(name, str)
            or not name
            or not all(c.isalnum() or c in "-_." for c in name)
        ):
            raise ValueError(
                f"program name {name!r} must be letters, digits, '-', '_' or '.' (it is a URL path)"
            )
        out[name] = describe(name, program)
    return out
