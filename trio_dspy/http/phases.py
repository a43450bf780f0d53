"""One deadline scope for a whole request, its deadline moved as the phases change.

A trio ``CancelScope`` costs about six microseconds to open and close: a
request that opened one for its attempt, one for sending and one per read
paid that two or three times over. With an :class:`AttemptScope` the
attempt's own scope bounds the phases too: a phase with a shorter timeout
(``write``, a silence bounded by ``read``) moves the scope's deadline
forward for as long as it lasts and back when it ends, and remembers which
timeout it set, so that when the scope fires the caller raises exactly the
timeout that fired (:meth:`AttemptScope.timeout`). As a request on a pooled
connection first sends, the scope is opened at the write phase's deadline
(:func:`open_deadline`) and moved once, when sending ends; whatever waits
before sending (a free connection, connecting) ends that phase first.
"""

from __future__ import annotations

import httpx
import trio

__all__ = ["AttemptScope", "open_deadline"]


class AttemptScope:
    """An attempt's ``CancelScope`` (``scope``, its own deadline ``limit``) and
    the phase timeout that moved its deadline, if one did."""

    __slots__ = ("_error", "_moved", "_seconds", "limit", "scope", "writing")

    def __init__(
        self, scope: trio.CancelScope, limit: float | None = None, write: float | None = None
    ) -> None:
        """``limit``: the attempt's own deadline, when ``scope`` was opened at
        the deadline of the write phase, ``write`` seconds from now (see
        :func:`open_deadline`): moving a deadline costs about three
        microseconds, and the request's first wait is usually its sending."""
        self.scope = scope
        self.limit = scope.deadline if limit is None else limit
        self._error: type[httpx.TimeoutException] | None = None
        self._seconds = 0.0
        self._moved = False  # a phase's deadline is the scope's
        self.writing = False  # ... and that phase is the write the scope opened with
        if write is not None:
            self._error, self._seconds = httpx.WriteTimeout, write
            self._moved = self.writing = True

    def start(self, seconds: float, error: type[httpx.TimeoutException]) -> None:
        """Bound the phase starting now by ``seconds`` (which end before ``limit``
        and any deadline around it: see ``_may_fire_first``); ``error`` is
        the timeout it raises. Raises nothing."""
        if self.writing:
            self.writing = False
            if error is self._error and seconds == self._seconds:
                return  # the write phase the scope was opened at: already its deadline
        self._error = error
        self._seconds = seconds
        self._moved = True
        self.scope.deadline = trio.current_time() + seconds

    def end(self) -> None:
        """The phase is over (call it in a ``finally``, and before anything
        waits ahead of the write the scope was opened at): the attempt's own
        deadline bounds what follows. A phase whose deadline fired is kept
        for :meth:`timeout`. With no phase open this moves nothing. Raises
        nothing."""
        self.writing = False
        if not self._moved:
            return
        self._moved = False
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


def open_deadline(attempt: float, write: float | None) -> tuple[float, float, float | None]:
    """The deadline to open an attempt's scope at, the attempt's own deadline
    (``attempt`` seconds from now) and the write timeout the first is set by,
    if it is: pass the last two to :class:`AttemptScope`. Raises nothing."""
    now = trio.current_time()
    limit = now + attempt
    if write is None or now + write >= limit:
        return limit, limit, None
    return now + write, limit, write
