"""One HTTP exchange of an :class:`~trio_dspy.lm.LM`: a POST and its reply or typed error.

:class:`Exchange` is what a whole call (:mod:`trio_dspy.lm.client`), a
streamed one (:mod:`trio_dspy.lm.streaming`) and the embeddings client
share below the retries: sending a body within ``attempt_timeout``, turning
a transport failure, an error status or an unreadable body into the
provider's typed error (wrapped in :class:`~trio_dspy.lm.retry.Retryable`
when another attempt may succeed), and reading a successful reply's JSON.
Messages quote the server's answer with the API key scrubbed out.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

import attrs
import httpx
import trio

from ..errors import LMServerError, LMTimeoutError, ToolsUnsupportedError
from ..http import HTTPClient, Reply, Secret, StreamReply, TransportFailure
from ..http.failures import mapped_failures
from ..http.phases import AttemptScope, open_deadline
from ..messages import LMResponse
from ..telemetry.propagation import trace_headers
from .errors import (
    FormatRefused,
    after_retries,
    error_for_failure,
    error_for_reply,
    is_retryable_status,
    parse_retry_after,
    refuses_format,
)
from .params import MALFORMED, BadField, TooDeep, decodes_here, load_json, loads
from .retry import Backoff, OnRetry, Retryable, next_retry

__all__ = ["Exchange", "within_timeout"]

T = TypeVar("T")


@attrs.define(eq=False)
class Exchange:
    """How one LM talks to its server: where, with which key, and what it says back.

    ``parse_body`` is the provider's reader of a successful body (it raises
    one of :data:`~trio_dspy.lm.params.MALFORMED` for a body of the wrong shape);
    ``read_reply`` adds what the reply's headers say to the parsed response
    (a proxy's reported cost), and must raise nothing.
    """

    http: HTTPClient
    url: httpx.URL
    provider: str
    model_name: str
    api_key: Secret = attrs.field(repr=False)
    api_key_env: str
    attempt_timeout: float | None
    parse_body: Callable[[Any], LMResponse] = attrs.field(repr=False)
    read_reply: Callable[[LMResponse, Reply], LMResponse] = attrs.field(
        repr=False, default=lambda response, reply: response
    )
    where: str = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.where = f"{self.http.host}:{self.http.port}"

    async def post(self, content: bytes, retries: int, url: httpx.URL | None = None) -> Reply:
        """One POST of ``content`` to ``url`` (default: the completions endpoint) within
        ``attempt_timeout``.

        Raises:
            Retryable: the attempt timed out, or a transport failure worth retrying.
            LMError: a transport failure not worth retrying.
        """
        headers = trace_headers()  # per request: the context of this call's span
        if url is None:
            url = self.url
        try:
            if self.attempt_timeout is None:
                return await self.http.post(url, content, headers)
            # An absolute deadline: move_on_after validates its argument and
            # reads the clock on entry, which costs a microsecond per call.
            # The write and read timeouts move this scope's deadline rather
            # than open scopes of their own (:mod:`..http.phases`).
            # Opened at the write phase's deadline: sending is what comes first.
            deadline, limit, write = open_deadline(self.attempt_timeout, self.http.write_timeout)
            with trio.CancelScope(deadline=deadline) as scope:
                attempt = AttemptScope(scope, limit, write)
                return await self.http.post(url, content, headers, attempt)
            timeout = attempt.timeout()  # a phase's timeout fired, or the attempt's
            if timeout is not None:
                with mapped_failures():  # as TransportFailure, as if the phase raised it
                    raise timeout
        except TransportFailure as failure:
            error, cause = self.transport_error(failure, retries, final=False)
            raise error from cause
        raise self.attempt_timed_out(retries)

    async def call(
        self,
        content: bytes,
        level: str | None,
        tools: bool,
        max_retries: int,
        backoff: Backoff,
        on_retry: OnRetry | None,
    ) -> LMResponse:
        """:meth:`post` and :meth:`handle`, retried as :func:`~.retry.call_with_retries`
        retries an attempt: the same steps in one frame, for a call with nothing
        around its exchange (no limits, no stream).

        Raises:
            FormatRefused: the server refused the ``response_format`` of ``level``.
            LMError: the final failure (as :meth:`handle` and :meth:`post` say).
        """
        retry = 0
        while True:
            try:
                return await self.handle(await self.post(content, retry), level, tools, retry)
            except Retryable as failure:
                delay = next_retry(failure, retry, max_retries, backoff, on_retry)
                retry += 1
                await trio.sleep(delay)

    @contextlib.asynccontextmanager
    async def stream(self, content: bytes) -> AsyncIterator[StreamReply]:
        """A streamed POST of ``content`` to the completions endpoint (no deadline of its own).

        Raises:
            TransportFailure: connecting, sending or receiving failed.
        """
        async with self.http.stream(self.url, content, trace_headers()) as reply:
            yield reply

    def transport_error(
        self, failure: TransportFailure, retries: int, *, final: bool
    ) -> tuple[Exception, BaseException | None]:
        """The typed error for ``failure`` (wrapped in :class:`Retryable` unless
        ``final`` or not worth retrying) and the exception to chain it to."""
        error, cause = error_for_failure(
            failure,
            where=self.where,
            retries=retries,
            provider=self.provider,
            model=self.model_name,
            scrub=self.api_key.scrub,
        )
        if final or not failure.retryable:
            return error, cause
        return Retryable(error), cause

    def attempt_timed_out(self, retries: int) -> Retryable:
        """An attempt got no response within ``attempt_timeout``: worth retrying."""
        return Retryable(
            LMTimeoutError(
                f"no response within attempt_timeout={self.attempt_timeout:g} s"
                + after_retries(retries),
                provider=self.provider,
                model=self.model_name,
            )
        )

    async def handle(
        self, reply: Reply, level: str | None, tools: bool, retries: int
    ) -> LMResponse:
        """The response in a successful reply, or the typed error for a failed one.

        Raises:
            Retryable: a transient failure (408, 409, 429, 5xx, a garbled body).
            FormatRefused: the server refused the ``response_format`` of ``level``.
            LMError: a final failure.
        """
        if 200 <= reply.status < 300:
            # A body small enough to decode on this thread takes no coroutine.
            data = (
                self.decode_here(reply, retries)
                if decodes_here(reply.content)
                else await self.decode(reply, retries)
            )
            try:
                response = self.parse_body(data)
            except MALFORMED as exc:
                raise self.malformed(reply, exc) from None
            return self.read_reply(response, reply)
        raise self.failure(reply, level, tools, retries)

    def failure(self, reply: Reply, level: str | None, tools: bool, retries: int) -> Exception:
        """The exception to raise for a failed ``reply``: :class:`Retryable` for a
        transient failure, :class:`FormatRefused` for a refused response format,
        else the final :class:`~trio_dspy.errors.LMError`."""
        error = error_for_reply(
            reply,
            sent_tools=tools,
            retries=retries,
            provider=self.provider,
            model=self.model_name,
            auth_hint=f"check api_key= or ${self.api_key_env}",
            scrub=self.api_key.scrub,
        )
        if level not in (None, "prompt") and refuses_format(error, reply.text):
            return FormatRefused(error)
        if is_retryable_status(reply.status) and not isinstance(error, ToolsUnsupportedError):
            return Retryable(error, retry_after=parse_retry_after(reply.headers))
        return error

    async def decode(self, reply: Reply, retries: int) -> Any:
        """A successful reply's JSON body, decoded (a large one in a worker thread).

        Raises:
            LMServerError: the body is nested too deeply (hostile: not retried).
            Retryable: the body is not JSON (cut off or garbled on the way).
        """
        try:
            return await load_json(reply.content)
        except ValueError as exc:
            raise self.undecodable(reply, retries, exc) from None

    def decode_here(self, reply: Reply, retries: int) -> Any:
        """:meth:`decode` on the calling thread, for a body :func:`decodes_here` accepts.

        Raises:
            LMServerError, Retryable: as :meth:`decode`.
        """
        try:
            return loads(reply.content)
        except ValueError as exc:
            raise self.undecodable(reply, retries, exc) from None

    def undecodable(self, reply: Reply, retries: int, exc: ValueError) -> Exception:
        """The error for a body that did not decode: too deeply nested is hostile,
        not garbled, and not worth asking again; anything else is."""
        if isinstance(exc, TooDeep):
            return LMServerError(
                f"the server's response is nested too deeply to decode: {self.snippet(reply)!r}",
                status_code=reply.status,
                provider=self.provider,
                model=self.model_name,
            )
        return Retryable(
            LMServerError(
                f"the server answered with a body that is not JSON{after_retries(retries)}: "
                f"{self.snippet(reply)!r}",
                status_code=reply.status,
                provider=self.provider,
                model=self.model_name,
            )
        )

    def malformed(self, reply: Reply, exc: Exception) -> LMServerError:
        """The error for a decoded body of the wrong shape (``exc`` says where)."""
        cause = str(exc) if isinstance(exc, BadField) else repr(exc)[:300]
        return LMServerError(
            f"the server's response is not in the {self.provider} format "
            f"({cause}): {self.snippet(reply)!r}; "
            "check base_url and the provider prefix of the model",
            status_code=reply.status,
            provider=self.provider,
            model=self.model_name,
        )

    def snippet(self, reply: Reply) -> str:
        """The start of a reply's body for an error message, without the key."""
        return self.api_key.scrub(reply.head(300))


async def within_timeout(
    seconds: float | None, call: Coroutine[Any, Any, T], wire: Exchange, owner: str
) -> T:
    """``await call`` within ``seconds`` (``None``: no limit), retries included.

    Raises:
        LMTimeoutError: the time ran out; it says to raise ``timeout=`` on ``owner``.
    """
    if seconds is None:
        return await call
    with trio.move_on_after(seconds):
        return await call
    raise LMTimeoutError(
        f"no response within {seconds:g} s (retries included): raise timeout= on {owner}, "
        "or check that the server is responsive",
        provider=wire.provider,
        model=wire.model_name,
    )
