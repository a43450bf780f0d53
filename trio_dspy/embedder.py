"""``Embedder``: texts to vectors, from a hosted model or any function.

::

    embedder = td.Embedder("openai/text-embedding-3-small", max_concurrency=8)
    vectors = await embedder(["first text", "second text"])   # list[list[float]]
    vector = await embedder("one text")                       # list[float]

    embedder = td.Embedder(model.encode)   # a local model: sync or async, list[str] -> vectors

A long list is cut into batches of ``batch_size`` texts, one request each;
the batches of a hosted model run at once, under the limits of its
:class:`~trio_dspy.lm.LM` (``max_concurrency``, ``rpm``, ``tpm``), and the
vectors come back in input order. Vectors are plain lists of floats: this
library does not depend on numpy (``numpy.array(vectors)`` gives DSPy's shape).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, overload

import trio

from .checkpoint import entered
from .concurrency import gather
from .errors import LMServerError
from .unicode import clean_text
from .vectors import VectorizerError, checked_vectors, is_async_callable

if TYPE_CHECKING:
    from .lm.embeddings import EmbeddingsClient

__all__ = ["Embedder"]


class Embedder:
    """Computes embeddings: ``await embedder(texts) -> list[list[float]]``.

    Args:
        model: a hosted model, ``"openai/<name>"`` (any OpenAI-compatible
            server's ``/embeddings`` with ``base_url``; the named compatible
            servers, ``"ollama/<name>"`` and the like, too); or a function from
            a list of texts to one vector per text, sync (run in a worker
            thread, one batch at a time) or async (batches at once).
        batch_size: texts per request (or per call of the function).
        base_url: for a hosted model, as for :class:`~trio_dspy.LM`
            (``$OPENAI_BASE_URL`` by default).
        api_key: for a hosted model, as for :class:`~trio_dspy.LM`
            (``$OPENAI_API_KEY`` by default). Never shown in reprs, logs,
            spans or errors.
        **kwargs: for a hosted model, request fields (``dimensions``, ``user``,
            ``extra_body={...}``) and the client options of :class:`~trio_dspy.LM`
            (``max_concurrency``, ``rpm``, ``tpm``, ``max_retries``, ``timeout``
            (per request, retries included), ``attempt_timeout``, ``limits``,
            ``transport``, ...), and ``cache`` (``False`` by default; ``True``,
            ``"disk"``, a path or a cache such as ``td.RedisCache(...)``, as for
            :class:`~trio_dspy.LM`: each text's vector is kept and not asked for
            again). For a function: keyword arguments passed to every call, as
            DSPy does.

    Raises:
        ValueError: ``batch_size`` is below 1, or a client option is out of range.
        TypeError: ``model`` is neither a string nor callable, a keyword is
            unknown, or ``base_url``/``api_key`` come with a function.
        ConfigurationError: the provider is unknown or serves no embeddings.
    """

    def __init__(
        self,
        model: str | Callable[..., Any],
        *,
        batch_size: int = 200,
        base_url: str | None = None,
        api_key: str | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a whole number of at least 1, got {batch_size!r}")
        self.model = model
        self.batch_size = batch_size
        self.default_kwargs: dict[str, Any] = {}
        self.client: EmbeddingsClient | None = None
        """A hosted model's :class:`~trio_dspy.lm.embeddings.EmbeddingsClient`, else ``None``."""
        self._function: Callable[..., Any] | None = None
        if isinstance(model, str):
            # The HTTP client loads only for a hosted model (a local function needs none of it).
            from .lm.embeddings import CLIENT_OPTIONS, EmbeddingsClient, check_options

            check_options(kwargs)
            client_options = CLIENT_OPTIONS | {"cache"}
            options = {k: v for k, v in kwargs.items() if k in client_options}
            params = {k: v for k, v in kwargs.items() if k not in client_options}
            params.update(params.pop("extra_body", None) or {})
            self.default_kwargs = params
            self.client = EmbeddingsClient(
                model, base_url=base_url, api_key=api_key, params=params, **options
            )
        elif callable(model):
            if base_url is not None or api_key is not None:
                raise TypeError(
                    "base_url and api_key are for a hosted model ('openai/<name>'); "
                    "a function embeds by itself"
                )
            self.default_kwargs = dict(kwargs)
            self._function = model
        else:
            raise TypeError(
                "model must be a hosted model's name ('openai/text-embedding-3-small') or a "
                f"function from a list of texts to vectors, got {type(model).__name__}"
            )

    @overload
    async def __call__(
        self, inputs: str, *, batch_size: int | None = None, **kwargs: Any
    ) -> list[float]: ...

    @overload
    async def __call__(
        self, inputs: Sequence[str], *, batch_size: int | None = None, **kwargs: Any
    ) -> list[list[float]]: ...

    async def __call__(
        self, inputs: str | Sequence[str], *, batch_size: int | None = None, **kwargs: Any
    ) -> list[float] | list[list[float]]:
        """The vector of each text, in input order; for a single string, its vector alone.

        ``batch_size`` and ``kwargs`` (request fields, or the function's
        keyword arguments) override the embedder's own for this call. Lone
        surrogates in a text are sent as U+FFFD. A checkpoint, even for no texts.

        Raises:
            TypeError: an input is not a string.
            ValueError: ``batch_size`` is below 1.
            LMError: a hosted model's request failed (the subclass says how),
                or its answer is not one finite vector per text of one length
                (:class:`~trio_dspy.errors.LMServerError`).
            VectorizerError: the function's answer is not one finite vector per
                text, all of one length.
            Exception: whatever the function raised.
        """
        await entered()
        single = isinstance(inputs, str)
        texts = _texts(inputs)
        size = self.batch_size if batch_size is None else batch_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"batch_size must be a whole number of at least 1, got {size!r}")
        if self.client is not None:
            kwargs = _request_fields(kwargs)
        batches = [texts[i : i + size] for i in range(0, len(texts), size)]
        results = await self._run(batches, {**self.default_kwargs, **kwargs})
        vectors = [vector for batch in results for vector in batch]
        self._check_lengths(vectors)
        return vectors[0] if single else vectors

    acall = __call__
    """DSPy's name for the call (``await embedder.acall(texts)``)."""

    async def _run(
        self, batches: list[list[str]], kwargs: dict[str, Any]
    ) -> list[list[list[float]]]:
        if self.client is not None:
            client = self.client

            async def request(batch: list[str]) -> list[list[float]]:
                return (await client.embed(batch, kwargs)).vectors

            return await gather(*(partial(request, b) for b in batches))
        function = self._function
        assert function is not None  # an embedder has a client or a function
        if is_async_callable(function):
            calls = (partial(self._call_async, function, b, kwargs) for b in batches)
            return await gather(*calls)
        return [await self._call_sync(function, b, kwargs) for b in batches]

    async def _call_async(
        self, function: Callable[..., Any], batch: list[str], kwargs: dict[str, Any]
    ) -> list[list[float]]:
        result = function(batch, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return checked_vectors(result, len(batch), f"a batch of {len(batch)} text(s)", None)

    async def _call_sync(
        self, function: Callable[..., Any], batch: list[str], kwargs: dict[str, Any]
    ) -> list[list[float]]:
        call = partial(function, batch, **kwargs)
        result = await trio.to_thread.run_sync(call, abandon_on_cancel=True)
        if inspect.isawaitable(result):  # a sync wrapper that returned a coroutine
            result = await result
        return checked_vectors(result, len(batch), f"a batch of {len(batch)} text(s)", None)

    def _check_lengths(self, vectors: list[list[float]]) -> None:
        """Every vector of one call has the first one's length (batches are checked alone)."""
        if not vectors:
            return
        want = len(vectors[0])
        for index, vector in enumerate(vectors):
            if len(vector) == want:
                continue
            message = (
                f"vector {index} has {len(vector)} component(s), vector 0 has {want}: "
                "the batches of one call came back with vectors of different lengths"
            )
            if self.client is not None:
                raise LMServerError(
                    message, provider=self.client.lm.provider, model=self.client.lm.model_name
                )
            raise VectorizerError(message, value=vector)

    async def aclose(self) -> None:
        """Close a hosted model's connections (the embedder stays usable). Raises nothing."""
        if self.client is not None:
            await self.client.aclose()
        else:
            await trio.lowlevel.checkpoint()

    def __deepcopy__(self, memo: dict[int, Any]) -> Embedder:
        # Shared like a model: copies of a program use one client, its
        # connections and limits.
        return self

    async def __aenter__(self) -> Embedder:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        if self.client is not None:
            where = self.client.lm.base_url
            return f"Embedder({self.model!r}, batch_size={self.batch_size}, base_url={where!r})"
        name = getattr(self.model, "__qualname__", type(self.model).__name__)
        return f"Embedder({name}, batch_size={self.batch_size})"


def _request_fields(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A call's keywords for a hosted model: request fields, ``extra_body``'s spread.

    Raises:
        TypeError: a keyword that is no request field (client options are
            the embedder's own, fixed when it is built).
    """
    from .lm.embeddings import EMBEDDING_PARAMS

    fields = dict(kwargs)
    extra = fields.pop("extra_body", None) or {}
    for name in fields:
        if name not in EMBEDDING_PARAMS:
            raise TypeError(
                f"an embedder call got an unexpected keyword argument {name!r}: a call takes "
                f"{', '.join(sorted(EMBEDDING_PARAMS))} and extra_body={{...}} (client options "
                "such as max_concurrency belong to Embedder(...))"
            )
    return {**fields, **extra}


def _texts(inputs: Any) -> list[str]:
    """``inputs`` as a list of texts, lone surrogates replaced."""
    if isinstance(inputs, str):
        return [clean_text(inputs)]
    if isinstance(inputs, bytes | bytearray) or not isinstance(inputs, Sequence | list):
        raise TypeError(
            f"inputs must be a string or a list of strings, got {type(inputs).__name__}"
        )
    texts = list(inputs)
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"input {index} is {type(text).__name__}, not a string")
    return [clean_text(t) for t in texts]
