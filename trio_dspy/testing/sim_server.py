"""A simulated OpenAI-compatible (and Anthropic Messages) server on loopback.

Use it wherever a test, example or benchmark would otherwise need a real
provider::

    async with serve_sim(SimConfig(latency=0.2)) as sim:
        lm = td.LM("openai/sim-model", base_url=sim.base_url, api_key="x")

Endpoints: ``POST /v1/chat/completions`` (Chat Completions, ``stream``
included), ``POST /v1/messages`` (Anthropic Messages), ``POST /v1/embeddings``
(deterministic vectors, see :mod:`trio_dspy.testing.sim_embeddings`),
``GET /v1/models``, and ``GET /v1/sim/stats`` (:class:`SimStats` as JSON, for
a client in another process).
Answers follow the format each request asks for (see
:mod:`trio_dspy.testing.sim_answers`); :class:`SimConfig` sets latency,
faults, refused capabilities, the API key and a script.

The server is cheap: answers are cached per prompt (a few dozen variants,
picked by a hash of the body), and latency is one shared timer task
(:class:`~trio_dspy.testing.sim_timer.SleepQueue`, on trio's clock), so
thousands of requests can wait at once and ``autojump_clock`` skips the
waiting in tests. Most of the CPU per request goes to HTTP parsing (h11)
and socket I/O; the simulator's own work is tens of microseconds.
"""

from __future__ import annotations

import collections
import hmac
import inspect
import random
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import attrs
import trio

from ..groups import raise_single
from .http_server import HttpServer, Request, Response, serve_http
from .sim_answers import (
    Answer,
    Dialect,
    SimReply,
    SimRequest,
    build_answer,
    content_parts,
    read_request,
)
from .sim_config import Fault, SimConfig
from .sim_embeddings import embeddings_body, read_embeddings_request
from .sim_stats import SimStats
from .sim_stream import stream_response
from .sim_timer import SleepQueue
from .sim_wire import anthropic_body, error_response, openai_body, tokens

__all__ = ["SimServer", "SimStats", "serve_sim"]

# Left out of SimServer.request_headers: tests print what they record.
_CREDENTIAL_HEADERS = frozenset({"authorization", "x-api-key"})


class SimServer:
    """A running simulated server (yielded by :func:`serve_sim`).

    ``requests`` holds the most recent JSON request bodies (up to
    ``config.keep_requests``); ``request_headers`` the headers of as many
    recent completion requests (lower-case names; the credentials left out);
    ``stats`` the counters. :meth:`clear` resets them all.
    """

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.requests: collections.deque[dict[str, Any]] = collections.deque(
            maxlen=config.keep_requests
        )
        self.request_headers: collections.deque[dict[str, str]] = collections.deque(
            maxlen=config.keep_requests
        )
        self.stats = SimStats()
        self.http: HttpServer | None = None
        self._rng = random.Random(config.seed)
        self._sleeps = SleepQueue()

    def __repr__(self) -> str:
        where = self.http.base_url if self.http else "not started"
        return f"<SimServer {where} requests={self.stats.requests}>"

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        assert self.http is not None, "the server is not running"
        return self.http.port

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT`` (what Anthropic clients take as ``base_url``)."""
        assert self.http is not None, "the server is not running"
        return self.http.base_url

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1`` (what OpenAI clients take as ``base_url``)."""
        return self.root_url + "/v1"

    def content_parts(self, index: int = -1) -> list[dict[str, Any]]:
        """The content parts of recorded request ``index`` (the last by default):
        every part of its messages whose content is a list (text, images, tool
        results), in order, each with its message's ``role`` added.

        Raises:
            IndexError: no request recorded at ``index``.
        """
        return content_parts(self.requests[index])

    def clear(self) -> None:
        """Forget the recorded requests and reset the counters (numbering restarts at 1)."""
        self.requests.clear()
        self.request_headers.clear()
        in_flight = self.stats.in_flight
        self.stats = SimStats(in_flight=in_flight, max_in_flight=in_flight)

    # ---------------------------------------------------------------- routing
    async def handle(self, request: Request) -> Response:
        """Answer one HTTP request (the handler given to :func:`serve_http`)."""
        path = request.path.rstrip("/")
        if request.method == "POST" and path == "/v1/chat/completions":
            return await self._complete(request, "openai")
        if request.method == "POST" and path == "/v1/messages":
            return await self._complete(request, "anthropic")
        if request.method == "POST" and path == "/v1/embeddings":
            return await self._counted(request, self._embed)
        if request.method == "GET" and path == "/v1/sim/stats":
            # The counters, for a client in another process (a benchmark's
            # model calls per request); no credentials asked, nothing secret.
            return Response.from_json(attrs.asdict(self.stats))
        if request.method == "GET" and path == "/v1/models":
            denied = self._check_auth(request, "openai")
            if denied is not None:
                return denied
            models = [
                {"id": m, "object": "model", "created": 0, "owned_by": "trio-dspy-sim"}
                for m in self.config.models
            ]
            return Response.from_json({"object": "list", "data": models})
        return error_response(
            "openai", 404, f"unknown endpoint {request.method} {path}", code="not_found"
        )

    def _check_auth(self, request: Request, dialect: Dialect) -> Response | None:
        key = self.config.api_key
        if key is None:
            return None
        sent = request.header("authorization") or ""
        sent = sent[7:] if sent.lower().startswith("bearer ") else ""
        if dialect == "anthropic" and not sent:
            sent = request.header("x-api-key") or ""
        if sent and hmac.compare_digest(sent.encode(), key.encode()):
            return None
        self.stats.errors += 1
        where = "x-api-key header" if dialect == "anthropic" else "Authorization: Bearer header"
        return error_response(
            dialect,
            401,
            f"Incorrect or missing API key: send the configured key in the {where}.",
            code="invalid_api_key",
        )

    def _refusal(self, body: Mapping[str, Any], dialect: Dialect) -> Response | None:
        cfg = self.config
        if cfg.profile is not None and dialect == "openai":  # the imitated server's refusals
            refused = cfg.profile.refusal(body)
            if refused is not None:
                return refused
        fmt = body.get("response_format")
        kind = fmt.get("type") if isinstance(fmt, Mapping) else None
        if body.get("tools") and not cfg.supports_tools:
            message = "tools are not supported by this server: remove `tools` and `tool_choice`"
            return error_response(dialect, 400, message, param="tools", code="unsupported")
        if kind == "json_schema" and not cfg.supports_json_schema:
            message = (
                "response_format type `json_schema` is not supported by this server: "
                "use `json_object` or plain prompting"
            )
            return error_response(dialect, 400, message, param="response_format")
        if kind == "json_object" and not cfg.supports_json_object:
            message = "response_format type `json_object` is not supported by this server"
            return error_response(dialect, 400, message, param="response_format")
        return None

    def _fault(self, number: int, body: Mapping[str, Any]) -> Fault | None:
        for fault in self.config.faults:
            if fault.selects(number, body, self.config.seed):
                self.stats.faults[fault.kind] = self.stats.faults.get(fault.kind, 0) + 1
                return fault
        return None

    # ------------------------------------------------------------- completing
    async def _complete(self, request: Request, dialect: Dialect) -> Response:
        return await self._counted(request, partial(self._answer, dialect=dialect))

    async def _counted(
        self, request: Request, answer: Callable[[Request, int], Awaitable[Response]]
    ) -> Response:
        """``answer(request, number)``, counted in the stats and numbered for the faults."""
        stats = self.stats
        stats.requests += 1
        number = stats.requests
        self.request_headers.append(
            {k: v for k, v in request.headers if k not in _CREDENTIAL_HEADERS}
        )
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            return await answer(request, number)
        finally:
            self.stats.in_flight -= 1

    async def _answer(self, request: Request, number: int, *, dialect: Dialect) -> Response:
        denied = self._check_auth(request, dialect)
        if denied is not None:
            return denied
        try:
            body = request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self.stats.errors += 1
            return error_response(dialect, 400, "the request body must be a JSON object")
        self.requests.append(body)
        refused = self._refusal(body, dialect)
        if refused is not None:
            self.stats.errors += 1
            return refused
        try:
            req = read_request(body, dialect)
        except ValueError as exc:
            self.stats.errors += 1
            return error_response(dialect, 400, str(exc), param="messages")
        fault = self._fault(number, body)
        if fault is not None:
            early = _early_fault(fault, dialect, req.prompt_chars)
            if early is not None:
                return early
            if fault.kind == "stall":
                await self._sleeps.sleep(fault.stall)
        window = self.config.context_window
        if window is not None and tokens(req.prompt_chars) > window:
            self.stats.errors += 1
            return _context_error(dialect, req.prompt_chars, window)
        reply = await self._scripted(body)
        delay = reply.latency if reply and reply.latency is not None else None
        if delay is None:
            delay = self.config.latency.sample(body, self._rng)
        if delay > 0:
            await self._sleeps.sleep(delay)
        key = zlib.crc32(request.body) | (self.config.seed << 32)
        try:
            answer = build_answer(req, key, reply)
        except (ValueError, RecursionError) as exc:
            self.stats.errors += 1
            return error_response(dialect, 400, f"cannot answer this request: {exc}")
        answer = _truncated(answer, fault is not None and fault.kind == "truncate", req.max_tokens)
        render = anthropic_body if dialect == "anthropic" else openai_body
        payload = render(answer, model=req.model, prompt_chars=req.prompt_chars, number=number)
        if dialect == "openai" and isinstance(body.get("n"), int) and body["n"] > 1:
            _more_choices(payload, req, request.body, self.config.seed, reply, body["n"])
        profile = self.config.profile if dialect == "openai" else None
        if profile is not None:  # the imitated server's usage and extra fields
            payload = profile.shape(payload, body)
        self.stats.ok += 1
        if fault is not None and fault.kind == "malformed":
            text = Response.from_json(payload).body
            return Response(200, (("content-type", "application/json"),), text[: len(text) // 2])
        if body.get("stream"):
            return stream_response(
                payload,
                body,
                dialect,
                config=self.config,
                stats=self.stats,
                sleep=self._sleeps.sleep,
                fault=fault,
            )
        return Response.from_json(payload, headers=profile.headers if profile is not None else ())

    async def _embed(self, request: Request, number: int) -> Response:
        """Answer an embeddings request: auth, faults and latency as for completions."""
        denied = self._check_auth(request, "openai")
        if denied is not None:
            return denied
        try:
            body = request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self.stats.errors += 1
            return error_response("openai", 400, "the request body must be a JSON object")
        self.requests.append(body)
        try:
            texts, dimensions = read_embeddings_request(body, self.config.embedding_dimensions)
        except ValueError as exc:
            self.stats.errors += 1
            return error_response("openai", 400, str(exc), param="input")
        self.stats.embeddings += 1
        self.stats.embedded += len(texts)
        longest = max(len(t) for t in texts)
        fault = self._fault(number, body)
        if fault is not None:
            early = _early_fault(fault, "openai", longest)
            if early is not None:
                return early
            if fault.kind == "stall":
                await self._sleeps.sleep(fault.stall)
        window = self.config.context_window
        if window is not None and tokens(longest) > window:
            self.stats.errors += 1
            return _context_error("openai", longest, window)
        delay = self.config.latency.sample(body, self._rng)
        if delay > 0:
            await self._sleeps.sleep(delay)
        model = body.get("model")
        payload = embeddings_body(
            texts,
            model=model if isinstance(model, str) else "",
            dimensions=dimensions,
            seed=self.config.seed,
        )
        if fault is not None and fault.kind == "truncate":  # an answer short of its last text
            payload["data"].pop()
        self.stats.ok += 1
        if fault is not None and fault.kind == "malformed":
            text = Response.from_json(payload).body
            return Response(200, (("content-type", "application/json"),), text[: len(text) // 2])
        return Response.from_json(payload)

    async def _scripted(self, body: dict[str, Any]) -> SimReply | None:
        script = self.config.script
        if script is None:
            return None
        reply = script(body)
        if inspect.isawaitable(reply):
            reply = await reply
        return reply


def _more_choices(
    payload: dict[str, Any],
    req: SimRequest,
    raw: bytes,
    seed: int,
    reply: SimReply | None,
    n: int,
) -> None:
    """Add choices 1 to ``n - 1`` (at most 127) to ``payload``, as OpenAI answers ``n``.

    Each is generated from a key of its own, so they differ; their tokens
    count in the usage.
    """
    usage = payload["usage"]
    for index in range(1, min(n, _MAX_CHOICES)):
        key = zlib.crc32(raw + f"#{index}".encode()) | (seed << 32)
        answer = _truncated(build_answer(req, key, reply), False, req.max_tokens)
        extra = openai_body(answer, model=req.model, prompt_chars=req.prompt_chars, number=0)
        payload["choices"].append({**extra["choices"][0], "index": index})
        usage["completion_tokens"] += extra["usage"]["completion_tokens"]
        usage["total_tokens"] += extra["usage"]["completion_tokens"]


_MAX_CHOICES = 128


def _truncated(answer: Answer, fault: bool, max_tokens: int | None) -> Answer:
    """Cut the text (finish_reason "length") for a fault or when over ``max_tokens``."""
    cut = len(answer.text) // 2 if fault else len(answer.text)
    if max_tokens is not None and not answer.tool_calls:
        cut = min(cut, max_tokens * 4)
    if cut >= len(answer.text) and not fault:
        return answer
    return attrs.evolve(answer, text=answer.text[:cut], finish_reason="length")


def _early_fault(fault: Fault, dialect: Dialect, prompt_chars: int) -> Response | None:
    headers: list[tuple[str, str]] = []
    if fault.retry_after is not None and fault.kind in ("rate_limit", "unavailable"):
        headers.append(("retry-after", f"{fault.retry_after:g}"))
        if fault.retry_after_ms:
            headers.append(("retry-after-ms", str(round(fault.retry_after * 1000))))
    if fault.kind == "rate_limit":
        message = "Rate limit reached for requests: please try again later."
        return error_response(dialect, 429, message, code="rate_limit_exceeded", headers=headers)
    if fault.kind == "server_error":
        message = "The server had an error while processing your request."
        return error_response(dialect, 500, message)
    if fault.kind == "unavailable":
        message = "The server is overloaded or not ready yet."
        return error_response(dialect, 503, message, headers=headers)
    if fault.kind == "reset":
        return Response.connection_reset()
    if fault.kind == "context_length":
        return _context_error(dialect, prompt_chars, max(1, tokens(prompt_chars) // 2))
    return None


def _context_error(dialect: Dialect, prompt_chars: int, window: int) -> Response:
    used = tokens(prompt_chars)
    if dialect == "anthropic":
        message = f"prompt is too long: {used} tokens > {window} maximum"
    else:
        message = (
            f"This model's maximum context length is {window} tokens. However, your messages "
            f"resulted in {used} tokens. Please reduce the length of the messages."
        )
    return error_response(dialect, 400, message, param="messages", code="context_length_exceeded")


@asynccontextmanager
async def serve_sim(
    config: SimConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[SimServer]:
    """Run a simulated server for the body of the ``async with``.

    ``port=0`` picks a free port. Leaving the block stops the server and
    cancels every request still being handled (stalled ones included).

    Raises:
        OSError: the address cannot be bound.
    """
    sim = SimServer(config or SimConfig())
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(sim._sleeps.run)
            async with serve_http(sim.handle, host=host, port=port) as http:
                sim.http = http
                yield sim
            nursery.cancel_scope.cancel()  # after every request handler has finished
    except BaseExceptionGroup as group:  # the block's own error comes out as itself
        raise_single(group)
