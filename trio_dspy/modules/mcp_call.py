"""Calling one tool of an MCP server: the request, its errors, its result as a value.

:meth:`Tool.from_mcp <trio_dspy.Tool.from_mcp>` wraps a :class:`McpCall`; this
module imports the MCP SDK, so it is imported only when an MCP tool is made.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from ..errors import ToolError
from ..unicode import clean_json, clean_text
from .tool_deadline import current_deadlines, extend

try:
    import mcp.types as types
    import pydantic
    from mcp import ClientSession
    from mcp.shared.exceptions import MCPError
except ImportError as exc:  # pragma: no cover - exercised with the SDK hidden
    raise ImportError(
        f"MCP tools need the MCP SDK ({exc}): pip install 'trio_dspy[mcp]'", name="mcp"
    ) from exc

__all__ = ["McpCall", "describe_result", "model_name"]

# Characters a model's function name may not hold (OpenAI, Anthropic: [A-Za-z0-9_-]{1,64}).
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_-]")


def model_name(name: str) -> str:
    """``name`` as a model can call it: other characters become ``_``, at most 64."""
    return _NOT_IN_NAME.sub("_", name)[:64] or "_"


class McpCall:
    """Calls the server's tool ``name`` through ``session`` until :meth:`close`.

    The session is referenced, never owned: whoever opened it closes it.
    ``server`` names the server in messages; ``connected``, when known, says
    whether the session's connection is still open (see :meth:`__call__`).
    """

    def __init__(self, session: ClientSession, name: str) -> None:
        self._session: ClientSession | None = session
        self.name = name
        self.server = "the MCP server"
        self.connected: Callable[[], bool] | None = None

    @property
    def timeout_advice(self) -> str:
        """What a :class:`~trio_dspy.errors.ToolTimeoutError` of this tool adds to its message."""
        return (
            f"{self.server} did not answer or report progress in that time (each progress "
            "report gives it the timeout again, up to ten times in all), and the call was "
            "cancelled on the server; wait "
            "longer with call_timeout=SECONDS on td.mcp.stdio(...) or td.mcp.http(...) "
            "(timeout=SECONDS on Tool.from_mcp), or for this tool with "
            "td.Tool(tool, timeout=SECONDS)"
        )

    def close(self) -> None:
        """Forget the session: later calls raise a :class:`ToolError` saying it closed."""
        self._session = None

    async def __call__(self, **arguments: Any) -> Any:
        """Call the tool; return structured content if any, else the content as text.

        Text in the result has each lone surrogate replaced by U+FFFD.

        Raises:
            ToolError: the session closed, the server answered with an error
                result or an MCP error (the message is the server's), or with
                a result that is not valid MCP (the message names the tool).
        """
        session = self._session
        if session is None:
            raise ToolError(
                f"tool {self.name}: its MCP session has closed; call MCP tools inside "
                "the `async with td.mcp.stdio(...)` (or `td.mcp.http(...)`) block that "
                "listed them",
                tool=self.name,
            )
        deadlines = current_deadlines()  # the report arrives in the session's own task

        async def progressed(progress: float, total: float | None, message: str | None) -> None:
            extend(deadlines)  # the server is still working: give it its timeout again

        try:
            result = await session.call_tool(
                self.name, arguments, progress_callback=progressed if deadlines else None
            )
        except MCPError as exc:
            if exc.code == types.CONNECTION_CLOSED and self._closed(exc):
                raise ToolError(
                    f"tool {self.name}: the MCP server's connection is closed", tool=self.name
                ) from None
            message = clean_text(str(exc.message))
            raise ToolError(f"MCP error {exc.code}: {message}", tool=self.name) from None
        except pydantic.ValidationError as exc:
            raise self._malformed(_first_problem(exc)) from None
        except (ValueError, RuntimeError) as exc:  # the SDK's checks of the result
            raise self._malformed(clean_text(str(exc))[:200]) from None
        if not isinstance(result, types.CallToolResult):  # pragma: no cover - the SDK checks
            raise self._malformed(f"a {type(result).__name__}")
        if result.is_error:
            text = clean_text(describe_result(result))
            raise ToolError(text or "the tool failed", tool=self.name)
        if result.structured_content is not None:
            return clean_json(result.structured_content)
        return clean_text(describe_result(result))

    def _closed(self, error: MCPError) -> bool:
        """Whether ``error`` (coded ``CONNECTION_CLOSED``) is the SDK's, not the server's.

        The SDK uses the code -32000 for a connection that has ended, and so
        may a live server for an error of its own. With ``connected`` the
        connection's state decides; without it (a session of the caller's
        own), the SDK's exact message does.
        """
        if self.connected is not None:
            return not self.connected()
        return error.message == "Connection closed"

    def _malformed(self, problem: str) -> ToolError:
        return ToolError(
            f"tool {self.name}: {self.server} answered with a result that is not valid MCP "
            f"({problem})",
            tool=self.name,
        )

    def __repr__(self) -> str:
        return f"McpCall({self.name!r})"


def describe_result(result: types.CallToolResult) -> str:
    """The result's content as text: text as is, anything else described in a line."""
    parts = [_describe(block) for block in result.content]
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(parts)


def _first_problem(error: pydantic.ValidationError) -> str:
    """The first problem ``error`` found, and how many more (never the value itself)."""
    problems = error.errors(include_url=False, include_input=False)
    first = problems[0] if problems else {"loc": (), "msg": "invalid"}
    where = ".".join(map(str, first["loc"])) or "result"
    more = f", and {len(problems) - 1} more" if len(problems) > 1 else ""
    return clean_text(f"{where}: {first['msg']}{more}")


def _describe(block: types.ContentBlock) -> str:
    if isinstance(block, types.TextContent):
        return block.text
    if isinstance(block, types.ImageContent | types.AudioContent):
        return f"[{block.type}: {block.mime_type}, {_size(block.data)}]"
    if isinstance(block, types.ResourceLink):
        return f"[resource link: {block.name} <{block.uri}>]"
    resource = block.resource  # an embedded resource
    if isinstance(resource, types.TextResourceContents):
        return resource.text
    mime = resource.mime_type or "binary"
    return f"[resource: {resource.uri}, {mime}, {_size(resource.blob)}]"


def _size(data: str) -> str:
    """The decoded size of base64 ``data`` (counted, not decoded), for a description."""
    data = data.strip()
    return f"{len(data) * 3 // 4 - data[-2:].count('=')} bytes"
