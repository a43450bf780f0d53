"""What HTTP answer a failed program gets: the status, an error type and a safe message.

A body never holds a traceback or the exception's own text for an
unexpected error (it may quote inputs, prompts or configuration): the
request id ties the answer to the server's log, which has the details.
"""

from __future__ import annotations

import attrs

from ..errors import (
    LMError,
    LMRateLimitError,
    LMServerError,
    LMTimeoutError,
    RequestTimeoutError,
)

__all__ = ["Failure", "classify"]


@attrs.frozen
class Failure:
    """An error as the client sees it."""

    status: int
    type: str
    message: str

    def payload(self, request_id: str, **extra: object) -> dict[str, object]:
        """The JSON body: ``{"error": {"type", "message", "request_id", ...}}``."""
        return {
            "error": {"type": self.type, "message": self.message, "request_id": request_id, **extra}
        }


def classify(exc: BaseException, timeout: float | None) -> Failure:
    """The :class:`Failure` a program's exception is answered with.

    ``RequestTimeoutError`` and ``LMTimeoutError`` give 504; an LM server
    that failed, could not be reached or kept refusing (rate limits) gives
    502; anything else 500 with no detail beyond the error's type name.
    """
    if isinstance(exc, RequestTimeoutError):
        limit = f" of {timeout:g}s" if timeout is not None else ""
        return Failure(504, "deadline", f"the program did not finish within its deadline{limit}")
    if isinstance(exc, LMTimeoutError):
        return Failure(504, "lm_timeout", "the language model did not answer in time")
    if isinstance(exc, LMServerError | LMRateLimitError) or (
        isinstance(exc, LMError) and (exc.status_code is None or exc.status_code >= 500)
    ):
        status = f" (HTTP {exc.status_code})" if exc.status_code is not None else ""
        return Failure(
            502, "lm_unavailable", f"the language model server failed or was unreachable{status}"
        )
    return Failure(
        500, "internal", f"the program failed ({type(exc).__name__}); see the server log"
    )
