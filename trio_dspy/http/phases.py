"""One deadline scope for a whole request, its deadline moved as the phases change.

A trio ``CancelScope`` costs about six microseconds to open and close: a
request that opened one for its attempt, one for sending and one per read
paid that two or three times over. With an :class:`AttemptScope` the
attempt's own scope bounds the phases too: a phase with a shorter timeout
(``write``, a silence bounded by ``read``) moves the scope's deadline
forward for as long as it lasts and back when it ends, and remembers which
timeout it set, so that when the scope fires the caller raises exactly the
timeout that fired (:meth:`AttemptScope.timeout`).
"""

from __future__ import annotations

import httpx
import trio

__all__ = ["AttemptScope"]


class AttemptScope:
    """An attempt's ``CancelScope`` (``scope``, its own deadline ``limit``) and
    the phase timeout that moved its deadline, if one did."""

    __slots__ = ("_error", "_seconds", "limit", "scope")

    def __init__(self, scope: trio.CancelScope) -> None:
        self.scope = scope
        self.limit = scope.deadline
        self._error: type[httpx.TimeoutException] | None = None
        self._seconds = 0.0

    def start(self, seconds: float, error: type[httpx.TimeoutException]) -> None:
        """Bound the phase starting now by ``seconds`` (which end before ``limit``
        and any deadline around it: see ``_may_fire_first``); ``error`` is
        the timeout it raises. Raises nothing."""
        self._error = error
        self._seconds = seconds
        self.scope.deadline = trio.current_time() + seconds

    def end(self) -> None:
        """The phase is over (call it in a ``finally``): the attempt's own
        deadline bounds what follows. A phase whose deadline fired is kept
        for :meth:`timeout`. Raises nothing."""
        self.scope.deadline = self.limit
        if not self.scope.cancel_called:
            self._error = None

    def timeout(self) -> httpx.TimeoutException | None:
        """When the scope was cancelled by a phase's deadline, that phase's
        timeout, to raise as the phase would have; ``None`` when it was the
        attempt's own deadline. Raises nothing."""
        if self._error is None:
            return None
        return self._error(f"timed out after {self._seconds:g}s")
