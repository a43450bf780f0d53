"""``td.ToolCalls`` outputs answered by native tool calling, as DSPy's adapters do.

An adapter with ``use_native_function_calling`` (DSPy's ``JSONAdapter``
default; opt in on the text formats) sends the tools of a signature's
``list[td.Tool]`` input as the request's tool definitions instead of as
text, and asks no ``td.ToolCalls`` output in the prompt
(:func:`tool_plan`); the calls the model makes natively become that output
(:func:`parse_tool_calls`). Without native calling, or on a model that
answers in text, the calls are read from the text as any other output.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping
from typing import Any, get_args, get_origin

from ..errors import AdapterParseError, SignatureError
from ..messages import LMResponse, ToolSpec
from ..signature import Signature
from ..types.custom import is_custom
from .inputs import without_fields

__all__ = ["parse_tool_calls", "tool_fields", "tool_plan"]


def _is_tools(annotation: Any) -> bool:
    """A ``td.Tool`` input, alone or in a list (an input-only type with a ``spec``)."""
    if get_origin(annotation) is list and len(get_args(annotation)) == 1:
        annotation = get_args(annotation)[0]
    return is_custom(annotation) and annotation.td_input_only and hasattr(annotation, "spec")


@functools.lru_cache(maxsize=256)
def tool_fields(signature: type[Signature]) -> tuple[str, str | None] | None:
    """``(calls output, tools input or None)`` of a signature with a native-callable
    output (``td.ToolCalls``); ``None`` for any other signature."""
    calls = next(
        (
            n
            for n, f in signature.output_fields.items()
            if is_custom(f.annotation) and f.annotation.td_from_tool_calls(()) is not None
        ),
        None,
    )
    if calls is None:
        return None
    tools = next((n for n, f in signature.input_fields.items() if _is_tools(f.annotation)), None)
    return calls, tools


def _native(adapter: object, signature: type[Signature]) -> tuple[str, str] | None:
    if not getattr(adapter, "use_native_function_calling", False):
        return None
    found = tool_fields(signature)
    if found is None:
        return None
    calls, tools = found
    if tools is None:
        raise SignatureError(
            f"{signature.__name__}.{calls} receives tool calls, but no input gives the tools: "
            "add an input field `tools: list[td.Tool] = td.InputField()`"
        )
    return calls, tools


def _asked(signature: type[Signature], calls: str, tools: str) -> type[Signature]:
    """The prompt's signature: without the tools input, and without the calls
    output unless it is the only one (a signature needs an output; the model
    may then call natively or write the calls, both read)."""
    alone = len(signature.output_fields) == 1
    return without_fields(signature, frozenset({tools} if alone else {calls, tools}))


def tool_plan(
    adapter: object, signature: type[Signature], inputs: Mapping[str, Any]
) -> tuple[type[Signature], Mapping[str, Any], tuple[ToolSpec, ...]]:
    """The signature, inputs and tool definitions of a request from ``adapter``:
    unchanged, without tools, unless it calls tools natively for a ``td.ToolCalls`` output.

    Raises:
        SignatureError: a ``td.ToolCalls`` output with no ``list[td.Tool]`` input.
        TypeError: the tools input holds something other than ``td.Tool`` values.
    """
    native = _native(adapter, signature)
    if native is None:
        return signature, inputs, ()
    calls, tools_field = native
    tools = inputs.get(tools_field) or ()
    tools = tools if isinstance(tools, list | tuple) else (tools,)
    if not all(hasattr(t, "spec") for t in tools):
        raise TypeError(f"{signature.__name__}.{tools_field} needs td.Tool values")
    rest = {k: v for k, v in inputs.items() if k != tools_field}
    return _asked(signature, calls, tools_field), rest, tuple(t.spec() for t in tools)


def parse_tool_calls(
    adapter: object,
    parse: Callable[[type[Signature], LMResponse], dict[str, Any]],
    signature: type[Signature],
    response: LMResponse,
) -> dict[str, Any]:
    """``parse(signature, response)``, or for a native tool-calling request, the
    other outputs from the text and the ``td.ToolCalls`` output from the calls made.

    As DSPy: when the model called tools, text that does not parse leaves the
    other outputs ``None``; with no calls the text must hold them, and the
    ``td.ToolCalls`` output is empty (DSPy's is ``None``) unless it was the only
    output, which the prompt then also asks for in text.

    Raises:
        AdapterParseError: the text does not parse and no tool was called, or
            a call's arguments are not a JSON object.
    """
    native = _native(adapter, signature)
    if native is None:
        return parse(signature, response)
    calls_field, tools_field = native
    asked = _asked(signature, calls_field, tools_field)
    if not response.tool_calls:
        values = parse(asked, response)  # the calls written as text, or none at all
        if calls_field in values:
            return {n: values.get(n) for n in signature.output_fields}
    else:
        values = {}
        if len(signature.output_fields) > 1 and response.text.strip():
            # As DSPy: the calls were made; unreadable text leaves the rest None.
            with contextlib.suppress(AdapterParseError):
                values = parse(asked, response)
    annotation = signature.output_fields[calls_field].annotation
    try:
        values[calls_field] = annotation.td_from_tool_calls(response.tool_calls)
    except ValueError as exc:
        raise AdapterParseError(
            f"{calls_field}: {exc}",
            completion=response.text,
            adapter=getattr(adapter, "name", "adapter"),
            signature=signature.__name__,
        ) from None
    return {n: values.get(n) for n in signature.output_fields}
