"""``FallbackLM``: several models behind one, tried in order, optionally hedged.

``FallbackLM(primary, backup)`` answers with ``primary`` and, when it fails
with an error another model may not have (a server error, a timeout, a rate
limit), asks ``backup`` instead. With ``hedge_after=seconds`` it does not wait
for a failure: when the model in flight has not answered in that time, the
next one starts as well, the first answer wins and the others are cancelled.
"""

from __future__ import annotations

import math
import time

import trio

from ..checkpoint import entered
from ..errors import LMError, LMRateLimitError, LMServerError, LMTimeoutError
from ..messages import LMRequest, LMResponse
from ..telemetry.span import Span, SpanKind, error_type, start_span
from .base import BaseLM, HistoryEntry

__all__ = ["DEFAULT_FALLBACK_ON", "FallbackLM"]

DEFAULT_FALLBACK_ON: tuple[type[LMError], ...] = (LMServerError, LMTimeoutError, LMRateLimitError)
"""The errors passed on to the next model by default (subclasses included).

:class:`~trio_dspy.errors.LMResponseTooLargeError` is an
:class:`~trio_dspy.errors.LMServerError`, so it is passed on too: the same
server is not asked again, but another one may answer within bounds.
"""

#: Span attribute naming the model that answered (its ``model`` string).
ANSWERED_BY = "trio_dspy.fallback.answered_by"
#: Span attribute: the position of that model among the ``lms`` (from 0).
ANSWERED_INDEX = "trio_dspy.fallback.answered_index"
#: Span attribute: how many models were asked (winner, losers and failures).
ATTEMPTS = "trio_dspy.fallback.attempts"


class FallbackLM(BaseLM):
    """Several models behind one: each is tried when the one before it fails.

    ``lms`` are asked in order. When one fails with an error whose type is in
    ``fallback_on`` (by default :data:`DEFAULT_FALLBACK_ON`: server errors,
    including an oversized response, timeouts and rate limits), the next one
    is asked at once. Any other error (:class:`~trio_dspy.errors.LMAuthError`,
    :class:`~trio_dspy.errors.LMBadRequestError` and
    :class:`~trio_dspy.errors.ContextWindowExceededError`, or an error that is
    not an LM error) is raised as it is and the models after it are not
    asked: another model would refuse the same request, or the credentials
    need fixing. Pass e.g. ``fallback_on=(LMError,)`` to pass on every LM
    error. When every model fails, the last failure is raised, with one note
    per earlier failure.

    ``hedge_after`` (seconds) hedges: when the model started last has not
    answered in that time, the next one starts as well, while the first keeps
    going. The first answer wins; the attempts still running are cancelled at
    once (cancelling an LM call closes its connection). A failure in between
    still starts the next model at once.

    Each attempt is an ordinary :meth:`~trio_dspy.lm.BaseLM.request` of its
    model: it has its own ``chat`` span, history entry and usage, so
    :func:`~trio_dspy.track_usage` counts every attempt that returns, exactly
    once (a failed or cancelled attempt returned nothing and reports no
    usage). The fallback's own :meth:`request` records no usage of its own; it
    opens a ``fallback`` span, parent of the attempts' spans, whose attribute
    ``trio_dspy.fallback.answered_by`` names the model that answered
    (``trio_dspy.fallback.answered_index`` its position) and whose events
    show each attempt starting and failing. The call is kept in this model's
    :attr:`~trio_dspy.lm.BaseLM.history` only; the process-wide history
    already has the attempt.

    ``supports_tools`` is true only if every model supports tools.

    ``async with FallbackLM(...) as lm:`` (or ``await lm.aclose()``) closes
    every model's connections at the end.

    Raises:
        ValueError: no model given, or ``hedge_after`` is negative.
    """

    provider = "fallback"

    def __init__(
        self,
        *lms: BaseLM,
        hedge_after: float | None = None,
        fallback_on: tuple[type[BaseException], ...] = DEFAULT_FALLBACK_ON,
        history_size: int = 100,
    ) -> None:
        if not lms:
            raise ValueError("FallbackLM needs at least one model")
        if hedge_after is not None and not hedge_after >= 0:
            raise ValueError(f"hedge_after must be >= 0 seconds, got {hedge_after!r}")
        super().__init__(
            f"fallback({', '.join(lm.model for lm in lms)})", history_size=history_size
        )
        self.lms: tuple[BaseLM, ...] = lms
        self.hedge_after = hedge_after
        self.fallback_on = fallback_on
        self.supports_tools = all(lm.supports_tools for lm in lms)

    async def send(self, request: LMRequest) -> LMResponse:
        """Ask the models as described above and return the first answer.

        Calls each model's :meth:`~trio_dspy.lm.BaseLM.request`, which records
        that attempt's usage and history.

        Raises:
            trio_dspy.errors.LMError: see the class description.
        """
        _, response = await self._ask(request, trace_content=False, span=None)
        return response

    async def request(self, request: LMRequest, *, trace_content: bool = False) -> LMResponse:
        """Ask the models inside a ``fallback`` span and return the first answer.

        Unlike :meth:`~trio_dspy.lm.BaseLM.request` this records
        no usage: each attempt records its own.

        Raises:
            trio_dspy.errors.LMError: see the class description.
            RuntimeError: not running under ``trio.run``.
        """
        await entered()
        started_at, t0 = time.time(), time.perf_counter()
        with start_span("fallback", SpanKind.INTERNAL) as span:
            index, response = await self._ask(request, trace_content=trace_content, span=span)
            if span.is_recording:
                span.set_attributes({ANSWERED_BY: self.lms[index].model, ANSWERED_INDEX: index})
        answered = self.lms[index]
        self.history.append(
            HistoryEntry(
                request,
                response,
                started_at,
                time.perf_counter() - t0,
                answered.provider,
                answered.model_name,
            )
        )
        return response

    async def _ask(
        self, request: LMRequest, *, trace_content: bool, span: Span | None
    ) -> tuple[int, LMResponse]:
        """The index of the model that answered and its answer."""
        outcomes_in, outcomes = trio.open_memory_channel[tuple[int, LMResponse | Exception]](
            math.inf
        )
        failures: list[Exception] = []
        winner: tuple[int, LMResponse] | None = None
        raised: Exception | None = None

        async def attempt(index: int) -> None:
            try:
                response = await self.lms[index].request(request, trace_content=trace_content)
            except Exception as exc:  # handed to the loop below, which decides
                outcomes_in.send_nowait((index, exc))
            else:
                outcomes_in.send_nowait((index, response))

        async with trio.open_nursery() as nursery:
            started = running = 0
            last_start = 0.0

            def start_next() -> None:
                nonlocal started, running, last_start
                if span is not None:
                    span.add_event(
                        "fallback.attempt", {"index": started, "model": self.lms[started].model}
                    )
                nursery.start_soon(attempt, started)
                started += 1
                running += 1
                last_start = trio.current_time()

            start_next()
            while True:
                deadline = math.inf
                if self.hedge_after is not None and started < len(self.lms):
                    deadline = last_start + self.hedge_after
                with trio.move_on_at(deadline):
                    index, outcome = await outcomes.receive()
                    running -= 1
                    if isinstance(outcome, LMResponse):
                        winner = index, outcome
                        break
                    if span is not None:
                        span.add_event(
                            "fallback.attempt_failed",
                            {"index": index, "error.type": error_type(outcome)},
                        )
                    if not isinstance(outcome, self.fallback_on):
                        raised = outcome
                        break
                    failures.append(outcome)
                    if started < len(self.lms):
                        start_next()
                    elif running == 0:
                        break
                    continue
                start_next()  # the hedge delay passed without an answer
            nursery.cancel_scope.cancel()
            if span is not None:
                span.set_attribute(ATTEMPTS, started)

        if winner is not None:
            return winner
        if raised is None:
            raised = failures.pop()
        for earlier in failures:
            raised.add_note(f"also failed: {type(earlier).__name__}: {earlier}")
        raise raised

    async def aclose(self) -> None:
        """Close every model in :attr:`lms` (``LM.aclose`` releases connections).

        Shielded from cancellation, so leaving ``async with fallback:`` because
        of a cancel still releases each model's connections. Raises what a
        model's ``aclose`` raises (an ``ExceptionGroup`` when several do),
        after trying every model.
        """
        failures: list[Exception] = []
        with trio.CancelScope(shield=True):
            for lm in self.lms:
                try:
                    await lm.aclose()
                except Exception as exc:  # the others are closed all the same
                    failures.append(exc)
        if len(failures) == 1:
            raise failures[0]
        if failures:
            raise ExceptionGroup("closing the models of a FallbackLM failed", failures)

    def __repr__(self) -> str:
        hedge = f", hedge_after={self.hedge_after!r}" if self.hedge_after is not None else ""
        return f"FallbackLM({', '.join(map(repr, self.lms))}{hedge})"
