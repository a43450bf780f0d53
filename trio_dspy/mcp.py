"""Tools from MCP servers, for agents (extra ``mcp``: ``pip install 'trio_dspy[mcp]'``).

::

    async with td.mcp.stdio("python", args=["weather_server.py"]) as tools:
        agent = td.ReAct("city -> forecast", tools=tools)
        pred = await agent(city="Lisbon")

:func:`stdio` starts a server as a child process and talks to it over its
standard streams; :func:`http` connects to a streamable HTTP endpoint. Both
yield the server's tools (every page of its listing) as :class:`~trio_dspy.Tool`
objects, named, described and with argument schemas as the server lists them.
The connection, its tasks and the child process live exactly as long as the
``async with`` block; a tool called after it raises
:class:`~trio_dspy.errors.ToolError`. To use a session of your own, wrap its
tools with :meth:`Tool.from_mcp <trio_dspy.Tool.from_mcp>`.

Nothing waits forever: the handshake (``initialize`` and the listing) is
bounded by ``handshake_timeout`` (:data:`HANDSHAKE_TIMEOUT`, 60 s) and
fails with :class:`~trio_dspy.errors.ConfigurationError`; each tool call
by ``call_timeout`` (:data:`CALL_TIMEOUT`, 300 s), after which it is
cancelled on the server and fails with
:class:`~trio_dspy.errors.ToolTimeoutError`. ``None`` lifts a bound; one
tool's bound is set with ``td.Tool(tool, timeout=seconds)``. A server that
answers with something the SDK cannot read would otherwise be waited for
forever: the SDK drops such a message.

The MCP SDK is built on anyio and runs under trio. It is imported when a
session opens, so ``td.mcp`` (and ``from trio_dspy import *``) work without
it; :func:`stdio` and :func:`http` then say which extra to install.
"""

from __future__ import annotations

import contextvars
import importlib
import math
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import trio

from .checkpoint import entered
from .errors import ConfigurationError
from .modules.tool import Tool
from .unicode import clean_text

if TYPE_CHECKING:
    import mcp.types as types
    from mcp import ClientSession
    from mcp.client._transport import ReadStream, TransportStreams
    from mcp.shared.message import SessionMessage

__all__ = ["CALL_TIMEOUT", "HANDSHAKE_TIMEOUT", "http", "stdio"]

# Seconds for the handshake: the TypeScript SDK's default request timeout,
# which leaves a server started with `npx` or `uvx` time to install itself.
HANDSHAKE_TIMEOUT = 60.0
# Seconds for one tool call: the read timeout the SDK gives a streamable HTTP
# response, so a call is bounded alike over stdio; long enough for a tool
# that browses or computes, short enough that a lost answer is noticed.
CALL_TIMEOUT = 300.0


@asynccontextmanager
async def stdio(
    command: str,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    *,
    handshake_timeout: float | None = HANDSHAKE_TIMEOUT,
    call_timeout: float | None = CALL_TIMEOUT,
) -> AsyncIterator[list[Tool]]:
    """Start ``command args...`` as an MCP server over stdio; yield its tools.

    Args:
        command: the server's executable (looked up on ``PATH``).
        args: its arguments.
        env: environment variables for the server, over a minimal inherited
            set (``PATH``, ``HOME``, ``USER``, ...): the rest of this process's
            environment, API keys included, is not passed on.
        handshake_timeout: seconds for the server to start, answer
            ``initialize`` and list its tools (``None``: no bound).
        call_timeout: seconds for each tool call (``None``: no bound).

    The server's standard error goes to this process's. The server leads a
    process group of its own, and so do the processes it starts: when the block
    ends, however it ends, the server's stdin is closed, it has two seconds
    to exit, and then the whole group is terminated (``SIGTERM``, and
    ``SIGKILL`` two seconds later for what is left), so no process the server
    started outlives the block (one that left the group on purpose aside).

    Raises:
        ConfigurationError: the server could not be started, or did not
            answer the MCP handshake in time (its standard error says why).
        ToolError: (from a tool) the call failed; see :meth:`Tool.from_mcp`.
        ToolTimeoutError: (from a tool) the call took longer than ``call_timeout``.
    """
    await entered()
    _require_sdk()
    what = f"the MCP server {clean_text(command)!r}"
    transport: AbstractAsyncContextManager[TransportStreams]
    if sys.platform == "win32":  # pragma: no cover - no process groups; the SDK uses a Job Object
        from mcp import StdioServerParameters
        from mcp.client.stdio import stdio_client

        params = StdioServerParameters(command=command, args=list(args), env=dict(env or {}))
        transport = stdio_client(params)
    else:
        from .mcp_stdio import stdio_transport

        transport = stdio_transport(command, args, env or {})
    async with _tools(transport, what, handshake_timeout, call_timeout) as tools:
        yield tools


@asynccontextmanager
async def http(
    url: str,
    headers: Mapping[str, str] | None = None,
    *,
    handshake_timeout: float | None = HANDSHAKE_TIMEOUT,
    call_timeout: float | None = CALL_TIMEOUT,
) -> AsyncIterator[list[Tool]]:
    """Connect to the streamable HTTP MCP endpoint ``url``; yield its tools.

    Args:
        url: the endpoint, e.g. ``"https://example.com/mcp"``.
        headers: sent with every request (e.g. ``{"Authorization": "Bearer ..."}``);
            they are secrets to this library: never logged, traced or shown.
            Put credentials here rather than in the URL's query: this library
            shows only the URL's scheme, host and port, but the MCP SDK and
            httpx log whole URLs at ``INFO``/``DEBUG``.
        handshake_timeout: seconds to connect, answer ``initialize`` and list
            the tools (``None``: no bound).
        call_timeout: seconds for each tool call (``None``: no bound).

    When the block ends the session is ended on the server (``DELETE``) and
    the connections are closed.

    Raises:
        ConfigurationError: the endpoint could not be reached or did not
            answer the MCP handshake in time.
        ToolError: (from a tool) the call failed; see :meth:`Tool.from_mcp`.
        ToolTimeoutError: (from a tool) the call took longer than ``call_timeout``.
    """
    await entered()
    _require_sdk()
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    what = f"the MCP endpoint {_origin(url)}"

    # The SDK's own defaults: a server may hold a response stream open a while.
    client = httpx2.AsyncClient(
        headers=dict(headers or {}), timeout=httpx2.Timeout(30.0, read=300.0)
    )
    async with client:
        transport = streamable_http_client(url, http_client=client)
        async with _tools(transport, what, handshake_timeout, call_timeout, url=url) as tools:
            yield tools


@asynccontextmanager
async def _tools(
    transport: AbstractAsyncContextManager[TransportStreams],
    what: str,
    handshake_timeout: float | None,
    call_timeout: float | None,
    *,
    url: str | None = None,
) -> AsyncIterator[list[Tool]]:
    """Open a session over ``transport``, list the tools, close them with the block.

    ``what`` names the server in messages; the timeouts are
    :func:`stdio`'s and :func:`http`'s; ``url``, the endpoint's, is kept
    out of messages.

    The SDK's task groups are trio nurseries that wrap whatever crosses them
    in exception groups; what the block (or the handshake) raised comes out
    as itself.
    """
    from mcp import ClientSession

    from .modules.mcp_call import McpCall

    raised: BaseException | None = None
    reraise: BaseException | None = None
    opened = False
    try:
        async with transport as (stream, write):
            read = _ReadStream(stream)
            async with ClientSession(read, write) as session:
                tools: list[Tool] = []
                try:
                    tools = await _list_tools(session, read, what, handshake_timeout, call_timeout)
                    opened = True
                    yield tools
                except BaseException as exc:
                    raised = exc
                    raise
                finally:
                    for tool in tools:
                        if isinstance(tool.fn, McpCall):
                            tool.fn.close()
    except BaseExceptionGroup as group:
        failure = _first_failure(group)
        if raised is not None and _only(group, raised):
            reraise = raised
        elif not opened and failure is not None:
            # The transport's task failed (say, nothing listens at the URL).
            reason = _scrub(clean_text(str(failure)), url)
            message = f"cannot open {what}: {type(failure).__name__}: {reason}"
            raise ConfigurationError(message) from group
        else:
            raise
    except OSError as exc:  # spawning the process (before any task group)
        if raised is not None:
            raise
        raise ConfigurationError(f"cannot start {what}: {exc}") from exc
    if reraise is not None:
        # Raised here, outside the handler, so the group is not its context.
        try:
            raise reraise
        finally:
            reraise = raised = None


def _require_sdk() -> None:
    """Import the SDK's side of MCP tools.

    Raises:
        ImportError: the SDK is not installed (the message names the extra).
    """
    # The module raises the ImportError that says what to do.
    importlib.import_module(".modules.mcp_call", __package__)


async def _list_tools(
    session: ClientSession,
    read: _ReadStream,
    what: str,
    handshake_timeout: float | None,
    call_timeout: float | None,
) -> list[Tool]:
    """The tools of ``session``'s server, once it has answered the handshake in time.

    Raises:
        ConfigurationError: the server failed the handshake or took longer.
    """
    from .modules.mcp_call import McpCall

    bound = math.inf if handshake_timeout is None else handshake_timeout
    with trio.move_on_after(bound) as scope:
        listed = await _handshake(session, what)
    if scope.cancelled_caught:
        raise ConfigurationError(
            f"{what} did not answer the MCP handshake within {bound:g}s; check that it "
            "is an MCP server, and its error output, or wait longer with "
            "handshake_timeout=SECONDS"
        )
    tools = []
    for listing in listed:
        tool = Tool.from_mcp(session, listing, timeout=call_timeout)
        assert isinstance(tool.fn, McpCall)
        tool.fn.server = what
        tool.fn.connected = read.is_open
        tools.append(tool)
    return tools


async def _handshake(session: ClientSession, what: str) -> list[types.Tool]:
    """Initialise ``session`` and list every page of its tools.

    Raises:
        ConfigurationError: the server failed the handshake or the listing, or
            answered it with something that is not MCP.
    """
    import mcp.types as types
    from mcp.shared.exceptions import MCPError

    listed: list[types.Tool] = []
    try:
        await session.initialize()
        cursor: str | None = None
        while True:
            page = await session.list_tools(
                params=None if cursor is None else types.PaginatedRequestParams(cursor=cursor)
            )
            listed.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
    except MCPError as exc:
        reason = exc.message
    except (ValueError, RuntimeError) as exc:  # a malformed answer, an unknown version
        reason = f"{type(exc).__name__}: {_first_line(exc)}"
    else:
        return listed
    raise ConfigurationError(
        f"{what} did not answer the MCP handshake ({clean_text(reason)}); check that it is "
        "an MCP server, and its error output"
    ) from None


def _first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, at most 200 characters."""
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else ""


class _ReadStream:
    """A transport's read stream as the session reads it, noting when it ends.

    The SDK fails every request with ``CONNECTION_CLOSED`` (-32000) once its
    read stream has ended, and a live server may send the same code for an
    error of its own: :meth:`is_open` tells the two apart.
    """

    def __init__(self, inner: ReadStream[SessionMessage | Exception]) -> None:
        self._inner = inner
        self._ended = False

    def is_open(self) -> bool:
        """Whether the stream has neither ended nor been closed."""
        return not self._ended

    @property
    def last_context(self) -> contextvars.Context | None:
        """The sender's context of the last item, where the transport keeps it."""
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> SessionMessage | Exception:
        """The next item.

        Raises:
            anyio.EndOfStream: the transport has closed it.
            anyio.ClosedResourceError: the session has closed it.
        """
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._ended = True
            raise

    async def aclose(self) -> None:
        """Close the stream (the session is done with it)."""
        self._ended = True
        await self._inner.aclose()

    def __aiter__(self) -> _ReadStream:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> _ReadStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _first_failure(group: BaseExceptionGroup[Any]) -> Exception | None:
    """The first plain exception (not a cancellation) in ``group``, through nested groups."""
    failure: Exception | None = group.split(Exception)[0]
    while isinstance(failure, ExceptionGroup):
        failure = failure.exceptions[0]
    return failure


def _only(group: BaseExceptionGroup[Any], exc: BaseException) -> bool:
    """Whether ``group`` holds ``exc`` and nothing else, through nested groups."""
    inner: BaseException = group
    while isinstance(inner, BaseExceptionGroup) and len(inner.exceptions) == 1:
        inner = inner.exceptions[0]
        if inner is exc:
            return True
    return False


def _origin(url: str) -> str:
    """Scheme, host and port of ``url``: never its path or query, which may hold a token.

    Raises:
        ConfigurationError: the host or port of ``url`` cannot be read.
    """
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # its message may quote the URL
        raise ConfigurationError(
            "td.mcp.http: the endpoint's URL is not valid (its host or port cannot be read); "
            'pass one like "https://example.com/mcp"'
        ) from None
    return f"{parts.scheme}://{parts.hostname}{f':{port}' if port else ''}"


def _scrub(text: str, url: str | None) -> str:
    """``text`` without ``url``, its query or its password (a library's message may quote them)."""
    if not url:
        return text
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    text = text.replace(url, _origin(url))
    for secret in (parts.query, parts.password, parts.fragment):
        if secret and len(secret) > 3:  # shorter, it is no secret, and too common to replace
            text = text.replace(secret, "...")
    return text
