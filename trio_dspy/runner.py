"""``run``: call a program from synchronous code (a script, a notebook cell)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

__all__ = ["run"]

T = TypeVar("T")


def _in_trio() -> bool:
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


def _in_asyncio() -> bool:
    # No asyncio loop can run unless asyncio was imported: don't pay for it.
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def run(program: Callable[..., Awaitable[T]], /, **inputs: Any) -> T:
    """Run ``await program(**inputs)`` in a new ``trio.run`` and return its result.

    ::

        pred = td.run(qa, question="What is 0.1 + 0.2?")

    For scripts and notebooks; inside async code, ``await program(...)``
    instead. ``program`` is a module or any async function.

    Raises:
        RuntimeError: called while a trio run or an asyncio event loop runs in
            this thread (a notebook's cell runs in one: there use
            ``await program(...)``, or ``trio.run`` in another thread).
        Exception: whatever ``program`` raises.
    """
    if _in_trio():
        raise RuntimeError(
            "td.run() was called inside a running trio run: it starts its own "
            "trio.run, which cannot nest; use `await program(**inputs)` there instead"
        )
    if _in_asyncio():
        raise RuntimeError(
            "td.run() was called inside a running asyncio event loop (a notebook cell "
            "runs in one): trio cannot start there; call it in a worker thread, e.g. "
            "`await asyncio.to_thread(td.run, program, **inputs)`"
        )
    return trio.run(functools.partial(program, **inputs))
