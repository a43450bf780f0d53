"""What went wrong below HTTP, as the two exceptions the LM clients handle.

Everything the transports raise (httpx's exceptions, h11's, the pool's
:class:`~trio_dspy.http.transport.ResponseTooLarge`, zlib's) is mapped once,
by :func:`mapped_failures`, to :class:`TransportFailure` (or its subclass
:class:`ResponseTooLargeFailure`), whether a body is read whole or streamed.
"""

from __future__ import annotations

import ssl
import zlib
from types import TracebackType

import h11
import httpx

from .connection import ResponseTooLarge

__all__ = ["ResponseTooLargeFailure", "TransportFailure", "mapped_failures"]


class TransportFailure(Exception):
    """No HTTP response arrived: the connection failed, was reset or timed out.

    ``timeout`` says whether it was a timeout (connect/read/write/pool);
    ``retryable`` is false when trying again cannot help (the server's TLS
    certificate cannot be verified).
    """

    def __init__(self, message: str, *, timeout: bool = False, retryable: bool = True) -> None:
        self.timeout = timeout
        self.retryable = retryable
        super().__init__(message)


class ResponseTooLargeFailure(TransportFailure):
    """The response body (or what it inflates to) is over ``max_response_bytes``: not retried."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"the response is larger than max_response_bytes={limit}", retryable=False)


class mapped_failures:  # a class named as the function it replaced: ``with mapped_failures():``
    """Raise a transport's exceptions in the block as :class:`TransportFailure`.

    A class rather than a generator-based context manager: it wraps every
    request, and costs a third as much.

    Raises:
        ResponseTooLargeFailure: the body is over ``max_response_bytes``.
        TransportFailure: connecting, sending, receiving or decompressing failed.
    """

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            return
        if isinstance(exc, ResponseTooLarge):
            raise ResponseTooLargeFailure(exc.limit) from None
        if isinstance(exc, httpx.TimeoutException):
            raise TransportFailure(f"{type(exc).__name__}: {exc}", timeout=True) from exc
        if isinstance(exc, (httpx.LocalProtocolError, h11.LocalProtocolError)):
            # Our own request is malformed (h11 quotes header values here,
            # credentials included): say so without the details.
            raise TransportFailure(
                "the request could not be encoded (an invalid header?)", retryable=False
            ) from None
        if isinstance(exc, httpx.RequestError):
            retryable = not _caused_by(exc, ssl.SSLCertVerificationError)
            raise TransportFailure(f"{type(exc).__name__}: {exc}", retryable=retryable) from exc
        if isinstance(exc, zlib.error):
            raise TransportFailure(f"the response body could not be decompressed: {exc}") from exc


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
