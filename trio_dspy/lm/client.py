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

import contextlib
import inspect
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from functools import partial
from typing import Any, ClassVar, cast

import httpx
import trio

from ..checkpoint import entered
from ..errors import ConfigurationError, LMError
from ..http import HTTPClient, Reply, Secret
from ..journal.active import ACTIVE_RUN
from ..logs import get_logger
from ..messages import LMRequest, LMResponse
from ..unicode import utf8
from .base import BaseLM, LMStream
from .cache import Cache, SingleFlight, cache_key, cached_call, make_cache
from .exchange import Exchange, within_timeout
from .format_steps import FormatSteps
from .limits import Limits, LimitsBackend, LimitsStore, within_limits
from .params import api_key_from, check_params, check_positive, completion_estimate
from .prices import cost_wanted, load_prices
from .providers import known_providers, provider_class, register_provider
from .retry import Backoff, OnRetry, call_with_retries, report_retry
from .streaming import Sink, StreamDecoder, open_stream, stream_exchange

__all__ = ["LM", "known_providers", "register_provider"]  # the last two from .providers

log = get_logger(__name__)

# Seconds aclose() may spend closing connections and the cache, shielded.
_CLOSE_TIMEOUT = 5.0
# Where a call's timeout is set (for the timeout's error message).
_OWNER = "the LM or the request"
# The request body's writer, made once: json.dumps with arguments builds one per call.
_BODY_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
#: The default of ``max_response_bytes``: 32 MiB.
MAX_RESPONSE_BYTES = 32 * 1024 * 1024


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
        temperature, max_tokens, top_p, stop, seed: sampling parameters sent
            with every call (a request's own ``params`` win). Other known ones
            (``n``, ``presence_penalty``, ``max_completion_tokens``, ``top_k``,
            ... see :data:`~trio_dspy.lm.params.SAMPLING_PARAMS`) are taken by
            name too; an unknown name raises ``TypeError`` with a suggestion.
        extra_body: more fields for every request body, sent as given (for
            parameters of a particular server that this library does not know).
        max_retries: retries of transient failures (408, 409, 429, 5xx,
            connection errors, timeouts) with exponential backoff and full jitter.
        timeout: seconds for a whole call, retries and backoff included
            (``LMRequest.timeout`` overrides it per call); ``None`` (default):
            no limit beyond the per-attempt ones below.
        attempt_timeout: seconds for one HTTP attempt (default 600); a slower
            attempt is retried like a read timeout. The server sends nothing
            until the whole completion is generated, so this is also the wait
            for the first byte: 10 minutes, the default of the OpenAI and
            Anthropic SDKs, leaves room for long generations and bounds a
            server that never answers or trickles its answer. ``None``: no limit.
            For :meth:`stream` it bounds only the wait for the first event.
        connect_timeout: seconds to open a connection (default 10): a handshake
            takes well under a second, so a dead host fails fast and is retried.
        read_timeout: the longest silence, in seconds, once the response has
            begun (default 60): a server sends a finished answer at once, so a
            minute without a byte mid-response is a stall; it is retried.
        max_response_bytes: the largest response body accepted, as received and
            as decompressed (default 32 MiB, far above any completion);
            a larger one raises :class:`~trio_dspy.errors.LMResponseTooLargeError`
            without being read or inflated further, and is not retried.
        max_concurrency: requests in flight at once, shared by every task
            using this LM (``None``: unbounded).
        max_connections: connection-pool size; defaults to ``max_concurrency``
            (unbounded when that is ``None``).
        rpm: requests per minute (a token bucket on the trio clock).
        tpm: tokens per minute (a token bucket on the trio clock).
        limits: where ``max_concurrency``, ``rpm`` and ``tpm`` are kept:
            ``None`` (default) in this process; a
            :class:`~trio_dspy.lm.limits.LimitsStore` such as
            ``td.RedisLimits(url)`` to share them with every process using the
            same store (see :mod:`trio_dspy.lm.redis_limits`).
        cache: ``False`` (default); ``True``/``"memory"`` for an in-memory LRU;
            ``"disk"`` or a path for SQLite; or a :class:`~trio_dspy.lm.cache.Cache`.
        history_size: how many calls :attr:`history` keeps.
        transport: an ``httpx.AsyncBaseTransport`` used instead of the network
            (tests pass ``httpx.MockTransport(handler)``).
        on_retry: ``on_retry(attempt, delay, error)`` called before each retry.
        backoff: a :class:`~trio_dspy.lm.retry.Backoff` to tune the delays.
            Its ``max_retry_after`` (default 60 s) caps a server's
            ``Retry-After``: asked to wait longer, the call fails at once with
            :class:`~trio_dspy.errors.LMRateLimitError` (its ``retry_after``
            says how long the server asked for) rather than sleeping through it.
        **params: other known sampling parameters (see ``temperature``).

    The ``tpm`` budget is charged before a request is sent with an estimate:
    a quarter of the body's bytes for the prompt plus its ``max_tokens``
    (``COMPLETION_ESTIMATE`` = 1024 tokens when unset), so a burst cannot
    overrun it; the real usage settles the charge afterwards.

    Raises:
        ConfigurationError: ``model`` names no known provider.
        ValueError: an option is out of range or ``base_url`` is not http(s).
        TypeError: ``cache`` is of an unsupported kind, or a keyword is unknown.
    """

    provider = ""
    supports_tools = True
    #: response-format levels, strongest first; the last is plain prompting.
    format_levels: ClassVar[tuple[str, ...]] = ("prompt",)
    default_base_url: ClassVar[str] = ""
    base_url_env: ClassVar[str] = ""
    api_key_env: ClassVar[str] = ""
    endpoint: ClassVar[str] = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> LM:
        if cls is LM:
            model = args[0] if args else kwargs.get("model", "")
            cls = cast("type[LM]", provider_class(model if isinstance(model, str) else repr(model)))
        return super().__new__(cls)

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        top_p: float | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int | None = None,
        extra_body: Mapping[str, Any] | None = None,
        max_retries: int = 4,
        timeout: float | None = None,
        attempt_timeout: float | None = 600.0,
        connect_timeout: float | None = 10.0,
        read_timeout: float | None = 60.0,
        max_response_bytes: int | None = MAX_RESPONSE_BYTES,
        max_concurrency: int | None = None,
        max_connections: int | None = None,
        rpm: float | None = None,
        tpm: float | None = None,
        limits: LimitsStore | None = None,
        cache: bool | str | os.PathLike[str] | Cache | None = False,
        history_size: int = 100,
        transport: httpx.AsyncBaseTransport | None = None,
        on_retry: OnRetry | None = None,
        backoff: Backoff | None = None,
        **params: Any,
    ) -> None:
        check_params(params, _OPTIONS)
        provider, _, name = model.partition("/")
        if provider != self.provider or not name:
            raise ConfigurationError(
                f"{type(self).__name__} serves '{self.provider}/<model>' models, got {model!r}"
            )
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries!r}")
        check_positive(
            timeout=timeout,
            attempt_timeout=attempt_timeout,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_response_bytes=max_response_bytes,
        )
        named = dict(temperature=temperature, max_tokens=max_tokens, top_p=top_p, stop=stop)
        defaults = {k: v for k, v in {**named, "seed": seed}.items() if v is not None}
        defaults |= {**params, **(extra_body or {})}
        super().__init__(model, history_size=history_size, **defaults)
        #: the model name without the provider prefix (``gpt-4o-mini``).
        self.model_name = name
        self.max_retries = max_retries
        self.timeout = timeout
        self.attempt_timeout = attempt_timeout
        self.on_retry = on_retry
        self.backoff = backoff or Backoff()
        self.limits = Limits(max_concurrency=max_concurrency, rpm=rpm, tpm=tpm)
        self._limits: LimitsBackend | None = self.limits if self.limits.active else None
        self.cache = make_cache(cache)
        self._flights = SingleFlight()
        self._formats = FormatSteps(self.format_levels)
        self._api_key = Secret(api_key_from(api_key, self.api_key_env))
        url = base_url or os.environ.get(self.base_url_env) or self.default_base_url
        self._http = HTTPClient(
            url,
            headers=self.extra_headers(),
            secret_headers=self.auth_headers(self._api_key) if self._api_key else {},
            max_connections=max_connections if max_connections is not None else max_concurrency,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_response_bytes=max_response_bytes,
            transport=transport,
        )
        #: the POST, its typed errors and the reply's JSON (shared with streams, embeddings).
        self._wire = Exchange(
            self._http,
            self._http.url(self.endpoint_path(self._http.base_url.path)),
            provider=self.provider,
            model_name=self.model_name,
            api_key=self._api_key,
            api_key_env=self.api_key_env,
            attempt_timeout=attempt_timeout,
            parse_body=self.parse_body,
            read_reply=self.read_reply,
        )
        self._public_base_url = str(self._http.base_url.copy_with(username=None, password=None))
        if limits is not None and self._limits is not None:
            self._limits = limits.bind(self.limits, f"{self.model}@{self._public_base_url}")

    # ------------------------------------------------------------ provider hooks
    def endpoint_path(self, base_path: str) -> str:
        """The path appended to ``base_url`` for one call (``/chat/completions``)."""
        return self.endpoint

    def read_reply(self, response: LMResponse, reply: Reply) -> LMResponse:
        """``response`` with what ``reply``'s headers add to it (nothing, here). Raises nothing."""
        return response

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
            Exception: one of :data:`~trio_dspy.lm.params.MALFORMED` when the
                body has an unexpected shape (the client makes it an
                :class:`~trio_dspy.errors.LMServerError`).
        """
        raise NotImplementedError

    def stream_body(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` (from :meth:`build_body`) asking for the answer as a stream of events."""
        return {**body, "stream": True}

    def stream_decoder(self) -> StreamDecoder:
        """A new reader of this provider's stream events (one per attempt)."""
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
        return self._formats.reached

    # ------------------------------------------------------------ the call path
    def send(self, request: LMRequest) -> Coroutine[Any, Any, LMResponse]:
        """One call to await (a plain def: a frame fewer): cache, format step-down, retries, limits.

        Raises:
            LMTimeoutError: no answer within the timeout (retries included).
            LMAuthError: the key was refused (401/403); not retried.
            LMRateLimitError: still 429 after every retry.
            LMServerError: 5xx or connection failures after every retry.
            LMBadRequestError: the request was rejected (400/404/422).
            ToolsUnsupportedError: the request carried tools and the server takes none.
            ContextWindowExceededError: the prompt does not fit the model.
        """
        timeout = self._timeout(request)
        if timeout is None and self.cache is None and request.response_format is None:
            return self._call_at(request, None, None)  # no layer to go through
        return within_timeout(timeout, self._send(request), self._wire, _OWNER)

    def _timeout(self, request: LMRequest) -> float | None:
        """The call's timeout: the request's own, else the LM's."""
        return request.timeout if request.timeout is not None else self.timeout

    @contextlib.asynccontextmanager
    async def stream(
        self, request: LMRequest, *, trace_content: bool = False
    ) -> AsyncIterator[LMStream]:
        """Call the model and read its completion as the server sends it (SSE).

        Used as :meth:`BaseLM.stream <trio_dspy.lm.BaseLM.stream>` says; once
        read to the end, ``stream.response`` has the tool calls, usage and
        finish reason too.

        The call goes the way :meth:`send` does (timeout, response-format
        step-down, retries, limits) with these differences:

        * ``attempt_timeout`` bounds the wait for the stream to begin (the
          response head and its first event), not the whole stream; from
          then on ``read_timeout`` bounds each silence, so a long stream
          that keeps talking is never cut. ``timeout`` still bounds the
          whole call, the reading included.
        * A failure is retried only while no text has reached the reader;
          after that it raises its typed error (a retry could repeat or
          contradict what was read).
        * A cached LM answers a cached request at once, in one piece; a
          streamed answer is stored once complete. Concurrent identical
          streams are not merged.

        Leaving the block early cancels the request and closes its
        connection; the limits' slot is freed. The reader sets the pace: the
        connection is read only as fast as the deltas are taken. Usage,
        history and the ``chat`` span are recorded as for :meth:`request`
        once the stream has been read to its end, the span also noting
        ``gen_ai.response.time_to_first_chunk``.

        Raises:
            LMError: as :meth:`send`, from the ``async for`` or the ``async with``.
            RuntimeError: not running under ``trio.run``.
        """
        run = ACTIVE_RUN.get()  # a durable run replays or records the call (trio_dspy.journal)
        if run is not None and not run.inside_step():
            async with run.lm_stream(self, request, trace_content) as stream:
                yield stream
            return
        await entered()
        request = self._with_defaults(request)
        if cost_wanted():
            await load_prices()
        with self._observed(request, trace_content, stream=True) as call:
            key = None
            if self.cache is not None:
                key = cache_key(self.provider, self.model_name, self._public_base_url, request)

            def produce(sink: Sink) -> Coroutine[Any, Any, LMResponse]:
                call = self._call(request, sink)
                return within_timeout(self._timeout(request), call, self._wire, _OWNER)

            async with open_stream(call, produce, self.cache, key) as stream:
                yield stream
            if stream.finished:
                call.response = stream.response

    async def _send(self, request: LMRequest) -> LMResponse:
        if self.cache is None:
            return await self._call(request)
        key = cache_key(self.provider, self.model_name, self._public_base_url, request)
        return await cached_call(self.cache, self._flights, key, partial(self._call, request))

    async def _call(self, request: LMRequest, sink: Sink | None = None) -> LMResponse:
        """The call from response-format step-down on; ``sink``: stream it there."""
        fmt = request.response_format
        if fmt is None:
            return await self._call_at(request, None, sink)

        def call_at(level: str) -> Awaitable[LMResponse]:
            return self._call_at(request, level, sink)

        return await self._formats.call(
            fmt.type, call_at, model=self.model, server=self.server_address
        )

    def _call_at(
        self, request: LMRequest, level: str | None, sink: Sink | None
    ) -> Coroutine[Any, Any, LMResponse]:
        """The body at ``level`` written now, and the retries' coroutine to await (not
        a coroutine itself: a call in flight holds a frame fewer to resume and walk).
        Raises TypeError or ValueError when the body cannot be written as JSON."""
        body = self.build_body(request, level)
        if sink is not None:
            body = self.stream_body(body)
        content = utf8(_BODY_JSON.encode(body))
        # tpm reserves the prompt (about 4 bytes a token) and the completion.
        estimate = 0 if self._limits is None else len(content) // 4 + completion_estimate(body)
        tools = bool(request.tools)
        if sink is None and self._limits is None:  # nothing around the exchange: one frame
            return self._wire.call(
                content, level, tools, self.max_retries, self.backoff, self._retrying
            )
        attempt = partial(self._attempt, content, estimate, level, tools, sink)
        return call_with_retries(
            attempt,
            max_retries=self.max_retries,
            backoff=self.backoff,
            on_retry=self._retrying,
        )

    def _retrying(self, attempt: int, delay: float, error: LMError) -> None:
        report_retry(self.model, self.server_address, attempt, delay, error)
        if self.on_retry is not None:
            self.on_retry(attempt, delay, error)

    async def _attempt(
        self,
        content: bytes,
        estimate: int,
        level: str | None,
        tools: bool,
        sink: Sink | None,
        retries: int,
    ) -> LMResponse:
        exchange: Callable[[bytes, str | None, bool, int], Awaitable[LMResponse]] = (
            self._exchange
            if sink is None
            else partial(stream_exchange, self._wire, self.stream_decoder, sink)
        )
        if self._limits is None:
            return await exchange(content, level, tools, retries)
        # tpm is charged what the server counted; the prompt alone when it failed.
        call = partial(exchange, content, level, tools, retries)
        return await within_limits(self._limits, estimate, len(content) // 4, call)

    async def _exchange(self, content: bytes, level: str | None, tools: bool, n: int) -> LMResponse:
        """One POST and its response read whole (``n``: the retries so far)."""
        return await self._wire.handle(await self._wire.post(content, n), level, tools, n)

    # ------------------------------------------------------------ lifecycle
    async def aclose(self) -> None:
        """Close this run's connections (and the cache's file); the LM stays usable.

        Shielded from cancellation (and bounded), so leaving ``async with lm:``
        because of a cancel still releases everything. A checkpoint, like
        trio's own ``aclose`` methods: closed first, then ``Cancelled`` if the
        surrounding scope is cancelled.
        """
        with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_TIMEOUT):
            await self._http.aclose()
            if self.cache is not None:
                await self.cache.aclose()
        await trio.lowlevel.checkpoint()

    def __repr__(self) -> str:
        # Safe on an instance whose constructor raised half-way.
        model = getattr(self, "model", "?")
        base_url = getattr(self, "_public_base_url", "?")
        return f"{type(self).__name__}({model!r}, base_url={base_url!r})"


#: The constructor's own keyword options (offered when a name is misspelt).
_OPTIONS = frozenset(inspect.signature(LM.__init__).parameters) - {"self", "model", "params"}

# ``__new__`` (which picks the provider's class) takes ``*args, **kwargs``, and
# ``inspect.signature(td.LM)`` would show that instead of the real parameters
# (in help(), IDEs and notebooks): show ``__init__``'s, without ``self``.
_init = inspect.signature(LM.__init__)
LM.__signature__ = _init.replace(  # type: ignore[attr-defined]
    parameters=list(_init.parameters.values())[1:], return_annotation=inspect.Signature.empty
)
