"""What every public async entry point does first: check for trio, then yield.

Trio's rule is that a library's async functions are checkpoints: each one
checks for cancellation and lets other tasks run, even when it has nothing to
wait for (a cached answer, a scripted model, an empty ``gather``). The entry
points (module calls, :meth:`~trio_dspy.lm.base.BaseLM.request`, tool calls,
:func:`~trio_dspy.gather`, evaluation and optimizers' ``compile``) start with
``await entered()``, which also turns the confusing failure of running them
under another event loop (``asyncio.run(program(...))``) into one clear error.

The calls on the hot path (module calls, ``BaseLM.request``) nest: a module
calls a predictor, which calls the model, which waits on a socket. A full
checkpoint at each level is a trip through trio's scheduler per level;
instead they check for cancellation on entry (:func:`entering`, no yield)
and yield on the way out only when nothing inside did (:func:`leaving`),
as trio's own primitives do (``checkpoint_if_cancelled``, then
``cancel_shielded_checkpoint`` when nothing blocked).

This module imports nothing from the package, so any layer may use it.
"""

from __future__ import annotations

import trio

__all__ = ["NOT_UNDER_TRIO", "entered", "entering", "leaving", "require_trio", "yielded_since"]

NOT_UNDER_TRIO = (
    "trio_dspy runs under trio: use trio.run(main) (or an async test runner for "
    "trio such as pytest-trio), not asyncio.run or another event loop"
)


def require_trio() -> None:
    """Raise a clear ``RuntimeError`` unless the caller runs inside ``trio.run``.

    Raises:
        RuntimeError: not inside a trio run (e.g. under ``asyncio.run``).
    """
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        raise RuntimeError(NOT_UNDER_TRIO) from None


async def entered() -> None:
    """Check that trio runs this call, then checkpoint (cancellation and a yield).

    Raises:
        RuntimeError: not inside a trio run.
        trio.Cancelled: the enclosing cancel scope is cancelled.
    """
    require_trio()
    await trio.lowlevel.checkpoint()


async def entering() -> int:
    """Check that trio runs this call and that it is not cancelled; no yield.

    Returns a mark for :func:`leaving`, which yields unless something did in
    between: the pair is a checkpoint, at the cost of one only where the call
    had no other.

    Raises:
        RuntimeError: not inside a trio run.
        trio.Cancelled: the enclosing cancel scope is cancelled.
    """
    try:
        task = trio.lowlevel.current_task()
    except RuntimeError:
        raise RuntimeError(NOT_UNDER_TRIO) from None
    await trio.lowlevel.checkpoint_if_cancelled()
    # trio counts each task's yields (trio.testing.assert_checkpoints reads
    # the count); should a trio lack it, every call yields on the way out.
    points: int = getattr(task, "_schedule_points", -1)
    return points


async def leaving(mark: int) -> None:
    """Yield unless the task has yielded since :func:`entering` returned ``mark``.

    Raises:
        trio.Cancelled: never (the yield is shielded, as trio's own primitives'
            closing yield is: the call's cancellation was checked on entry and
            at each wait inside).
    """
    if not yielded_since(mark):
        await trio.lowlevel.cancel_shielded_checkpoint()


def yielded_since(mark: int) -> bool:
    """Whether the task has yielded since :func:`entering` returned ``mark``: when
    not, ``await leaving(mark)`` yields. A caller on a hot path asks this before
    awaiting, which spares it a coroutine. Raises nothing under trio."""
    return mark >= 0 and getattr(trio.lowlevel.current_task(), "_schedule_points", -1) != mark
