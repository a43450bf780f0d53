"""Opt-in response cache: in-memory LRU or SQLite on disk, plus single-flight.

The key is the SHA-256 of a canonical JSON document of everything that
shapes an answer (provider, model, base URL, messages, tools, tool choice,
response format, sampling parameters) and never of credentials. Disk I/O
runs in worker threads (``trio.to_thread.run_sync``); the SQLite connection
is shared by those threads behind a lock.

:class:`SingleFlight` makes concurrent identical requests share one call.
A response served from the cache or from another task's call is marked
``cached=True`` and reports zero usage, so ``td.track_usage()`` counts only
tokens actually spent.
"""

from __future__ import annotations

import abc
import collections
import copy
import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import trio

from ..errors import LMError, LMTimeoutError
from ..logs import get_logger
from ..messages import LMRequest, LMResponse
from ..primitives import Usage
from ..runlocal import RunLocal
from .cache_codec import EntryReader, decode_response, encode_response

__all__ = [
    "Cache",
    "DiskCache",
    "MemoryCache",
    "SingleFlight",
    "as_cached",
    "cache_key",
    "cache_lookup",
    "cache_store",
    "cached_call",
    "decode_response",
    "default_cache_path",
    "digest",
    "encode_response",
    "make_cache",
    "request_settings",
]

log = get_logger(__name__)
# Never let a credential that slipped into the parameters reach a cache key.
SECRET_PARAMS = frozenset({"api_key", "authorization", "headers", "extra_headers"})


def digest(document: Any) -> str:
    """The SHA-256 hex digest of ``document`` written as canonical JSON. Raises nothing."""
    text = json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr
    )
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def request_settings(request: LMRequest) -> dict[str, Any]:
    """What ``request`` asks besides its messages: tools, tool choice, response
    format and parameters, credentials left out (:data:`SECRET_PARAMS`)."""
    return {
        "tools": [attrs.asdict(t) for t in request.tools],
        "tool_choice": request.tool_choice,
        "response_format": (
            attrs.asdict(request.response_format) if request.response_format else None
        ),
        "params": {k: v for k, v in request.params.items() if k.lower() not in SECRET_PARAMS},
    }


def cache_key(provider: str, model: str, base_url: str, request: LMRequest) -> str:
    """The SHA-256 hex digest identifying ``request`` to this provider, model and server."""
    doc: dict[str, Any] = {
        "provider": provider,
        "model": model,
        "base_url": base_url,
        "messages": [attrs.asdict(m) for m in request.messages],
        **request_settings(request),
    }
    if request.rollout_id is not None:  # absent otherwise, so existing keys stay valid
        doc["rollout_id"] = request.rollout_id
    return digest(doc)


def as_cached(response: LMResponse) -> LMResponse:
    """``response`` as served from the cache: ``cached=True`` and zero usage."""
    return attrs.evolve(response, cached=True, usage=Usage())


class Cache(abc.ABC):
    """Where responses are kept. Subclass to store them elsewhere."""

    @abc.abstractmethod
    async def get(self, key: str) -> LMResponse | None:
        """The response stored under ``key``, or ``None``."""

    @abc.abstractmethod
    async def put(self, key: str, response: LMResponse) -> None:
        """Store ``response`` under ``key``."""

    async def aclose(self) -> None:
        """Release resources (files, connections); the cache may reopen on next use."""
        return None

    async def call_once(self, key: str, call: Callable[[], Awaitable[LMResponse]]) -> LMResponse:
        """Run ``call`` (which stores its response) for a miss on ``key``.

        In-process single-flight has already run; a cache shared by several
        processes overrides this to let an identical call running in another
        process finish and serve its stored response instead.
        """
        return await call()


class MemoryCache(Cache):
    """An in-process LRU of at most ``maxsize`` responses (shared across trio runs).

    Raises:
        ValueError: ``maxsize < 1``.
    """

    def __init__(self, maxsize: int = 1024) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize!r}")
        self.maxsize = maxsize
        self._items: collections.OrderedDict[str, LMResponse] = collections.OrderedDict()

    async def get(self, key: str) -> LMResponse | None:
        """The response under ``key`` (marking it most recently used), or ``None``.

        A checkpoint, like every cache's ``get``, though nothing here waits.
        """
        await trio.lowlevel.checkpoint()
        response = self._items.get(key)
        if response is not None:
            self._items.move_to_end(key)
        return response

    async def put(self, key: str, response: LMResponse) -> None:
        """Store ``response``, evicting the least recently used entry when full."""
        self._items[key] = response
        self._items.move_to_end(key)
        while len(self._items) > self.maxsize:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"MemoryCache(maxsize={self.maxsize}, size={len(self._items)})"


def default_cache_path() -> Path:
    """``$TRIO_DSPY_CACHE_DIR`` or ``$XDG_CACHE_HOME/trio_dspy`` (``~/.cache/trio_dspy``),
    plus ``lm_cache.sqlite3``."""
    root = os.environ.get("TRIO_DSPY_CACHE_DIR")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = str(Path(xdg) / "trio_dspy")
    return Path(root) / "lm_cache.sqlite3"


class DiskCache(Cache):
    """Responses in a SQLite file (``path``; :func:`default_cache_path` if ``None``).

    Every disk access runs in a worker thread. Several processes may share
    the file (WAL journal).

    Raises (from calls):
        sqlite3.Error: the file cannot be opened or written.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._entries = EntryReader()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            self._conn = conn
        return self._conn

    def _get(self, key: str) -> bytes | None:
        # As bytes, so that a value that is not UTF-8 (or not text at all) reaches
        # the decoder as a bad entry instead of failing inside sqlite3.
        with self._lock:
            row = (
                self._connection()
                .execute("SELECT CAST(value AS BLOB) FROM responses WHERE key = ?", (key,))
                .fetchone()
            )
        return None if row is None or row[0] is None else bytes(row[0])

    def _put(self, key: str, value: str) -> None:
        with self._lock:
            self._connection().execute(
                "INSERT OR REPLACE INTO responses (key, value) VALUES (?, ?)", (key, value)
            )

    def _close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    async def get(self, key: str) -> LMResponse | None:
        """The response under ``key``, or ``None`` (also for an unreadable entry)."""
        raw = await trio.to_thread.run_sync(self._get, key)
        return None if raw is None else self._entries.read(self, key, raw)

    async def put(self, key: str, response: LMResponse) -> None:
        """Store ``response`` under ``key`` (replacing any older entry)."""
        await trio.to_thread.run_sync(self._put, key, encode_response(response))

    async def aclose(self) -> None:
        """Close the SQLite connection (reopened on next use)."""
        await trio.to_thread.run_sync(self._close)

    def __repr__(self) -> str:
        return f"DiskCache({str(self.path)!r})"


def make_cache(spec: bool | str | os.PathLike[str] | Cache | None) -> Cache | None:
    """The cache an ``LM(cache=...)`` option asks for.

    ``False``/``None``: none; ``True`` or ``"memory"``: :class:`MemoryCache`;
    ``"disk"``: :class:`DiskCache` at the default path; any other string or
    path: :class:`DiskCache` there; a :class:`Cache`: itself.

    Raises:
        TypeError: ``spec`` is none of these.
    """
    if spec is None or spec is False:
        return None
    if spec is True or spec == "memory":
        return MemoryCache()
    if isinstance(spec, Cache):
        return spec
    if spec == "disk":
        return DiskCache()
    if isinstance(spec, str | os.PathLike):
        return DiskCache(spec)
    raise TypeError(f"cache must be False, True, 'memory', 'disk', a path or a Cache, got {spec!r}")


@attrs.define(eq=False)
class _Flight:
    done: trio.Event = attrs.field(factory=trio.Event)
    response: LMResponse | None = None
    error: LMError | None = None


class SingleFlight:
    """Concurrent calls with the same key share one in-flight call (per trio run).

    The first caller (the leader) runs the call; the others wait for it. If
    the leader succeeds the waiters get its response (marked cached, zero
    usage); if it fails with an :class:`~trio_dspy.errors.LMError` they get
    that error too; if it is cancelled or times out on its own deadline, a
    waiter runs the call itself instead of hanging.
    """

    def __init__(self) -> None:
        self._flights: RunLocal[dict[str, _Flight]] = RunLocal(
            dict, name="trio_dspy.lm.singleflight"
        )

    async def run(self, key: str, call: Callable[[], Awaitable[LMResponse]]) -> LMResponse:
        """``await call()``, or share the result of an identical call already running.

        Raises:
            LMError: the call (ours or the leader's) failed.
        """
        flights = self._flights.get()
        while True:
            flight = flights.get(key)
            if flight is None:
                break
            await flight.done.wait()
            if flight.response is not None:
                return as_cached(flight.response)
            if flight.error is not None:
                raise copy.copy(flight.error) from None
            # The leader was cancelled: loop, and lead (or follow a new leader).
        flight = _Flight()
        flights[key] = flight
        try:
            response = await call()
        except LMTimeoutError:
            raise  # the leader's own deadline: waiters may still have time
        except LMError as exc:
            flight.error = exc
            raise
        else:
            flight.response = response
            return response
        finally:
            del flights[key]
            flight.done.set()


async def cache_lookup(cache: Cache, key: str) -> LMResponse | None:
    """The response stored under ``key``, or ``None`` (also when the cache fails: logged)."""
    try:
        return await cache.get(key)
    except Exception as exc:  # a broken cache must not fail the call
        log.warning("lm.cache_read_failed", cache=repr(cache), error=repr(exc))
        return None


async def cache_store(cache: Cache, key: str, response: LMResponse) -> None:
    """Store ``response`` under ``key``; a failure to store is logged, not raised."""
    try:
        await cache.put(key, response)
    except Exception as exc:  # keep the (paid-for) response even if storing fails
        log.warning("lm.cache_write_failed", cache=repr(cache), error=repr(exc))


async def cached_call(
    cache: Cache,
    flights: SingleFlight,
    key: str,
    call: Callable[[], Awaitable[LMResponse]],
) -> LMResponse:
    """Serve ``key`` from ``cache``, else run ``call`` once (single-flight) and store it."""
    hit = await cache_lookup(cache, key)
    if hit is not None:
        return as_cached(hit)

    async def call_and_store() -> LMResponse:
        response = await call()
        await cache_store(cache, key, response)
        return response

    return await flights.run(key, partial(cache.call_once, key, call_and_store))
