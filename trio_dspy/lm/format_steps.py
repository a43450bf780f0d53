"""The response-format step-down: ask for the strongest format a server takes.

A request that asks for structured output names a ``response_format`` type
(``json_schema``, say). Not every OpenAI-compatible server takes every type:
one that refuses it is asked again one level down (``json_schema`` ->
``json_object`` -> ``prompt``, the provider's :attr:`LM.format_levels
<trio_dspy.lm.LM.format_levels>`), and the level a server accepted is
remembered for the LM's later calls, so the refusal is paid once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from ..logs import get_logger
from .errors import FormatRefused

__all__ = ["FormatSteps"]

log = get_logger(__name__)

T = TypeVar("T")


class FormatSteps:
    """The response-format levels of one LM and how far down its server made it go."""

    def __init__(self, levels: Sequence[str]) -> None:
        self.levels = tuple(levels)
        self._floor = 0  # the strongest level not refused so far

    @property
    def reached(self) -> str:
        """The strongest level the server has not refused so far."""
        return self.levels[min(self._floor, len(self.levels) - 1)]

    async def call(
        self, wanted: str, call_at: Callable[[str], Awaitable[T]], *, model: str, server: str
    ) -> T:
        """``await call_at(level)`` from the ``wanted`` level (or the one the server
        came down to), one level down each time the server refuses the format.

        Raises:
            LMError: the weakest level was refused too (the server's error),
                or ``call_at``'s own error.
        """
        start = self.levels.index(wanted) if wanted in self.levels else 0
        while True:
            index = max(start, self._floor)
            try:
                return await call_at(self.levels[index])
            except FormatRefused as refused:
                if index + 1 >= len(self.levels):
                    raise refused.error from None
                self._floor = max(self._floor, index + 1)
                log.info(
                    "lm.response_format_refused",
                    model=model,
                    server=server,
                    refused=self.levels[index],
                    next=self.levels[index + 1],
                )
