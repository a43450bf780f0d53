"""Give back the one error a nursery wrapped in an exception group.

Trio's nurseries always raise an ``ExceptionGroup``, even for a single
failure. Where a nursery is an implementation detail (a context manager that
runs a helper task beside the caller's block), the caller should see the
error itself: :func:`raise_single` does that. A leaf module: any layer may
use it.
"""

from __future__ import annotations

from typing import NoReturn

import trio

__all__ = ["raise_single"]


def raise_single(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Raise the one exception in ``group`` besides ``trio.Cancelled``, else ``group``.

    Nested groups are looked into. The cancellations are those of the sibling
    tasks the failure stopped; two real failures or more are raised as the
    group itself. A group of nothing but cancellations raises one
    ``trio.Cancelled``, as a plain checkpoint would (so ``except
    trio.Cancelled`` sees it). The exception keeps its own ``__cause__``.

    Raises:
        BaseException: the single exception, or ``group`` itself.
    """
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop()
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(reversed(exc.exceptions))
        else:
            leaves.append(exc)
    errors = [e for e in leaves if not isinstance(e, trio.Cancelled)]
    if len(errors) > 1 or not leaves:
        raise group
    leaf = errors[0] if errors else leaves[0]
    raise leaf from leaf.__cause__
