"""One model call watched: its ``chat {model}`` span, budgets, usage and history.

:class:`Call` is the context manager :meth:`BaseLM._observed
<trio_dspy.lm.base.BaseLM._observed>` returns: what every call of every
model goes through, kept apart from the interface it serves.
"""

from __future__ import annotations

import json
import time
from types import TracebackType
from typing import Protocol, Self

import attrs

from ..messages import LMRequest, LMResponse
from ..telemetry import semconv as sc
from ..telemetry.span import AttributeValue, SpanKind, recording, start_span
from ..usage import record_usage, wants_cost
from ..usage_limits import NO_RESERVATION, Reservation, active
from .history import HasHistory, record
from .history_entry import HistoryEntry

__all__ = ["Call", "Observable"]


class Observable(HasHistory, Protocol):
    """What :class:`Call` needs of a model (``BaseLM`` has it)."""

    provider: str
    model_name: str

    def _request_attributes(
        self, request: LMRequest, trace_content: bool
    ) -> dict[str, AttributeValue | None]: ...

    def _reserve(self, request: LMRequest) -> Reservation: ...

    def _priced(self, response: LMResponse) -> LMResponse: ...


class Call:
    """One call watched by :meth:`BaseLM._observed`, the block's context
    manager: set :attr:`response` when done.

    A class rather than a generator-based context manager: it wraps every
    call, and its setting up is most of what an unobserved call pays for.
    """

    __slots__ = (
        "_lm",
        "_priced",
        "_request",
        "_reservation",
        "_scope",
        "_span",
        "_started_at",
        "_stream",
        "_t0",
        "_trace_content",
        "response",
    )

    def __init__(
        self, lm: Observable, request: LMRequest, trace_content: bool, stream: bool
    ) -> None:
        self._lm, self._request = lm, request
        self._trace_content, self._stream = trace_content, stream
        self._t0 = 0.0
        self.response: LMResponse | None = None

    def __enter__(self) -> Self:
        lm, request = self._lm, self._request
        self._started_at, self._t0 = time.time(), time.perf_counter()
        # With no collector, no span: neither its name nor its scope is built.
        scope = self._scope = (
            start_span(f"chat {lm.model_name}", SpanKind.CLIENT) if recording() else None
        )
        if scope is not None:
            self._span = scope.__enter__()
        try:
            if scope is not None and self._span.is_recording:
                span = self._span
                span.set_attributes(lm._request_attributes(request, self._trace_content))
                if self._stream:
                    span.set_attribute(sc.GEN_AI_REQUEST_STREAM, True)
            # One read of the budgets decides both: a call no budget applies
            # to reserves nothing, and is priced only for a user's tracker.
            budgets = active()
            self._reservation = lm._reserve(request) if budgets else NO_RESERVATION
        except BaseException as exc:
            self._close_span(type(exc), exc, exc.__traceback__)
            raise
        self._priced = budgets or wants_cost()  # nothing reads a cost otherwise: no lookup
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        lm = self._lm
        try:
            response = self.response
            try:
                if response is not None and self._priced:
                    response = self.response = lm._priced(response)
            finally:
                if self._reservation is not NO_RESERVATION:
                    self._reservation.settle(
                        None if response is None else response.usage,
                        cached=response is not None and response.cached,
                    )
        except BaseException as error:  # the block's exception, if any, as its context
            self._close_span(type(error), error, error.__traceback__)
            raise
        if exc is not None or response is None:
            self._close_span(kind, exc, tb)
            return
        if self._scope is not None:
            try:
                if self._span.is_recording:
                    self._span.set_attributes(_response_attributes(response, self._trace_content))
            except BaseException as error:
                self._close_span(type(error), error, error.__traceback__)
                raise
            self._close_span(None, None, None)
        record_usage(response.usage, requests=0 if response.cached else 1)
        record(
            lm,
            HistoryEntry(
                self._request,
                response,
                self._started_at,
                time.perf_counter() - self._t0,
                lm.provider,
                lm.model_name,
            ),
        )

    def _close_span(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._scope is not None:
            self._scope.__exit__(kind, exc, tb)

    def first_chunk(self) -> None:
        """Note (once) on the span that the first chunk of a streamed completion arrived."""
        if self._t0 and self._scope is not None and self._span.is_recording:
            elapsed = time.perf_counter() - self._t0
            self._span.set_attribute(sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, round(elapsed, 6))
        self._t0 = 0.0


def _response_attributes(
    response: LMResponse, trace_content: bool
) -> dict[str, AttributeValue | None]:
    attributes: dict[str, AttributeValue | None] = {
        sc.GEN_AI_RESPONSE_MODEL: response.model or None,
        sc.GEN_AI_RESPONSE_FINISH_REASONS: (response.finish_reason,)
        if response.finish_reason
        else None,
        sc.GEN_AI_USAGE_INPUT_TOKENS: response.usage.prompt_tokens,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: response.usage.completion_tokens,
        "trio_dspy.cached": response.cached or None,
    }
    if trace_content:
        attributes[sc.GEN_AI_OUTPUT_MESSAGES] = json.dumps(
            [
                {
                    "role": "assistant",
                    "content": response.text,
                    "tool_calls": [attrs.asdict(c) for c in response.tool_calls],
                }
            ],
            ensure_ascii=False,
        )
    return attributes
