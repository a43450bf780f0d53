"""pydantic ``BaseModel`` classes as field types (the ``pydantic`` extra).

pydantic itself describes and reads them, through a ``TypeAdapter``:
``json_schema()`` gives the schema and ``validate_python`` the value, so the
model's own validators run. Only the modules that meet a ``BaseModel``
import this one (see :func:`~trio_dspy.types.support.is_pydantic_model`), so
a program that uses none never imports pydantic.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from ..errors import SignatureError, StructuringError

__all__ = ["dump_model", "model_schema", "structure_model"]

# More errors than this in one value are counted, not listed, in the message.
_MAX_LISTED = 3


@functools.cache
def _adapter(tp: type[BaseModel]) -> TypeAdapter[Any]:
    return TypeAdapter(tp)


@functools.cache
def _schemas(tp: type[BaseModel]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (lenient, strict) schemas of ``tp``, built once per class."""
    try:
        raw = _adapter(tp).json_schema()
    except Exception as exc:  # pydantic's errors for types it cannot describe vary
        raise SignatureError(f"pydantic cannot describe {tp.__name__}: {exc}") from None
    defs = raw.pop("$defs", {})
    inlined = _inline(raw, defs, ())
    return _objects_closed(inlined, strict=False), _objects_closed(inlined, strict=True)


def model_schema(tp: type[BaseModel], *, strict: bool) -> dict[str, Any]:
    """The JSON schema of model ``tp``, as pydantic writes it, made self-contained.

    References into ``$defs`` are replaced by the definitions they name, so
    the schema can sit anywhere inside another one (an output object, a
    list). Objects of the model's classes forbid additional properties, as
    the schemas of attrs classes do; with ``strict=True`` they also list
    every property as required and carry no ``default`` (OpenAI's strict
    structured outputs).

    Raises:
        SignatureError: pydantic cannot describe ``tp``, or ``tp`` refers to
            itself (recursive models are not supported).
    """
    return copy.deepcopy(_schemas(tp)[strict])


def _inline(node: Any, defs: Mapping[str, Any], stack: tuple[str, ...]) -> Any:
    if isinstance(node, list):
        return [_inline(item, defs, stack) for item in node]
    if not isinstance(node, Mapping):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        name = ref[len("#/$defs/") :]
        if name in stack:
            raise SignatureError(f"{name} refers to itself (recursive models are not supported)")
        if name not in defs:
            raise SignatureError(f"pydantic's schema refers to {ref!r}, which it does not define")
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        return {**_inline(defs[name], defs, (*stack, name)), **_inline(siblings, defs, stack)}
    return {k: _inline(v, defs, stack) for k, v in node.items()}


def _objects_closed(node: Any, *, strict: bool) -> Any:
    if isinstance(node, list):
        return [_objects_closed(item, strict=strict) for item in node]
    if not isinstance(node, Mapping):
        return node
    out = {
        k: _objects_closed(v, strict=strict)
        for k, v in node.items()
        if not (strict and k == "default")
    }
    props = node.get("properties")
    if isinstance(props, Mapping):
        # "properties" is a name -> schema mapping, not a schema: its keys may
        # be called "default" too.
        out["properties"] = {k: _objects_closed(v, strict=strict) for k, v in props.items()}
        out.setdefault("additionalProperties", False)
        if strict:
            out["required"] = list(props)
    return out


def structure_model(value: Any, tp: type[BaseModel]) -> Any:
    """``value`` (JSON-like data, or already a ``tp``) validated by pydantic into a ``tp``.

    Raises:
        StructuringError: pydantic refused it: the path inside the value
            (``items[0].qty``), the value there and pydantic's message for the
            first error, then the other errors with their paths inside the value.
    """
    if isinstance(value, tp):
        return value
    try:
        return _adapter(tp).validate_python(value)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        reason = first["msg"]
        others = [f"{_path(e['loc']) or '(value)'}: {e['msg']}" for e in errors[1:]]
        if others:
            listed = "; ".join(others[:_MAX_LISTED])
            more = len(others) - _MAX_LISTED
            reason += (
                f" (more errors in this value: {listed}{f'; {more} more' if more > 0 else ''})"
            )
        raise StructuringError(_path(first["loc"]), first.get("input"), reason) from None


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def dump_model(value: BaseModel) -> Any:
    """A model instance as JSON-like data, as pydantic writes it (``mode="json"``,
    by alias: the keys its schema names and its validation reads)."""
    return value.model_dump(mode="json", by_alias=True)
