"""Signatures: what a step takes and what it must produce, as typed fields.

Class form::

    class Classify(td.Signature):
        \"\"\"Classify the customer's request.\"\"\"
        request: str = td.InputField(desc="what the customer said")
        mood: Mood = td.InputField()
        action: MakeDrink | Refund = td.OutputField()
        confidence: float = td.OutputField()

String form: ``"question, context: list[str] -> answer, confidence: float"``
(a field without a type is ``str``). Both give a :class:`Signature` subclass;
a malformed definition raises :class:`~trio_dspy.errors.SignatureError` at
definition time, naming the field.
"""

from __future__ import annotations

import ast
import inspect
import sys
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Optional, Union

import attrs

from .errors import SignatureError
from .types import Audio, Code, File, History, Image, Reasoning, check_field, type_name

__all__ = [
    "Field",
    "InputField",
    "OutputField",
    "Signature",
    "ensure_signature",
    "make_signature",
    "signature_from_fields",
]

# Names a field may not take: they clash with the Signature class API, with
# Prediction/Example methods, or with the ChatAdapter's end marker.
RESERVED_NAMES = frozenset(
    {
        "completed",
        "instructions",
        "input_fields",
        "output_fields",
        "fields",
        "signature",
        "usage",
        "keys",
        "items",
        "values",
        "get",
        "copy",
        "inputs",
        "labels",
        "with_inputs",
        "without",
        "to_dict",
        "with_instructions",
        "with_updated_field",
        "prepend",
        "append",
    }
)


@attrs.frozen
class Field:
    """One field of a signature. Made by :func:`InputField` / :func:`OutputField`.

    ``name`` and ``annotation`` are filled in when the signature class is built.
    """

    kind: Literal["input", "output"]
    desc: str = ""
    prefix: str = ""
    name: str = ""
    annotation: Any = str

    @property
    def is_input(self) -> bool:
        """True for input fields."""
        return self.kind == "input"

    @property
    def type_name(self) -> str:
        """The annotation as prompts show it."""
        return type_name(self.annotation)


def InputField(*, desc: str = "", prefix: str = "") -> Any:
    """Declare an input field: ``question: str = td.InputField(desc="...")``."""
    return Field("input", desc=desc, prefix=prefix)


def OutputField(*, desc: str = "", prefix: str = "") -> Any:
    """Declare an output field: ``answer: float = td.OutputField(desc="...")``."""
    return Field("output", desc=desc, prefix=prefix)


class SignatureMeta(type):
    """Builds the field tables of each :class:`Signature` subclass."""

    input_fields: dict[str, Field]
    output_fields: dict[str, Field]
    instructions: str

    def __new__(
        mcs, name: str, bases: tuple[type, ...], ns: dict[str, Any], **kw: Any
    ) -> SignatureMeta:
        cls = super().__new__(mcs, name, bases, ns, **kw)
        if not any(isinstance(b, SignatureMeta) for b in bases):
            cls.input_fields, cls.output_fields, cls.instructions = {}, {}, ""
            return cls
        # With `from __future__ import annotations`, annotations are strings that
        # may name classes local to the function defining the signature: resolve
        # them in that frame too (as pydantic and attrs do).
        caller = sys._getframe(1)
        localns = dict(caller.f_locals) if caller.f_code.co_name != "<module>" else {}
        fields = _collect_fields(cls, name, ns, localns)
        cls.input_fields = {n: f for n, f in fields.items() if f.is_input}
        cls.output_fields = {n: f for n, f in fields.items() if not f.is_input}
        if not cls.output_fields:
            raise SignatureError(
                f"signature {name} has no output field: add one with td.OutputField()"
            )
        histories = [n for n, f in cls.input_fields.items() if f.annotation is History]
        if len(histories) > 1:
            raise SignatureError(
                f"signature {name} has {len(histories)} td.History inputs "
                f"({', '.join(histories)}): a conversation has one history; keep one"
            )
        doc = ns.get("__doc__")
        cls.instructions = (
            _dedent(doc) if doc else default_instructions(cls.input_fields, cls.output_fields)
        )
        return cls

    def __call__(cls, spec: str | None = None, instructions: str | None = None) -> Any:
        """``td.Signature("q -> a")`` builds a signature class from a string."""
        if spec is None:
            raise TypeError("a Signature is a class, not an object: call it with a string spec")
        return make_signature(spec, instructions=instructions)

    @property
    def fields(cls) -> dict[str, Field]:
        """Inputs then outputs, in declaration order."""
        return {**cls.input_fields, **cls.output_fields}

    def __repr__(cls) -> str:
        ins = ", ".join(f"{n}: {f.type_name}" for n, f in cls.input_fields.items())
        outs = ", ".join(f"{n}: {f.type_name}" for n, f in cls.output_fields.items())
        return f"Signature {cls.__name__}({ins} -> {outs})"


def _collect_fields(
    cls: type, name: str, ns: Mapping[str, Any], localns: Mapping[str, Any]
) -> dict[str, Field]:
    """Fields of the parent signatures, then this class's, in declaration order."""
    fields: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        if isinstance(base, SignatureMeta):
            fields.update(base.fields)

    raw_annotations = ns.get("__annotations__", {})
    hints = _resolve_hints(cls, name, raw_annotations, localns)
    for attr, value in ns.items():
        if isinstance(value, Field) and attr not in raw_annotations:
            raise SignatureError(
                f"{name}.{attr}: field has no type annotation; write `{attr}: str = ...`"
            )
    for attr, annotation in hints.items():
        if attr.startswith("__") or typing.get_origin(annotation) is ClassVar:
            continue
        value = ns.get(attr, attrs.NOTHING)
        if not isinstance(value, Field):
            raise SignatureError(
                f"{name}.{attr}: field is neither input nor output; "
                "set it to td.InputField() or td.OutputField()"
            )
        _check_name(name, attr)
        check_field(annotation, f"{name}.{attr}", is_input=value.is_input)
        fields[attr] = attrs.evolve(value, name=attr, annotation=annotation)
    return fields


def _resolve_hints(
    cls: type, name: str, raw: Mapping[str, Any], localns: Mapping[str, Any]
) -> dict[str, Any]:
    module = sys.modules.get(cls.__module__)
    globalns = dict(vars(module)) if module else {}
    scope = {**localns, **vars(cls)}
    out: dict[str, Any] = {}
    for attr, annotation in raw.items():
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, globalns, scope)
            except Exception as exc:
                raise SignatureError(
                    f"{name}.{attr}: cannot resolve annotation {annotation!r}: {exc}"
                ) from None
        out[attr] = annotation
    return out


def _check_name(sig_name: str, field: str) -> None:
    if field in RESERVED_NAMES or field.startswith("_"):
        raise SignatureError(
            f"{sig_name}.{field}: {field!r} is a reserved name; choose another field name"
        )
    if not field.isidentifier():
        raise SignatureError(f"{sig_name}.{field}: field names must be identifiers")


def _dedent(doc: str) -> str:
    return inspect.cleandoc(doc)


def default_instructions(inputs: Mapping[str, Field], outputs: Mapping[str, Field]) -> str:
    """DSPy's default: ``Given the fields `a`, `b`, produce the fields `c`.``"""
    ins = ", ".join(f"`{n}`" for n in inputs)
    outs = ", ".join(f"`{n}`" for n in outputs)
    return (
        f"Given the fields {ins}, produce the fields {outs}."
        if ins
        else f"Produce the fields {outs}."
    )


class Signature(metaclass=SignatureMeta):
    """Base class of signatures: subclass it and declare typed fields.

    The docstring becomes the instructions. Class attributes
    ``input_fields``, ``output_fields`` and ``fields`` map names to
    :class:`Field` in declaration order.
    """

    input_fields: ClassVar[dict[str, Field]]
    output_fields: ClassVar[dict[str, Field]]
    instructions: ClassVar[str]

    @classmethod
    def with_instructions(cls, instructions: str) -> type[Signature]:
        """A copy of this signature with other instructions."""
        return _build(cls.__name__, list(cls.fields.values()), instructions)

    @classmethod
    def with_updated_field(cls, name: str, **changes: Any) -> type[Signature]:
        """A copy with field ``name``'s ``desc`` and/or ``prefix`` changed."""
        fields = [attrs.evolve(f, **changes) if f.name == name else f for f in cls.fields.values()]
        return _build(cls.__name__, fields, cls.instructions if cls.__doc__ else None)

    @classmethod
    def prepend(cls, name: str, field: Field, annotation: Any = str) -> type[Signature]:
        """A copy with a new field placed first among its kind (inputs or outputs)."""
        return cls._insert(name, field, annotation, first=True)

    @classmethod
    def append(cls, name: str, field: Field, annotation: Any = str) -> type[Signature]:
        """A copy with a new field placed last among its kind (inputs or outputs)."""
        return cls._insert(name, field, annotation, first=False)

    @classmethod
    def _insert(cls, name: str, field: Field, annotation: Any, first: bool) -> type[Signature]:
        new = attrs.evolve(field, name=name, annotation=annotation)
        ins = [f for f in cls.input_fields.values() if f.name != name]
        outs = [f for f in cls.output_fields.values() if f.name != name]
        group = ins if new.is_input else outs
        group.insert(0 if first else len(group), new)
        keep = cls.instructions if cls.__doc__ else None
        return _build(cls.__name__, ins + outs, keep)


def signature_from_fields(
    name: str, fields: list[Field], instructions: str | None = None
) -> type[Signature]:
    """Build a signature class from :class:`Field` objects (``name`` and
    ``annotation`` set), inputs and outputs in the order given.

    Raises:
        SignatureError: as for a class definition (reserved names, no output, ...).
    """
    return _build(name, fields, instructions)


def _build(name: str, fields: list[Field], instructions: str | None) -> type[Signature]:
    ns: dict[str, Any] = {"__annotations__": {}, "__module__": __name__}
    for f in fields:
        ns["__annotations__"][f.name] = f.annotation
        ns[f.name] = attrs.evolve(f, name="", annotation=str)
    if instructions:
        ns["__doc__"] = instructions
    return typing.cast(type[Signature], SignatureMeta(name, (Signature,), ns))


# ------------------------------------------------------------------ string form
# Types defined by modules that import this one (``td.Tool``, ``td.ToolCalls``):
# read off the package, which has imported them by the time a signature is parsed.
_LATE_NAMES = ("Tool", "ToolCalls")


def _late_types() -> dict[str, Any]:
    package = sys.modules.get(__name__.rpartition(".")[0])
    return {n: getattr(package, n) for n in _LATE_NAMES if hasattr(package, n)}


_BASE_TYPES: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "list": list,
    "dict": dict,
    "tuple": tuple,
    "None": type(None),
    "Any": Any,
    "Optional": Optional,
    "Union": Union,
    "Literal": Literal,
    "Image": Image,
    "History": History,
    **{t.__name__: t for t in (Audio, File, Code, Reasoning)},
    "List": list,
    "Dict": dict,
    "Tuple": tuple,
}


def make_signature(
    spec: str,
    *,
    instructions: str | None = None,
    custom_types: Mapping[str, Any] | None = None,
    name: str = "StringSignature",
) -> type[Signature]:
    """Build a signature from ``"a, b: list[str] -> c: float"``.

    Types are read without evaluating code: builtins, ``Optional``,
    ``Union``, ``Literal``, ``X | Y``, ``Image``, ``History`` (also as
    ``td.Image``) and any names given in ``custom_types``; DSPy's
    ``dspy.Image`` is refused with what to write.

    Raises:
        SignatureError: the spec is malformed, names an unknown type, repeats a
            field, uses a reserved name, or has no output.
    """
    if spec.count("->") != 1:
        raise SignatureError(
            f"signature {spec!r} must have exactly one '->' between inputs and outputs"
        )
    left, right = spec.split("->")
    types = {**_BASE_TYPES, **_late_types(), **(custom_types or {})}
    inputs = _parse_side(left, types, spec, is_input=True)
    outputs = _parse_side(right, types, spec, is_input=False)
    if not outputs:
        raise SignatureError(f"signature {spec!r} has no output field")
    seen: set[str] = set()
    fields: list[Field] = []
    for kind, items in (("input", inputs), ("output", outputs)):
        for fname, annotation in items:
            if fname in seen:
                raise SignatureError(f"signature {spec!r}: field {fname!r} appears twice")
            seen.add(fname)
            fields.append(Field(kind, name=fname, annotation=annotation))  # type: ignore[arg-type]
    return _build(name, fields, instructions)


def _parse_side(
    text: str, types: Mapping[str, Any], spec: str, *, is_input: bool
) -> list[tuple[str, Any]]:
    items = []
    for part in _split_top_level(text):
        part = part.strip()
        if not part:
            continue
        fname, _, tp_text = part.partition(":")
        fname = fname.strip()
        if not fname.isidentifier():
            raise SignatureError(f"signature {spec!r}: {fname!r} is not a valid field name")
        annotation = (
            _parse_type(tp_text.strip(), types, spec, fname, is_input) if tp_text.strip() else str
        )
        items.append((fname, annotation))
    return items


def _split_top_level(text: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


# Module names a type may be written under in a string signature:
# ``td.Image`` is ``Image``; ``dspy.Image`` is named and refused.
_PREFIXES = frozenset({"td", "trio_dspy", "dspy"})


def _prefixed(prefix: str, name: str, types: Mapping[str, Any], spec: str, field: str) -> Any:
    """The type ``prefix.name`` in a string signature (``td.Image``).

    Raises:
        SignatureError: ``prefix`` is ``dspy`` (the message says what to
            write), or ``name`` is no type a signature knows.
    """
    if prefix == "dspy":
        fix = f"write {name!r} (or 'td.{name}')" if name in types else "pass it with custom_types"
        raise SignatureError(
            f"signature {spec!r}: 'dspy.{name}' for {field!r} is DSPy's type: {fix}"
        )
    if name not in types:
        raise SignatureError(
            f"signature {spec!r}: unknown type '{prefix}.{name}' for {field!r}; "
            "pass it with custom_types={...}"
        )
    return types[name]


def _parse_type(text: str, types: Mapping[str, Any], spec: str, field: str, is_input: bool) -> Any:
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        raise SignatureError(
            f"signature {spec!r}: cannot read the type of {field!r}: {text!r}"
        ) from None

    def build(n: ast.expr) -> Any:
        if isinstance(n, ast.Name):
            if n.id not in types:
                raise SignatureError(
                    f"signature {spec!r}: unknown type {n.id!r} for {field!r}; "
                    "pass it with custom_types={...}"
                )
            return types[n.id]
        if isinstance(n, ast.Attribute):
            prefix = n.value.id if isinstance(n.value, ast.Name) else None
            if prefix in _PREFIXES and prefix not in types:
                return _prefixed(prefix, n.attr, types, spec, field)
            base = build(n.value)
            return getattr(base, n.attr)
        if isinstance(n, ast.Constant):
            return n.value
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr):
            return Union[build(n.left), build(n.right)]  # noqa: UP007 - built at run time
        if isinstance(n, ast.Subscript):
            base = build(n.value)
            sl = n.slice
            args = tuple(build(e) for e in sl.elts) if isinstance(sl, ast.Tuple) else (build(sl),)
            if base is Optional and len(args) != 1:
                raise SignatureError(
                    f"signature {spec!r}: Optional takes one type, {field!r} gives {len(args)}"
                )
            try:
                if base is Literal or base is Union:
                    return base[args]
                if base is Optional:
                    return Optional[args[0]]  # noqa: UP045 - built at run time
                return base[args if len(args) > 1 else args[0]]
            except TypeError as exc:
                raise SignatureError(
                    f"signature {spec!r}: invalid type for {field!r}: {text!r} ({exc})"
                ) from None
        raise SignatureError(f"signature {spec!r}: cannot read the type of {field!r}: {text!r}")

    annotation = build(node)
    check_field(annotation, f"signature {spec!r}: field {field!r}", is_input=is_input)
    return annotation


def ensure_signature(signature: str | type[Signature]) -> type[Signature]:
    """Accept a signature class or a string spec; return a signature class.

    Raises:
        SignatureError: ``signature`` is neither, or the string is malformed.
    """
    if isinstance(signature, str):
        return make_signature(signature)
    if isinstance(signature, type) and issubclass(signature, Signature):
        if signature is Signature:
            raise SignatureError("td.Signature itself has no fields: subclass it")
        return signature
    raise SignatureError(
        f"expected a td.Signature subclass or a string like 'question -> answer', got {signature!r}"
    )
