"""Embeddings over an OpenAI-compatible ``/embeddings`` endpoint, on an ``LM``'s machinery.

:class:`EmbeddingsClient` builds the :class:`~trio_dspy.lm.LM` of the same
model and server and sends its requests through that LM's parts: the HTTP
client and its timeouts, the key (never shown), the limits
(``max_concurrency``, ``rpm``, ``tpm``), retries with backoff and the typed
errors. One call is one request of a few texts; :class:`~trio_dspy.Embedder`
batches a long list into such calls.

What the server answers is checked before it is used: one vector per text
(placed by its ``index``, each position once), every vector the same
length, every component a finite number. Anything else is an
:class:`~trio_dspy.errors.LMServerError` naming the field, never a vector
silently out of place.
"""

from __future__ import annotations

import math
import os
from collections.abc import Coroutine
from functools import partial
from typing import Any

import attrs
import trio

from ..checkpoint import entered
from ..errors import ConfigurationError
from ..primitives import Usage
from ..telemetry import semconv as sc
from ..telemetry.span import SpanKind, start_span
from ..unicode import utf8
from ..usage import record_usage
from .cache import Cache, make_cache
from .client import _BODY_JSON, _CLOSE_TIMEOUT, LM
from .embeddings_cache import entry_key, lookup, store
from .exchange import within_timeout
from .openai import OpenAILM
from .openai_stream import openai_usage
from .params import MALFORMED, BadField, read_index, refuse_unknown
from .retry import call_with_retries

__all__ = ["CLIENT_OPTIONS", "EMBEDDING_PARAMS", "Embeddings", "EmbeddingsClient"]

#: Request fields an embedder takes by name (others go through ``extra_body``).
EMBEDDING_PARAMS = frozenset({"dimensions", "user"})

#: The options of :class:`~trio_dspy.lm.LM` that an embedder passes on to it.
CLIENT_OPTIONS = frozenset(
    {
        "max_retries",
        "timeout",
        "attempt_timeout",
        "connect_timeout",
        "read_timeout",
        "max_response_bytes",
        "max_concurrency",
        "max_connections",
        "rpm",
        "tpm",
        "limits",
        "transport",
        "on_retry",
        "backoff",
    }
)

# DSPy's and LiteLLM's names for options spelt differently here.
_RENAMED = {
    "caching": "cache",
    "api_base": "base_url",
    "num_retries": "max_retries",
    "max_parallel_requests": "max_concurrency",
}


@attrs.frozen
class Embeddings:
    """The answer to one embeddings request: a vector per text, in order, and the usage."""

    vectors: list[list[float]]
    usage: Usage
    model: str


def check_options(options: dict[str, Any]) -> None:
    """Refuse a keyword that is neither an embedding parameter nor a client option.

    Raises:
        TypeError: naming it, with the closest known one when there is one.
    """
    known = sorted(EMBEDDING_PARAMS | CLIENT_OPTIONS | {"extra_body", "cache"})
    refuse_unknown(
        [name for name in options if name not in known],
        known,
        _RENAMED,
        owner="Embedder()",
        what="a request field this library does not know",
    )


class EmbeddingsClient:
    """Requests to ``POST {base_url}/embeddings`` for ``model`` (``"openai/<name>"``).

    Args:
        model: ``"openai/<name>"`` (any OpenAI-compatible server with
            ``base_url``) or a named compatible server (``"ollama/<name>"``, ...).
        base_url: as for :class:`~trio_dspy.lm.LM`.
        api_key: as for :class:`~trio_dspy.lm.LM` (``$OPENAI_API_KEY`` by
            default; never shown or logged).
        params: request fields sent with every request (``dimensions``, ``user``
            and ``extra_body``'s).
        cache: ``False`` (default); ``True``/``"memory"``, ``"disk"``, a path or
            a :class:`~trio_dspy.lm.cache.Cache` (``td.RedisCache(...)``), as for
            :class:`~trio_dspy.lm.LM`: each text's vector is kept, and a text
            found there is not sent again (and costs no tokens).
        **options: the :class:`~trio_dspy.lm.LM` options in :data:`CLIENT_OPTIONS`.

    Raises:
        ConfigurationError: the provider serves no embeddings (``anthropic/``)
            or is unknown.
        ValueError: an option is out of range or ``base_url`` is not http(s).
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        params: dict[str, Any] | None = None,
        cache: bool | str | os.PathLike[str] | Cache | None = False,
        **options: Any,
    ) -> None:
        lm = LM(model, base_url=base_url, api_key=api_key, **options)
        if not isinstance(lm, OpenAILM):
            raise ConfigurationError(
                f"{lm.provider!r} models serve no embeddings here: use "
                "'openai/<model>' (with base_url= for any OpenAI-compatible server)"
            )
        self.lm = lm
        self.params = dict(params or {})
        self.cache = make_cache(cache)
        self._url = lm._http.url("/embeddings")

    @property
    def model(self) -> str:
        """The model as given (``"openai/text-embedding-3-small"``)."""
        return self.lm.model

    async def embed(self, texts: list[str], params: dict[str, Any] | None = None) -> Embeddings:
        """The vectors of ``texts`` (a non-empty list): those in the cache, and
        one request, in an ``embeddings {model}`` span, for the others.

        ``params`` override the client's own for this request. The usage is
        recorded into every active :func:`~trio_dspy.track_usage`.

        Raises:
            LMTimeoutError: no answer within ``timeout`` (retries included).
            LMAuthError: the key was refused.
            LMRateLimitError: still 429 after every retry.
            LMServerError: 5xx or connection failures after every retry, or an
                answer that is not one finite vector per text.
            LMBadRequestError: the server refused the request (400/404/422).
        """
        await entered()
        fields = {k: v for k, v in {**self.params, **(params or {})}.items() if v is not None}
        if self.cache is None:
            return await self._request(texts, fields)
        keys = [entry_key(self.lm.model, self.lm.base_url, fields, t) for t in texts]
        found = await lookup(self.cache, keys)
        missing = [i for i, vector in enumerate(found) if vector is None]
        if not missing:
            return Embeddings([v for v in found if v is not None], Usage(), self.lm.model_name)
        result = await self._request([texts[i] for i in missing], fields)
        await store(self.cache, [keys[i] for i in missing], result.vectors, result.model)
        for i, vector in zip(missing, result.vectors, strict=True):
            found[i] = vector
        return Embeddings([v for v in found if v is not None], result.usage, result.model)

    async def _request(self, texts: list[str], fields: dict[str, Any]) -> Embeddings:
        """One request for ``texts`` with ``fields``: span, timeout, retries, usage."""
        lm = self.lm
        body = {"model": lm.model_name, "input": texts, **fields}
        content = utf8(_BODY_JSON.encode(body))  # one encoder made once, as for chat bodies
        with start_span(f"embeddings {lm.model_name}", SpanKind.CLIENT) as span:
            if span.is_recording:
                span.set_attributes(
                    {
                        sc.GEN_AI_OPERATION_NAME: sc.OPERATION_EMBEDDINGS,
                        sc.GEN_AI_PROVIDER_NAME: lm.provider,
                        sc.GEN_AI_REQUEST_MODEL: lm.model_name,
                        sc.GEN_AI_REQUEST_ENCODING_FORMATS: ("float",),
                        sc.SERVER_ADDRESS: lm.server_address,
                        sc.SERVER_PORT: lm.server_port,
                        "trio_dspy.embeddings.inputs": len(texts),
                    }
                )
            result = await self._within_timeout(
                call_with_retries(
                    partial(self._attempt, content, len(texts)),
                    max_retries=lm.max_retries,
                    backoff=lm.backoff,
                    on_retry=lm._retrying,
                )
            )
            if span.is_recording:
                span.set_attributes(
                    {
                        sc.GEN_AI_RESPONSE_MODEL: result.model or None,
                        sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT: len(result.vectors[0]),
                        sc.GEN_AI_USAGE_INPUT_TOKENS: result.usage.prompt_tokens,
                    }
                )
        record_usage(result.usage, requests=1)
        return result

    async def _within_timeout(self, call: Coroutine[Any, Any, Embeddings]) -> Embeddings:
        return await within_timeout(self.lm.timeout, call, self.lm._wire, "the Embedder")

    async def _attempt(self, content: bytes, count: int, retries: int) -> Embeddings:
        """One request under the limits; ``tpm`` is charged a quarter of the body's bytes."""
        limits = self.lm._limits
        if limits is None:
            return await self._exchange(content, count, retries)
        estimate = len(content) // 4
        async with limits.acquire(estimate) as permit:
            try:
                result = await self._exchange(content, count, retries)
            except BaseException:
                permit.settle(estimate)
                raise
            if result.usage.total_tokens:  # servers without usage keep the estimate
                permit.settle(result.usage.total_tokens)
            return result

    async def _exchange(self, content: bytes, count: int, retries: int) -> Embeddings:
        wire = self.lm._wire
        reply = await wire.post(content, retries, self._url)
        if not 200 <= reply.status < 300:
            raise wire.failure(reply, None, False, retries)
        data = await wire.decode(reply, retries)
        try:
            return read_embeddings(data, count, self.lm.model_name)
        except MALFORMED as exc:
            raise wire.malformed(reply, exc) from None

    async def aclose(self) -> None:
        """Close this run's connections (and the cache's file); the client stays usable.

        Shielded and bounded like :meth:`LM.aclose <trio_dspy.lm.LM.aclose>`.
        """
        await self.lm.aclose()
        if self.cache is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_TIMEOUT):
                await self.cache.aclose()

    def __repr__(self) -> str:
        return f"EmbeddingsClient({self.lm.model!r}, base_url={self.lm.base_url!r})"


def read_embeddings(data: Any, count: int, model: str) -> Embeddings:
    """The vectors of an OpenAI ``list`` of ``embedding`` objects for ``count`` texts.

    Each item goes to the position its ``index`` names (its place in the
    list when it has none).

    Raises:
        BadField: not ``count`` items, an index out of range or repeated, or
            a vector that is empty, of another length than the first, or
            holds something other than a finite number.
        Exception: another of the ``MALFORMED`` exceptions of
            ``trio_dspy.lm.params``: not an embeddings response at all.
    """
    items = data["data"]
    if not isinstance(items, list):
        raise BadField("data", items, "a list of embedding objects")
    if len(items) != count:
        raise BadField("data", f"{len(items)} item(s)", f"one embedding per text ({count})")
    vectors: list[list[float] | None] = [None] * count
    size: int | None = None
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadField("data[]", item, "an embedding object")
        index = read_index(item.get("index", position), "data[].index")
        if index >= count or vectors[index] is not None:
            raise BadField("data[].index", index, f"each position below {count} once")
        vector = _vector(item.get("embedding"), f"data[{index}].embedding")
        if size is None:
            size = len(vector)
        elif len(vector) != size:
            raise BadField(
                f"data[{index}].embedding", f"{len(vector)} components", f"{size} like the first"
            )
        vectors[index] = vector
    found = data.get("model")
    return Embeddings(
        [v for v in vectors if v is not None],
        openai_usage(data.get("usage")),
        found if isinstance(found, str) and found else model,
    )


def _finite(item: Any) -> bool:
    """Whether ``item`` is a JSON number (not a boolean) that is finite as a float."""
    if type(item) is not float and type(item) is not int:
        return False
    try:
        return math.isfinite(float(item))
    except OverflowError:  # an int too large for a float
        return False


def _vector(value: Any, field: str) -> list[float]:
    """``value`` as a non-empty list of finite floats."""
    if not isinstance(value, list) or not value:
        raise BadField(field, value, "a non-empty list of numbers (encoding_format 'float')")
    # The usual case at C speed; anything else is looked at one component at a time.
    if set(map(type, value)) == {float}:
        vector: list[float] = value
        # A finite sum has no NaN or infinity in it.
        if math.isfinite(sum(vector)) or all(map(math.isfinite, vector)):
            return vector
    for j, item in enumerate(value):
        if not _finite(item):
            raise BadField(f"{field}[{j}]", item, "a finite number")
    return [float(x) for x in value]
