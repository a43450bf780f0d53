"""The ASGI app that serves programs: routing, admission, one request scope per call.

Run it under an ASGI server on trio (``trio-dspy serve``, or hypercorn with
``--worker-class trio``): each request is a task of the server's nursery,
and its program runs inside it, so a client that hangs up cancels its
program and the model request it is waiting on.
"""

from __future__ import annotations

import hmac
import math
import random
import re
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import trio

from ..concurrency import RequestScope, request_scope
from ..errors import StructuringError
from ..groups import raise_single
from ..logs import get_logger
from ..modules.module import Module
from ..streaming import ProgramStream, StatusMessage, StreamResponse, streamify
from ..telemetry.propagation import parse_traceparent
from ..types import loads_json
from ..unicode import clean_text
from .answers import NO_CACHE, error_payload, result_payload, send_event, unauthorized
from .asgi import (
    HANG_UP,
    BodyTooLarge,
    ClientGone,
    Message,
    Receive,
    Scope,
    Send,
    header,
    headers,
    read_body,
    send_body,
    send_json,
)
from .failures import classify
from .openapi import openapi_document
from .playground import PAGE, SCRIPT
from .programs import ProgramSpec, describe_all

__all__ = ["DEFAULT_MAX_BODY_BYTES", "TIMEOUT_HEADER", "ServingApp", "app"]

log = get_logger(__name__)

#: The largest request body accepted by default (1 MiB).
DEFAULT_MAX_BODY_BYTES = 1 << 20
#: The request header a client shortens its deadline with, in seconds.
TIMEOUT_HEADER = "x-request-timeout"
#: How long a client refused for lack of capacity is asked to wait, in seconds.
RETRY_AFTER = 1

#: A program's route: the program, whether it streams, and its span's name.
_Route = tuple[ProgramSpec, bool, str]
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}", re.ASCII)
_PROGRAM_PATH = re.compile(r"/programs/([^/]+)(/stream)?")
_TIMEOUT = TIMEOUT_HEADER.encode("latin-1")
#: The request headers a program's request reads, found in one pass.
_READ = frozenset((b"content-length", b"x-request-id", _TIMEOUT, b"traceparent"))


def app(
    programs: Module | Mapping[str, Module],
    *,
    max_concurrency: int | None = None,
    request_timeout: float | None = None,
    api_key: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> ServingApp:
    """An ASGI app serving ``programs`` over HTTP (run it on trio: ``trio-dspy serve``).

    Args:
        programs: a module (served as ``"program"``) or a mapping of names to
            modules.
        max_concurrency: programs running at once; a request beyond it is
            answered 503 with ``Retry-After`` at once. ``None``: no limit.
        request_timeout: each request's deadline in seconds (a client may
            ask for a shorter one with the ``X-Request-Timeout`` header);
            past it the program is cancelled and the answer is 504.
        api_key: when set, every route but ``/``, ``/playground.js`` and
            ``/health`` needs ``Authorization: Bearer <api_key>`` (else 401).
        max_body_bytes: the largest request body; a longer one is answered 413.

    Routes: ``GET /programs`` (each program's input and output JSON
    Schemas), ``POST /programs/{name}`` (JSON inputs in, ``{"outputs",
    "usage", "request_id"}`` out), ``POST /programs/{name}/stream``
    (server-sent events: ``chunk``, ``status``, then ``prediction`` or
    ``error``), ``GET /openapi.json``, ``GET /health`` and ``GET /`` (the
    playground page).

    Raises:
        TypeError: a program is not a module.
        ValueError: no program, a name unfit for a URL, or a limit that is
            not positive.
        SignatureError: a program's inputs cannot be described (see
            :mod:`trio_dspy.serving.programs`).
    """
    return ServingApp(
        programs,
        max_concurrency=max_concurrency,
        request_timeout=request_timeout,
        api_key=api_key,
        max_body_bytes=max_body_bytes,
    )


class ServingApp:
    """The ASGI application :func:`app` returns; ``in_flight`` counts programs running now,
    ``handling`` the HTTP requests of any route being answered."""

    def __init__(
        self,
        programs: Module | Mapping[str, Module],
        *,
        max_concurrency: int | None,
        request_timeout: float | None,
        api_key: str | None,
        max_body_bytes: int,
    ) -> None:
        if max_concurrency is not None and (
            not isinstance(max_concurrency, int) or max_concurrency < 1
        ):
            raise ValueError(
                f"max_concurrency must be a positive int or None, got {max_concurrency!r}"
            )
        if request_timeout is not None and not (
            isinstance(request_timeout, int | float) and 0 < request_timeout < math.inf
        ):
            raise ValueError(
                f"request_timeout must be positive seconds or None, got {request_timeout!r}"
            )
        if not isinstance(max_body_bytes, int) or max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be a positive int, got {max_body_bytes!r}")
        if api_key is not None and not api_key:
            raise ValueError("api_key must not be empty (pass None to serve without one)")
        self.programs: dict[str, ProgramSpec] = describe_all(programs)
        self.max_concurrency = max_concurrency
        self.request_timeout = request_timeout
        self.max_body_bytes = max_body_bytes
        self._key = api_key.encode("utf-8") if api_key is not None else None
        self.in_flight = 0
        self.handling = 0
        self._drained: trio.Event | None = None
        self._streams: dict[str, Callable[..., AbstractAsyncContextManager[ProgramStream]]] = {}
        # A program's routes by their exact path, with their span's name:
        # one dict lookup per request instead of a pattern and a format.
        self._posts: dict[str, _Route] = {}
        for name, spec in self.programs.items():
            for suffix, stream in (("", False), ("/stream", True)):
                path = f"/programs/{name}{suffix}"
                self._posts[path] = (spec, stream, f"POST {path}")

    def __repr__(self) -> str:  # never the key
        return f"ServingApp(programs={list(self.programs)}, in_flight={self.in_flight})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection scope (``http`` or ``lifespan``)."""
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # websockets are not served
        self.handling += 1
        try:
            await self._route(scope, receive, send)
        finally:
            self.handling -= 1
            if not self.handling and self._drained is not None:
                self._drained.set()

    async def drained(self) -> None:
        """Return once no request is being answered.

        A stopping server waits for this, then closes its idle keep-alive
        connections rather than holding them for its whole grace period.
        """
        while self.handling:
            self._drained = trio.Event()
            await self._drained.wait()

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        if method == "POST":
            route = self._posts.get(path)
            if route is not None:
                if self._authorized(scope):
                    await self._admit(route, scope, receive, send)
                else:
                    await unauthorized(send)
                return
        if method == "GET" and path in ("/", "/index.html"):
            await send_body(send, 200, PAGE, b"text/html; charset=utf-8", NO_CACHE)
            return
        if method == "GET" and path == "/playground.js":
            await send_body(send, 200, SCRIPT, b"text/javascript; charset=utf-8", NO_CACHE)
            return
        if method == "GET" and path == "/health":
            await send_json(send, 200, {"status": "ok", "in_flight": self.in_flight})
            return
        if not self._authorized(scope):
            await unauthorized(send)
            return
        if path == "/programs" and method == "GET":
            await send_json(send, 200, {"programs": self._catalogue()})
            return
        if path == "/openapi.json" and method == "GET":
            await send_json(send, 200, openapi_document(self.programs, self._key is not None))
            return
        match = _PROGRAM_PATH.fullmatch(path)
        if match is None:
            await send_json(send, 404, error_payload("not_found", f"no route {path}"))
            return
        if method != "POST":
            await send_json(
                send,
                405,
                error_payload("method_not_allowed", "use POST"),
                [(b"allow", b"POST")],
            )
            return
        spec = self.programs.get(match.group(1))
        if spec is None:
            known = ", ".join(self.programs)
            await send_json(
                send,
                404,
                error_payload("not_found", f"no program {match.group(1)!r} (served: {known})"),
            )
            return
        name = f"POST /programs/{spec.name}{match.group(2) or ''}"
        await self._admit((spec, bool(match.group(2)), name), scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        if self._key is None:
            return True
        given = header(scope, "authorization") or ""
        scheme, _, token = given.partition(" ")
        # compare_digest takes as long whatever the key's first wrong byte.
        match = hmac.compare_digest(token.strip().encode("latin-1"), self._key)
        return scheme.lower() == "bearer" and match

    def _catalogue(self) -> dict[str, Any]:
        return {
            name: {
                "instructions": spec.instructions,
                "input_schema": spec.input_schema(),
                "output_schema": spec.output_schema(),
                "url": f"/programs/{name}",
                "stream_url": f"/programs/{name}/stream",
            }
            for name, spec in self.programs.items()
        }

    async def _admit(self, route: _Route, scope: Scope, receive: Receive, send: Send) -> None:
        """Take a slot (or answer 503), read and check the inputs, then run."""
        if self.max_concurrency is not None and self.in_flight >= self.max_concurrency:
            await send_json(
                send,
                503,
                error_payload("overloaded", f"{self.in_flight} requests are running; retry later"),
                [(b"retry-after", b"%d" % RETRY_AFTER)],
            )
            return
        self.in_flight += 1
        try:
            await self._handle(route, scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _handle(self, route: _Route, scope: Scope, receive: Receive, send: Send) -> None:
        spec, stream, name = route
        given = headers(scope, _READ)
        rid = _request_id(given.get(b"x-request-id"))
        ids = [(b"x-request-id", rid.encode("latin-1"))]
        try:
            body = await read_body(receive, self.max_body_bytes, given.get(b"content-length"))
        except BodyTooLarge:
            message = f"the request body is over {self.max_body_bytes} bytes"
            await send_json(
                send,
                413,
                error_payload("too_large", message, rid),
                [*ids, (b"connection", b"close")],
            )
            return
        except ClientGone:
            return
        try:
            inputs = spec.structure_inputs(
                loads_json(body.decode("utf-8", "replace")) if body else None
            )
        except StructuringError as exc:
            await send_json(
                send,
                422,
                error_payload("invalid_input", str(exc), rid, field=exc.path),
                ids,
            )
            return
        except ValueError as exc:
            await send_json(
                send,
                422,
                error_payload("invalid_json", f"the body is not JSON: {exc}", rid, field=""),
                ids,
            )
            return
        timeout, bad = _timeout(given.get(_TIMEOUT), self.request_timeout)
        if bad is not None:
            await send_json(send, 400, error_payload("bad_header", bad, rid), ids)
            return
        trace_parent = parse_traceparent(given.get(b"traceparent"))
        runner = self._stream if stream else self._call
        # A server that offers HANG_UP tells of a hang-up by a call: no task
        # of the request's own then waits for http.disconnect.
        extensions = scope.get("extensions")
        hang_up = extensions.get(HANG_UP) if extensions else None
        started = answered = False

        async def tracked(message: Message) -> None:
            # Whether the 200 left decides how a later failure is told: an
            # error event in the stream, or an error response of its own.
            nonlocal started, answered
            if message["type"] == "http.response.body" and not message.get("more_body"):
                # The server says `http.disconnect` once this is sent, as
                # ASGI has it: from now on that is no hang-up.
                answered = True
            await send(message)
            if message["type"] == "http.response.start":
                started = True

        try:
            with request_scope(
                name, request_id=rid, timeout=timeout, trace_parent=trace_parent
            ) as req:
                req.span.set_attribute("trio_dspy.program", spec.name)
                if hang_up is not None:
                    hang_up(req.cancel_scope.cancel)
                    # A whole answer is sent at once, last: no failure comes
                    # after its 200, so its sends need no tracking.
                    await runner(spec, inputs, req, tracked if stream else send)
                else:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(
                            _watch_disconnect,
                            receive,
                            req.cancel_scope,
                            lambda: answered,
                        )
                        await runner(spec, inputs, req, tracked)
                        nursery.cancel_scope.cancel()
            # Known only once the request's scope has exited: it caught a
            # cancellation before its deadline, so the client hung up.
            if req.cancel_scope.cancelled_caught:
                log.info("serving.client_gone", program=spec.name, request_id=rid)
        except BaseExceptionGroup as group:
            try:
                raise_single(group)
            except Exception as exc:
                await self._fail(exc, spec, rid, timeout, started, send)
        except Exception as exc:
            await self._fail(exc, spec, rid, timeout, started, send)

    async def _fail(
        self,
        exc: Exception,
        spec: ProgramSpec,
        rid: str,
        deadline: float | None,
        started: bool,
        send: Send,
    ) -> None:
        failure = classify(exc, deadline)
        log.error(
            "serving.program_failed",
            program=spec.name,
            request_id=rid,
            status=failure.status,
            exc_info=exc,
        )
        if started:
            # The 200 and the headers are gone: the stream ends with the error.
            await send_event(send, "error", {**failure.payload(rid), "status": failure.status})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        else:
            ids = [(b"x-request-id", rid.encode("latin-1"))]
            await send_json(send, failure.status, failure.payload(rid), ids)

    async def _call(
        self, spec: ProgramSpec, inputs: dict[str, Any], req: RequestScope, send: Send
    ) -> None:
        result = await spec.program(**inputs)
        ids = [(b"x-request-id", req.request_id.encode("latin-1"))]
        await send_json(send, 200, result_payload(spec, result, req), ids)

    async def _stream(
        self, spec: ProgramSpec, inputs: dict[str, Any], req: RequestScope, send: Send
    ) -> None:
        opened = self._streams.get(spec.name)
        if opened is None:
            opened = self._streams[spec.name] = streamify(spec.program)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-store"),
                    (b"x-accel-buffering", b"no"),  # proxies must not hold events back
                    (b"x-request-id", req.request_id.encode("latin-1")),
                ],
            }
        )
        async with opened(**inputs) as items:
            async for item in items:
                if isinstance(item, StreamResponse):
                    data = {
                        "predictor": item.predictor,
                        "field": item.field,
                        "chunk": item.chunk,
                    }
                    await send_event(send, "chunk", data)
                elif isinstance(item, StatusMessage):
                    await send_event(send, "status", {"message": item.text})
                else:
                    await send_event(send, "prediction", result_payload(spec, item, req))
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _watch_disconnect(
    receive: Receive, cancel_scope: trio.CancelScope, answered: Callable[[], bool]
) -> None:
    """Cancel the request's work when its client hangs up before it is ``answered()``."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if not answered():
                cancel_scope.cancel()
            return


def _request_id(given: str | None) -> str:
    """The caller's ``X-Request-Id`` when it is a safe token, else a new one."""
    if given is not None and _REQUEST_ID.fullmatch(given):
        return given
    # An id, not a secret: the generator of random, not a system call per request.
    return f"{random.getrandbits(64):016x}"


def _timeout(raw: str | None, default: float | None) -> tuple[float | None, str | None]:
    """The request's deadline in seconds: ``raw`` (the header)'s, if shorter than ``default``."""
    if raw is None:
        return default, None
    try:
        asked = float(raw)
    except ValueError:
        asked = math.nan
    if not 0 < asked < math.inf:
        return (
            None,
            f"{TIMEOUT_HEADER} must be a positive number of seconds, got {clean_text(raw)!r:.40}",
        )
    return (asked if default is None else min(asked, default)), None


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
