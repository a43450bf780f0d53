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
pool.

httpx's own timeouts are off: deadlines are trio cancel scopes set by the
caller, which cancel the request, its connection and its pool slot at once.
"""

from __future__ import annotations

import json
import ssl
import urllib.request
import zlib
from collections.abc import Mapping
from typing import Any

import attrs
import h11
import httpx

from ..runlocal import RunLocal
from .secret import Secret
from .transport import H11Transport

__all__ = ["USER_AGENT", "HTTPClient", "Reply", "TransportFailure"]

USER_AGENT = "trio-dspy"


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


@attrs.frozen
class Reply:
    """A complete HTTP response: status, headers (case-insensitive) and body."""

    status: int
    headers: httpx.Headers
    content: bytes

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


def redact_url(url: httpx.URL) -> httpx.URL:
    """``url`` without user name and password (safe for reprs, logs and errors)."""
    return url.copy_with(username=None, password=None) if url.userinfo else url


def _decoded(content: bytes, headers: httpx.Headers) -> bytes:
    """Undo a gzip/deflate ``Content-Encoding`` (servers may compress unasked)."""
    encoding = headers.get("content-encoding", "identity").lower()
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompress(content, 16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        try:
            return zlib.decompress(content)
        except zlib.error:
            return zlib.decompress(content, -zlib.MAX_WBITS)
    return content


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


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
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if max_connections is not None and max_connections < 1:
            raise ValueError(f"max_connections must be >= 1 or None, got {max_connections!r}")
        self.base_url = _check_url(base_url.rstrip("/"))
        self._headers = dict(headers or {})
        self._secret_headers = dict(secret_headers or {})
        self.max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
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
                timeout=httpx.Timeout(None),
                follow_redirects=False,
                trust_env=True,
            )
            return _RunPool(None, client, headers)
        transport = self._transport or H11Transport(
            max_connections=self.max_connections,
            keepalive_expiry=self._keepalive_expiry,
            ssl_context=self._ssl_context(),
        )
        raw_headers = [(b"host", self.base_url.netloc)]
        raw_headers += [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in headers.items()
            if k != "accept-encoding"  # the fast path reads bodies as they come
        ]
        return _RunPool(transport, None, headers, raw_headers)

    async def post(self, url: httpx.URL, content: bytes) -> Reply:
        """POST ``content`` (JSON bytes) to ``url`` and read the whole response.

        Any HTTP status is returned as a :class:`Reply`; only the absence of a
        response raises. Cancellation aborts the request and frees its
        connection.

        Raises:
            TransportFailure: connecting, sending or receiving failed.
        """
        pool = self._pools.get()
        try:
            if pool.transport is None:
                assert pool.client is not None
                response = await pool.client.post(url, content=content)
            elif isinstance(pool.transport, H11Transport):
                # The fast path: no httpx Request/Response models per call.
                headers = [*pool.raw_headers, (b"content-length", str(len(content)).encode())]
                raw = await pool.transport.request(b"POST", url, headers, content)
                reply_headers = httpx.Headers(raw.headers)
                return Reply(raw.status, reply_headers, _decoded(raw.content, reply_headers))
            else:
                request = httpx.Request("POST", url, headers=pool.headers, content=content)
                response = await pool.transport.handle_async_request(request)
                try:
                    await response.aread()
                finally:
                    await response.aclose()
        except httpx.TimeoutException as exc:
            raise TransportFailure(f"{type(exc).__name__}: {exc}", timeout=True) from exc
        except (httpx.LocalProtocolError, h11.LocalProtocolError):
            # Our own request is malformed (h11 quotes header values here,
            # credentials included): say so without the details.
            raise TransportFailure(
                "the request could not be encoded (an invalid header?)", retryable=False
            ) from None
        except httpx.RequestError as exc:
            retryable = not _caused_by(exc, ssl.SSLCertVerificationError)
            raise TransportFailure(f"{type(exc).__name__}: {exc}", retryable=retryable) from exc
        except zlib.error as exc:
            raise TransportFailure(f"the response body could not be decompressed: {exc}") from exc
        return Reply(response.status_code, response.headers, response.content)

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
