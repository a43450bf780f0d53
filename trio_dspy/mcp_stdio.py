"""The transport under :func:`~trio_dspy.mcp.stdio`: a server process and all it starts.

The server is started as the leader of a new session, so every process it
starts (and they start) shares its process group, unless one leaves it on
purpose. However the block ends (normally, with an error, or cancelled), the
transport closes the server's stdin and waits :data:`GRACE` seconds for it to
exit, as the MCP specification asks; then it ends the whole group, exited
server or not: ``SIGTERM``, and ``SIGKILL`` for whatever is left after another
:data:`GRACE` seconds. (The SDK's own stdio transport signals the group only
when the server outlives its stdin, so a server that exits at once leaves its
children running.) Every wait is bounded and shielded from cancellation.

Lines the server writes are decoded as UTF-8 (invalid bytes, and lone
surrogates, become U+FFFD) and read as JSON-RPC messages; a line that is
not one reaches the session as an exception, which it ignores, as over the
SDK's transport.

POSIX only: on Windows :func:`~trio_dspy.mcp.stdio` uses the SDK's
transport, which puts the server in a Job Object.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING

import anyio
import trio

from .types.text import loads_json
from .unicode import clean_json, has_surrogate_escape

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
    from mcp.client._transport import TransportStreams
    from mcp.shared.message import SessionMessage

__all__ = ["GRACE", "stdio_transport"]

# Seconds the server has to exit after its stdin closes, and the group after
# SIGTERM (the SDK's values).
GRACE = 2.0
# Seconds between checks that a process (group) has exited.
_POLL = 0.01


@asynccontextmanager
async def stdio_transport(
    command: str, args: Sequence[str], env: Mapping[str, str]
) -> AsyncIterator[TransportStreams]:
    """Start ``command args...`` in a new process group; yield the session's streams.

    ``env`` is laid over the SDK's minimal inherited environment. The
    server's standard error is this process's.

    Raises:
        OSError: the process could not be started.
    """
    from mcp.client.stdio import get_default_environment
    from mcp.shared.message import SessionMessage

    process = await trio.lowlevel.open_process(
        [command, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=get_default_environment() | dict(env),
        start_new_session=True,
    )
    # From here on nothing may await outside the try: a cancellation there
    # would leave the process running.
    try:
        to_session, read = anyio.create_memory_object_stream[SessionMessage | Exception](0)
        write, from_session = anyio.create_memory_object_stream[SessionMessage](0)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_read_stdout, process, to_session)
            nursery.start_soon(_write_stdin, process, from_session, to_session)
            try:
                yield read, write
            finally:
                nursery.cancel_scope.cancel()
                for stream in (read, write, to_session, from_session):
                    stream.close()
    finally:
        with trio.CancelScope(shield=True):
            await _end(process)


async def _read_stdout(
    process: trio.Process, to_session: MemoryObjectSendStream[SessionMessage | Exception]
) -> None:
    """Hand each line of the server's stdout to the session; close it at the end of stdout."""
    assert process.stdout is not None
    # The partial line so far; a chunk is searched for newlines on its own, so
    # a long line costs its length, not its length squared.
    partial = bytearray()
    with to_session, suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        while chunk := await process.stdout.receive_some():
            start = 0
            while (end := chunk.find(b"\n", start)) >= 0:
                partial += chunk[start:end]
                line, start = bytes(partial), end + 1
                partial.clear()
                try:
                    await to_session.send(_message(line))
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return  # the session has gone
            partial += chunk[start:]


def _message(line: bytes) -> SessionMessage | Exception:
    """One line of the server's as a JSON-RPC message, or the exception that says why not.

    Lone surrogates become U+FFFD: pydantic's JSON parser refuses their
    escapes (which would drop the whole message), so such a line is read by
    Python's and cleaned before it is validated.
    """
    from mcp.shared.message import SessionMessage
    from mcp_types import jsonrpc_message_adapter

    text = line.decode("utf-8", "replace")
    try:
        if has_surrogate_escape(line):
            data = clean_json(loads_json(text))
            return SessionMessage(jsonrpc_message_adapter.validate_python(data, by_name=False))
        return SessionMessage(jsonrpc_message_adapter.validate_json(text, by_name=False))
    except ValueError as exc:  # not a JSON-RPC message; the session drops it
        return exc


async def _write_stdin(
    process: trio.Process,
    from_session: MemoryObjectReceiveStream[SessionMessage],
    to_session: MemoryObjectSendStream[SessionMessage | Exception],
) -> None:
    """Write each message of the session to the server's stdin, a line each."""
    assert process.stdin is not None
    try:
        with from_session:
            async for message in from_session:
                line = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                await process.stdin.send_all(line.encode("utf-8", "replace") + b"\n")
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        # The server stopped reading: end the session's reading too, so that a
        # request waiting for an answer learns the connection is closed.
        to_session.close()


async def _end(process: trio.Process) -> None:
    """Close the server's stdin, give it :data:`GRACE`, then end its process group.

    Runs shielded; every wait is bounded.
    """
    assert process.stdin is not None and process.stdout is not None
    with suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        await process.stdin.aclose()
    async with trio.open_nursery() as nursery:
        # A server blocked writing to a full pipe could not see its stdin close.
        nursery.start_soon(_drain, process.stdout)
        with trio.move_on_after(GRACE):
            await process.wait()
        _signal_group(process.pid, signal.SIGTERM)
        with trio.move_on_after(GRACE) as scope:
            while _group_alive(process):  # noqa: ASYNC110 - no event says a group has gone
                await trio.sleep(_POLL)
        if scope.cancelled_caught:
            _signal_group(process.pid, signal.SIGKILL)
            with trio.move_on_after(GRACE):
                await process.wait()
        nursery.cancel_scope.cancel()
    with suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        await process.stdout.aclose()


async def _drain(stdout: trio.abc.ReceiveStream) -> None:
    """Read and drop what is left on the server's stdout."""
    with suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        while await stdout.receive_some():
            pass


def _signal_group(pgid: int, signum: int) -> None:
    """Send ``signum`` to process group ``pgid``; a group already gone is fine.

    ``pgid`` is the leader's pid (it started a new session): never looked up
    with ``getpgid``, which fails once the leader has been reaped.
    """
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _group_alive(process: trio.Process) -> bool:
    """Whether any process of the server's group is left (its leader reaped if it exited)."""
    process.poll()  # reaps an exited leader, which would otherwise keep the group
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member we may not signal: it is there all the same
        return True
    return True
