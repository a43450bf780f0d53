"""A streamed program read from synchronous code: ``streamify(..., async_streaming=False)``.

DSPy's ``streamify`` can hand a plain generator to code that has no event
loop (``for chunk in stream_program(question=...)``). Here the program runs
in its own ``trio.run`` in a worker thread; the items cross to the caller
through a bounded queue, so a slow reader still slows the program down.
Leaving the loop early (``break``, an error, the generator closed or
collected) cancels the run and waits for its thread to end.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable, Generator
from contextlib import AbstractAsyncContextManager, suppress
from typing import Any

import trio

__all__ = ["sync_stream"]

_ITEM, _ERROR, _END = "item", "error", "end"


def sync_stream(
    open_stream: Callable[..., AbstractAsyncContextManager[Any]], buffer: int
) -> Callable[..., Generator[Any, None, None]]:
    """A function of the program's inputs giving a generator of its stream's items.

    ``open_stream`` is what :func:`~trio_dspy.streamify` returns for async
    code; each call of the result runs it once, in a new ``trio.run`` on a
    worker thread, with the caller's context (``td.context`` settings
    included). The program's own error is raised from the iteration.
    """

    def call(**inputs: Any) -> Generator[Any, None, None]:
        return _iterate(open_stream, inputs, max(buffer, 1), contextvars.copy_context())

    return call


def _iterate(
    open_stream: Callable[..., AbstractAsyncContextManager[Any]],
    inputs: dict[str, Any],
    buffer: int,
    context: contextvars.Context,
) -> Generator[Any, None, None]:
    items: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=buffer)
    handle: dict[str, Any] = {}
    ready = threading.Event()

    async def produce() -> None:
        with trio.CancelScope() as scope:
            handle["token"], handle["scope"] = trio.lowlevel.current_trio_token(), scope
            ready.set()
            try:
                async with open_stream(**inputs) as stream:
                    async for item in stream:
                        await _put(items, (_ITEM, item))
            except Exception as exc:
                await _put(items, (_ERROR, exc))
                return
            await _put(items, (_END, None))

    def run() -> None:
        try:
            context.run(trio.run, produce)
        except BaseException as exc:  # the reader must hear of it, whatever it is
            ready.set()
            items.put((_ERROR, exc))

    thread = threading.Thread(target=run, name="trio_dspy-stream", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = items.get()
            if kind == _END:
                return
            if kind == _ERROR:
                raise value
            yield value
    finally:
        _stop(thread, handle, ready, items)


async def _put(items: queue.Queue[tuple[str, Any]], entry: tuple[str, Any]) -> None:
    """Hand ``entry`` to the reader, waiting in a worker thread while the queue is full
    (cancelled, the wait is given up; :func:`_stop` drains the queue)."""
    try:
        items.put_nowait(entry)
    except queue.Full:
        await trio.to_thread.run_sync(items.put, entry, abandon_on_cancel=True)


def _stop(
    thread: threading.Thread,
    handle: dict[str, Any],
    ready: threading.Event,
    items: queue.Queue[tuple[str, Any]],
) -> None:
    """Cancel the run if it is still going, and wait for its thread to end."""
    ready.wait()
    if thread.is_alive():
        with suppress(trio.RunFinishedError, KeyError):
            trio.from_thread.run_sync(handle["scope"].cancel, trio_token=handle["token"])
    while thread.is_alive():
        # A put given up on cancellation may still wait for room: make it.
        try:
            items.get_nowait()
        except queue.Empty:
            thread.join(0.01)
