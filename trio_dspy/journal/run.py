"""``td.durable``: the block whose model and tool steps a journal records and replays.

Inside ``async with td.durable(run_id, journal) as run:``

* a model request (``lm.request``, ``lm.stream``) whose key is recorded
  returns the recorded response without calling the model; the response is
  the one recorded, marked ``cached=True`` with zero usage (a replayed step
  is not a model call: it counts no request and no tokens, like a cache
  hit). A request not recorded runs live and is recorded before it returns.
* an agent's tool call (``td.ReAct``) whose key is recorded gives the
  recorded observation without calling the tool, the observation of a tool
  that raised included; one not recorded runs and is recorded.
* a tool made with ``requires_approval=True`` runs only once a decision is
  recorded for it (see :mod:`trio_dspy.journal.approval`).

Keys are described in :mod:`trio_dspy.journal.keys`. One holder at a time
runs a run id: another entering it waits (``wait=`` bounds that wait, then
:class:`~trio_dspy.errors.JournalBusy`).
"""

from __future__ import annotations

import collections
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import trio

from ..checkpoint import entered
from ..errors import (
    ApprovalRequired,
    JournalCorrupt,
    JournalError,
    JournalMismatch,
    JournalUnavailable,
)
from ..lm.cache import as_cached
from ..lm.cache_codec import encode_response, read_response
from ..modules.trajectory import ToolCallRecord, call_arguments
from ..settings import current
from ..types.text import loads_json
from .active import ACTIVE_RUN
from .approval import denied_message
from .keys import lm_identity, tool_identity
from .store import ApprovalRequest, Decision, JournalStore, StepRecord, check_run_id

if TYPE_CHECKING:
    from ..lm.base import BaseLM, LMStream
    from ..messages import LMRequest, LMResponse, ToolCall
    from ..modules.tool import Tool

__all__ = ["DurableRun", "durable"]

OnMismatch = Literal["raise", "rerun"]
T = TypeVar("T")
# Seconds a step's write may take once its result is in hand: shielded from
# cancellation, so a paid answer is not lost to a cancel arriving meanwhile.
_RECORD_TIMEOUT = 30.0


class DurableRun:
    """The state of one entered durable run (what ``td.durable`` yields).

    Attributes:
        run_id: the run's id.
        journal: where it is recorded.
        completed: whether the run has completed: it had when entered (then
            every step replays), or its block has just ended without error.
        replayed: steps answered from the journal in this entry.
        live: steps run (and recorded) in this entry.
    """

    def __init__(
        self,
        run_id: str,
        journal: JournalStore,
        steps: dict[str, StepRecord],
        *,
        completed: bool,
        on_mismatch: OnMismatch,
    ) -> None:
        self.run_id = run_id
        self.journal = journal
        self.completed = completed
        self.on_mismatch = on_mismatch
        self.replayed = 0
        self.live = 0
        self._steps = steps
        self._seen: collections.Counter[str] = collections.Counter()
        # Tasks inside a live model step: the model's own nested calls (a
        # fallback's, a stream's) are part of that step, not steps of their own.
        self._inside: set[trio.lowlevel.Task] = set()
        # Tasks running a tool call whose approval is recorded.
        self._approved: set[trio.lowlevel.Task] = set()
        self._awaiting: dict[int, ApprovalRequest] = {}
        # The first stop (a journal error, a mismatch, an approval): later steps
        # raise it again and the block ends with it, even when a module in
        # between (an optimizer scoring a failed run) swallowed it.
        self._stop: BaseException | None = None

    # ----------------------------------------------------------------- stops
    def _check(self) -> None:
        if self._stop is not None:
            raise self._stop

    def _stopping(self, exc: BaseException) -> BaseException:
        if self._stop is None:
            self._stop = exc
        return exc

    @property
    def stop(self) -> BaseException | None:
        """What stopped the run (re-raised when the block ends), or ``None``."""
        return self._stop

    # ------------------------------------------------------------------ keys
    def _key(self, kind: str, identity: str) -> str:
        occurrence = self._seen[identity]
        self._seen[identity] += 1
        return f"{kind}-{identity[:32]}-{occurrence}"

    def _recorded(self, key: str, kind: str, fingerprint: str) -> StepRecord | None:
        step = self._steps.get(key)
        if step is None:
            return None
        if step.kind == kind and step.fingerprint == fingerprint:
            return step
        if self.on_mismatch == "rerun":
            return None
        what = "model request" if kind == "lm" else "tool call"
        raise self._stopping(
            JournalMismatch(
                f"step {key} of run {self.run_id!r}: this {what} differs from the one recorded "
                "(the program changed since it was recorded): use a new run id, delete the run "
                "with journal.delete(run_id), or pass on_mismatch='rerun' to run such steps live",
                journal=self.journal.where,
                run_id=self.run_id,
                step=key,
                kind=kind,
            )
        )

    def inside_step(self) -> bool:
        """Whether the current task is inside a live model step (its calls are not steps)."""
        return trio.lowlevel.current_task() in self._inside

    def approved(self) -> bool:
        """Whether the current task runs a tool call whose approval is recorded."""
        return trio.lowlevel.current_task() in self._approved

    async def _record(self, key: str, step: StepRecord) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(_RECORD_TIMEOUT) as scope:
            await self._journal(self.journal.record(self.run_id, key, step))
        if scope.cancelled_caught:
            raise self._stopping(
                JournalUnavailable(
                    f"step {key} of run {self.run_id!r} was not recorded within "
                    f"{_RECORD_TIMEOUT:g} s: check the journal's storage",
                    journal=self.journal.where,
                    run_id=self.run_id,
                )
            )
        self._steps[key] = step
        self.live += 1

    async def _journal(self, call: Awaitable[T]) -> T:
        """``await call`` (a journal method); its error stops the run."""
        try:
            return await call
        except JournalError as exc:
            raise self._stopping(exc) from None

    def _corrupt(self, key: str, why: str) -> BaseException:
        return self._stopping(
            JournalCorrupt(
                f"step {key} of run {self.run_id!r} is not a step this version wrote ({why}); "
                "nothing was changed: delete the run with journal.delete(run_id) or use "
                "a new run id",
                journal=self.journal.where,
                run_id=self.run_id,
            )
        )

    # --------------------------------------------------------------- models
    async def _lm_step(
        self, lm: BaseLM, request: LMRequest
    ) -> tuple[LMRequest, str, str, LMResponse | None]:
        """The request as sent, its key and fingerprint, and its recorded response (if any)."""
        self._check()
        prepared = lm._with_defaults(request)
        identity, fingerprint = lm_identity(lm, prepared)
        key = self._key("lm", identity)
        step = self._recorded(key, "lm", fingerprint)
        if step is None:
            return prepared, key, fingerprint, None
        try:
            response = read_response(step.payload)
        except ValueError as exc:
            raise self._corrupt(key, str(exc)) from None
        await entered()
        return prepared, key, fingerprint, as_cached(response)

    @contextlib.contextmanager
    def _live_model_step(self) -> Iterator[None]:
        """Mark the current task as inside a live model step for the block."""
        task = trio.lowlevel.current_task()
        self._inside.add(task)
        try:
            yield
        finally:
            self._inside.discard(task)

    async def lm_request(self, lm: BaseLM, request: LMRequest, trace_content: bool) -> LMResponse:
        """``lm.request(request)`` in this run: replayed if recorded, else live and recorded.

        Raises:
            JournalMismatch: the request differs from the one recorded at its key.
            JournalCorrupt: the recorded step cannot be read.
            JournalUnavailable: the step could not be recorded.
            trio_dspy.errors.LMError: the live call failed (nothing is recorded).
        """
        prepared, key, fingerprint, response = await self._lm_step(lm, request)
        if response is not None:
            with lm._observed(prepared, trace_content) as call:
                call.response = response
            self.replayed += 1
            return response
        with self._live_model_step():
            response = await lm.request(request, trace_content=trace_content)
        await self._record(key, StepRecord("lm", fingerprint, encode_response(response)))
        return response

    @contextlib.asynccontextmanager
    async def lm_stream(
        self, lm: BaseLM, request: LMRequest, trace_content: bool
    ) -> AsyncIterator[LMStream]:
        """``lm.stream(request)`` in this run: a recorded answer comes whole, in one piece.

        A live stream is recorded once it has been read to its end; one left
        early is not recorded (it runs live again).

        Raises:
            JournalMismatch: the request differs from the one recorded at its key.
            JournalCorrupt: the recorded step cannot be read.
            JournalUnavailable: the step could not be recorded.
            trio_dspy.errors.LMError: the live call failed (nothing is recorded).
        """
        from ..lm.base import LMStream

        prepared, key, fingerprint, response = await self._lm_step(lm, request)
        if response is not None:
            with lm._observed(prepared, trace_content, stream=True) as call:
                call.response = response
                yield LMStream.whole(response)
            self.replayed += 1
            return
        async with contextlib.AsyncExitStack() as stack:
            with self._live_model_step():  # only the opening: the reader's block is its own
                stream = await stack.enter_async_context(
                    lm.stream(request, trace_content=trace_content)
                )
            yield stream
        if stream.finished:
            payload = encode_response(stream.response)
            await self._record(key, StepRecord("lm", fingerprint, payload))

    # ---------------------------------------------------------------- tools
    async def tool_step(
        self,
        call: ToolCall,
        tool: Tool | None,
        live: Callable[[ToolCall], Awaitable[ToolCallRecord]],
    ) -> ToolCallRecord:
        """An agent's tool call in this run: replayed, approved, denied, waiting or live.

        A call waiting for a decision returns a placeholder record that
        :meth:`stop_if_waiting` turns into :class:`ApprovalRequired`.

        Raises:
            JournalMismatch: the call differs from the one recorded at its key.
            JournalCorrupt: the recorded step cannot be read.
            JournalUnavailable: the step could not be recorded.
            Exception: whatever ``live`` lets through.
        """
        self._check()
        arguments = call_arguments(call)  # decoded once: the key, the request, the record
        identity, fingerprint = tool_identity(call.name, arguments, tool)
        key = self._key("tool", identity)
        step = self._recorded(key, "tool", fingerprint)
        now = trio.current_time()
        if step is not None:
            observation, ok = self._replay_observation(key, step)
            self.replayed += 1
            return ToolCallRecord(call.id, call.name, arguments, observation, ok, now, 0.0)
        approved = False
        if tool is not None and tool.requires_approval:
            request = ApprovalRequest(key, call.name, _arguments(arguments))
            decision = await self._decision(request)
            if decision is None:
                record = ToolCallRecord(call.id, call.name, arguments, "", False, now, 0.0)
                self._awaiting[id(record)] = request
                return record
            if not decision.approved:
                observation = f"Error: {denied_message(call.name, decision.note)}"
                record = ToolCallRecord(call.id, call.name, arguments, observation, False, now, 0)
                await self._record(key, _tool_step(fingerprint, record))
                return record
            approved = True
        task = trio.lowlevel.current_task()
        if approved:
            self._approved.add(task)
        try:
            record = await live(call)
        finally:
            self._approved.discard(task)
        await self._record(key, _tool_step(fingerprint, record))
        return record

    def _replay_observation(self, key: str, step: StepRecord) -> tuple[str, bool]:
        try:
            doc = loads_json(step.payload)
        except ValueError:
            doc = None
        if (
            not isinstance(doc, dict)
            or not isinstance(doc.get("observation"), str)
            or not isinstance(doc.get("ok"), bool)
        ):
            raise self._corrupt(key, "a tool step is an object with an observation and ok")
        return doc["observation"], doc["ok"]

    async def _decision(self, request: ApprovalRequest) -> Decision | None:
        decision = await self._journal(self.journal.decision(self.run_id, request.call_id))
        approver = current().approver
        if decision is not None or approver is None:
            return decision
        verdict = await approver(request)
        decision = Decision.of(verdict)
        await self._journal(self.journal.request_approval(self.run_id, [request]))
        decide = self.journal.decide(
            self.run_id, request.call_id, approved=decision.approved, note=decision.note
        )
        await self._journal(decide)
        return decision

    async def stop_if_waiting(self, records: Sequence[ToolCallRecord]) -> None:
        """Stop the run if any of one turn's ``records`` waits for a decision.

        Raises:
            ApprovalRequired: with every waiting call of the turn, once recorded.
        """
        waiting = [self._awaiting.pop(id(r)) for r in records if id(r) in self._awaiting]
        if not waiting:
            return
        await self._journal(self.journal.request_approval(self.run_id, waiting))
        names = ", ".join(f"{r.tool} ({r.call_id})" for r in waiting)
        raise self._stopping(
            ApprovalRequired(
                f"run {self.run_id!r} stopped: {names} need approval; record each decision with "
                "await journal.decide(run_id, call_id, approved=True or False) and run it again "
                "with the same run id",
                run_id=self.run_id,
                requests=tuple(waiting),
            )
        )

    def __repr__(self) -> str:
        return (
            f"DurableRun({self.run_id!r}, replayed={self.replayed}, live={self.live}, "
            f"completed={self.completed})"
        )


def _tool_step(fingerprint: str, record: ToolCallRecord) -> StepRecord:
    payload = json.dumps({"observation": record.observation, "ok": record.ok}, ensure_ascii=False)
    return StepRecord("tool", fingerprint, payload)


def _arguments(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {"arguments": value}


@contextlib.asynccontextmanager
async def durable(
    run_id: str,
    journal: JournalStore,
    *,
    on_mismatch: OnMismatch = "raise",
    wait: float | None = None,
) -> AsyncIterator[DurableRun]:
    """Record the block's model and tool steps under ``run_id``; replay them when re-entered.

    ::

        journal = td.Journal("runs.db")
        async with td.durable("order-1234", journal) as run:
            answer = await agent(request=text)

    The run is held for the block: another task or process entering the same
    ``run_id`` waits until it ends (at most ``wait`` seconds, if given). A
    block that ends without error marks the run completed.

    The run's first stop (a journal error, a mismatch, an approval) is raised
    again by every later step, and ends the block even when a module in
    between caught it (an optimizer scoring a failed run): a run never goes
    on without its journal.

    Raises:
        JournalBusy: the run was still held by another after ``wait`` seconds.
        JournalUnavailable: the journal could not be reached (before any step runs).
        JournalCorrupt: the journal cannot be read by this version.
        JournalMismatch: a step differs from the one recorded (``on_mismatch="raise"``).
        ApprovalRequired: a tool call waits for a decision (the run is recorded up to it).
        TypeError: ``run_id`` is not a string.
        ValueError: ``run_id`` is empty or too long, or ``on_mismatch`` is unknown.
    """
    check_run_id(run_id)
    if on_mismatch not in ("raise", "rerun"):
        raise ValueError(f"on_mismatch is 'raise' or 'rerun', got {on_mismatch!r}")
    async with journal.hold(run_id, wait):
        record = await journal.load(run_id)
        run = DurableRun(
            run_id, journal, record.steps, completed=record.completed, on_mismatch=on_mismatch
        )
        token = ACTIVE_RUN.set(run)
        try:
            yield run
        except Exception as exc:
            if run.stop is not None and exc is not run.stop:
                raise run.stop from exc  # the stop, not what a module made of it
            raise
        finally:
            ACTIVE_RUN.reset(token)
        if run.stop is not None:
            raise run.stop
        if not run.completed:
            await journal.complete(run_id)
            run.completed = True
