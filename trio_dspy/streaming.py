"""``streamify``: read a program's output fields while the model is still writing them.

::

    stream_program = td.streamify(program, listen=["reply"])
    async with stream_program(request="...", mood=Mood.happy) as stream:
        async for item in stream:
            ...  # td.StreamResponse | td.StatusMessage | and last, the td.Prediction

The ``async with`` opens a nursery and runs the program in a child task; the
items reach the block through a bounded memory channel, so a consumer that
reads slowly slows the program (and its model calls) down rather than letting
memory grow. Leaving the block early cancels the program. An error in the
program comes out of the iteration, and so out of the ``async with``, as
itself (not wrapped in an exception group).

Every call of every listened predictor is streamed, nested modules and child
tasks included (a contextvar carries the listener); predictors are those of
``program.named_predictors()`` when the stream opens, and a predictor called
again (an agent's steps) streams each call in turn. ``BestOfN`` and
``Refine`` stream none of their attempts (any of them may be thrown away):
their prediction comes whole. A predictor whose answer
did not parse asks again without streaming (a :class:`StatusMessage` says
so); if the new answer does not continue what was sent, the chunks of that
field stop short of its value and the final :class:`~trio_dspy.Prediction`
is the reference.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Generator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Literal, overload

import attrs
import trio

from .aliases import refuse_keywords
from .checkpoint import entered
from .groups import raise_single
from .modules.module import Module
from .primitives import Prediction
from .stream_listener import (
    Listener,
    StatusMessage,
    StreamResponse,
    listen_here,
    status,
    str_output_fields,
)
from .stream_names import StatusMessageProvider, StreamListener

__all__ = [
    "ProgramStream",
    "StatusMessage",
    "StreamItem",
    "StreamResponse",
    "status",
    "streamify",
]

StreamItem = StreamResponse | StatusMessage | Prediction
"""What a :class:`ProgramStream` yields."""

DEFAULT_BUFFER = 16


@attrs.frozen
class _Failure:
    """The program's error, sent after the items it produced."""

    error: Exception


class ProgramStream:
    """The items of one streamed run: ``async for item in stream``.

    Yields :class:`StreamResponse` and :class:`StatusMessage` items as the
    program produces them, then its :class:`~trio_dspy.Prediction`, last.
    """

    def __init__(self, receive: trio.MemoryReceiveChannel[Any]) -> None:
        self._receive = receive

    def __aiter__(self) -> ProgramStream:
        return self

    async def __anext__(self) -> StreamItem:
        """The next item, waiting for the program to produce it.

        Raises:
            StopAsyncIteration: the prediction has been given.
            Exception: the program failed (its own error, as it was raised).
        """
        try:
            item = await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None
        if isinstance(item, _Failure):
            raise item.error
        result: StreamItem = item
        return result


@overload
def streamify(
    program: Module,
    listen: Sequence[str] | None = None,
    *,
    buffer: int = DEFAULT_BUFFER,
    stream_listeners: Sequence[StreamListener] | None = None,
    status_message_provider: StatusMessageProvider | None = None,
    async_streaming: Literal[True] = True,
    **dspy_only: Any,
) -> Callable[..., AbstractAsyncContextManager[ProgramStream]]: ...


@overload
def streamify(
    program: Module,
    listen: Sequence[str] | None = None,
    *,
    buffer: int = DEFAULT_BUFFER,
    stream_listeners: Sequence[StreamListener] | None = None,
    status_message_provider: StatusMessageProvider | None = None,
    async_streaming: Literal[False],
    **dspy_only: Any,
) -> Callable[..., Generator[StreamItem, None, None]]: ...


def streamify(
    program: Module,
    listen: Sequence[str] | None = None,
    *,
    buffer: int = DEFAULT_BUFFER,
    stream_listeners: Sequence[StreamListener] | None = None,
    status_message_provider: StatusMessageProvider | None = None,
    async_streaming: bool = True,
    **dspy_only: Any,
) -> Callable[..., Any]:
    """Wrap ``program`` so that its calls stream: ``async with streamed(**inputs) as stream``.

    Args:
        program: any module (a ``Predict``, a ``ReAct`` agent, your own).
        listen: the output fields to stream, by name, in whichever predictor
            of the program has them; ``None`` streams every ``str`` output
            field of every predictor (``named_predictors()``).
        buffer: how many items may wait for the consumer before the program
            waits in turn.
        stream_listeners: DSPy's spelling of ``listen``: each
            :class:`~trio_dspy.StreamListener` names a field, and optionally
            the predictor (``predict=`` or ``predict_name=``) to stream it from.
        status_message_provider: a :class:`~trio_dspy.StatusMessageProvider`
            writing the status lines (tools, and modules and LM calls if it
            says so).
        async_streaming: ``False`` (DSPy's option, for code without an event
            loop): each call gives a plain generator of the items instead,
            the program running in its own ``trio.run`` in a worker thread
            (:mod:`trio_dspy.stream_sync`).

    Returns:
        A function of the program's inputs; each call gives an async context
        manager that runs the program once and yields its
        :class:`ProgramStream` (a generator of the items with
        ``async_streaming=False``). The program's own errors come out of the
        stream's iteration (and so of the ``async with``) unchanged.

    Raises:
        TypeError: ``program`` is not a module, both ``listen`` and
            ``stream_listeners`` were given, or a DSPy keyword this function
            does not take (the message says what to write).
        ValueError: a name in ``listen`` is no ``str`` output field of any
            predictor of ``program`` (the message lists those there are), or
            ``buffer`` is negative.
    """
    if not isinstance(program, Module):
        raise TypeError(f"streamify needs a td.Module, got {type(program).__name__}")
    if isinstance(listen, str):
        raise TypeError(f"listen must be a list of field names, e.g. [{listen!r}]")
    if not isinstance(buffer, int) or buffer < 0:
        raise ValueError(f"buffer must be a non-negative int, got {buffer!r}")
    refuse_keywords("td.streamify", dspy_only, _DSPY_ONLY)
    if stream_listeners is not None:
        if listen is not None:
            raise TypeError("give listen= or stream_listeners=, not both")
        _check_listen(program, [sl.signature_field_name for sl in stream_listeners])
    elif listen is not None:
        _check_listen(program, listen)
    fields: frozenset[str | tuple[str, str]] | None
    once: frozenset[str | tuple[str, str]] = frozenset()
    if stream_listeners is not None:
        fields = frozenset(_listened(program, sl) for sl in stream_listeners)
        # As DSPy's: a listener without allow_reuse streams one call only.
        reused = {_listened(program, sl) for sl in stream_listeners if sl.allow_reuse}
        once = fields - reused
    else:
        fields = None if listen is None else frozenset(listen)

    def open_stream(**inputs: Any) -> AbstractAsyncContextManager[ProgramStream]:
        return _StreamCall(_run(program, fields, buffer, inputs, status_message_provider, once))

    if not async_streaming:
        from .stream_sync import sync_stream

        return sync_stream(open_stream, buffer)
    return open_stream


class _StreamCall(AbstractAsyncContextManager[ProgramStream]):
    """One call of a streamed program: entered with ``async with``, not iterated.

    DSPy's ``streamify`` gives an async generator (``async for chunk in
    stream_program(...)``); here the run needs a block that owns its task, so
    iterating the call directly says what to write instead.
    """

    def __init__(self, run: AbstractAsyncContextManager[ProgramStream]) -> None:
        self._run = run

    async def __aenter__(self) -> ProgramStream:
        return await self._run.__aenter__()

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        return await self._run.__aexit__(*exc_info)

    def __aiter__(self) -> Any:
        raise TypeError(
            "a streamed call is not iterated directly: write `async with "
            "stream_program(**inputs) as stream:` and then `async for item in stream:` "
            "inside the block (the block owns the program's task)"
        )


_DSPY_ONLY = {
    "include_final_prediction_in_output_stream": "the prediction is always the last item",
    "is_async_program": "programs here are async already",
}


def _listened(program: Module, listener: StreamListener) -> str | tuple[str, str]:
    """What ``listener`` listens to: a field, or a (predictor name, field) pair.

    Raises:
        ValueError: its predictor is not one of ``program``'s.
    """
    field = listener.signature_field_name
    if listener.predict is None and listener.predict_name is None:
        return field
    names = dict(program.named_predictors())
    if listener.predict is not None:
        found = [n for n, p in names.items() if p is listener.predict]
        if not found:
            raise ValueError(
                f"the StreamListener for {field!r} names a predictor not in the program"
            )
        return found[0], field
    if listener.predict_name not in names:
        raise ValueError(
            f"the StreamListener for {field!r} names predictor {listener.predict_name!r}; "
            f"the program's are {', '.join(names)}"
        )
    return listener.predict_name, field


def _check_listen(program: Module, listen: Sequence[str]) -> None:
    known: dict[str, list[str]] = {}
    for name, predictor in program.named_predictors():
        for field in str_output_fields(predictor.signature):
            known.setdefault(field, []).append(name)
    unknown = [f for f in listen if f not in known]
    if unknown:
        there = "; ".join(f"{f} ({', '.join(names)})" for f, names in known.items()) or "none"
        raise ValueError(
            f"listen names {', '.join(map(repr, unknown))}, which no predictor of "
            f"{type(program).__name__} outputs as a str field; its str output fields "
            f"(and predictors) are: {there}"
        )


@asynccontextmanager
async def _run(
    program: Module,
    listen: frozenset[str | tuple[str, str]] | None,
    buffer: int,
    inputs: dict[str, Any],
    provider: StatusMessageProvider | None = None,
    once: frozenset[str | tuple[str, str]] = frozenset(),
) -> AsyncIterator[ProgramStream]:
    await entered()
    names = {id(p): name for name, p in program.named_predictors()}
    send, receive = trio.open_memory_channel[Any](buffer)
    listener = Listener(send, names, listen, provider, once)
    try:
        with receive:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_produce, program, inputs, listener, send)
                try:
                    yield ProgramStream(receive)
                finally:
                    # Read to the end, the program is done; left early, it is
                    # stopped (with its model calls) before the channel closes.
                    nursery.cancel_scope.cancel()
            _raise_pending_failure(receive)
    except BaseExceptionGroup as group:
        raise_single(group)


async def _produce(
    program: Module, inputs: dict[str, Any], listener: Listener, send: trio.MemorySendChannel[Any]
) -> None:
    listen_here(listener)  # this task's own context: siblings never see it
    async with send:
        try:
            prediction = await program(**inputs)
        except Exception as exc:
            await send.send(_Failure(exc))
        else:
            await send.send(prediction)


def _raise_pending_failure(receive: trio.MemoryReceiveChannel[Any]) -> None:
    """Raise a failure the block left unread (it stopped iterating before the error)."""
    for _ in range(receive.statistics().current_buffer_used):
        try:
            item = receive.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            return
        if isinstance(item, _Failure):
            raise item.error
