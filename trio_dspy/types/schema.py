"""The JSON schema of a type hint, as sent to models.

Schemas go into prompts, ``response_format`` and tool definitions. A union of
records gets one object schema per member, each requiring the ``"_type"`` tag
that names its class.
"""

from __future__ import annotations

import enum
from typing import Any, Literal, get_args, get_origin

from ..errors import SignatureError
from .custom import is_custom
from .support import (
    TAG,
    is_enum,
    is_pydantic_model,
    is_record,
    is_tagged_union,
    is_union,
    non_none,
    record_fields,
    type_name,
)

__all__ = ["json_schema"]


def json_schema(tp: Any, *, strict: bool = False) -> dict[str, Any]:
    """The JSON schema of a type hint.

    With ``strict=True`` the schema follows the rules of OpenAI's strict
    structured outputs: every object lists all its properties as required and
    forbids additional ones.

    Raises:
        SignatureError: ``tp`` is not a supported type.
    """
    if tp is str:
        return {"type": "string"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is type(None):
        return {"type": "null"}
    if tp is Any:
        return {}
    if is_custom(tp):
        return tp.td_schema(strict=strict)
    if is_enum(tp):
        values = [m.value for m in tp]
        return {**_enum_type(values), "enum": values, "title": tp.__name__}
    origin = get_origin(tp)
    args = get_args(tp)
    if origin is Literal:
        values = [a.value if isinstance(a, enum.Enum) else a for a in args]
        return {**_enum_type(values), "enum": values}
    if is_tagged_union(tp):
        members = [_record_schema(m, strict, tag=m.__name__) for m in non_none(args)]
        if type(None) in args:
            members.append({"type": "null"})
        return {"anyOf": members}
    if is_union(tp):
        return {"anyOf": [json_schema(a, strict=strict) for a in args]}
    if origin is list or tp is list:
        return {"type": "array", "items": json_schema(args[0], strict=strict) if args else {}}
    if origin is tuple or tp is tuple:
        if not args or (len(args) == 2 and args[1] is Ellipsis):
            return {"type": "array", "items": json_schema(args[0], strict=strict) if args else {}}
        return {
            "type": "array",
            "prefixItems": [json_schema(a, strict=strict) for a in args],
            "minItems": len(args),
            "maxItems": len(args),
        }
    if origin is dict or tp is dict:
        value = json_schema(args[1], strict=strict) if args else {}
        return {"type": "object", "additionalProperties": value}
    if is_record(tp):
        return _record_schema(tp, strict)
    if is_pydantic_model(tp):
        from .pydantic_models import model_schema

        return model_schema(tp, strict=strict)
    raise SignatureError(f"unsupported type {type_name(tp)}")


def _enum_type(values: list[Any]) -> dict[str, Any]:
    kinds = {type(v) for v in values}
    if kinds <= {str}:
        return {"type": "string"}
    if kinds <= {int}:
        return {"type": "integer"}
    return {}


def _record_schema(cls: type, strict: bool, tag: str | None = None) -> dict[str, Any]:
    props: dict[str, Any] = {}
    required: list[str] = []
    if tag is not None:
        props[TAG] = {"type": "string", "enum": [tag]}
        required.append(TAG)
    for name, ftp, has_default in record_fields(cls):
        props[name] = json_schema(ftp, strict=strict)
        if strict or not has_default:
            required.append(name)
    schema: dict[str, Any] = {"type": "object", "title": cls.__name__, "properties": props}
    schema["required"] = required
    schema["additionalProperties"] = False
    return schema
