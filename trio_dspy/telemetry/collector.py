"""The span collector: one buffer and one drain task per exporter, under a nursery.

``async with collect(*exporters) as collector:`` opens a nursery and, for each
exporter, a trio memory channel and a drain task of its own. For the body of
the block (and every task spawned from it) finished spans go to this
collector; a nested ``collect`` takes over for its own body. Instrumented code
hands each span to every exporter's channel with ``send_nowait``, so the
request path never waits on telemetry: an exporter whose buffer is full drops
the span, and the drop is counted for that exporter alone.

Each drain task batches spans (``batch_size`` of them, or whatever arrived
within ``flush_interval`` of a batch's first span) and passes each batch to
its exporter. An exporter that raises, hangs or lags never delays or starves
another one: a JSONL file gets every span while an OTLP endpoint that never
answers drops its own. Failures are counted and logged, never raised.

On exit (normal, cancelled or by an exception) the channels close and the
drain tasks export what is left under a shielded deadline of
``drain_timeout`` seconds; spans still unexported at the deadline are counted
as dropped by their exporter, whose drain task is then cancelled. Then every
exporter's ``aclose()`` runs, concurrently, shielded and bounded by
``drain_timeout`` again. So the exit takes at most twice ``drain_timeout``,
provided the exporters' blocking work can be cancelled: trio cannot stop a
worker thread, so the built-in exporters run theirs with
``trio.to_thread.run_sync(..., abandon_on_cancel=True)``. An abandoned thread
goes on in the background (a write to a hung file may still land later); an
exporter that waits on a thread it cannot abandon holds the exit until that
thread returns.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Literal, Protocol, runtime_checkable

import attrs
import trio

from ..logs import get_logger
from .span import Span, detach_from_tracing, send_spans_to

__all__ = ["Collector", "CollectorStats", "Exporter", "ExporterStats", "collect"]

_log = get_logger(__name__)


@runtime_checkable
class Exporter(Protocol):
    """Where finished spans go. Implement both methods; both run in the exporter's drain task.

    ``export`` may raise anything: the collector counts the failure in that
    exporter's ``export_failures`` and carries on. ``aclose`` releases
    resources (files, HTTP clients) and runs when the ``collect`` block exits;
    an exporter must reopen them lazily if it is used again, even in a later
    ``trio.run``. Blocking work belongs in
    ``trio.to_thread.run_sync(..., abandon_on_cancel=True)``, or it can hold
    the exit of ``collect`` past its deadline.
    """

    async def export(self, spans: Sequence[Span]) -> None:
        """Send a batch of finished spans somewhere."""

    async def aclose(self) -> None:
        """Release what the exporter opened."""


@attrs.define
class ExporterStats:
    """Counters of one exporter in a :class:`Collector`.

    Attributes:
        exporter: the exporter's class name.
        exported: spans it accepted.
        dropped: spans it lost: its buffer was full, they were handed over
            after the collector closed, or still unexported at the drain deadline.
        failed: spans in batches its ``export`` raised on.
        export_failures: ``export`` calls that raised.

    Every span emitted is, for each exporter, exported, dropped, failed or
    (while the block runs) still on its way.
    """

    exporter: str
    exported: int = 0
    dropped: int = 0
    failed: int = 0
    export_failures: int = 0


@attrs.define
class CollectorStats:
    """Counters of a :class:`Collector`: per exporter in :attr:`exporters`, and in aggregate.

    Attributes:
        emitted: spans handed to the collector.
        exporters: one :class:`ExporterStats` per exporter, in ``collect``'s order.

    The aggregate properties summarise them: :attr:`exported` is the fewest
    spans any exporter accepted, :attr:`dropped` the most any dropped, and
    :attr:`export_failures` the failed ``export`` calls of all of them. With
    one exporter they are its own counters; with none, every span handed over
    while the block runs counts as exported.
    """

    emitted: int = 0
    exporters: tuple[ExporterStats, ...] = ()
    unrouted_drops: int = attrs.field(default=0, repr=False)

    @property
    def exported(self) -> int:
        """The fewest spans any one exporter accepted."""
        if not self.exporters:
            return self.emitted - self.unrouted_drops
        return min(stats.exported for stats in self.exporters)

    @property
    def dropped(self) -> int:
        """The most spans any one exporter dropped."""
        if not self.exporters:
            return self.unrouted_drops
        return max(stats.dropped for stats in self.exporters)

    @property
    def export_failures(self) -> int:
        """``export`` calls that raised, all exporters together."""
        return sum(stats.export_failures for stats in self.exporters)

    def __repr__(self) -> str:
        each = ", ".join(
            f"{s.exporter}(exported={s.exported}, dropped={s.dropped}, failed={s.failed}, "
            f"export_failures={s.export_failures})"
            for s in self.exporters
        )
        return (
            f"CollectorStats(emitted={self.emitted}, exported={self.exported}, "
            f"dropped={self.dropped}, export_failures={self.export_failures}, "
            f"exporters=[{each}])"
        )

    __str__ = __repr__


Policy = Literal["drop", "unbounded", "block"]
"""What a full buffer does: ``"drop"`` the span, or never fill (``"unbounded"``).

``"block"`` is a deprecated name of ``"unbounded"``: a span ends synchronously
and cannot wait, so nothing ever blocked.
"""


class _Lane:
    """One exporter's channel, drain task and counters."""

    def __init__(self, exporter: Exporter, capacity: float) -> None:
        self.exporter = exporter
        self.stats = ExporterStats(type(exporter).__name__)
        self.send, self.receive = trio.open_memory_channel[Span](capacity)
        self.scope = trio.CancelScope(shield=True)
        self.drained = trio.Event()

    def offer(self, span: Span) -> None:
        try:
            self.send.send_nowait(span)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            self.stats.dropped += 1


class Collector:
    """The live side of a ``collect`` block: its exporters, settings and :attr:`stats`.

    Created by :func:`collect`; not meant to be built directly.
    """

    def __init__(
        self,
        exporters: Sequence[Exporter],
        *,
        buffer: int,
        batch_size: int,
        flush_interval: float,
        policy: Policy,
        drain_timeout: float,
    ) -> None:
        self.exporters: tuple[Exporter, ...] = tuple(exporters)
        self.buffer = buffer
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.policy: Policy = policy
        self.drain_timeout = drain_timeout
        capacity = math.inf if policy == "unbounded" else buffer
        self._lanes = tuple(_Lane(exporter, capacity) for exporter in self.exporters)
        self.stats = CollectorStats(exporters=tuple(lane.stats for lane in self._lanes))
        self._open = False
        self._thread = threading.get_ident()
        self._token: trio.lowlevel.TrioToken | None = None

    def __repr__(self) -> str:
        names = ", ".join(type(e).__name__ for e in self.exporters)
        return f"<Collector exporters=[{names}] policy={self.policy!r} stats={self.stats}>"

    # --- the request path ---------------------------------------------------

    def submit(self, span: Span) -> None:
        """Hand a finished span to every exporter without waiting; count what cannot go.

        Spans call this as they end (the collector is their
        :class:`~trio_dspy.telemetry.span.SpanSink`); from a worker thread it
        hops to the trio thread first.
        """
        if threading.get_ident() != self._thread:
            self._submit_from_thread(span)
            return
        self.stats.emitted += 1
        if not self._open:
            self._drop_everywhere()
            return
        for lane in self._lanes:
            lane.offer(span)

    def _drop_everywhere(self) -> None:
        self.stats.unrouted_drops += 1
        for lane in self._lanes:
            lane.stats.dropped += 1

    def _submit_from_thread(self, span: Span) -> None:
        """A span finished in a worker thread (``trio.to_thread``): hop to the trio thread."""
        try:
            trio.from_thread.run_sync(self.submit, span, trio_token=self._token)
        except (trio.RunFinishedError, RuntimeError):
            self.stats.emitted += 1
            self._drop_everywhere()

    # --- the drain tasks ----------------------------------------------------

    async def _drain(self, lane: _Lane) -> None:
        """Receive one exporter's spans in batches and export them, until its channel closes."""
        # Nothing the exporters do is traced into this (or any) collector, and
        # their log lines do not pretend to belong to the spawner's trace.
        detach_from_tracing()
        receive = lane.receive
        # Shielded from the start: an outer cancellation must not lose the
        # spans in flight. collect() cancels this scope itself at the deadline.
        with lane.scope, receive:
            closed = False
            while not closed:
                try:
                    batch = [await receive.receive()]
                except trio.EndOfChannel:
                    break
                with trio.move_on_after(self.flush_interval):
                    while len(batch) < self.batch_size:
                        try:
                            batch.append(receive.receive_nowait())
                        except trio.WouldBlock:
                            try:
                                batch.append(await receive.receive())
                            except trio.EndOfChannel:
                                closed = True
                                break
                        except trio.EndOfChannel:
                            closed = True
                            break
                await self._export(lane, batch)
        lane.drained.set()

    async def _export(self, lane: _Lane, batch: list[Span]) -> None:
        """Give ``batch`` to the lane's exporter; count the outcome."""
        try:
            await lane.exporter.export(batch)
        except Exception as exc:
            lane.stats.export_failures += 1
            lane.stats.failed += len(batch)
            _log.warning(
                "telemetry export failed",
                exporter=lane.stats.exporter,
                spans=len(batch),
                error_type=type(exc).__qualname__,
                error=str(exc),
            )
        else:
            lane.stats.exported += len(batch)

    # --- shutdown -----------------------------------------------------------

    async def _finish_draining(self) -> None:
        """Close the channels and let the drain tasks finish, at most ``drain_timeout`` s."""
        self._open = False
        for lane in self._lanes:
            lane.send.close()
        with trio.move_on_after(self.drain_timeout, shield=True):
            for lane in self._lanes:
                await lane.drained.wait()
        for lane in self._lanes:
            lane.scope.cancel()

    def _settle(self) -> None:
        """Count every span an exporter neither took, dropped nor failed on as dropped."""
        for lane in self._lanes:
            stats = lane.stats
            lost = self.stats.emitted - stats.exported - stats.dropped - stats.failed
            stats.dropped += max(lost, 0)

    async def _close_exporters(self) -> None:
        """Await every exporter's ``aclose()`` concurrently, shielded and bounded; never raise."""

        async def close(exporter: Exporter) -> None:
            aclose = getattr(exporter, "aclose", None)
            if aclose is None:
                return
            try:
                await aclose()
            except Exception as exc:
                _log.warning(
                    "telemetry exporter close failed",
                    exporter=type(exporter).__name__,
                    error_type=type(exc).__qualname__,
                    error=str(exc),
                )

        with trio.move_on_after(self.drain_timeout, shield=True):
            async with trio.open_nursery() as nursery:
                for exporter in self.exporters:
                    nursery.start_soon(close, exporter)


def _check_collect_options(
    exporters: Sequence[object],
    buffer: int,
    batch_size: int,
    flush_interval: float,
    policy: str,
    drain_timeout: float,
) -> None:
    for exporter in exporters:
        if not callable(getattr(exporter, "export", None)):
            raise TypeError(f"{exporter!r} is not an exporter: it has no export(spans) method")
    if buffer < 0:
        raise ValueError(f"buffer must be >= 0, got {buffer}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not flush_interval > 0:
        raise ValueError(f"flush_interval must be > 0 seconds, got {flush_interval}")
    if not drain_timeout >= 0:
        raise ValueError(f"drain_timeout must be >= 0 seconds, got {drain_timeout}")
    if policy not in ("drop", "unbounded", "block"):
        raise ValueError(f"policy must be 'drop' or 'unbounded', got {policy!r}")


@asynccontextmanager
async def collect(
    *exporters: Exporter,
    buffer: int = 1000,
    batch_size: int = 100,
    flush_interval: float = 1.0,
    policy: Policy = "drop",
    drain_timeout: float = 5.0,
) -> AsyncIterator[Collector]:
    """Collect the spans finished in the block (and its child tasks) and export them.

    ::

        async with td.telemetry.collect(OtlpHttpExporter("http://127.0.0.1:4318")):
            await td.gather(*requests)

    Args:
        exporters: where batches go; each has its own buffer, drain task and
            counters (``collector.stats.exporters``), so none waits on another.
        buffer: spans each exporter's channel holds before ``policy="drop"``
            drops them (for that exporter).
        batch_size: most spans per ``export`` call.
        flush_interval: seconds a batch waits for more spans before it is exported.
        policy: ``"drop"`` (default) drops and counts a span when the buffer is
            full. ``"unbounded"`` loses nothing: the channel has no bound
            (``buffer`` is ignored), so memory grows while exporters lag. Use it
            in tests and audits. ``"block"`` is its deprecated old name.
        drain_timeout: seconds the exit may spend exporting what is left, and
            again closing the exporters; both shielded from cancellation. The
            exit takes at most twice this, unless an exporter waits on a
            worker thread it cannot abandon (see the module's documentation).

    The body's own exception (or cancellation) propagates unchanged. Exporter
    errors never do: see :attr:`Collector.stats`.

    Raises:
        TypeError: an exporter has no ``export`` method.
        ValueError: a setting is out of range or ``policy`` is unknown.
    """
    _check_collect_options(exporters, buffer, batch_size, flush_interval, policy, drain_timeout)
    if policy == "block":
        warnings.warn(
            'collect(policy="block") is deprecated: it never blocked; use policy="unbounded"',
            DeprecationWarning,
            stacklevel=3,
        )
        policy = "unbounded"
    collector = Collector(
        exporters,
        buffer=buffer,
        batch_size=batch_size,
        flush_interval=flush_interval,
        policy=policy,
        drain_timeout=drain_timeout,
    )
    collector._token = trio.lowlevel.current_trio_token()
    collector._open = True
    body_exc: BaseException | None = None
    reraise: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            for lane in collector._lanes:
                nursery.start_soon(collector._drain, lane)
            try:
                with send_spans_to(collector):
                    yield collector
            except BaseException as exc:
                body_exc = exc
                raise
            finally:
                await collector._finish_draining()
    except BaseExceptionGroup as group:
        # The drain task never raises, so a group holding just the body's
        # exception is the nursery's wrapping: hand back the exception itself.
        if body_exc is None or len(group.exceptions) != 1 or group.exceptions[0] is not body_exc:
            raise
        reraise = body_exc
    finally:
        collector._settle()
        await collector._close_exporters()
    if reraise is not None:
        try:
            raise reraise
        finally:
            reraise = body_exc = None
