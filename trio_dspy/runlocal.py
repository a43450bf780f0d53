"""Values that belong to one ``trio.run``: created lazily, recreated in the next run.

HTTP clients, semaphores, locks and events are bound to the run that created
them. A model object built at import time and used from several
``trio.run`` calls must therefore keep one of each *per run*.
:class:`RunLocal` does exactly that on top of :class:`trio.lowlevel.RunVar`:
the value is made by a factory on first use inside a run, and the run drops
it when it ends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from trio.lowlevel import RunVar

__all__ = ["RunLocal"]

T = TypeVar("T")


class RunLocal(Generic[T]):
    """A value made by ``factory`` the first time it is needed in each trio run.

    ::

        clients = RunLocal(lambda: httpx.AsyncClient(), name="client")
        client = clients.get()  # same object for the rest of this run

    Call only from inside a trio run.
    """

    __slots__ = ("_factory", "_var")

    def __init__(self, factory: Callable[[], T], *, name: str = "trio_dspy.runlocal") -> None:
        self._factory = factory
        self._var: RunVar[T | None] = RunVar(name, default=None)

    def get(self) -> T:
        """This run's value, creating it on first use.

        Raises:
            RuntimeError: called outside a trio run.
        """
        value = self._var.get()
        if value is None:
            value = self._factory()
            self._var.set(value)
        return value

    def peek(self) -> T | None:
        """This run's value if it was created, else ``None`` (never creates one).

        Raises:
            RuntimeError: called outside a trio run.
        """
        return self._var.get()

    def clear(self) -> T | None:
        """Forget this run's value (the next :meth:`get` makes a new one); return it.

        Raises:
            RuntimeError: called outside a trio run.
        """
        value = self._var.get()
        if value is not None:
            self._var.set(None)
        return value
