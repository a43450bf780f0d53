"""``td.ToolCalls``: an output field in which a program's model decides which tools to call.

As DSPy's ``dspy.ToolCalls``: a signature with ``tools: list[td.Tool]`` as an
input and ``calls: td.ToolCalls`` as an output asks the model for the calls
to make, as ``{"tool_calls": [{"name": ..., "args": {...}}]}``; the program
then runs them itself (``await call.execute(tools)``). The reader takes the
shapes models and providers write calls in: DSPy's, a bare list of calls, one
call alone, and OpenAI's ``{"function": {"name", "arguments": "<json>"}}``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from ..errors import ToolError
from ..types import loads_json
from ..types.custom import CustomType
from ..unicode import clean_text

if TYPE_CHECKING:
    from ..messages import ToolCall as ProviderCall

__all__ = ["ToolCall", "ToolCalls"]

_SHAPE = 'a JSON object like {"tool_calls": [{"name": "...", "args": {...}}]}'


def _args(value: Any) -> dict[str, Any]:
    if isinstance(value, str):  # OpenAI's arguments: JSON text
        try:
            value = loads_json(value) if value.strip() else {}
        except ValueError as exc:
            raise ValueError(f"a call's arguments are not valid JSON ({exc})") from None
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"a call's args must be an object, got {type(value).__name__}")
    return {clean_text(str(k)): v for k, v in value.items()}


def _optional_id(value: Any) -> str | None:
    return None if value is None else clean_text(str(value))


@attrs.frozen
class ToolCall:
    """One call a model asked for: ``name``, ``args`` and the provider's ``id`` (or ``None``)."""

    name: str = attrs.field(converter=clean_text)
    args: dict[str, Any] = attrs.field(factory=dict, converter=_args)
    id: str | None = attrs.field(default=None, converter=_optional_id)

    @classmethod
    def from_value(cls, value: Any) -> ToolCall:
        """A call from DSPy's ``{"name", "args"}``, ``{"name", "arguments"}`` or
        OpenAI's ``{"id", "function": {"name", "arguments"}}``.

        Raises:
            ValueError: ``value`` is none of these.
        """
        if isinstance(value, ToolCall):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(f"a tool call must be an object, got {type(value).__name__}")
        function = value.get("function")
        if isinstance(function, Mapping):
            name, args = function.get("name") or value.get("name"), function.get("arguments")
        else:
            name, args = value.get("name"), value.get("args", value.get("arguments"))
        if not isinstance(name, str) or not name:
            raise ValueError("a tool call needs a `name` (a non-empty string)")
        return cls(name, args, value.get("id") or value.get("call_id"))

    def format(self) -> dict[str, Any]:
        """DSPy's form of the call: ``{"name": ..., "args": {...}}``."""
        return {"name": self.name, "args": dict(self.args)}

    async def execute(self, functions: Any = None) -> Any:
        """Run the call and return its result.

        ``functions`` is a mapping of names to functions or tools, or a list of
        ``td.Tool`` (or plain functions, by their names); ``None`` looks the
        name up in the caller's variables, as DSPy does. The arguments are
        checked against the function's parameters before it runs.

        Raises:
            ToolError: no function of that name was given or found.
            ToolArgumentError: the arguments do not fit the function.
            Exception: whatever the function raises.
        """
        from .tool import Tool

        if functions is None:
            frame = inspect.currentframe()
            caller = frame.f_back if frame is not None else None
            try:
                found = None if caller is None else caller.f_locals.get(self.name)
                if found is None and caller is not None:
                    found = caller.f_globals.get(self.name)
            finally:
                del frame, caller
        elif isinstance(functions, Mapping):
            found = functions.get(self.name)
        else:
            found = next(
                (
                    f
                    for f in functions
                    if getattr(f, "name", getattr(f, "__name__", None)) == self.name
                ),
                None,
            )
        if found is None or not callable(found):
            raise ToolError(
                f"no function named {self.name!r} to run; pass the tools to execute: "
                "await call.execute([td.Tool(fn), ...]) or execute({'name': fn})",
                tool=self.name,
            )
        tool = found if isinstance(found, Tool) else Tool(found, name=self.name)
        return await tool.acall(dict(self.args))


_Call = ToolCall  # the name inside ToolCalls' body, where ToolCall is its attribute


def _calls(calls: Sequence[Any]) -> tuple[ToolCall, ...]:
    if isinstance(calls, str | bytes) or not isinstance(calls, Sequence):
        raise TypeError(f"tool_calls must be a list of calls, got {type(calls).__name__}")
    return tuple(ToolCall.from_value(c) for c in calls)


@attrs.frozen
class ToolCalls(CustomType):
    """The calls a model decided on: ``calls: td.ToolCalls = td.OutputField()``.

    ``tool_calls`` holds :class:`ToolCall` values in the model's order;
    iterate it and ``await call.execute(tools)`` each. ``ToolCalls.ToolCall``
    is the class of one call, as in DSPy.
    """

    ToolCall: ClassVar[type[_Call]] = ToolCall
    td_strict_schema: ClassVar[bool] = False
    tool_calls: tuple[_Call, ...] = attrs.field(factory=tuple, converter=_calls)

    @classmethod
    def from_dict_list(cls, tool_calls_dicts: Sequence[Mapping[str, Any]]) -> ToolCalls:
        """``ToolCalls`` from a list of ``{"name": ..., "args": {...}}`` (DSPy's name).

        Raises:
            ValueError: an item is not a call.
        """
        return cls(tuple(ToolCall.from_value(d) for d in tool_calls_dicts))

    @classmethod
    def td_description(cls) -> str:
        """DSPy's description: the JSON shape of the calls."""
        return (
            "Tool calls must be a JSON object with `tool_calls`, a list of calls. "
            "Each call must include `name` and `args`. "
            'Example: {"tool_calls": [{"name": "search", "args": {"query": "cats"}}]}'
        )

    @classmethod
    def td_requirement(cls) -> str:
        """DSPy's reminder after the field's name."""
        return f" (must be {_SHAPE})"

    @classmethod
    def td_schema(cls, *, strict: bool = False) -> dict[str, Any]:
        """An object of ``tool_calls``: a list of ``{name, args}`` (no ``id``, as DSPy's)."""
        call: dict[str, Any] = {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "args": {"type": "object", "additionalProperties": True},
            },
            "required": ["name", "args"],
        }
        return {
            "type": "object",
            "properties": {"tool_calls": {"type": "array", "items": call}},
            "required": ["tool_calls"],
        }

    @classmethod
    def td_structure(cls, value: Any) -> ToolCalls:
        """``ToolCalls`` from ``{"tool_calls": [...]}``, a list of calls or one call.

        Raises:
            ValueError: ``value`` is none of these, or a call in it is not one.
        """
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping) and "tool_calls" in value:
            calls = value["tool_calls"]
            if not isinstance(calls, list | tuple):
                raise ValueError(f"`tool_calls` must be a list of calls; write {_SHAPE}")
            return cls(calls)  # the field's converter reads each call
        if isinstance(value, list | tuple):
            return cls(value)
        if isinstance(value, Mapping) and ("name" in value or "function" in value):
            return cls((ToolCall.from_value(value),))
        raise ValueError(f"expected tool calls as {_SHAPE}")

    @classmethod
    def td_from_tool_calls(cls, calls: Sequence[ProviderCall]) -> ToolCalls:
        """The calls a model made natively (``LMResponse.tool_calls``), arguments decoded.

        Raises:
            ValueError: a call's arguments are not a JSON object.
        """
        return cls(tuple(ToolCall(c.name, c.arguments, c.id) for c in calls))

    def td_unstructure(self) -> dict[str, Any]:
        """DSPy's form: ``{"tool_calls": [{"name": ..., "args": {...}}]}``."""
        return self.format()

    def format(self) -> dict[str, Any]:
        """DSPy's form of the calls (what a demo or a saved program shows)."""
        return {"tool_calls": [c.format() for c in self.tool_calls]}
