"""What a function tells a model about itself as a tool: its arguments, their
types and descriptions, as a JSON schema.

:class:`~trio_dspy.modules.tool.Tool` reads a function (or a callable object,
a ``functools.partial``, a module's ``forward``) through these: the type
hints give each argument's type, the docstring's ``Args:`` section its
description, and the first paragraph the tool's own.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import sys
import typing
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ..errors import SignatureError
from ..types import check_supported, json_schema, unstructure

__all__ = [
    "Argument",
    "arguments_schema",
    "caller_locals",
    "introspectable",
    "parse_docstring",
    "read_arguments",
    "schema_arguments",
    "user_stacklevel",
]


@attrs.frozen
class Argument:
    """One argument of a tool: its type, default (``attrs.NOTHING`` if required), description."""

    name: str
    annotation: Any
    default: Any = attrs.NOTHING
    desc: str = ""

    @property
    def required(self) -> bool:
        """True when the model must supply the argument."""
        return self.default is attrs.NOTHING


def introspectable(fn: Callable[..., Any]) -> Any:
    """The function whose name, docstring and hints describe ``fn``."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if not inspect.isroutine(fn) and callable(fn):
        return type(fn).__call__  # a callable object: its __call__
    return fn


def user_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first caller outside this package."""
    level, frame = 2, sys._getframe(2)
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith("trio_dspy."):
        frame, level = frame.f_back, level + 1
    return level


def caller_locals() -> dict[str, Any]:
    """Local names of the frames that led here from outside this package."""
    names: dict[str, Any] = {}
    frame = sys._getframe(2)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("trio_dspy."):
        frame = frame.f_back  # type: ignore[assignment]
    if frame is not None and frame.f_code.co_name != "<module>":
        names.update(frame.f_locals)
    return names


def read_arguments(
    fn: Callable[..., Any],
    target: Any,
    name: str,
    docs: Mapping[str, str],
    localns: Mapping[str, Any],
) -> tuple[dict[str, Argument], list[str]]:
    """The tool's arguments, and the names of those without a type hint."""
    try:
        sig = inspect.signature(fn)  # partials and bound methods drop what is bound
    except (TypeError, ValueError) as exc:
        raise SignatureError(f"tool {name}: cannot read its parameters ({exc})") from None
    try:
        hints = typing.get_type_hints(target, localns=dict(localns))
    except Exception as exc:
        # Checking arguments is the point of a tool: never fall back to "anything goes".
        raise SignatureError(
            f"tool {name}: cannot resolve its type hints ({exc}); define the types it names "
            "at module level, or import them outside `if TYPE_CHECKING`"
        ) from None
    bound: set[str] = set()  # keywords a functools.partial already fixed
    inner = fn
    while isinstance(inner, functools.partial):
        bound |= set(inner.keywords)
        inner = inner.func
    args: dict[str, Argument] = {}
    untyped: list[str] = []
    for param in sig.parameters.values():
        if param.name in bound:
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise SignatureError(f"tool {name}: *args/**kwargs cannot be described to a model")
        if param.kind is param.POSITIONAL_ONLY:
            raise SignatureError(
                f"tool {name}: argument {param.name} is positional-only; tools are called "
                "with keyword arguments"
            )
        if param.name not in hints:
            untyped.append(param.name)
        annotation = hints.get(param.name, Any)
        check_supported(annotation, f"tool {name}, argument {param.name}")
        default = attrs.NOTHING if param.default is param.empty else param.default
        args[param.name] = Argument(param.name, annotation, default, docs.get(param.name, ""))
    return args, untyped


def arguments_schema(args: Mapping[str, Argument]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for arg in args.values():
        prop = dict(json_schema(arg.annotation))
        if arg.desc:
            prop["description"] = arg.desc
        if not arg.required:
            with contextlib.suppress(TypeError, ValueError):  # defaults JSON cannot show
                prop["default"] = json.loads(json.dumps(unstructure(arg.default, arg.annotation)))
        props[arg.name] = prop
    return {
        "type": "object",
        "properties": props,
        "required": [a.name for a in args.values() if a.required],
        "additionalProperties": False,
    }


def schema_arguments(schema: Mapping[str, Any]) -> dict[str, Argument]:
    """The arguments a JSON schema lists, typed ``Any``: the schema's owner checks values."""
    required = set(schema.get("required") or ())
    props = schema.get("properties") or {}
    return {
        name: Argument(
            name,
            Any,
            attrs.NOTHING if name in required else prop.get("default"),
            str(prop.get("description", "")),
        )
        for name, prop in props.items()
        if isinstance(prop, Mapping)
    }


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """(summary, {argument: description}) from a docstring in any common style.

    Google (``Args:``), NumPy (``Parameters`` / ``----------``), Sphinx
    (``:param x:``) and Epydoc (``@param x:``) are read by ``docstring_parser``
    (imported here, when a tool is built, so ``import trio_dspy`` stays light).
    The summary is the first paragraph.
    """
    if not doc.strip():
        return "", {}
    import docstring_parser

    try:
        parsed = docstring_parser.parse(doc)
    except docstring_parser.ParseError:
        return first_paragraph(doc), {}
    summary = parsed.short_description or ""
    if summary and not parsed.blank_after_short_description and parsed.long_description:
        summary = f"{summary} {first_paragraph(parsed.long_description)}"
    args = {
        p.arg_name.lstrip("*"): " ".join((p.description or "").split())
        for p in parsed.params
        if p.args and p.args[0] in ("param", "parameter", "arg", "argument", "key", "keyword")
    }
    return " ".join(summary.split()), args


def first_paragraph(text: str) -> str:
    return " ".join(text.strip().split("\n\n", 1)[0].split())
