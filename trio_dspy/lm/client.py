"""``LM``: the HTTP language-model client shared by every provider.

``LM("openai/gpt-4o-mini")`` returns the provider's subclass
(:class:`~trio_dspy.lm.openai.OpenAILM`, :class:`~trio_dspy.lm.anthropic.AnthropicLM`),
so ``isinstance(lm, LM)`` holds for all of them. This module holds what the
providers share: one call goes

    timeout scope -> cache / single-flight -> response-format step-down
    -> retries with backoff -> limits -> one HTTP POST -> parse or typed error

and the providers supply only the wire mapping (:meth:`LM.build_body`,
:meth:`LM.parse_body`) and their authentication.
"""

from __future__ import annotations

import importlib
import json
import os
from functools import partial
from types import TracebackType
from typing import Any, ClassVar

import httpx
import trio

from ..errors import ConfigurationError, LMError, LMServerError, LMTimeoutError
from ..http import HTTPClient, Reply, Secret, TransportFailure
from ..logs import get_logger
from ..messages import LMRequest, LMResponse
from ..telemetry.span import current_span
from .base import BaseLM
from .cache import Cache, SingleFlight, cache_key, cached_call, make_cache
from .errors import (
    FormatRefused,
    after_retries,
    error_for_reply,
    is_retryable_status,
    parse_retry_after,
    refuses_format,
)
from .limits import Limits
from .retry import Backoff, OnRetry, Retryable, call_with_retries

__all__ = ["LM", "known_providers", "register_provider"]

log = get_logger(__name__)

# provider -> "module:Class", imported on first use.
_PROVIDERS: dict[str, str | type[LM]] = {
    "openai": "trio_dspy.lm.openai:OpenAILM",
    "anthropic": "trio_dspy.lm.anthropic:AnthropicLM",
}


def register_provider(name: str, cls: type[LM] | str) -> None:
    """Make ``LM("name/model")`` build ``cls`` (a class or ``"module:Class"``)."""
    _PROVIDERS[name] = cls


def known_providers() -> list[str]:
    """The provider prefixes ``LM`` understands, sorted."""
    return sorted(_PROVIDERS)


def _provider_class(model: str) -> type[LM]:
    provider, sep, name = model.partition("/")
    if not sep or not provider or not name:
        raise ConfigurationError(
            f"model {model!r} does not name a provider: write 'provider/name', for example "
            f"'openai/gpt-4o-mini' (known providers: {', '.join(known_providers())})"
        )
    entry = _PROVIDERS.get(provider)
    if entry is None:
        raise ConfigurationError(
            f"unknown provider {provider!r} in model {model!r}: known providers are "
            f"{', '.join(known_providers())} (any OpenAI-compatible server is "
            "'openai/<model>' with base_url=...)"
        )
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = getattr(importlib.import_module(module), attr)
        _PROVIDERS[provider] = entry
    assert isinstance(entry, type) and issubclass(entry, LM)
    return entry


# Seconds aclose() may spend closing connections and the cache, shielded.
_CLOSE_TIMEOUT = 5.0


class LM(BaseLM):
    """A language model behind an HTTP API: ``LM("provider/name", ...)``.

    ::

        lm = td.LM("openai/gpt-4o-mini", temperature=0.0, max_concurrency=64)
        td.configure(lm=lm)
        async with lm:  # optional: closes connections at the end
            ...

    Args:
        model: ``"openai/<name>"`` (any OpenAI-compatible server) or
            ``"anthropic/<name>"``.
        base_url: the API root (``http://127.0.0.1:8000/v1``); defaults to the
            provider's environment variable, then its public endpoint.
        api_key: defaults to the provider's environment variable
            (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``). Never shown or logged.
        max_retries: retries of transient failures (408, 409, 429, 5xx,
            connection errors, timeouts) with exponential backoff and full jitter.
        timeout: seconds for a whole call, retries and backoff included
            (``LMRequest.timeout`` overrides it per call); ``None``: no limit.
        attempt_timeout: seconds for one HTTP attempt; a slower attempt is
            retried like a read timeout. ``None``: no limit.
        max_concurrency: requests in flight at once, shared by every task
            using this LM (``None``: unbounded).
        max_connections: connection-pool size; defaults to ``max_concurrency``
            (unbounded when that is ``None``).
        rpm: requests per minute (a token bucket on the trio clock).
        tpm: tokens per minute (a token bucket on the trio clock).
        cache: ``False`` (default); ``True``/``"memory"`` for an in-memory LRU;
            ``"disk"`` or a path for SQLite; or a :class:`~trio_dspy.lm.cache.Cache`.
        history_size: how many calls :attr:`history` keeps.
        transport: an ``httpx.AsyncBaseTransport`` used instead of the network
            (tests pass ``httpx.MockTransport(handler)``).
        on_retry: ``on_retry(attempt, delay, error)`` called before each retry.
        backoff: a :class:`~trio_dspy.lm.retry.Backoff` to tune the delays.
        **defaults: sampling parameters for every call (``temperature``,
            ``max_tokens``, ``top_p``, ``stop``, ``seed``, ...).

    Raises:
        ConfigurationError: ``model`` names no known provider.
        ValueError: an option is out of range or ``base_url`` is not http(s).
        TypeError: ``cache`` is of an unsupported kind.
    """

    provider = ""
    supports_tools = True
    #: response-format levels, strongest first; the last is plain prompting.
    format_levels: ClassVar[tuple[str, ...]] = ("prompt",)
    default_base_url: ClassVar[str] = ""
    base_url_env: ClassVar[str] = ""
    api_key_env: ClassVar[str] = ""
    endpoint: ClassVar[str] = ""

    def __new__(cls, model: str = "", /, *args: Any, **kwargs: Any) -> LM:
        if cls is LM:
            cls = _provider_class(model)
        return super().__new__(cls)

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        max_retries: int = 4,
        timeout: float | None = None,
        attempt_timeout: float | None = None,
        max_concurrency: int | None = None,
        max_connections: int | None = None,
        rpm: float | None = None,
        tpm: float | None = None,
        cache: bool | str | os.PathLike[str] | Cache | None = False,
        history_size: int = 100,
        transport: httpx.AsyncBaseTransport | None = None,
        on_retry: OnRetry | None = None,
        backoff: Backoff | None = None,
        **defaults: Any,
    ) -> None:
        provider, _, name = model.partition("/")
        if provider != self.provider or not name:
            raise ConfigurationError(
                f"{type(self).__name__} serves '{self.provider}/<model>' models, got {model!r}"
            )
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries!r}")
        for label, value in (("timeout", timeout), ("attempt_timeout", attempt_timeout)):
            if value is not None and not value > 0:
                raise ValueError(f"{label} must be a positive number of seconds or None")
        super().__init__(model, history_size=history_size, **defaults)
        #: the model name without the provider prefix (``gpt-4o-mini``).
        self.model_name = name
        self.max_retries = max_retries
        self.timeout = timeout
        self.attempt_timeout = attempt_timeout
        self.on_retry = on_retry
        self.backoff = backoff or Backoff()
        self.limits = Limits(max_concurrency=max_concurrency, rpm=rpm, tpm=tpm)
        self._limits = self.limits if self.limits.active else None
        self.cache = make_cache(cache)
        self._flights = SingleFlight()
        self._format_level = 0
        key = api_key if api_key is not None else os.environ.get(self.api_key_env, "")
        if key != key.strip() or not key.isprintable() or not key.isascii():
            # The value goes into an HTTP header; refuse it without echoing it.
            source = "api_key" if api_key is not None else self.api_key_env
            raise ValueError(
                f"{source} has whitespace, control or non-ASCII characters "
                "(a stray newline or space?): check how the key is loaded"
            )
        self._api_key = Secret(key)
        url = base_url or os.environ.get(self.base_url_env) or self.default_base_url
        self._http = HTTPClient(
            url,
            headers=self.extra_headers(),
            secret_headers=self.auth_headers(self._api_key) if self._api_key else {},
            max_connections=max_connections if max_connections is not None else max_concurrency,
            transport=transport,
        )
        self._url = self._http.url(self.endpoint_path(self._http.base_url.path))
        self._public_base_url = str(self._http.base_url.copy_with(username=None, password=None))

    # ------------------------------------------------------------ provider hooks
    def endpoint_path(self, base_path: str) -> str:
        """The path appended to ``base_url`` for one call (``/chat/completions``)."""
        return self.endpoint

    def extra_headers(self) -> dict[str, str]:
        """Public headers sent with every request (e.g. an API version)."""
        return {}

    # ``LM(...)`` itself always returns a provider subclass, which overrides these;
    # they are not abstract so that ``LM("openai/...")`` type-checks.
    def auth_headers(self, api_key: Secret) -> dict[str, Secret]:
        """The headers that carry ``api_key`` (values stay wrapped in :class:`Secret`)."""
        raise NotImplementedError

    def build_body(self, request: LMRequest, level: str | None) -> dict[str, Any]:
        """The JSON body for ``request``; ``level`` is the response-format level in use
        (one of :attr:`format_levels`, or ``None`` when no format is requested)."""
        raise NotImplementedError

    def parse_body(self, data: Any) -> LMResponse:
        """The :class:`LMResponse` in a successful response body.

        Raises:
            KeyError, IndexError, TypeError, ValueError: the body has an unexpected shape.
        """
        raise NotImplementedError

    # ------------------------------------------------------------ telemetry facts
    @property
    def base_url(self) -> str:
        """The API root in use (without any credentials)."""
        return self._public_base_url

    @property
    def server_address(self) -> str:
        """The server's host name or address."""
        return self._http.host

    @property
    def server_port(self) -> int:
        """The server's port."""
        return self._http.port

    @property
    def response_format_level(self) -> str:
        """The strongest response-format level this server accepted so far."""
        return self.format_levels[min(self._format_level, len(self.format_levels) - 1)]

    # ------------------------------------------------------------ the call path
    async def send(self, request: LMRequest) -> LMResponse:
        """One call: cache, response-format step-down, retries, limits, HTTP.

        Raises:
            LMTimeoutError: no answer within the timeout (retries included).
            LMAuthError: the key was refused (401/403); not retried.
            LMRateLimitError: still 429 after every retry.
            LMServerError: 5xx or connection failures after every retry.
            LMBadRequestError: the request was rejected (400/404/422).
            ToolsUnsupportedError: the request carried tools and the server takes none.
            ContextWindowExceededError: the prompt does not fit the model.
        """
        timeout = request.timeout if request.timeout is not None else self.timeout
        if timeout is None:
            return await self._send(request)
        with trio.move_on_after(timeout):
            return await self._send(request)
        raise LMTimeoutError(
            f"no response within {timeout:g} s (retries included): raise timeout= on the LM "
            "or the request, or check that the server is responsive",
            provider=self.provider,
            model=self.model_name,
        )

    async def _send(self, request: LMRequest) -> LMResponse:
        if self.cache is None:
            return await self._call(request)
        key = cache_key(self.provider, self.model_name, self._public_base_url, request)
        return await cached_call(self.cache, self._flights, key, partial(self._call, request))

    async def _call(self, request: LMRequest) -> LMResponse:
        fmt = request.response_format
        if fmt is None:
            return await self._call_at(request, None)
        levels = self.format_levels
        start = levels.index(fmt.type) if fmt.type in levels else 0
        while True:
            index = max(start, self._format_level)
            try:
                return await self._call_at(request, levels[index])
            except FormatRefused as refused:
                if index + 1 >= len(levels):
                    raise refused.error from None
                self._format_level = max(self._format_level, index + 1)
                log.info(
                    "lm.response_format_refused",
                    model=self.model,
                    server=self.server_address,
                    refused=levels[index],
                    next=levels[index + 1],
                )

    async def _call_at(self, request: LMRequest, level: str | None) -> LMResponse:
        content = json.dumps(
            self.build_body(request, level), ensure_ascii=False, separators=(",", ":")
        ).encode()
        return await call_with_retries(
            partial(self._attempt, content, level, bool(request.tools)),
            max_retries=self.max_retries,
            backoff=self.backoff,
            on_retry=self._retrying,
        )

    def _retrying(self, attempt: int, delay: float, error: LMError) -> None:
        log.debug(
            "lm.retry",
            model=self.model,
            server=self.server_address,
            attempt=attempt,
            delay=round(delay, 3),
            error=str(error),
        )
        span = current_span()
        if span is not None:  # the call's "chat" span
            span.add_event(
                "retry",
                {
                    "attempt": attempt,
                    "delay_s": round(delay, 3),
                    "error.type": type(error).__name__,
                    "http.response.status_code": error.status_code,
                },
            )
        if self.on_retry is not None:
            self.on_retry(attempt, delay, error)

    async def _attempt(
        self, content: bytes, level: str | None, tools: bool, retries: int
    ) -> LMResponse:
        if self._limits is None:
            return self._handle(await self._post(content, retries), level, tools, retries)
        async with self._limits.acquire(len(content) // 4) as permit:
            response = self._handle(await self._post(content, retries), level, tools, retries)
            if response.usage.total_tokens:  # servers without usage keep the estimate
                permit.settle(response.usage.total_tokens)
            return response

    async def _post(self, content: bytes, retries: int) -> Reply:
        try:
            if self.attempt_timeout is None:
                return await self._http.post(self._url, content)
            with trio.move_on_after(self.attempt_timeout):
                return await self._http.post(self._url, content)
        except TransportFailure as failure:
            exc = TransportFailure(  # the same failure, its text scrubbed of the key
                self._api_key.scrub(str(failure)),
                timeout=failure.timeout,
                retryable=failure.retryable,
            )
            exc.__cause__ = failure.__cause__
            where = f"{self.server_address}:{self.server_port}"
            if exc.timeout:
                error: LMError = LMTimeoutError(
                    f"{where} timed out ({exc}){after_retries(retries)}",
                    provider=self.provider,
                    model=self.model_name,
                )
            elif not exc.retryable:
                raise LMServerError(
                    f"cannot open a trusted connection to {where} ({exc}): check base_url, "
                    "or point SSL_CERT_FILE at the certificate authority the server uses",
                    provider=self.provider,
                    model=self.model_name,
                ) from exc
            else:
                error = LMServerError(
                    f"could not get a response from {where} ({exc}){after_retries(retries)}: "
                    "check that the server is running and base_url is right",
                    provider=self.provider,
                    model=self.model_name,
                )
            raise Retryable(error) from exc
        raise Retryable(
            LMTimeoutError(
                f"no response within attempt_timeout={self.attempt_timeout:g} s"
                + after_retries(retries),
                provider=self.provider,
                model=self.model_name,
            )
        )

    def _handle(self, reply: Reply, level: str | None, tools: bool, retries: int) -> LMResponse:
        """The response in a successful reply, or the typed error for a failed one.

        Raises:
            Retryable: a transient failure (408, 409, 429, 5xx, a garbled body).
            FormatRefused: the server refused the ``response_format`` of ``level``.
            LMError: a final failure.
        """
        if 200 <= reply.status < 300:
            return self._parse(reply, retries)
        error = error_for_reply(
            reply,
            sent_tools=tools,
            retries=retries,
            provider=self.provider,
            model=self.model_name,
            auth_hint=f"check api_key= or ${self.api_key_env}",
            scrub=self._api_key.scrub,
        )
        if level not in (None, "prompt") and refuses_format(error, reply.text):
            raise FormatRefused(error)
        if is_retryable_status(reply.status):
            raise Retryable(error, retry_after=parse_retry_after(reply.headers))
        raise error

    def _parse(self, reply: Reply, retries: int) -> LMResponse:
        """The :class:`LMResponse` in a successful reply's JSON body."""
        try:
            data = json.loads(reply.content)
        except ValueError:  # cut off or garbled on the way: worth another try
            raise Retryable(
                LMServerError(
                    f"the server answered with a body that is not JSON{after_retries(retries)}: "
                    f"{self._snippet(reply)!r}",
                    status_code=reply.status,
                    provider=self.provider,
                    model=self.model_name,
                )
            ) from None
        try:
            return self.parse_body(data)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise LMServerError(
                f"the server's response does not look like a {self.provider} response "
                f"({exc!r}): {self._snippet(reply)!r}; "
                "check base_url and the provider prefix of the model",
                status_code=reply.status,
                provider=self.provider,
                model=self.model_name,
            ) from None

    def _snippet(self, reply: Reply) -> str:
        """The start of a reply's body for an error message, without the key."""
        return self._api_key.scrub(reply.text[:300])

    # ------------------------------------------------------------ lifecycle
    async def aclose(self) -> None:
        """Close this run's connections (and the cache's file); the LM stays usable.

        Shielded from cancellation (and bounded), so leaving ``async with lm:``
        because of a cancel still releases everything.
        """
        with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_TIMEOUT):
            await self._http.aclose()
            if self.cache is not None:
                await self.cache.aclose()

    async def __aenter__(self) -> LM:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model!r}, base_url={self._public_base_url!r})"
