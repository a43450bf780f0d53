"""A response read as it arrives: what :meth:`HTTPClient.stream` yields.

:class:`StreamReply` has the status and headers at once and hands out the
body piece by piece (:meth:`StreamReply.receive`), undoing a gzip/deflate
``Content-Encoding`` as it goes and bounding the body, as received and as
inflated, by ``max_response_bytes``. Under it is either the h11 transport's
:class:`~trio_dspy.http.transport.StreamedResponse` or an httpx response
(behind a proxy, or from an injected transport), read with ``aiter_raw``.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import AsyncIterator
from typing import Protocol

import httpx
import trio

from .failures import ResponseTooLargeFailure, mapped_failures

__all__ = ["BodySource", "HttpxBody", "StreamReply", "zlib_header"]


class BodySource(Protocol):
    """Where a streamed body comes from: ``receive()`` returns ``b""`` at its end."""

    async def receive(self) -> bytes:
        """The next piece of the raw body, or ``b""`` once it has ended."""
        ...


class HttpxBody:
    """The raw body of a streamed ``httpx.Response``, with ``read_timeout`` per silence.

    httpx's own read timeout is off (the first byte is the caller's to
    bound), so the silence between pieces is bounded here.
    """

    def __init__(self, response: httpx.Response, read_timeout: float | None) -> None:
        self._pieces: AsyncIterator[bytes]
        if response.is_stream_consumed:  # built in memory (tests): one piece
            self._pieces = _once(response.content)
        else:
            self._pieces = response.aiter_raw()
        self._read_timeout = math.inf if read_timeout is None else read_timeout

    async def receive(self) -> bytes:
        """The next piece of the body, or ``b""`` once it has ended.

        Raises:
            httpx.ReadTimeout: silence longer than ``read_timeout``.
            httpx.TransportError: the transport failed.
        """
        with trio.move_on_after(self._read_timeout):
            while True:
                try:
                    piece = await self._pieces.__anext__()
                except StopAsyncIteration:
                    return b""
                if piece:
                    return piece
        raise httpx.ReadTimeout(f"timed out after {self._read_timeout:g}s")


async def _once(content: bytes) -> AsyncIterator[bytes]:
    yield content


class StreamReply:
    """A response being read: :attr:`status` and :attr:`headers`, then the body in pieces.

    Read the body with ``receive()`` (streams) or ``read()`` (an error status,
    whose body is small): both raise :class:`~trio_dspy.http.failures.TransportFailure`
    (or :class:`~trio_dspy.http.failures.ResponseTooLargeFailure`) when the
    body cannot be had.
    """

    def __init__(
        self,
        status: int,
        headers: httpx.Headers,
        source: BodySource,
        limit: int | None,
        *,
        encoded: bool = True,
    ) -> None:
        self.status = status
        self.headers = headers
        self._source = source
        self._limit = limit
        self._size = 0
        # ``encoded``: the source gives the body as sent, Content-Encoding not undone.
        self._inflater = _inflater(headers) if encoded else None

    async def receive(self) -> bytes:
        """The next piece of the (decoded) body, never empty, or ``b""`` at its end.

        Raises:
            ResponseTooLargeFailure: the body passed ``max_response_bytes``.
            TransportFailure: the connection failed, fell silent for longer
                than ``read_timeout`` or sent undecodable compressed data.
        """
        # A checkpoint even when the piece was already buffered.
        await trio.lowlevel.checkpoint()
        with mapped_failures():
            while True:
                raw = await self._source.receive()
                piece = self._inflate(raw) if self._inflater is not None else raw
                if not raw or piece:
                    break
        self._size += len(piece)
        if self._limit is not None and self._size > self._limit:
            raise ResponseTooLargeFailure(self._limit)
        return piece

    async def read(self) -> bytes:
        """The rest of the body, whole (for an error status, whose body is small).

        Raises:
            ResponseTooLargeFailure, TransportFailure: as :meth:`receive`.
        """
        pieces: list[bytes] = []
        while piece := await self.receive():
            pieces.append(piece)
        return b"".join(pieces)

    def _inflate(self, raw: bytes) -> bytes:
        assert self._inflater is not None
        if self._inflater is _PENDING_DEFLATE:
            # deflate is zlib-wrapped as the RFC says, or raw as some servers send.
            self._inflater = zlib.decompressobj(
                zlib.MAX_WBITS if zlib_header(raw) else -zlib.MAX_WBITS
            )
        if not raw:
            if not self._inflater.eof:
                raise zlib.error("incomplete or truncated compressed stream")
            return b""
        room = None if self._limit is None else self._limit - self._size + 1
        piece = self._inflater.decompress(raw, room or 0)
        if self._inflater.unconsumed_tail:  # more than the room left: a bomb, or too long
            raise ResponseTooLargeFailure(self._limit or 0)
        return piece


_PENDING_DEFLATE = zlib.decompressobj()  # marks "deflate, wrapping not known yet"


def _inflater(headers: httpx.Headers) -> zlib._Decompress | None:
    encoding = headers.get("content-encoding", "identity").lower()
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return _PENDING_DEFLATE
    return None


def zlib_header(content: bytes) -> bool:
    """Whether ``content`` starts with a zlib header (RFC 1950) rather than raw deflate."""
    return len(content) >= 2 and content[0] & 0x0F == 8 and (content[0] << 8 | content[1]) % 31 == 0
