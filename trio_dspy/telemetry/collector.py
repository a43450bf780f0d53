"""The span collector: a nursery-scoped channel drained by a background task.

``async with collect(*exporters) as collector:`` opens a nursery, a trio
memory channel and one drain task. For the body of the block (and every task
spawned from it) finished spans go to this collector; a nested ``collect``
takes over for its own body. Instrumented code hands spans over with
``send_nowait``, so the request path never waits on telemetry: when the
buffer is full the span is dropped and counted in :attr:`Collector.stats`.

The drain task batches spans (``batch_size`` of them, or whatever arrived
within ``flush_interval`` of a batch's first span) and passes each batch to
every exporter concurrently. An exporter that raises is counted and logged,
and never disturbs the application or the other exporters.

On exit (normal, cancelled or by an exception) the channel closes and the
drain task exports what is left under a shielded deadline of
``drain_timeout`` seconds, so every span finished before the exit is exported
unless the exporters are stalled; spans still unexported at the deadline are
counted as dropped. Then each exporter's ``aclose()`` is awaited, shielded
and bounded by ``drain_timeout`` as well.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Literal, Protocol, runtime_checkable

import attrs
import structlog
import trio

from .span import Span, detach_from_tracing, send_spans_to

__all__ = ["Collector", "CollectorStats", "Exporter", "collect"]

_log = structlog.get_logger("trio_dspy.telemetry")


@runtime_checkable
class Exporter(Protocol):
    """Where finished spans go. Implement both methods; both run in the drain task.

    ``export`` may raise anything: the collector counts the failure in
    ``stats.export_failures`` and carries on. ``aclose`` releases resources
    (files, HTTP clients) and runs when the ``collect`` block exits; an
    exporter must reopen them lazily if it is used again, even in a later
    ``trio.run``.
    """

    async def export(self, spans: Sequence[Span]) -> None:
        """Send a batch of finished spans somewhere."""

    async def aclose(self) -> None:
        """Release what the exporter opened."""


@attrs.define
class CollectorStats:
    """Counters of a :class:`Collector`, updated as spans flow.

    Attributes:
        emitted: spans handed to the collector.
        exported: spans every exporter accepted (all of them when there are
            no exporters).
        dropped: spans lost: buffer full (``policy="drop"``), handed over after
            the collector closed, or still unexported at the drain deadline.
        export_failures: ``export`` calls that raised (one per exporter and batch).

    ``emitted - exported - dropped`` is the number of spans in batches some
    exporter failed on (or still in flight while the block runs).
    """

    emitted: int = 0
    exported: int = 0
    dropped: int = 0
    export_failures: int = 0


Policy = Literal["drop", "unbounded", "block"]
"""What a full buffer does: ``"drop"`` the span, or never fill (``"unbounded"``).

``"block"`` is a deprecated name of ``"unbounded"``: a span ends synchronously
and cannot wait, so nothing ever blocked.
"""


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
        self.stats = CollectorStats()
        self._failed_spans = 0
        self._send: trio.MemorySendChannel[Span] | None = None
        self._thread = threading.get_ident()
        self._token: trio.lowlevel.TrioToken | None = None
        self._drain_scope = trio.CancelScope(shield=True)
        self._drained = trio.Event()

    def __repr__(self) -> str:
        names = ", ".join(type(e).__name__ for e in self.exporters)
        return f"<Collector exporters=[{names}] policy={self.policy!r} stats={self.stats}>"

    # --- the request path ---------------------------------------------------

    def submit(self, span: Span) -> None:
        """Take a finished span without waiting; count it as dropped if it cannot go.

        Spans call this as they end (the collector is their
        :class:`~trio_dspy.telemetry.span.SpanSink`); from a worker thread it
        hops to the trio thread first.
        """
        if threading.get_ident() != self._thread:
            self._submit_from_thread(span)
            return
        self.stats.emitted += 1
        send = self._send
        if send is None:
            self.stats.dropped += 1
            return
        try:
            send.send_nowait(span)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            self.stats.dropped += 1

    def _submit_from_thread(self, span: Span) -> None:
        """A span finished in a worker thread (``trio.to_thread``): hop to the trio thread."""
        try:
            trio.from_thread.run_sync(self.submit, span, trio_token=self._token)
        except (trio.RunFinishedError, RuntimeError):
            self.stats.emitted += 1
            self.stats.dropped += 1

    # --- the drain task -----------------------------------------------------

    async def _drain(self, receive: trio.MemoryReceiveChannel[Span]) -> None:
        """Receive spans in batches and export them, until the channel closes."""
        # Nothing the exporters do is traced into this (or any) collector, and
        # their log lines do not pretend to belong to the spawner's trace.
        detach_from_tracing()
        # Shielded from the start: an outer cancellation must not lose the
        # spans in flight. collect() cancels this scope itself at the deadline.
        with self._drain_scope, receive:
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
                await self._export(batch)
        self._drained.set()

    async def _export(self, batch: list[Span]) -> None:
        """Give ``batch`` to every exporter at once; count the outcome."""
        if len(self.exporters) == 1:
            ok = await self._export_one(self.exporters[0], batch)
        else:
            results: list[bool] = []

            async def run(exporter: Exporter) -> None:
                results.append(await self._export_one(exporter, batch))

            async with trio.open_nursery() as nursery:
                for exporter in self.exporters:
                    nursery.start_soon(run, exporter)
            ok = all(results)
        if ok:
            self.stats.exported += len(batch)
        else:
            self._failed_spans += len(batch)

    async def _export_one(self, exporter: Exporter, batch: list[Span]) -> bool:
        try:
            await exporter.export(batch)
        except Exception as exc:
            self.stats.export_failures += 1
            _log.warning(
                "telemetry export failed",
                exporter=type(exporter).__name__,
                spans=len(batch),
                error_type=type(exc).__qualname__,
                error=str(exc),
            )
            return False
        return True

    # --- shutdown -----------------------------------------------------------

    async def _finish_draining(self) -> None:
        """Close the channel and let the drain task finish, at most ``drain_timeout`` s."""
        if self._send is not None:
            self._send.close()
        with trio.move_on_after(self.drain_timeout, shield=True):
            await self._drained.wait()
        self._drain_scope.cancel()

    def _settle(self) -> None:
        """Count every span that is neither exported nor in a failed batch as dropped."""
        stats = self.stats
        lost = stats.emitted - stats.exported - stats.dropped - self._failed_spans
        stats.dropped += max(lost, 0)

    async def _close_exporters(self) -> None:
        """Await every exporter's ``aclose()``, shielded and bounded; never raise."""
        with trio.move_on_after(self.drain_timeout, shield=True):
            for exporter in self.exporters:
                aclose = getattr(exporter, "aclose", None)
                if aclose is None:
                    continue
                try:
                    await aclose()
                except Exception as exc:
                    _log.warning(
                        "telemetry exporter close failed",
                        exporter=type(exporter).__name__,
                        error_type=type(exc).__qualname__,
                        error=str(exc),
                    )


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
        exporters: where batches go; each gets every batch, concurrently.
        buffer: spans the channel holds before ``policy="drop"`` drops them.
        batch_size: most spans per ``export`` call.
        flush_interval: seconds a batch waits for more spans before it is exported.
        policy: ``"drop"`` (default) drops and counts a span when the buffer is
            full. ``"unbounded"`` loses nothing: the channel has no bound
            (``buffer`` is ignored), so memory grows while exporters lag. Use it
            in tests and audits. ``"block"`` is its deprecated old name.
        drain_timeout: seconds the exit may spend exporting what is left, and
            again closing the exporters; both shielded from cancellation.

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
    capacity = math.inf if policy == "unbounded" else buffer
    send, receive = trio.open_memory_channel[Span](capacity)
    collector._send = send
    collector._token = trio.lowlevel.current_trio_token()
    body_exc: BaseException | None = None
    reraise: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(collector._drain, receive)
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
