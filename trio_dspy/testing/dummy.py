"""``DummyLM``: a scripted, in-process model for tests and examples."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio

from ..adapters.markers import COMPLETED, sections
from ..adapters.xml_tags import XML_REQUIREMENT, elements
from ..errors import ConfigurationError, ToolsUnsupportedError
from ..groups import raise_single
from ..lm.base import BaseLM, LMStream
from ..messages import LMRequest, LMResponse, TextPart, ToolCallDelta
from ..primitives import Usage
from ..types import unstructure

__all__ = ["DummyLM"]

Answer = str | Mapping[str, Any] | LMResponse
Script = Sequence[Answer] | Mapping[str, Answer] | Callable[[LMRequest], Answer]


class DummyLM(BaseLM):
    """A model that answers from a script, without any network.

    ``answers`` is one of:

    * a list, answered in order (``cycle=True`` starts over when it runs out);
    * a dict whose keys are looked for in the last user message: the first key
      found there picks the answer;
    * a function of the :class:`~trio_dspy.messages.LMRequest`.

    Each answer is raw completion text, a dict of output values (written in
    the ``[[ ## field ## ]]`` format, as ``<field>`` elements for an
    :class:`~trio_dspy.XMLAdapter` request, or as JSON when the request asks
    for a ``response_format``), or a ready :class:`LMResponse` (for tool calls).

    ``supports_tools=True`` makes agents use native tool calling (script
    :class:`LMResponse` objects with ``tool_calls`` then). ``refuse_tools=True``
    plays a server that takes no tool definitions after all: a request that
    offers tools fails with :class:`~trio_dspy.errors.ToolsUnsupportedError`
    (HTTP 400, ``param="tools"``), and is recorded like any other.

    ``latency`` (seconds, or a function of the request) is spent in
    ``trio.sleep``, so it is instant under ``autojump_clock``. Every request
    is kept in :attr:`requests`.

    ``stream_chunk=N`` makes :meth:`stream` give the answer's text ``N``
    characters at a time, ``stream_delay`` seconds apart (after the latency),
    each handed over directly (an unbuffered channel): a reader that stops
    stops the model. A scripted :class:`LMResponse`'s tool calls follow the
    text, their arguments ``N`` characters at a time
    (:class:`~trio_dspy.messages.ToolCallDelta`, seen by ``stream.events()``).
    :attr:`deltas_sent` counts the pieces handed over. Without
    ``stream_chunk`` the text comes as one piece and each call whole, as for
    any model.

    Raises (from calls):
        ConfigurationError: the script has no answer for the request.
        ToolsUnsupportedError: ``refuse_tools`` is set and the request offers tools.
    """

    provider = "dummy"

    def __init__(
        self,
        answers: Script,
        *,
        latency: float | Callable[[LMRequest], float] = 0.0,
        cycle: bool = False,
        model: str = "dummy",
        supports_tools: bool = False,
        refuse_tools: bool = False,
        stream_chunk: int | None = None,
        stream_delay: float = 0.0,
        **defaults: Any,
    ) -> None:
        super().__init__(model, **defaults)
        self.supports_tools = supports_tools
        self.refuse_tools = refuse_tools
        self.answers = answers
        self.latency = latency
        self.cycle = cycle
        self.requests: list[LMRequest] = []
        self._next = 0
        if stream_chunk is not None and stream_chunk < 1:
            raise ValueError(f"stream_chunk must be at least 1, got {stream_chunk}")
        self.stream_chunk = stream_chunk
        self.stream_delay = stream_delay
        self.deltas_sent = 0

    @asynccontextmanager
    async def stream(
        self, request: LMRequest, *, trace_content: bool = False
    ) -> AsyncIterator[LMStream]:
        """The scripted answer's text in ``stream_chunk``-sized pieces (see the class).

        Leaving the block early cancels the task feeding the pieces.

        Raises:
            ConfigurationError: the script has no answer for the request.
            ToolsUnsupportedError: ``refuse_tools`` is set and the request offers tools.
        """
        if self.stream_chunk is None:
            async with super().stream(request, trace_content=trace_content) as whole:
                yield whole
            return
        response = await self.request(request, trace_content=trace_content)
        send, receive = trio.open_memory_channel[str | ToolCallDelta](0)
        stream = LMStream(receive)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._feed, send, stream, response)
                try:
                    yield stream
                finally:
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise_single(group)

    async def _feed(
        self,
        send: trio.MemorySendChannel[str | ToolCallDelta],
        stream: LMStream,
        response: LMResponse,
    ) -> None:
        pieces: list[str | ToolCallDelta] = list(self._cut(response.text))
        for index, call in enumerate(response.tool_calls):
            pieces.extend(
                ToolCallDelta(index, call.id, call.name, part) for part in self._cut(call.arguments)
            )
        async with send:
            for piece in pieces:
                if self.stream_delay > 0:
                    await trio.sleep(self.stream_delay)
                await send.send(piece)
                self.deltas_sent += 1
            stream.finish(response)

    def _cut(self, text: str) -> list[str]:
        size = self.stream_chunk or len(text)
        return [text[start : start + size] for start in range(0, len(text), size)]

    async def send(self, request: LMRequest) -> LMResponse:
        """Record ``request``, wait the latency, return the scripted answer."""
        self.requests.append(request)
        delay = self.latency(request) if callable(self.latency) else self.latency
        if delay > 0:
            await trio.sleep(delay)
        if self.refuse_tools and request.tools:
            raise ToolsUnsupportedError(
                "tools are not supported by this model",
                status_code=400,
                provider=self.provider,
                model=self.model,
                code="unsupported",
                param="tools",
            )
        answer = self._pick(request)
        if isinstance(answer, LMResponse):
            return answer
        text = answer if isinstance(answer, str) else _render(answer, request)
        prompt = sum(len(m.text) for m in request.messages) // 4 + 1
        completion = len(text) // 4 + 1
        return LMResponse(
            text=text,
            usage=Usage(prompt, completion, prompt + completion),
            finish_reason="stop",
            model=self.model,
        )

    def _pick(self, request: LMRequest) -> Answer:
        script = self.answers
        if callable(script):
            return script(request)
        if isinstance(script, Mapping):
            last_user = next((m.text for m in reversed(request.messages) if m.role == "user"), "")
            for key, answer in script.items():
                if key in last_user:
                    return answer
            raise ConfigurationError(
                f"DummyLM has no answer for this request: none of {list(script)!r} "
                "appears in the last user message"
            )
        if self._next >= len(script):
            if not self.cycle or not script:
                raise ConfigurationError(
                    f"DummyLM ran out of scripted answers after {len(script)} call(s)"
                )
            self._next = 0
        answer = script[self._next]
        self._next += 1
        return answer


def _render(values: Mapping[str, Any], request: LMRequest) -> str:
    """Output values the way the requesting adapter expects them."""
    data = {k: unstructure(v, tag_all=True) for k, v in values.items()}
    if request.response_format is not None:
        return json.dumps(data, ensure_ascii=False)
    texts = {
        k: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for k, v in data.items()
    }
    if _asks_xml(request):
        return elements(texts)
    return f"{sections(texts)}\n\n{COMPLETED}"


def _asks_xml(request: LMRequest) -> bool:
    """Whether the request is XMLAdapter's: its last user message asks for XML tags."""
    for message in reversed(request.messages):
        if message.role == "user":
            content = message.content
            texts = (
                [content]
                if isinstance(content, str)
                else [p.text for p in content if isinstance(p, TextPart)]
            )
            return any(XML_REQUIREMENT in text for text in texts)
    return False
