"""What a streamed run reports to, and what modules report: chunks and status lines.

:func:`~trio_dspy.streamify` runs a program in a child task with a
:class:`Listener` in a contextvar, so every call inside the run (nested
modules, child tasks, every call of a predictor, not just the first) sees it,
and runs started elsewhere never do. Modules report through it:

* :class:`~trio_dspy.Predict` asks :func:`predictor_stream` whether its
  fields are listened to; if so it reads the model with ``lm.stream`` and
  sends a :class:`StreamResponse` per piece the adapter's incremental parser
  finds (:class:`PredictorStream`); :class:`~trio_dspy.ReAct` does the same
  with the arguments of its ``finish`` tool call as the model writes them;
* any module may call :func:`status` to say what it is doing (a
  :class:`StatusMessage`); outside a streamed run that does nothing.

Sending waits while the consumer's buffer is full, so a slow reader slows the
program instead of growing memory.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import trio

from .adapters.streaming import JSONFieldParser
from .checkpoint import entered
from .messages import loggable

if TYPE_CHECKING:
    from .adapters.base import Adapter
    from .lm.base import BaseLM
    from .messages import LMRequest, LMResponse
    from .signature import Signature
    from .stream_names import StatusMessageProvider

__all__ = [
    "Listener",
    "PredictorStream",
    "StatusMessage",
    "StreamResponse",
    "heard",
    "lm_status",
    "module_status",
    "predictor_stream",
    "status",
    "str_output_fields",
    "tool_status",
    "unheard",
]


@attrs.frozen
class StreamResponse:
    """A piece of an output field's value, as the model writes it.

    Attributes:
        predictor: the predictor's name in the program (``"respond"``,
            ``"agent.extract.predict"``: a name of ``program.named_predictors()``,
            DSPy's path; ``"self"`` when the program is the predictor,
            ``"predict"`` when it is a ChainOfThought).
        field: the output field.
        chunk: the next piece of its text (never empty).
        is_last_chunk: this piece ends the field's value in this call (DSPy's
            flag; the last piece is held back until the field is known to end).

    DSPy's attribute names answer too: ``predict_name`` (``predictor``) and
    ``signature_field_name`` (``field``).
    """

    predictor: str
    field: str
    chunk: str
    is_last_chunk: bool = False

    @property
    def predict_name(self) -> str:
        """DSPy's name for :attr:`predictor`."""
        return self.predictor

    @property
    def signature_field_name(self) -> str:
        """DSPy's name for :attr:`field`."""
        return self.field


@attrs.frozen
class StatusMessage:
    """A line about what the program is doing (``"Calling tool check_menu"``).

    ``message`` is DSPy's name for :attr:`text`.
    """

    text: str

    @property
    def message(self) -> str:
        """DSPy's name for :attr:`text`."""
        return self.text


def str_output_fields(signature: type[Signature]) -> list[str]:
    """The names of ``signature``'s output fields of type ``str``, in order."""
    return [n for n, f in signature.output_fields.items() if f.annotation is str]


class Listener:
    """The receiving end of one streamed run, as modules see it.

    ``names`` maps each predictor (by ``id``) to its name in the program;
    ``listen`` is the set of field names to stream (``None``: every ``str``
    output field); those also in ``once`` (DSPy's listeners without
    ``allow_reuse``) stream from the first call of each predictor, and no other.
    """

    def __init__(
        self,
        send: trio.MemorySendChannel[Any],
        names: Mapping[int, str],
        listen: Collection[str | tuple[str, str]] | None,
        provider: StatusMessageProvider | None = None,
        once: Collection[str | tuple[str, str]] = (),
    ) -> None:
        self._send = send
        self._names = dict(names)
        # A name listens to that field of every predictor; a (predictor, field)
        # pair (a StreamListener naming its predictor) to that one only.
        self._listen = None if listen is None else frozenset(listen)
        self._once = frozenset(once)
        self._used: set[tuple[str, str]] = set()
        self.provider = provider

    async def send(self, item: StreamResponse | StatusMessage) -> None:
        """Hand ``item`` to the consumer, waiting while its buffer is full."""
        await self._send.send(item)

    def for_predictor(self, predictor: Any) -> PredictorStream | None:
        """The stream of ``predictor``'s listened fields, or ``None`` if it has none."""
        name = self._names.get(id(predictor))
        if name is None:
            return None
        fields = [n for n in str_output_fields(predictor.signature) if self._takes(name, n)]
        return PredictorStream(self, name, fields) if fields else None

    def _takes(self, name: str, field: str) -> bool:
        """Whether this call of predictor ``name`` streams ``field`` (and uses up a
        single-use listener)."""
        if self._listen is None:
            return True
        keys = [k for k in (field, (name, field)) if k in self._listen]
        if not keys:
            return False
        if all(k in self._once for k in keys):
            # Used up per predictor: a field name alone still streams the first
            # call of each predictor that has the field.
            if (name, field) in self._used:
                return False
            self._used.add((name, field))
        return True


_JOIN_EVERY = 64
THOUGHT = "next_thought"  # the field an agent's thought streams as (DSPy's text-mode step)
_START: Any = object()  # tool_status's "no outputs yet"

_LISTENER: contextvars.ContextVar[Listener | None] = contextvars.ContextVar(
    "trio_dspy_stream_listener", default=None
)


def listen_here(listener: Listener) -> None:
    """Install ``listener`` for the calling task (and the tasks it starts later)."""
    _LISTENER.set(listener)


@contextlib.contextmanager
def unheard() -> Iterator[None]:
    """Stream nothing from the calls in the block (this task and those it starts).

    For modules whose calls are candidates that may be thrown away
    (``BestOfN``, ``Refine``): their chunks would not add up to the answer.
    """
    token = _LISTENER.set(None)
    try:
        yield
    finally:
        _LISTENER.reset(token)


def heard() -> bool:
    """Whether a streamed run listens to the calling task: without one, the
    status lines and fields of :func:`lm_status`, :func:`module_status` and
    :func:`predictor_stream` are nothing, and a caller need not ask for them."""
    return _LISTENER.get() is not None


def predictor_stream(predictor: Any) -> PredictorStream | None:
    """The current run's stream of ``predictor``'s fields; ``None`` when not listened to."""
    listener = _LISTENER.get()
    return None if listener is None else listener.for_predictor(predictor)


async def status(text: str) -> None:
    """Tell the consumer of the current streamed run what is happening.

    Sends ``StatusMessage(text)`` inside :func:`~trio_dspy.streamify`, waiting
    while the consumer's buffer is full; elsewhere it does nothing (but is
    still a checkpoint).

    Raises:
        RuntimeError: not running under ``trio.run``.
    """
    listener = _LISTENER.get()
    if listener is None:
        await entered()
    else:
        await listener.send(StatusMessage(text))


async def tool_status(
    tool: Any, inputs: Any, default: str | None, *, outputs: Any = _START
) -> None:
    """:func:`status` for a tool starting (or, given ``outputs``, finished).

    The run's :class:`~trio_dspy.StatusMessageProvider`, if it has one,
    writes the line (``None`` from it: no line); ``default`` otherwise (no
    line at all, not even a checkpoint, for ``None``).
    """
    listener = _LISTENER.get()
    provider = None if listener is None or tool is None else listener.provider
    if provider is None:
        if default is not None:
            await status(default)
        return
    if outputs is _START:
        text = provider.tool_start_status_message(tool, dict(inputs))
    else:
        text = provider.tool_end_status_message(outputs)
    if text is None:
        await entered()
    else:
        await status(text)


async def lm_status(lm: Any, request: LMRequest, response: LMResponse | None = None) -> None:
    """The provider's line for ``lm`` starting ``request`` or (given
    ``response``) having answered it. Nothing at all, not even a checkpoint,
    without a provider."""
    listener = _LISTENER.get()
    if listener is None or listener.provider is None:
        return
    provider = listener.provider
    if response is None:
        inputs = {"messages": [loggable(m) for m in request.messages], **request.params}
        text = provider.lm_start_status_message(lm, inputs)
    else:
        text = provider.lm_end_status_message([response.text])  # DSPy's list of outputs
    if text is not None:
        await listener.send(StatusMessage(text))


async def module_status(module: Any, value: Any, *, start: bool) -> None:
    """The provider's line for ``module`` starting (``value``: its inputs) or
    ending (its outputs). Not a checkpoint, and nothing at all, without a provider."""
    listener = _LISTENER.get()
    if listener is None or listener.provider is None:
        return
    provider = listener.provider
    if start:
        text = provider.module_start_status_message(module, dict(value))
    else:
        text = provider.module_end_status_message(value)
    if text is not None:
        await listener.send(StatusMessage(text))


class PredictorStream:
    """One predictor call's fields, sent to the listener as the model writes them.

    :meth:`request` reads the model with ``lm.stream`` through the adapter's
    incremental parser, :meth:`tool_call` reads a tool call's JSON arguments
    likewise; :meth:`complete` sends what the parser could not see
    (a value read another way, e.g. a JSON answer to the chat format or a
    tool call's arguments), so the chunks of a field add up to its value.
    """

    def __init__(self, listener: Listener, name: str, fields: list[str]) -> None:
        self.listener = listener
        self.name = name
        self.fields = fields
        self._sent: dict[str, list[str]] = {f: [] for f in fields}
        # The last piece, held back until the next one says whether it ended
        # its field (DSPy's ``is_last_chunk``).
        self._held: tuple[str, str] | None = None

    async def request(
        self,
        lm: BaseLM,
        adapter: Adapter,
        signature: type[Signature],
        request: LMRequest,
        *,
        trace_content: bool = False,
    ) -> LMResponse:
        """Call ``lm`` with ``request`` as a stream, sending the fields' pieces as they come.

        Returns the whole response.

        Raises:
            trio_dspy.errors.LMError: the call failed.
        """
        parser = adapter.stream_parser(signature, self.fields)
        async with lm.stream(request, trace_content=trace_content) as stream:
            async for delta in stream:
                await self._send_pieces(parser.feed(delta))
        await self._send_pieces(parser.finish())
        return stream.response

    async def tool_call(
        self,
        lm: BaseLM,
        request: LMRequest,
        tool: str,
        *,
        trace_content: bool = False,
        thought: PredictorStream | None = None,
    ) -> LMResponse:
        """Call ``lm`` with ``request`` as a stream, sending the fields' pieces of a tool call.

        The fields are read from the JSON arguments of the first call of
        ``tool`` as they arrive; other calls' arguments are read but not
        sent. The text the model writes beside its calls goes to
        ``thought``'s ``next_thought`` field when it listens to one (an
        agent's thought, as DSPy's text-mode step names it), else nowhere.
        Returns the whole response.

        Raises:
            trio_dspy.errors.LMError: the call failed.
        """
        parser = JSONFieldParser(self.fields)
        index: int | None = None  # the first call of ``tool``: the one that answers
        thinking = thought is not None and THOUGHT in thought.fields
        async with lm.stream(request, trace_content=trace_content) as stream:
            async for event in stream.events():
                if isinstance(event, str):
                    if thinking and event and thought is not None:
                        await thought._send_pieces([(THOUGHT, event)])
                    continue
                if event.name != tool:
                    continue
                index = event.index if index is None else index
                if event.index == index:
                    await self._send_pieces(parser.feed(event.arguments))
        if thinking and thought is not None:
            await thought.complete({THOUGHT: stream.response.text})
        return stream.response

    async def complete(self, values: Mapping[str, Any]) -> None:
        """Send the rest of each listened ``str`` value in ``values`` not sent yet.

        A value that does not start with what was sent (the model was asked
        again after an answer that did not parse) gets nothing more: the
        prediction is the reference. The piece held back goes out last,
        marked ``is_last_chunk``.
        """
        for field in self.fields:
            value = values.get(field)
            if not isinstance(value, str):
                continue
            sent = "".join(self._sent[field])
            if self._held is not None and self._held[0] == field:
                sent += self._held[1]
            if len(value) > len(sent) and value.startswith(sent):
                await self._send_pieces([(field, value[len(sent) :])])
        await self._release(last=True)

    async def _send_pieces(self, pieces: Iterable[tuple[str, str]]) -> None:
        for field, chunk in pieces:
            # A piece of another field ends the held one's field.
            await self._release(last=self._held is not None and self._held[0] != field)
            self._held = (field, chunk)

    async def _release(self, *, last: bool) -> None:
        """Send the held piece, if any (``last``: it ends its field)."""
        if self._held is None:
            return
        field, chunk = self._held
        self._held = None
        sent = self._sent[field]
        sent.append(chunk)
        if len(sent) >= _JOIN_EVERY:
            # Thousands of small strings cost several times their text:
            # keep what was sent as one string, joined now and then.
            sent[:] = ["".join(sent)]
        await self.listener.send(StreamResponse(self.name, field, chunk, last))
