"""Values that are valid for a JSON schema, generated deterministically.

:func:`schema_value` covers the subset of JSON Schema that structured-output
APIs use: ``type`` (one or a list), ``object`` with ``properties`` /
``required`` / ``additionalProperties``, ``string`` (``minLength``,
``maxLength``, common ``format`` values), ``number`` / ``integer`` (bounds,
exclusive bounds, ``multipleOf``), ``boolean``, ``null``, ``enum``,
``const``, ``anyOf`` / ``oneOf`` / ``allOf``, ``array`` with ``items`` /
``prefixItems`` / ``minItems`` / ``maxItems``, and local ``$ref`` into
``$defs`` / ``definitions``. ``pattern`` is not honoured. Strings are
plausible English words. The same schema and the same ``random.Random``
state always give the same value.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

__all__ = ["schema_value", "words"]

WORDS = (
    "apple", "bright", "river", "quiet", "stone", "garden", "amber", "signal",
    "forest", "coffee", "window", "silver", "harbor", "maple", "copper", "lantern",
    "meadow", "orbit", "pepper", "violet", "canyon", "breeze", "marble", "summit",
    "velvet", "island", "thunder", "willow", "crimson", "falcon", "glacier", "hollow",
    "ember", "prairie", "cobalt", "juniper", "nectar", "pebble", "saffron", "tundra",
    "ribbon", "cedar", "delta", "fable", "granite", "horizon", "indigo", "jasmine",
    "kettle", "lagoon", "mosaic", "nimbus", "opal", "quartz", "rustic", "sparrow",
    "timber", "umber", "vista", "walnut", "yonder", "zephyr", "beacon", "cascade",
)  # fmt: skip

_MAX_DEPTH = 6
_DEFAULT_SPAN = 100


def words(rng: random.Random, lo: int = 2, hi: int = 6) -> str:
    """Between ``lo`` and ``hi`` random words joined by spaces."""
    return " ".join(rng.choices(WORDS, k=rng.randint(lo, hi)))


def schema_value(schema: Mapping[str, Any] | bool, rng: random.Random) -> Any:
    """A value valid for ``schema`` (a JSON schema as a dict, or ``True``).

    Local references (``#/$defs/Name``) resolve against ``schema`` itself.
    Recursive schemas are cut off by preferring the shortest branch deep down.

    Raises:
        ValueError: the schema is ``False`` (nothing is valid) or has a
            ``$ref`` that is not a local reference to this schema.
    """
    root = schema if isinstance(schema, Mapping) else {}
    return _Gen(root, rng).value(schema, 0)


class _Gen:
    def __init__(self, root: Mapping[str, Any], rng: random.Random) -> None:
        self.root = root
        self.rng = rng

    def value(self, schema: Mapping[str, Any] | bool, depth: int) -> Any:
        if depth > _MAX_DEPTH * 8:
            raise ValueError("the schema recurses without a finite value: add a null branch")
        if schema is True:
            return words(self.rng, 1, 3)
        if schema is False or not isinstance(schema, Mapping):
            raise ValueError("no value is valid for the schema `false`")
        if "$ref" in schema:
            return self.value(self._resolve(schema["$ref"]), depth + 1)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return self.rng.choice(list(schema["enum"]))
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return self.value(self._branch(schema[key], depth), depth + 1)
        if "allOf" in schema:
            return self.value(_merge(schema, [self._deref(s) for s in schema["allOf"]]), depth)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = self._pick_type(kind, depth)
        if kind is None:
            kind = _implied_type(schema)
        maker = getattr(self, f"_{kind}", None)
        if maker is None:
            return words(self.rng, 1, 3)
        return maker(schema, depth)

    # ---------------------------------------------------------------- helpers
    def _resolve(self, ref: str) -> Mapping[str, Any]:
        if not ref.startswith("#"):
            raise ValueError(f"only local $ref values are supported, got {ref!r}")
        node: Any = self.root
        for part in ref.lstrip("#").strip("/").split("/") if ref != "#" else []:
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, Mapping) or part not in node:
                raise ValueError(f"$ref {ref!r} does not point into the schema")
            node = node[part]
        return node  # type: ignore[no-any-return]

    def _deref(self, schema: Any) -> Any:
        if isinstance(schema, Mapping) and "$ref" in schema:
            return self._resolve(schema["$ref"])
        return schema

    def _branch(self, options: list[Any], depth: int) -> Any:
        if depth >= _MAX_DEPTH:
            return min(options, key=lambda s: _weight(self._deref(s)))
        return self.rng.choice(options)

    def _pick_type(self, kinds: list[str], depth: int) -> str:
        if depth >= _MAX_DEPTH and "null" in kinds:
            return "null"
        concrete = [k for k in kinds if k != "null"]
        if concrete and (len(concrete) == len(kinds) or self.rng.random() < 0.8):
            return self.rng.choice(concrete)
        return "null"

    # ------------------------------------------------------------------ types
    def _null(self, schema: Mapping[str, Any], depth: int) -> None:
        return None

    def _boolean(self, schema: Mapping[str, Any], depth: int) -> bool:
        return self.rng.random() < 0.5

    def _string(self, schema: Mapping[str, Any], depth: int) -> str:
        rng = self.rng
        fmt = schema.get("format")
        if fmt == "date":
            text = f"20{rng.randint(10, 29)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        elif fmt == "date-time":
            text = f"20{rng.randint(10, 29)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
            text += f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z"
        elif fmt == "email":
            text = f"{rng.choice(WORDS)}@example.com"
        elif fmt in ("uri", "url"):
            text = f"https://example.com/{rng.choice(WORDS)}"
        elif fmt == "uuid":
            text = "%08x-%04x-4%03x-8%03x-%012x" % (  # noqa: UP031
                rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(12),
                rng.getrandbits(12), rng.getrandbits(48),
            )  # fmt: skip
        else:
            text = words(rng, 1, 4)
        lo = int(schema.get("minLength", 0))
        hi = schema.get("maxLength")
        while len(text) < lo:
            text += " " + rng.choice(WORDS)
        if hi is not None and len(text) > int(hi):
            text = text[: int(hi)]
        return text

    def _integer(self, schema: Mapping[str, Any], depth: int) -> int:
        lo, hi = _bounds(schema, integer=True)
        step = schema.get("multipleOf")
        if step:
            k_lo, k_hi = math.ceil(lo / step), math.floor(hi / step)
            if k_lo <= k_hi:
                return int(self.rng.randint(k_lo, k_hi) * step)
        return self.rng.randint(math.ceil(lo), math.floor(hi))

    def _number(self, schema: Mapping[str, Any], depth: int) -> float | int:
        lo, hi = _bounds(schema, integer=False)
        step = schema.get("multipleOf")
        if step:
            k_lo, k_hi = math.ceil(lo / step), math.floor(hi / step)
            if k_lo <= k_hi:
                value = self.rng.randint(k_lo, k_hi) * step
                return int(value) if isinstance(step, int) else value
        value = round(self.rng.uniform(lo, hi), 2)
        return value if lo <= value <= hi else lo

    def _array(self, schema: Mapping[str, Any], depth: int) -> list[Any]:
        prefix = list(schema.get("prefixItems", ()))
        items = schema.get("items", True)
        lo = int(schema.get("minItems", 0))
        if items is False:
            count = len(prefix)
        else:
            hi = int(schema.get("maxItems", max(lo, len(prefix)) + 3))
            count = min(lo, hi) if depth >= _MAX_DEPTH else self.rng.randint(min(lo, hi), hi)
        out = [self.value(s, depth + 1) for s in prefix[:count]]
        while len(out) < count:
            out.append(self.value(items, depth + 1))
        return out

    def _object(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        props: Mapping[str, Any] = schema.get("properties", {})
        required = set(schema.get("required", ()))
        out: dict[str, Any] = {}
        for name, sub in props.items():
            if name in required or (depth < _MAX_DEPTH - 2 and self.rng.random() < 0.5):
                out[name] = self.value(sub, depth + 1)
        extra = schema.get("additionalProperties", True)
        if not props and isinstance(extra, Mapping) and extra and depth < _MAX_DEPTH:
            for _ in range(self.rng.randint(1, 3)):
                out[self.rng.choice(WORDS)] = self.value(extra, depth + 1)
        return out


def _implied_type(schema: Mapping[str, Any]) -> str | None:
    if "properties" in schema or "additionalProperties" in schema or "required" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return None


def _bounds(schema: Mapping[str, Any], *, integer: bool) -> tuple[float, float]:
    lo: float | None = schema.get("minimum")
    hi: float | None = schema.get("maximum")
    xlo = schema.get("exclusiveMinimum")
    xhi = schema.get("exclusiveMaximum")
    eps = 1 if integer else 0.01
    if isinstance(xlo, int | float) and not isinstance(xlo, bool):
        lo = xlo + eps if lo is None else max(lo, xlo + eps)
    if isinstance(xhi, int | float) and not isinstance(xhi, bool):
        hi = xhi - eps if hi is None else min(hi, xhi - eps)
    if lo is None:
        return (0, _DEFAULT_SPAN) if hi is None else (hi - _DEFAULT_SPAN, hi)
    return (lo, lo + _DEFAULT_SPAN) if hi is None else (lo, hi)


def _weight(schema: Any) -> int:
    """How much a branch would expand: leaves first, then shallow structures."""
    if not isinstance(schema, Mapping):
        return 1
    kind = schema.get("type")
    if kind == "null" or "const" in schema or "enum" in schema:
        return 0
    if kind in ("string", "number", "integer", "boolean"):
        return 1
    return 2 + len(schema.get("required", ())) + int(schema.get("minItems", 0))


def _merge(schema: Mapping[str, Any], parts: list[Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    for part in parts:
        if not isinstance(part, Mapping):
            continue
        for key, value in part.items():
            if key == "properties":
                merged["properties"] = {**merged.get("properties", {}), **value}
            elif key == "required":
                merged["required"] = [*merged.get("required", []), *value]
            else:
                merged.setdefault(key, value)
    return merged
