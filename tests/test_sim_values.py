"""Generated values are valid for their JSON schema (checked by an independent validator)."""

from __future__ import annotations

import enum
import math
import random
import re
from collections.abc import Mapping
from typing import Any, Literal

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_dspy.testing.sim_values import schema_value
from trio_dspy.types import json_schema


# ------------------------------------------------------------------ validator
def schema_errors(value: Any, schema: Any, root: Any = None, path: str = "$") -> list[str]:
    """Every way ``value`` violates ``schema`` (the subset structured outputs use)."""
    root = schema if root is None else root
    if schema is True or schema == {}:
        return []
    if schema is False:
        return [f"{path}: nothing is valid"]
    if "$ref" in schema:
        node = root
        for part in schema["$ref"].lstrip("#").strip("/").split("/"):
            node = node[part]
        return schema_errors(value, node, root, path)
    errs: list[str] = []
    if "const" in schema and value != schema["const"]:
        errs.append(f"{path}: {value!r} != const {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        errs.append(f"{path}: {value!r} not in enum")
    if "anyOf" in schema and all(schema_errors(value, s, root, path) for s in schema["anyOf"]):
        errs.append(f"{path}: matches no anyOf branch")
    if "oneOf" in schema and all(schema_errors(value, s, root, path) for s in schema["oneOf"]):
        errs.append(f"{path}: matches no oneOf branch")
    for sub in schema.get("allOf", ()):
        errs += schema_errors(value, sub, root, path)
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not any(_is_type(value, k) for k in kinds):
            return [*errs, f"{path}: {value!r} is not of type {kind}"]
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errs.append(f"{path}: shorter than minLength")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errs.append(f"{path}: longer than maxLength")
        fmt = schema.get("format")
        if fmt == "date" and not re.fullmatch(r"\d{4}-\d\d-\d\d", value):
            errs.append(f"{path}: not a date")
        if fmt == "email" and "@" not in value:
            errs.append(f"{path}: not an email")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errs.append(f"{path}: {value} < minimum")
        if "maximum" in schema and value > schema["maximum"]:
            errs.append(f"{path}: {value} > maximum")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            errs.append(f"{path}: {value} <= exclusiveMinimum")
        if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
            errs.append(f"{path}: {value} >= exclusiveMaximum")
        step = schema.get("multipleOf")
        if step and not math.isclose(value / step, round(value / step), abs_tol=1e-9):
            errs.append(f"{path}: {value} not a multiple of {step}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errs.append(f"{path}: fewer than minItems")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errs.append(f"{path}: more than maxItems")
        prefix = schema.get("prefixItems", [])
        for i, item in enumerate(value):
            sub = prefix[i] if i < len(prefix) else schema.get("items", True)
            errs += schema_errors(item, sub, root, f"{path}[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        errs += [f"{path}: missing {k}" for k in schema.get("required", ()) if k not in value]
        extra = schema.get("additionalProperties", True)
        for k, v in value.items():
            if k in props:
                errs += schema_errors(v, props[k], root, f"{path}.{k}")
            elif extra is False:
                errs.append(f"{path}: unexpected property {k}")
            else:
                errs += schema_errors(v, extra, root, f"{path}.{k}")
    return errs


def _is_type(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return {
        "string": str,
        "boolean": bool,
        "null": type(None),
        "array": list,
        "object": dict,
    }[kind] is type(value)


def assert_valid(value: Any, schema: Mapping[str, Any]) -> None:
    """Fail the test with every violation when ``value`` does not fit ``schema``."""
    errors = schema_errors(value, schema)
    assert not errors, f"{value!r} is invalid: {errors}"


def test_validator_rejects_wrong_values() -> None:
    # the checker itself must be able to fail, or the tests below prove nothing
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer", "maximum": 3}, "s": {"enum": ["a"]}},
        "required": ["n", "s"],
        "additionalProperties": False,
    }
    assert schema_errors({"n": 2, "s": "a"}, schema) == []
    assert schema_errors({"n": 4, "s": "a"}, schema)
    assert schema_errors({"n": 2}, schema)
    assert schema_errors({"n": 2, "s": "a", "x": 1}, schema)
    assert schema_errors({"n": True, "s": "a"}, schema)
    assert schema_errors([1, "x"], {"type": "array", "prefixItems": [{"type": "integer"}] * 2})


# ------------------------------------------------------------- the generator
class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@attrs.frozen
class Point:
    x: float
    y: float
    label: str | None = None


@attrs.frozen
class Line:
    start: Point
    end: Point
    color: Color


HINTS: list[Any] = [
    str,
    int,
    float,
    bool,
    Color,
    Literal["yes", "no", 3],
    list[Point],
    tuple[int, str, bool],
    dict[str, list[int]],
    Point | Line | None,
    Line,
    list[Line | Point],
]


@pytest.mark.parametrize("hint", HINTS, ids=str)
@pytest.mark.parametrize("strict", [True, False])
def test_values_fit_the_schemas_of_signature_types(hint: Any, strict: bool) -> None:
    schema = json_schema(hint, strict=strict)
    for seed in range(30):
        assert_valid(schema_value(schema, random.Random(seed)), schema)


def test_same_seed_same_value_and_seeds_vary() -> None:
    schema = json_schema(list[Line], strict=True)
    values = [schema_value(schema, random.Random(s)) for s in range(10)]
    assert values[3] == schema_value(schema, random.Random(3))
    assert len({repr(v) for v in values}) > 5


def test_refs_recursion_and_combinators() -> None:
    schema = {
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 12, "maxLength": 20},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                    "parent": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]},
                },
                "required": ["name", "children", "parent"],
            }
        },
        "allOf": [
            {"$ref": "#/$defs/Node"},
            {"properties": {"weight": {"type": "number", "exclusiveMinimum": 0, "maximum": 1}}},
        ],
        "required": ["weight"],
    }
    for seed in range(30):
        value = schema_value(schema, random.Random(seed))
        assert_valid(value, schema)
        assert "weight" in value and "name" in value


def test_numbers_strings_and_formats_respect_constraints() -> None:
    schema = {
        "type": "object",
        "properties": {
            "even": {"type": "integer", "multipleOf": 2, "minimum": 10, "maximum": 20},
            "neg": {"type": "number", "maximum": -5},
            "frac": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            "day": {"type": "string", "format": "date"},
            "mail": {"type": "string", "format": "email"},
            "short": {"type": "string", "maxLength": 3},
            "maybe": {"type": ["integer", "null"]},
            "pair": {"type": "array", "prefixItems": [{"const": 1}, {"type": "boolean"}]},
            "few": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
        },
        "required": ["even", "neg", "frac", "day", "mail", "short", "maybe", "pair", "few"],
    }
    for seed in range(50):
        assert_valid(schema_value(schema, random.Random(seed)), schema)


def test_unsatisfiable_schemas_raise_value_error() -> None:
    with pytest.raises(ValueError, match="false"):
        schema_value(False, random.Random(0))
    with pytest.raises(ValueError, match="local"):
        schema_value({"$ref": "https://example.com/s.json"}, random.Random(0))


# --------------------------------------------------------------- property test
_leaf = st.sampled_from(
    [
        {"type": "string"},
        {"type": "integer", "minimum": -3, "maximum": 3},
        {"type": "number", "exclusiveMinimum": 1.5},
        {"type": "boolean"},
        {"type": "null"},
        {"enum": ["a", "b", 2]},
        {"const": "fixed"},
        {"type": "string", "minLength": 5, "maxLength": 9},
    ]
)


def _extend(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    names = st.sampled_from(["a", "b", "c", "d"])
    obj = st.builds(
        lambda props, req, extra: {
            "type": "object",
            "properties": props,
            "required": [k for k in props if k in req],
            "additionalProperties": extra,
        },
        st.dictionaries(names, inner, max_size=4),
        st.sets(names),
        st.booleans(),
    )
    arr = st.builds(
        lambda items, lo, extra: {
            "type": "array",
            "items": items,
            "minItems": lo,
            "maxItems": lo + extra,
        },
        inner,
        st.integers(0, 3),
        st.integers(0, 3),
    )
    tup = st.lists(inner, min_size=1, max_size=3).map(
        lambda xs: {"type": "array", "prefixItems": xs, "items": False}
    )
    union = st.lists(inner, min_size=1, max_size=3).map(lambda xs: {"anyOf": xs})
    return st.one_of(obj, arr, tup, union)


@settings(max_examples=200, deadline=None)
@given(st.recursive(_leaf, _extend, max_leaves=12), st.integers(0, 2**32))
def test_any_supported_schema_gets_a_valid_value(schema: dict[str, Any], seed: int) -> None:
    assert_valid(schema_value(schema, random.Random(seed)), schema)
