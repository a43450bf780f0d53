"""The HTTP layer under the LM clients: one connection pool per LM and trio run.

:class:`HTTPClient` owns the pool a model uses: an :class:`H11Transport`
(HTTP/1.1 on h11 with an O(1) keep-alive pool), created lazily on the first
request of each trio run (it is bound to that run) and shared by every task
of the run. It is sized by ``max_connections`` (``None``: unbounded, so a
burst of a thousand concurrent requests is not serialised behind a small
default).

Requests go straight to the transport: httpx's ``AsyncClient`` machinery
(auth flows, cookies, redirects, hooks) costs more CPU per call than the
rest of a call put together and none of it is needed here. When the
environment configures an HTTP proxy (``HTTPS_PROXY`` and friends), requests
go through an ``httpx.AsyncClient`` with httpx's own pool instead, since
httpx applies environment proxies only there.
Injected transports (``httpx.MockTransport`` in tests) take the place of the
pool. :meth:`HTTPClient.post` reads a response whole; :meth:`HTTPClient.stream`
yields it as soon as its head has arrived and reads the body piece by piece
(server-sent events), on each of these paths.

Deadlines are trio cancel scopes: the caller's bound a whole request;
``connect_timeout`` bounds opening a connection and ``read_timeout`` each
silence once the response has begun (the wait for its first byte is the
server's generation time, bounded by the caller). ``max_response_bytes``
bounds each body as read and as decompressed, incrementally: a larger one
raises :class:`ResponseTooLargeFailure` without being read or inflated whole.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import urllib.request
import zlib
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import httpx
import trio

from ..runlocal import RunLocal
from .failures import ResponseTooLargeFailure, TransportFailure, mapped_failures
from .phases import AttemptScope
from .secret import Secret
from .streaming import HttpxBody, StreamReply, zlib_header
from .transport import H11Transport

__all__ = [
    "USER_AGENT",
    "HTTPClient",
    "Reply",
    "ResponseTooLargeFailure",
    "StreamReply",
    "TransportFailure",
]

USER_AGENT = "trio-dspy"
# Bytes inflated between checkpoints (about 2 ms of zlib).
_INFLATE_STEP = 1 << 20


def _proxies_configured() -> bool:
    """Whether the environment asks for an HTTP(S) proxy (``HTTPS_PROXY`` and friends)."""
    proxies = urllib.request.getproxies()
    return any(proxies.get(scheme) for scheme in ("http", "https", "all"))


@attrs.define(eq=False)
class _RunPool:
    """One trio run's transport, or (behind a proxy) an httpx client."""

    transport: httpx.AsyncBaseTransport | None
    client: httpx.AsyncClient | None
    headers: httpx.Headers = attrs.field(repr=False)  # normalised once, copied per request
    # The same headers as bytes (plus Host) for the transport's fast path.
    raw_headers: list[tuple[bytes, bytes]] = attrs.field(factory=list, repr=False)


class Reply:
    """A complete HTTP response: status, headers (case-insensitive) and body.

    ``headers`` may be given as the raw pairs the transport read: they become
    an ``httpx.Headers`` only when read (a successful call never reads them).
    """

    __slots__ = ("_headers", "_index", "_raw", "content", "status")

    def __init__(
        self,
        status: int,
        headers: httpx.Headers | Sequence[tuple[bytes, bytes]],
        content: bytes,
    ) -> None:
        self.status = status
        self.content = content
        self._index: dict[bytes, bytes] | None = None
        if isinstance(headers, httpx.Headers):
            self._headers: httpx.Headers | None = headers
            self._raw: Sequence[tuple[bytes, bytes]] = ()
        else:
            self._headers = None
            self._raw = headers

    @property
    def headers(self) -> httpx.Headers:
        """The response headers, looked up case-insensitively."""
        if self._headers is None:
            self._headers = httpx.Headers(list(self._raw))
        return self._headers

    def header(self, name: str) -> str | None:
        """One header's value (``name`` in lower case), or ``None``: without
        building :attr:`headers` when the transport gave raw pairs. Raises nothing."""
        if self._headers is not None:
            found: str | None = self._headers.get(name)
            return found
        index = self._index
        if index is None:  # built in C, the first line of a name winning as in a scan
            index = self._index = dict(reversed(self._raw))
        value = index.get(name.encode("latin-1"))
        return None if value is None else value.decode("latin-1")

    def __repr__(self) -> str:
        return f"Reply(status={self.status!r}, {len(self.content)} bytes)"

    def json(self) -> Any:
        """The body decoded as JSON.

        Raises:
            ValueError: the body is not JSON.
        """
        return json.loads(self.content)

    @property
    def text(self) -> str:
        """The body as text (UTF-8, undecodable bytes replaced)."""
        return self.content.decode("utf-8", errors="replace")

    def head(self, chars: int) -> str:
        """The first ``chars`` characters of :attr:`text`, without decoding the rest."""
        return self.content[: chars * 4].decode("utf-8", errors="replace")[:chars]


def redact_url(url: httpx.URL) -> httpx.URL:
    """``url`` without user name and password (safe for reprs, logs and errors)."""
    return url.copy_with(username=None, password=None) if url.userinfo else url


async def _decoded(content: bytes, headers: httpx.Headers, limit: int | None) -> bytes:
    """Undo a gzip/deflate ``Content-Encoding`` (servers may compress unasked).

    Inflates step by step with a checkpoint between steps, and stops as soon
    as the output passes ``limit`` (a small "zip bomb" is never inflated whole).

    Raises:
        zlib.error: the body is not valid compressed data.
        ResponseTooLargeFailure: it inflates to more than ``limit`` bytes.
    """
    return await _inflated(content, headers.get("content-encoding", "identity"), limit)


async def _inflated(content: bytes, encoding: str, limit: int | None) -> bytes:
    """``content`` with ``encoding`` (``gzip``, ``deflate``; else as it is) undone."""
    encoding = encoding.strip().lower()
    if encoding in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif encoding == "deflate":  # zlib-wrapped as the RFC says, or raw as some servers send
        wbits = zlib.MAX_WBITS if zlib_header(content) else -zlib.MAX_WBITS
    else:
        return content
    inflater = zlib.decompressobj(wbits)
    out: list[bytes] = []
    size = 0
    data = content
    while data:
        part = inflater.decompress(data, _INFLATE_STEP)
        data = inflater.unconsumed_tail
        size += len(part)
        if limit is not None and size > limit:
            raise ResponseTooLargeFailure(limit)
        out.append(part)
        if inflater.eof:
            break
        await trio.lowlevel.checkpoint()
    if not inflater.eof:
        raise zlib.error("incomplete or truncated compressed stream")
    return b"".join(out)


def _capped(response: httpx.Response, limit: int | None) -> bytes:
    if limit is not None and len(response.content) > limit:
        raise ResponseTooLargeFailure(limit)
    return response.content


async def _read_raw(response: httpx.Response, limit: int | None) -> bytes:
    """The raw (still encoded) body of a streamed ``response``, up to ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in response.aiter_raw():
            size += len(chunk)
            if limit is not None and size > limit:
                raise ResponseTooLargeFailure(limit)
            chunks.append(chunk)
    finally:
        await response.aclose()
    return b"".join(chunks)


def _check_url(base_url: str) -> httpx.URL:
    try:
        url = httpx.URL(base_url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValueError(f"invalid base_url: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(
            f"invalid base_url {str(redact_url(url))!r}: expected http(s)://host[:port]/path, "
            "for example 'http://127.0.0.1:8000/v1'"
        )
    if url.userinfo:
        raise ValueError(
            "base_url must not carry credentials (user:password@): pass the key as api_key"
        )
    return url


class HTTPClient:
    """POSTs JSON to one server over one connection pool per trio run.

    The pool is an :class:`H11Transport`, made on the first request of each
    trio run and shared by every task of that run. When the environment
    configures an HTTP proxy it is an ``httpx.AsyncClient`` instead (httpx
    applies proxies only there); an injected ``transport`` takes the place of
    either.

    Args:
        base_url: ``http(s)://host[:port]/prefix``; paths given to :meth:`post`
            are appended to it.
        headers: sent with every request (public values only).
        secret_headers: credentials sent with every request; never shown in
            reprs or logs.
        max_connections: connection pool size; ``None`` means unbounded.
        keepalive_expiry: seconds an idle connection is kept for reuse.
        connect_timeout: seconds to open a connection (``None``: no limit).
        read_timeout: the longest silence, in seconds, once the response has
            begun (``None``: no limit). The wait for its first byte is not
            bounded here: the caller's deadline bounds it.
        max_response_bytes: the largest response body, as received and as
            decompressed (``None``: no limit).
        transport: an ``httpx.AsyncBaseTransport`` to use instead of the
            network (the test seam: ``httpx.MockTransport(handler)``).

    Raises:
        ValueError: ``base_url`` is not an http(s) URL, or ``max_connections < 1``.
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        secret_headers: Mapping[str, Secret] | None = None,
        max_connections: int | None = None,
        keepalive_expiry: float = 5.0,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        max_response_bytes: int | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if max_connections is not None and max_connections < 1:
            raise ValueError(f"max_connections must be >= 1 or None, got {max_connections!r}")
        self.base_url = _check_url(base_url.rstrip("/"))
        self._headers = dict(headers or {})
        self._secret_headers = dict(secret_headers or {})
        self.max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self.max_response_bytes = max_response_bytes
        self.write_timeout = read_timeout  # the longest wait for sending a request
        self._timeouts: dict[str, float | None] = {
            "connect": connect_timeout,
            "read": read_timeout,
            "write": read_timeout,
            "pool": None,
            "first_byte": None,
        }
        # httpx's read timeout also bounds the first byte, which the caller bounds.
        self._httpx_timeout = httpx.Timeout(
            connect=connect_timeout, read=None, write=read_timeout, pool=None
        )
        self._transport = transport
        self._tls: ssl.SSLContext | None = None
        self._pools: RunLocal[_RunPool] = RunLocal(self._new_pool, name="trio_dspy.http.pool")

    @property
    def host(self) -> str:
        """The server's host name or address."""
        return self.base_url.host

    @property
    def port(self) -> int:
        """The server's port (the scheme's default when the URL has none)."""
        if self.base_url.port is not None:
            return self.base_url.port
        return 443 if self.base_url.scheme == "https" else 80

    def url(self, path: str) -> httpx.URL:
        """``base_url`` joined with ``path`` (``"/chat/completions"``)."""
        return self.base_url.copy_with(path=self.base_url.path.rstrip("/") + path)

    def _ssl_context(self) -> ssl.SSLContext | None:
        """One TLS context for every connection of this client (loading CAs is slow)."""
        if self.base_url.scheme != "https":
            return None
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    def _new_pool(self) -> _RunPool:
        headers = httpx.Headers(
            [
                ("content-type", "application/json"),
                ("accept", "application/json"),
                ("accept-encoding", "gzip, deflate"),
                ("user-agent", USER_AGENT),
                *self._headers.items(),
                *((k, v.reveal()) for k, v in self._secret_headers.items() if v),
            ]
        )
        if self._transport is None and _proxies_configured():
            # httpx applies environment proxies only to its own transports.
            limits = httpx.Limits(
                max_connections=self.max_connections,
                max_keepalive_connections=self.max_connections,
                keepalive_expiry=self._keepalive_expiry,
            )
            client = httpx.AsyncClient(
                headers=headers,
                limits=limits,
                timeout=self._httpx_timeout,
                follow_redirects=False,
                trust_env=True,
            )
            return _RunPool(None, client, headers)
        transport = self._transport or H11Transport(
            max_connections=self.max_connections,
            keepalive_expiry=self._keepalive_expiry,
            ssl_context=self._ssl_context(),
            max_response_bytes=self.max_response_bytes,
        )
        raw_headers = [(b"host", self.base_url.netloc)]
        raw_headers += [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in headers.items()
            if k != "accept-encoding"  # the fast path reads bodies as they come
        ]
        return _RunPool(transport, None, headers, raw_headers)

    async def post(
        self,
        url: httpx.URL,
        content: bytes,
        headers: Sequence[tuple[str, str]] = (),
        attempt: AttemptScope | None = None,
    ) -> Reply:
        """POST ``content`` (JSON bytes) to ``url`` and read the whole response.

        ``headers`` are sent with this request only, after the client's own
        (per-request values such as ``traceparent``). Any HTTP status is
        returned as a :class:`Reply`; only the absence of a response raises.
        Cancellation aborts the request and frees its connection. ``attempt``
        (the caller's deadline scope): its deadline bounds the write and read
        timeouts too (:mod:`.phases`).

        Raises:
            ResponseTooLargeFailure: the body is over ``max_response_bytes``.
            TransportFailure: connecting, sending or receiving failed.
        """
        pool = self._pools.get()
        limit = self.max_response_bytes
        if attempt is not None and not isinstance(pool.transport, H11Transport):
            attempt.end()  # httpx bounds its own phases: the attempt's deadline only
        with mapped_failures():
            if pool.transport is None:
                assert pool.client is not None
                request = pool.client.build_request(
                    "POST", url, content=content, headers=list(headers)
                )
                response = await pool.client.send(request, stream=True)
                raw_body = await _read_raw(response, limit)
            elif isinstance(pool.transport, H11Transport):
                # The fast path: no httpx Request/Response models per call.
                raw_headers = [*pool.raw_headers, (b"content-length", str(len(content)).encode())]
                if headers:  # a trace's headers; none outside a trace
                    raw_headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
                raw = await pool.transport.request(
                    b"POST", url, raw_headers, content, self._timeouts, attempt
                )
                reply = Reply(raw.status, raw.headers, raw.content)
                encoding = reply.header("content-encoding")
                if encoding is not None:
                    reply.content = await _inflated(reply.content, encoding, limit)
                return reply
            else:
                request = httpx.Request(
                    "POST",
                    url,
                    headers=[*pool.headers.multi_items(), *headers] if headers else pool.headers,
                    content=content,
                    extensions={"timeout": self._httpx_timeout.as_dict()},
                )
                response = await pool.transport.handle_async_request(request)
                if response.is_stream_consumed:  # built in memory, already decoded (tests)
                    return Reply(response.status_code, response.headers, _capped(response, limit))
                raw_body = await _read_raw(response, limit)
            body = await _decoded(raw_body, response.headers, limit)
        return Reply(response.status_code, response.headers, body)

    @asynccontextmanager
    async def stream(
        self, url: httpx.URL, content: bytes, headers: Sequence[tuple[str, str]] = ()
    ) -> AsyncIterator[StreamReply]:
        """POST ``content`` (JSON bytes) to ``url`` and yield the response as it arrives.

        The :class:`StreamReply` is yielded once the status and headers are in;
        its body is read inside the block (``receive()`` piece by piece, or
        ``read()`` whole), ``read_timeout`` bounding each silence. The request
        belongs to the block: leaving it before the body ends (early, on an
        exception or cancelled) closes the connection rather than pooling it.
        The request asks for ``text/event-stream``; ``headers`` are sent with
        this request only, as in :meth:`post`.

        Raises:
            ResponseTooLargeFailure: the body is over ``max_response_bytes``.
            TransportFailure: connecting, sending or receiving failed.
        """
        pool = self._pools.get()
        limit = self.max_response_bytes
        async with contextlib.AsyncExitStack() as stack:
            with mapped_failures():
                if isinstance(pool.transport, H11Transport):
                    raw_headers = [
                        *(h for h in pool.raw_headers if h[0] != b"accept"),
                        (b"accept", b"text/event-stream"),
                        (b"content-length", str(len(content)).encode()),
                        *((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers),
                    ]
                    streamed = await stack.enter_async_context(
                        pool.transport.stream(b"POST", url, raw_headers, content, self._timeouts)
                    )
                    reply_headers = httpx.Headers(streamed.headers)
                    reply = StreamReply(streamed.status, reply_headers, streamed, limit)
                else:
                    response = await self._send_streaming(pool, url, content, headers)
                    stack.push_async_callback(response.aclose)
                    body = HttpxBody(response, self._timeouts["read"])
                    # An in-memory response (tests) is already decoded.
                    encoded = not response.is_stream_consumed
                    reply = StreamReply(
                        response.status_code, response.headers, body, limit, encoded=encoded
                    )
            yield reply

    async def _send_streaming(
        self, pool: _RunPool, url: httpx.URL, content: bytes, extra: Sequence[tuple[str, str]]
    ) -> httpx.Response:
        """The httpx paths of :meth:`stream`: the response, its body not read yet."""
        headers = httpx.Headers(pool.headers)
        headers["accept"] = "text/event-stream"
        for name, value in extra:
            headers[name] = value
        if pool.transport is None:
            assert pool.client is not None
            request = pool.client.build_request("POST", url, content=content, headers=headers)
            return await pool.client.send(request, stream=True)
        request = httpx.Request(
            "POST",
            url,
            headers=headers,
            content=content,
            extensions={"timeout": self._httpx_timeout.as_dict()},
        )
        return await pool.transport.handle_async_request(request)

    async def aclose(self) -> None:
        """Close this run's connections; a later request opens new ones."""
        pool = self._pools.clear()
        if pool is not None:
            if pool.client is not None:
                await pool.client.aclose()
            if pool.transport is not None and pool.transport is not self._transport:
                await pool.transport.aclose()  # ours; an injected transport is the caller's

    def __repr__(self) -> str:
        url = str(redact_url(self.base_url))
        return f"HTTPClient({url!r}, max_connections={self.max_connections!r})"
