"""What the lean server's connections share (:mod:`.h11_connection`): their limits, the app,
its lifespan state, and the idle connections a stop closes at once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import trio

__all__ = ["HEADER_TIMEOUT", "KEEP_ALIVE_TIMEOUT", "MAX_HEADER_BYTES", "Limits", "Shared"]

#: The defaults of :class:`Limits`.
MAX_HEADER_BYTES = 16384
HEADER_TIMEOUT = 10.0
KEEP_ALIVE_TIMEOUT = 75.0


@attrs.frozen
class Limits:
    """The lean server's limits on each connection: the largest request head in
    bytes (431 past it), the seconds a head may take to arrive whole (408) and a
    body may stall, and the seconds an idle keep-alive connection stays open.

    Raises:
        ValueError: a limit is not above 0.
    """

    max_header_bytes: int = attrs.field(default=MAX_HEADER_BYTES, validator=attrs.validators.gt(0))
    header_timeout: float = attrs.field(default=HEADER_TIMEOUT, validator=attrs.validators.gt(0))
    keep_alive_timeout: float = attrs.field(
        default=KEEP_ALIVE_TIMEOUT, validator=attrs.validators.gt(0)
    )


@attrs.define(eq=False)
class Shared:
    """What the server's connections share: the app, its limits, the lifespan state,
    and the idle connections a stop closes at once."""

    app: Callable[..., Any]
    limits: Limits
    state: dict[str, Any] | None = None
    stopping: bool = False
    idle: set[trio.CancelScope] = attrs.field(factory=set)

    def stop(self) -> None:
        """Close idle connections now and every other one once its answer is sent."""
        self.stopping = True
        for scope in self.idle:
            scope.cancel()
