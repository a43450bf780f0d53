"""``Tool``: a Python function a model may call, with a typed argument schema.

The schema comes from the function's type hints (everything a signature field
supports, defaults included) and its docstring (the first paragraph describes
the tool; the arguments' descriptions are read from Google ``Args:``, NumPy
``Parameters``, Sphinx ``:param x:`` or Epydoc ``@param x:`` sections).
Arguments from the model are validated and structured with cattrs *before*
the call: invalid arguments never reach the function.

A tool of an MCP server (:meth:`Tool.from_mcp`) has the server's name,
description and schema instead; calling it sends the server a request.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
import typing
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import trio

from ..checkpoint import entered
from ..errors import SignatureError, StructuringError, ToolArgumentError, ToolTimeoutError
from ..messages import ToolSpec
from ..stream_listener import heard, tool_status
from ..types import loads_json, structure, unstructure
from ..types.custom import CustomType
from .tool_deadline import extendable
from .tool_schema import (
    Argument,
    arguments_of,
    caller_locals,
    introspectable,
    parse_docstring,
    schema_arguments,
    schema_of,
    user_stacklevel,
)

if TYPE_CHECKING:
    from mcp import ClientSession
    from mcp.types import Tool as McpTool

__all__ = ["Tool", "ensure_tool"]

# What OpenAI and Anthropic accept as a function name.
_VALID_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class Tool(CustomType):
    """Wrap a sync or async function, or a module, as a tool (also an input's value).

    Args:
        fn: the function, or a trio_dspy module (an agent a coordinator
            delegates to: its signature's input fields are the parameters, its
            output fields come back as the result; see
            :mod:`trio_dspy.modules.module_tool`; name it with ``name=``).
            A function's parameters must be annotated with supported types
            (unannotated ones accept any JSON value, with a ``UserWarning``).
        name: the name the model sees (default: the function's or module class's name; required
            for a lambda). Letters, digits, ``_`` and ``-``, at most 64.
        desc: the description the model sees (default: the docstring's first paragraph).
        timeout: seconds after which a call is cancelled and fails with
            :class:`~trio_dspy.errors.ToolTimeoutError` (only this call).
        blocking: for a sync function, whether it may block (default ``True``) (then it runs in a
            worker thread via ``trio.to_thread.run_sync``). Mark quick, pure
            functions ``blocking=False`` to call them inline. Ignored for async
            functions, which are awaited.
        guardrails: checks of each call's arguments, run (concurrently) after
            they are validated and before the function (see
            :mod:`trio_dspy.guardrails`; each receives the arguments as
            keywords). A trip raises :class:`~trio_dspy.errors.GuardrailTripped`
            (stage ``"tool"``) and the function is not called: inside an agent
            it becomes the observation, or ends the run when the verdict was
            ``td.GuardrailResult(tripped=True, halt=True)``.
        requires_approval: whether each call waits for a person's approval
            (see :mod:`trio_dspy.journal.approval`): the ``approver`` of
            ``td.context`` decides inline; inside ``td.durable`` the run stops
            with :class:`~trio_dspy.errors.ApprovalRequired` until a decision
            is recorded in its journal. A denied call raises
            :class:`~trio_dspy.errors.ToolDenied` (an agent's observation).

    A sync function running in a thread cannot be interrupted: when its call
    is cancelled (timeout or an enclosing cancel scope) the thread is left to
    finish on its own and its result is discarded.

    Raises:
        SignatureError: a parameter has an unsupported type, the function
            takes ``*args``/``**kwargs``, or the name is not one a model can
            call (a lambda without ``name=``).
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        name: str | None = None,
        desc: str | None = None,
        *,
        timeout: float | None = None,
        blocking: bool | None = None,
        guardrails: Sequence[Callable[..., Any]] = (),
        requires_approval: bool | None = None,
    ) -> None:
        self.guardrails: tuple[Callable[..., Any], ...] = tuple(guardrails)
        self.requires_approval = bool(
            getattr(fn, "requires_approval", False)
            if requires_approval is None
            else requires_approval
        )
        if isinstance(fn, Tool):  # re-wrapping keeps the guardrails too
            self.guardrails = self.guardrails or fn.guardrails
        if isinstance(fn, Tool):  # re-wrapping keeps what was not overridden
            name = name or fn.name
            _check_name(name)
            self._set(
                fn.fn,
                name,
                desc if desc is not None else fn.desc,
                (fn.args, fn.parameters),
                fn.timeout if timeout is None else timeout,
                fn.blocking if blocking is None else blocking,
                fn.is_async,
            )
            return
        from .module import Module

        if isinstance(fn, Module):
            self._set_module(fn, name, desc, timeout)
            return
        target = introspectable(fn)
        name = name or str(getattr(target, "__name__", type(fn).__name__))
        _check_name(name)
        summary, arg_docs = parse_docstring(inspect.getdoc(target) or "")
        # Where the function was defined: annotations (under `from __future__
        # import annotations`) may name classes local to that scope.
        args, untyped = arguments_of(fn, target, name, arg_docs, caller_locals())
        if untyped:
            warnings.warn(
                f"tool {name}: argument(s) {', '.join(untyped)} have no type hint, so "
                "the model may send any JSON value; annotate them to have arguments checked",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
        self._set(
            fn,
            name,
            desc if desc is not None else summary,
            (args, schema_of(args)),
            timeout,
            True if blocking is None else blocking,
            inspect.iscoroutinefunction(target),
        )

    def _set_module(
        self, module: Any, name: str | None, desc: str | None, timeout: float | None
    ) -> None:
        """Make this the tool of a module (see :mod:`trio_dspy.modules.module_tool`)."""
        from .module_tool import ModuleTool, module_arguments

        name = name or type(module).__name__
        _check_name(name)
        described = module_arguments(module)
        if described is None:  # no signature: the forward method's parameters
            args, _ = arguments_of(module.forward, module.forward, name, {}, caller_locals())
            summary = parse_docstring(inspect.getdoc(module.forward) or "")[0]
        else:
            fields, summary = described
            args = {n: Argument(n, hint, attrs.NOTHING, doc) for n, hint, doc in fields}
        call = ModuleTool(module)
        self._set(
            call,
            name,
            desc if desc is not None else summary,
            (args, schema_of(args)),
            timeout,
            False,
            True,
        )

    def _set(
        self,
        fn: Callable[..., Any],
        name: str,
        desc: str,
        arguments: tuple[dict[str, Argument], dict[str, Any]],
        timeout: float | None,
        blocking: bool,
        is_async: bool,
    ) -> None:
        """Every attribute of a tool; ``arguments`` is ``(args, JSON schema)``."""
        self.fn: Callable[..., Any] = fn
        self.name: str = name
        self.desc: str = desc
        self.args: dict[str, Argument] = arguments[0]
        self.parameters: dict[str, Any] = arguments[1]
        self.timeout: float | None = timeout
        self.blocking: bool = blocking
        self.is_async: bool = is_async

    @classmethod
    def from_mcp(
        cls, session: ClientSession, tool: McpTool, *, timeout: float | None = 300.0
    ) -> Tool:
        """A tool that calls ``tool``, listed by an MCP server, through ``session``.

        Needs the ``mcp`` extra (``pip install 'trio_dspy[mcp]'``). The name,
        description and argument schema are the server's (``tool.input_schema``
        is sent to the model as is; a name a model cannot call has its other
        characters replaced by ``_``). Arguments are checked for what the
        schema requires before the request; the server checks the rest.

        A call returns the result's structured content when there is some,
        else its content as text (text joined; images, audio and resources
        described in a line each). It raises :class:`~trio_dspy.errors.ToolError`
        for an error result, an MCP error or a result that is not valid MCP,
        which an agent shows the model.
        Cancelling a call cancels its request on the server. The session is
        yours: the tool works while it is open (see :mod:`trio_dspy.mcp` for
        context managers that open one for you).

        Args:
            session: an initialised ``mcp.ClientSession``.
            tool: one of the ``tools`` its ``list_tools()`` returned.
            timeout: seconds after which a call is cancelled (on the server
                too) and fails with :class:`~trio_dspy.errors.ToolTimeoutError`;
                by default :data:`trio_dspy.mcp.CALL_TIMEOUT` (300 s), since an
                answer the SDK cannot read is dropped and would be waited for
                forever; ``None`` for no bound.

        Raises:
            ImportError: the ``mcp`` package is not installed.
        """
        from .mcp_call import McpCall, model_name

        made = cls.__new__(cls)
        made.guardrails = ()
        made.requires_approval = False
        schema = dict(tool.input_schema)
        schema.setdefault("properties", {})
        arguments = (schema_arguments(schema), schema)
        call, desc = McpCall(session, tool.name), tool.description or tool.title or ""
        made._set(call, model_name(tool.name), desc, arguments, timeout, False, True)
        return made

    def spec(self) -> ToolSpec:
        """The definition sent to models that call tools natively."""
        return ToolSpec(self.name, self.desc, self.parameters)

    def validate(self, arguments: str | Mapping[str, Any] | None) -> dict[str, Any]:
        """Parse (JSON text or a dict) and structure the arguments to their types.

        Raises:
            ToolArgumentError: not a JSON object, an unknown or missing argument,
                or a value that does not fit its type (the message names it).
        """
        data: Any = arguments if arguments is not None else {}
        if isinstance(data, str):
            try:
                data = loads_json(data) if data.strip() else {}
            except ValueError as exc:
                raise self._arg_error(f"arguments are not valid JSON ({exc})") from None
        if not isinstance(data, Mapping):
            raise self._arg_error(f"arguments must be a JSON object, got {data!r}")
        unknown = [k for k in data if k not in self.args]
        # A schema that does not forbid other properties (an MCP server's may
        # not) lets them through, as Any.
        if unknown and self.parameters.get("additionalProperties", True) is False:
            raise self._arg_error(
                f"unknown argument(s) {', '.join(map(str, unknown))}; "
                f"expected {', '.join(self.args) or 'none'}"
            )
        missing = [a.name for a in self.args.values() if a.required and a.name not in data]
        if missing:
            raise self._arg_error(f"missing required argument(s) {', '.join(missing)}")
        values: dict[str, Any] = {}
        for key, raw in data.items():
            try:
                arg = self.args.get(key)
                values[key] = structure(raw, Any if arg is None else arg.annotation, path=key)
            except StructuringError as exc:
                raise self._arg_error(str(exc)) from None
        return values

    def _arg_error(self, reason: str) -> ToolArgumentError:
        return ToolArgumentError(f"invalid arguments for {self.name}: {reason}", tool=self.name)

    async def __call__(self, **kwargs: Any) -> Any:
        """Validate ``kwargs`` and call the function (see :meth:`acall`)."""
        return await self.acall(kwargs)

    async def acall(
        self, arguments: str | Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> Any:
        """Validate the arguments, then run the function and return its result.

        The arguments are one JSON object (text or a mapping), as a model
        sends them, or keywords, as DSPy's ``tool.acall(**kwargs)`` takes them.
        Inside :func:`~trio_dspy.streamify` with a status message provider,
        the provider's tool start and end lines are sent, as DSPy's are for a
        tool called from a program's ``forward``.

        Raises:
            TypeError: both a JSON object and keywords were given.
            ToolArgumentError: invalid arguments (the function is not called).
            GuardrailTripped: a guardrail tripped (the function is not called).
            ApprovalRequired: the tool needs approval and no approver is set.
            ToolDenied: the approver denied the call (the function is not called).
            ToolTimeoutError: the call took longer than ``timeout``.
            Exception: whatever the function raises.
            RuntimeError: not running under ``trio.run``.
        """
        await entered()
        if kwargs:
            if arguments is not None:
                raise TypeError(
                    f"{self.name}.acall takes its arguments as one object or as keywords, not both"
                )
            arguments = kwargs
        values = self.validate(arguments)
        if not heard():  # no streamed run listens: no status lines to write
            return await self._guarded_run(values)
        await tool_status(self, values, None)
        result = await self._guarded_run(values)
        await tool_status(self, values, None, outputs=result)
        return result

    async def agent_call(self, arguments: str | Mapping[str, Any] | None) -> Any:
        """:meth:`acall` without the status lines: for an agent, which writes its own.

        Raises:
            ToolArgumentError: invalid arguments (the function is not called).
            GuardrailTripped: a guardrail tripped (the function is not called).
            ToolTimeoutError: the call took longer than ``timeout``.
            Exception: whatever the function raises.
        """
        await entered()
        return await self._guarded_run(self.validate(arguments))

    async def _guarded_run(self, values: dict[str, Any]) -> Any:
        """Run the function on validated ``values``: guardrails first, within ``timeout``."""
        if self.guardrails:
            from ..guardrails import check_guardrails

            await check_guardrails(self.guardrails, "tool", values)
        if self.requires_approval:
            from ..journal.approval import approve

            await approve(self, values)
        if self.timeout is None:
            return await self._run(values)
        # A call that reports progress (an MCP server's notifications) pushes
        # its deadline back, within MAX_EXTENSION times the timeout.
        with trio.move_on_after(self.timeout) as scope, extendable(scope, self.timeout):
            return await self._run(values)
        assert scope.cancelled_caught
        advice = getattr(self.fn, "timeout_advice", None) or (
            "wait longer with td.Tool(fn, timeout=SECONDS)"
        )
        raise ToolTimeoutError(
            f"tool {self.name} timed out after {self.timeout:g}s; {advice}", tool=self.name
        )

    async def _run(self, values: dict[str, Any]) -> Any:
        if self.is_async:
            return await typing.cast(Callable[..., Awaitable[Any]], self.fn)(**values)
        if not self.blocking:
            return self.fn(**values)
        call = functools.partial(self.fn, **values)
        return await trio.to_thread.run_sync(call, abandon_on_cancel=True)

    td_input_only = True

    def td_unstructure(self) -> str:
        """The tool as an input field shows it: name, description, arguments (DSPy's text)."""
        desc = f", whose description is <desc>{self.desc}</desc>.".replace("\n", "  ")
        args = self.parameters.get("properties", {})
        return f"{self.name}{desc if self.desc else '.'} It takes arguments {args}."

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"


def _check_name(name: str) -> None:
    if not _VALID_NAME.fullmatch(name):
        what = "a lambda has no name" if name == "<lambda>" else f"{name!r} is not a name"
        raise SignatureError(
            f"tool {name}: {what} a model can call (letters, digits, _ and -, at "
            "most 64): give it one with Tool(fn, name='check_menu')"
        )


def ensure_tool(tool: Tool | Callable[..., Any]) -> Tool:
    """Wrap plain functions; pass tools through."""
    return tool if isinstance(tool, Tool) else Tool(tool)


# A data: URL's payload, as an image a tool returns is written in its JSON.
_DATA_PAYLOAD = re.compile(r"(data:[\w.+-]+/[\w.+-]+(?:;[\w=.+-]+)*,)([^\"\s]+)")


def format_observation(value: Any) -> str:
    """A tool result as text for the model: strings as is, the rest as JSON.

    An image in the result (a ``td.Image`` returned by the tool) is shown as
    its URL without the base64 payload, ``data:image/png;base64,<N chars>``:
    an observation is text, and megabytes of base64 would fill the prompt,
    the history and traced spans without the model seeing a picture.
    """
    if isinstance(value, str):
        return value
    try:
        text = json.dumps(unstructure(value), ensure_ascii=False, default=repr)
    except Exception:
        text = repr(value)
    if "data:" in text:
        text = _DATA_PAYLOAD.sub(lambda m: f"{m.group(1)}<{len(m.group(2))} chars>", text)
    return text
