"""Many requests at once: ``gather``, ``as_completed`` and per-request scopes.

Every call runs as a child task of a nursery owned by the function you
called, so nothing outlives it: when ``gather`` returns (or raises), every
call it started has finished or been cancelled.
"""

from __future__ import annotations

import contextvars
import inspect
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager, nullcontext
from typing import Any, Literal, TypeVar, overload

import attrs
import structlog
import trio

from .checkpoint import entered
from .errors import RequestTimeoutError
from .groups import raise_single
from .primitives import Usage
from .settings import context
from .telemetry.span import Span, SpanKind, start_span
from .usage import count_usage

__all__ = [
    "RequestScope",
    "as_completed",
    "current_request",
    "gather",
    "request_scope",
]

T = TypeVar("T")


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")


_HOW = (
    "pass zero-argument async callables instead, e.g. "
    "functools.partial(pred, question=...) or lambda: pred(question=...)"
)


def _check_calls(what: str, calls: tuple[Any, ...]) -> None:
    """Refuse coroutines and non-callables before anything starts.

    Coroutines (the asyncio habit, ``gather(pred(question=q))``) are closed so
    no "never awaited" warning follows the error.

    Raises:
        TypeError: a call is a coroutine or awaitable, or is not callable.
    """
    bad = [(i, c) for i, c in enumerate(calls) if inspect.isawaitable(c) or not callable(c)]
    if not bad:
        return
    for _, call in bad:
        if isinstance(call, Coroutine):  # a module's call is one, not of the builtin type
            call.close()
    index, call = bad[0]
    if inspect.isawaitable(call):
        got = f"a coroutine ({_name(call)}), already called"
    else:
        got = f"{type(call).__name__} {call!r:.60}, which is not callable"
    raise TypeError(f"{what} argument {index} is {got}: {_HOW}")


def _name(coro: Any) -> str:
    return str(getattr(coro, "__qualname__", type(coro).__name__))


def _not_awaitable(call: Callable[[], Any], value: Any) -> TypeError:
    return TypeError(
        f"{getattr(call, '__qualname__', call)!r} returned {type(value).__name__} "
        f"{value!r:.60}, not an awaitable: is it a sync function? {_HOW}"
    )


async def _await_call(call: Callable[[], Awaitable[T]]) -> T:
    value = call()
    if not inspect.isawaitable(value):
        raise _not_awaitable(call, value)
    return await value


@overload
async def gather(
    *calls: Callable[[], Awaitable[T]],
    limit: int | None = None,
    return_exceptions: Literal[False] = False,
) -> list[T]: ...


@overload
async def gather(
    *calls: Callable[[], Awaitable[T]],
    limit: int | None = None,
    return_exceptions: Literal[True],
) -> list[T | Exception]: ...


async def gather(
    *calls: Callable[[], Awaitable[T]],
    limit: int | None = None,
    return_exceptions: bool = False,
) -> list[T] | list[T | Exception]:
    """Run each zero-argument async callable as a child task; results in input order.

    ``limit`` bounds how many run at once (``None``: all at once).

    With ``return_exceptions=False`` the first call to fail cancels the rest and
    its exception is raised as is (not wrapped in a group). With ``True`` each
    failed call's slot holds its exception and the others run to completion.
    Cancellation from outside cancels every call and propagates.

    ``gather`` is a checkpoint even with no calls. Calls are checked before
    any starts: a coroutine (``gather(pred(question=q))``, the asyncio habit)
    or a non-callable raises ``TypeError`` showing the right form,
    ``gather(functools.partial(pred, question=q))``; a callable that returns
    a non-awaitable (a sync function) fails its slot with ``TypeError``.

    Raises:
        ValueError: ``limit`` is not a positive integer.
        TypeError: a call is a coroutine or not callable.
        RuntimeError: not running under ``trio.run``.
        Exception: the first failure, when ``return_exceptions`` is false.
    """
    _check_calls("gather", calls)
    _check_limit(limit)
    await entered()
    results: list[Any] = [None] * len(calls)
    limiter = trio.CapacityLimiter(limit) if limit is not None else None
    failures: list[Exception] = []

    async def run(index: int, call: Callable[[], Awaitable[T]]) -> None:
        try:
            async with limiter if limiter is not None else nullcontext():
                results[index] = await _await_call(call)
        except Exception as exc:
            if not return_exceptions:
                failures.append(exc)
                raise
            results[index] = exc

    try:
        async with trio.open_nursery() as nursery:
            for index, call in enumerate(calls):
                nursery.start_soon(run, index, call)
    except BaseExceptionGroup as group:
        # Sibling tasks were cancelled because of the first failure; raise that
        # failure itself, unless something other than plain exceptions (e.g. a
        # KeyboardInterrupt) is in the group.
        if failures and group.split(Exception)[1] is None:
            raise failures[0] from None
        raise
    return results


@asynccontextmanager
async def as_completed(
    *calls: Callable[[], Awaitable[T]],
    limit: int | None = None,
) -> AsyncIterator[AsyncIterator[tuple[int, T | Exception]]]:
    """Run the calls concurrently and iterate ``(index, result)`` as each finishes.

    ::

        async with td.as_completed(*calls, limit=8) as results:
            async for index, result in results:
                print(index, result)

    A failed call yields its exception in place of a result. Leaving the block
    early cancels the calls still running. (It is a context manager rather
    than a bare async iterator so that the calls live in a nursery that
    closes with the block.)

    Calls are checked as for :func:`gather`.

    Raises:
        ValueError: ``limit`` is not a positive integer.
        TypeError: a call is a coroutine or not callable.
        RuntimeError: not running under ``trio.run``.
    """
    _check_calls("as_completed", calls)
    _check_limit(limit)
    await entered()
    send, receive = trio.open_memory_channel[tuple[int, Any]](math.inf)
    limiter = trio.CapacityLimiter(limit) if limit is not None else None

    async def run(index: int, call: Callable[[], Awaitable[T]]) -> None:
        async with limiter if limiter is not None else nullcontext():
            try:
                result: Any = await _await_call(call)
            except Exception as exc:
                result = exc
        send.send_nowait((index, result))

    async def runner() -> None:
        async with send, trio.open_nursery() as inner:
            for index, call in enumerate(calls):
                inner.start_soon(run, index, call)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(runner)
            async with receive:
                yield receive
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The calls' own failures are yielded, never raised, so whatever is in
        # the group came from the caller's block: give it back as it was.
        raise_single(group)


# ---------------------------------------------------------------- request scopes
@attrs.define
class RequestScope:
    """What :func:`request_scope` gives one request.

    Attributes:
        request_id: the id bound into logs and the root span.
        usage: tokens spent inside the scope, child tasks included.
        cancel_scope: cancel it to abandon the request.
        span: the request's root span (a non-recording one without a collector).
    """

    request_id: str
    usage: Usage
    cancel_scope: trio.CancelScope
    span: Span


_current_request: contextvars.ContextVar[RequestScope | None] = contextvars.ContextVar(
    "trio_dspy.request", default=None
)


def current_request() -> RequestScope | None:
    """The :class:`RequestScope` the calling task runs in, if any."""
    return _current_request.get()


@contextmanager
def request_scope(
    name: str = "request",
    *,
    request_id: str | None = None,
    timeout: float | None = None,
    trace_parent: tuple[str, str] | None = None,
    **overrides: Any,
) -> Iterator[RequestScope]:
    """Give one request its id, deadline, settings, usage and trace.

    Use it inside each child task that handles a request::

        async def handle(customer):
            with td.request_scope("customer", timeout=30, lm_kwargs={"temperature": 0}) as req:
                pred = await agent(request=customer.text)
            log.info("done", tokens=req.usage.total_tokens)

        async with trio.open_nursery() as nursery:
            for customer in customers:
                nursery.start_soon(handle, customer)

    ``overrides`` are settings (as for :func:`~trio_dspy.context`) for this
    request only; sibling requests never see them. The request opens a new
    trace (root span ``name``) and binds ``request_id`` into
    ``structlog.contextvars``. ``trace_parent`` (trace id, span id; see
    :func:`~trio_dspy.telemetry.propagation.parse_traceparent`) joins a
    caller's trace instead: the root span becomes that remote span's child.

    Raises:
        RequestTimeoutError: the block took longer than ``timeout`` seconds (the
            work inside was cancelled).
        TypeError: an override is not a setting.
    """
    rid = request_id or uuid.uuid4().hex[:16]
    deadline = trio.current_time() + timeout if timeout is not None else math.inf
    cancel_scope = trio.CancelScope(deadline=deadline)
    settings_cm = context(**overrides) if overrides else nullcontext()
    attributes = {"trio_dspy.request.id": rid}
    with (
        settings_cm,
        count_usage() as usage,
        start_span(
            name, SpanKind.SERVER, attributes, new_trace=True, remote_parent=trace_parent
        ) as span,
    ):
        scope = RequestScope(rid, usage, cancel_scope, span)
        # Bound and reset by token: structlog's bound_contextvars copies the
        # whole context to find what it restores, on every request.
        bound = structlog.contextvars.bind_contextvars(request_id=rid)
        try:
            token = _current_request.set(scope)
            try:
                with cancel_scope:
                    yield scope
            finally:
                _current_request.reset(token)
            # Raised inside the span, so the request's root span records the timeout.
            if cancel_scope.cancelled_caught and trio.current_time() >= deadline:
                raise RequestTimeoutError(
                    f"request {rid} timed out after {timeout:g}s", request_id=rid
                )
        finally:
            structlog.contextvars.reset_contextvars(**bound)
