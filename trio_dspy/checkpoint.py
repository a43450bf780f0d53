"""What every public async entry point does first: check for trio, then yield.

Trio's rule is that a library's async functions are checkpoints: each one
checks for cancellation and lets other tasks run, even when it has nothing to
wait for (a cached answer, a scripted model, an empty ``gather``). The entry
points (module calls, :meth:`~trio_dspy.lm.base.BaseLM.request`, tool calls,
:func:`~trio_dspy.gather`, evaluation and optimizers' ``compile``) start with
``await entered()``, which also turns the confusing failure of running them
under another event loop (``asyncio.run(program(...))``) into one clear error.

This module imports nothing from the package, so any layer may use it.
"""

from __future__ import annotations

import trio

__all__ = ["NOT_UNDER_TRIO", "entered", "require_trio"]

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
