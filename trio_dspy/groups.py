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

    The cancellations are those of the sibling tasks the failure stopped;
    anything more (two real failures, a nested group) is raised as it is. A
    group of nothing but cancellations raises one ``trio.Cancelled``, as a
    plain checkpoint would (so ``except trio.Cancelled`` sees it).

    Raises:
        BaseException: the single exception, or ``group`` itself.
    """
    cancelled, rest = group.split(trio.Cancelled)
    if rest is None and cancelled is not None:
        leaf: BaseException = cancelled
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        raise leaf from None
    if (
        rest is not None
        and len(rest.exceptions) == 1
        and not isinstance(rest.exceptions[0], BaseExceptionGroup)
    ):
        raise rest.exceptions[0] from None
    raise group
