"""Exporters that keep spans in memory, write them to JSONL, or log them.

The OTLP/HTTP exporter lives in :mod:`trio_dspy.telemetry.otlp`. Every
exporter has ``async def export(spans)`` and ``async def aclose()`` and is
driven by the drain task of :func:`~trio_dspy.telemetry.collect`.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from typing import IO, Any

import structlog
import trio

from ..unicode import clean_text
from .codec import span_from_dict, span_to_dict
from .span import Span

__all__ = ["InMemoryExporter", "JsonlExporter", "StructlogExporter", "read_jsonl"]


class InMemoryExporter:
    """Keeps every exported span in :attr:`spans`, in export order (for tests and tools)."""

    def __init__(self) -> None:
        self.spans: list[Span] = []

    def __repr__(self) -> str:
        return f"<InMemoryExporter spans={len(self.spans)}>"

    async def export(self, spans: Sequence[Span]) -> None:
        """Append ``spans`` to :attr:`spans`. Never raises."""
        self.spans.extend(spans)

    async def aclose(self) -> None:
        """Nothing to release; the spans stay available."""

    def clear(self) -> None:
        """Forget the spans collected so far."""
        self.spans.clear()


class JsonlExporter:
    """Appends one JSON object per span and line to a file.

    The file is opened lazily at the first batch: truncated then (unless
    ``append=True``), appended to when the exporter is reused after
    :meth:`aclose`. Opening, writing and closing run in a worker thread, so
    the drain task never blocks the event loop, and the thread is abandoned
    when the drain task is cancelled (``abandon_on_cancel=True``): a file that
    hangs (a stalled network mount, a FIFO nobody reads) cannot hold the exit
    of :func:`~trio_dspy.telemetry.collect` past its deadline. An abandoned
    write finishes in the background, and the file is closed after it. One
    lock orders the threads, so lines never interleave. Read the file back
    with :func:`read_jsonl`.
    """

    def __init__(self, path: str | os.PathLike[str], *, append: bool = False) -> None:
        self.path = trio.Path(path)
        self._append = append
        self._file: IO[str] | None = None
        self._lock = threading.Lock()  # held by whichever thread uses the file
        self._count_lock = threading.Lock()  # guards _writes, held for an instant
        self._writes = 0  # writes handed to a thread and not yet returned

    def __repr__(self) -> str:
        return f"<JsonlExporter path={str(self.path)!r}>"

    def _write(self, text: str, job: list[bool]) -> None:
        """Open if needed, write and flush (in a worker thread, under the lock).

        ``job`` is ``[started, given_up]``, shared with :meth:`export` under
        the count lock, so exactly one side counts this write as finished.
        """
        with self._count_lock:
            if job[1]:
                return
            job[0] = True
        try:
            with self._lock:
                file = self._file
                if file is None:
                    mode = "a" if self._append else "w"
                    file = self._file = open(self.path, mode, encoding="utf-8")  # noqa: SIM115
                    self._append = True
                file.write(text)
                file.flush()
        finally:
            with self._count_lock:
                self._writes -= 1

    def _close(self) -> None:
        with self._lock:
            file, self._file = self._file, None
            if file is not None:
                file.close()

    async def export(self, spans: Sequence[Span]) -> None:
        """Write ``spans`` as JSON lines and flush.

        Raises:
            OSError: the file cannot be opened or written.
        """
        # Spans carry whatever text the application put in attributes.
        text = clean_text(
            "".join(
                json.dumps(span_to_dict(span), ensure_ascii=False, default=str) + "\n"
                for span in spans
            )
        )
        job = [False, False]
        with self._count_lock:
            self._writes += 1
        try:
            await trio.to_thread.run_sync(self._write, text, job, abandon_on_cancel=True)
        finally:
            with self._count_lock:
                if not job[0]:  # cancelled before the thread began: it never will
                    job[1] = True
                    self._writes -= 1

    async def aclose(self) -> None:
        """Close the file (reopened, appending, on the next export).

        If an abandoned write has not returned yet, a daemon thread closes
        the file after it, and this returns at once.

        Raises:
            OSError: closing failed (the data was already flushed).
        """
        with self._count_lock:
            writing = self._writes > 0
        if writing:
            threading.Thread(target=self._close, name="JsonlExporter close", daemon=True).start()
            return
        await trio.to_thread.run_sync(self._close, abandon_on_cancel=True)


def read_jsonl(path: str | os.PathLike[str]) -> list[Span]:
    """Load the spans a :class:`JsonlExporter` wrote (blocking; for tests and offline tools).

    Raises:
        OSError: the file cannot be read.
        json.JSONDecodeError: a line is not JSON.
        cattrs.errors.ClassValidationError: a line does not describe a span.
    """
    with open(path, encoding="utf-8") as file:
        return [span_from_dict(json.loads(line)) for line in file if line.strip()]


class StructlogExporter:
    """Logs one structured event per span (event ``"span"`` at info level).

    The event carries ``span_name``, ``trace_id``, ``span_id``, ``parent_id``,
    ``kind``, ``start_ns``, ``duration_ms``, ``status`` (and
    ``status_description`` for errors), ``attributes`` and, when there are
    any, ``events`` (name and attributes).
    """

    def __init__(self, logger: Any = None, *, event: str = "span") -> None:
        self._logger = logger if logger is not None else structlog.get_logger("trio_dspy.telemetry")
        self._event = event

    def __repr__(self) -> str:
        return f"<StructlogExporter event={self._event!r}>"

    async def export(self, spans: Sequence[Span]) -> None:
        """Log each span. Raises whatever the configured logger raises."""
        for span in spans:
            fields: dict[str, Any] = {
                "span_name": span.name,
                "trace_id": span.trace_id,
                "span_id": span.span_id,
                "parent_id": span.parent_id,
                "kind": span.kind.name,
                "start_ns": span.start_ns,
                "duration_ms": (span.duration_ns or 0) / 1e6,
                "status": span.status.code.name,
                "attributes": dict(span.attributes),
            }
            if span.status.description is not None:
                fields["status_description"] = span.status.description
            if span.events:
                fields["events"] = [
                    {"name": event.name, "attributes": dict(event.attributes)}
                    for event in span.events
                ]
            self._logger.info(self._event, **fields)

    async def aclose(self) -> None:
        """Nothing to release."""
