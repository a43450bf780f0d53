"""Run many calls at once as child tasks of one nursery."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

__all__ = ["gather"]

T = TypeVar("T")


async def gather(
    *calls: Callable[[], Awaitable[T]],
    limit: int | None = None,
    return_exceptions: bool = False,
) -> list[T | BaseException]:
    """Run each zero-argument async callable as a child task; results in input order.

    ``limit`` bounds how many run at once (``None``: all at once).

    With ``return_exceptions=False`` the first call to fail cancels the rest and
    its exception is raised as is (not wrapped in a group). With ``True`` each
    failed call's slot holds its exception and the others run to completion.
    Cancellation from outside cancels every call and propagates.

    Raises:
        ValueError: ``limit`` is not a positive integer.
        Exception: the first failure, when ``return_exceptions`` is false.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    results: list[Any] = [None] * len(calls)
    limiter = trio.CapacityLimiter(limit) if limit is not None else None
    failures: list[BaseException] = []

    async def run(index: int, call: Callable[[], Awaitable[T]]) -> None:
        try:
            if limiter is None:
                results[index] = await call()
            else:
                async with limiter:
                    results[index] = await call()
        except Exception as exc:
            if not return_exceptions:
                failures.append(exc)
                raise
            results[index] = exc

    try:
        async with trio.open_nursery() as nursery:
            for index, call in enumerate(calls):
                nursery.start_soon(run, index, call)
    except BaseExceptionGroup as group:
        rest = group.split(Exception)[1]
        if failures and rest is None:
            raise failures[0] from None
        raise
    return results
