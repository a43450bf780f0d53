"""What makes a GEPA run resumable: every finished evaluation and proposal, on disk.

A run is deterministic for its seed (see :mod:`.engine`): given the same
answers it takes the same steps. So resuming is replaying: the journal
(``log_dir/gepa.jsonl``, one JSON record per line, appended and flushed as
each evaluation or proposal finishes) answers every step it has seen, and
the run goes on live from the first step it has not. Nothing finished is
run twice, and the resumed run ends where an uninterrupted one would.

The first line records what the run was started with (seed, budget, data);
a journal from a different run is refused rather than silently mixed in. A
line cut short by a crash is ignored: it holds only a step that is redone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import trio

from ...errors import TrioDSPyError
from ...unicode import clean_text, utf8

__all__ = ["Journal", "fingerprint"]

FILE_NAME = "gepa.jsonl"


def fingerprint(value: Any) -> str:
    """A short, stable hash of a JSON-like value."""
    text = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr
    )
    return hashlib.sha256(utf8(text)).hexdigest()[:16]


class Journal:
    """The records of one run, in memory and (with a ``log_dir``) on disk.

    Keys are JSON-ready lists; :meth:`get` returns ``None`` for a step not
    recorded yet.
    """

    def __init__(self, log_dir: str | Path | None, header: Mapping[str, Any]) -> None:
        self.path = None if log_dir is None else Path(log_dir) / FILE_NAME
        self.header = dict(header)
        self._records: dict[str, Any] = {}
        self._lock = trio.Lock()
        self._file: trio.abc.AsyncResource | None = None
        self.replayed = 0

    async def open(self) -> None:
        """Read an existing journal (checking it belongs to this run) and open it for appending.

        Raises:
            TrioDSPyError: the journal was written by a run with other settings or data.
            OSError: the directory cannot be created or the file cannot be read.
        """
        if self.path is None:
            return
        await trio.Path(self.path.parent).mkdir(parents=True, exist_ok=True)
        fresh = not await trio.Path(self.path).exists()
        if not fresh:
            text = await trio.Path(self.path).read_text(encoding="utf-8", errors="replace")
            self._load(text)
        self._file = await trio.open_file(self.path, "a", encoding="utf-8")
        if fresh:
            await self._append({"header": self.header})

    def _load(self, text: str) -> None:
        lines = text.splitlines()
        for number, line in enumerate(lines):
            try:
                record = json.loads(line)
            except ValueError:
                if number == len(lines) - 1:
                    break  # the last line, cut short by a crash
                raise TrioDSPyError(
                    f"{self.path}: line {number + 1} is not JSON; the journal is damaged. "
                    "Remove the file to start the run afresh."
                ) from None
            if number == 0:
                self._check_header(record)
            elif isinstance(record, dict) and isinstance(record.get("key"), str):
                self._records[record["key"]] = record.get("value")

    def _check_header(self, record: Any) -> None:
        saved = record.get("header") if isinstance(record, dict) else None
        if saved != json.loads(json.dumps(self.header)):
            differ = sorted(
                k
                for k in set(self.header) | set(saved or {})
                if (saved or {}).get(k) != json.loads(json.dumps(self.header.get(k)))
            )
            raise TrioDSPyError(
                f"{self.path} holds a run started with other settings or data "
                f"({', '.join(differ) or 'unreadable header'} differ): give this run a "
                "new log_dir, or start it exactly as before to resume"
            )

    def get(self, key: list[Any]) -> Any:
        """The value recorded for ``key``, or ``None``."""
        value = self._records.get(json.dumps(key))
        if value is not None:
            self.replayed += 1
        return value

    async def put(self, key: list[Any], value: Any) -> None:
        """Record ``value`` for ``key`` (in memory, and appended to the file)."""
        text_key = json.dumps(key)
        self._records[text_key] = value
        await self._append({"key": text_key, "value": value})

    async def _append(self, record: Mapping[str, Any]) -> None:
        if self._file is None:
            return
        line = clean_text(json.dumps(record, ensure_ascii=False, default=repr) + "\n")
        # Shielded, waiting for the lock included: a finished step is written
        # whole even when the run is cancelled meanwhile, so the journal holds
        # every step the run counted and stays readable.
        with trio.CancelScope(shield=True):
            async with self._lock:
                await self._file.write(line)  # type: ignore[attr-defined]
                await self._file.flush()  # type: ignore[attr-defined]

    async def aclose(self) -> None:
        """Close the file."""
        if self._file is not None:
            with trio.CancelScope(shield=True):
                await self._file.aclose()
            self._file = None
