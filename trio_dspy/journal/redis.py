"""``td.RedisJournal``: durable runs in Redis, shared by many workers (the ``redis`` extra).

Keys, under ``{namespace}:journal:``:

* ``run:{run_id}:steps`` (hash): step key -> ``kind<TAB>fingerprint<TAB>payload hash``;
* ``run:{run_id}:meta`` (hash): ``created``, ``updated``, ``completed``;
* ``run:{run_id}:approvals`` (hash, call id -> request JSON), ``run:{run_id}:order``
  (list of call ids, as requested) and ``run:{run_id}:decisions`` (hash, call
  id -> ``1`` or ``0``, a tab, the note);
* ``blob:{sha256}``: a payload, stored once; ``blobrefs`` (hash) counts the
  steps using each, and a payload goes with its last step;
* ``runs`` (sorted set): run ids by the time they were last written, for
  :meth:`RedisJournal.prune`.

Each write is one Lua script (atomic). A step is acknowledged by Redis
before its result is returned; it is then as durable as the server is
configured to make it (``appendonly yes`` with ``appendfsync always`` loses
nothing; the default snapshotting can lose the last minutes on a server
crash; a killed *worker* loses nothing either way).

A run is held with a lock key, ``{namespace}:journal-lock:{run_id}``, taken
with ``SET NX`` and a TTL (``lock_ttl``) that the holder renews; a killed
worker's lock expires within ``lock_ttl``, after which its run can be entered.
When Redis cannot be reached, every call raises
:class:`~trio_dspy.errors.JournalUnavailable`: entering a run fails before
any step runs, and a step fails before its result is returned.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from ..errors import JournalCorrupt, JournalUnavailable
from ..lm.redis_conn import (
    RedisBacked,
    RedisConnector,
    backoff_delays,
    clean_up,
    keep_alive,
    redis_errors,
    renewing,
    run_script,
)
from ..logs import get_logger
from ..sessions.redis import LOCK, TAKE
from .local import local_hold
from .store import (
    ApprovalRequest,
    Decision,
    JournalStore,
    RunRecord,
    StepRecord,
    blob_hash,
    busy,
    check_run_id,
    seconds,
    unknown_request,
)

if TYPE_CHECKING:
    import coredis

__all__ = ["RedisJournal"]

log = get_logger(__name__)
T = TypeVar("T")
_HASH_LEN = 64

# KEYS steps, refs, runs, meta; ARGV field, entry, hash, payload, now, run id, blob prefix.
RECORD = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local h = string.sub(old, -64)
  if redis.call('HINCRBY', KEYS[2], h, -1) <= 0 then
    redis.call('HDEL', KEYS[2], h)
    redis.call('DEL', ARGV[7] .. h)
  end
end
redis.call('SET', ARGV[7] .. ARGV[3], ARGV[4])
redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSETNX', KEYS[4], 'created', ARGV[5])
redis.call('HSET', KEYS[4], 'updated', ARGV[5])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[6])
return 1
"""

# KEYS steps, meta; ARGV blob prefix. completed, then field, entry, payload per step.
LOAD = """
local out = {redis.call('HGET', KEYS[2], 'completed') or '0'}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  table.insert(out, all[i])
  table.insert(out, all[i + 1])
  table.insert(out, redis.call('GET', ARGV[1] .. string.sub(all[i + 1], -64)) or '')
end
return out
"""

# KEYS meta, runs; ARGV now, run id, what to set ('completed' or '').
TOUCH = """
redis.call('HSETNX', KEYS[1], 'created', ARGV[1])
redis.call('HSET', KEYS[1], 'updated', ARGV[1])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], ARGV[3], '1') end
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
return 1
"""

# KEYS approvals, order, meta, runs; ARGV now, run id, then call id and request pairs.
REQUEST = """
for i = 3, #ARGV, 2 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('RPUSH', KEYS[2], ARGV[i])
  end
end
redis.call('HSETNX', KEYS[3], 'created', ARGV[1])
redis.call('HSET', KEYS[3], 'updated', ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[1], ARGV[2])
return 1
"""

# KEYS approvals, decisions, meta, runs; ARGV call id, decision, now, run id. 0: no request.
DECIDE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[3], 'updated', ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[4])
return 1
"""

# KEYS steps, refs, runs, meta, approvals, order, decisions; ARGV run id, blob prefix.
DELETE = """
for _, entry in ipairs(redis.call('HVALS', KEYS[1])) do
  local h = string.sub(entry, -64)
  if redis.call('HINCRBY', KEYS[2], h, -1) <= 0 then
    redis.call('HDEL', KEYS[2], h)
    redis.call('DEL', ARGV[2] .. h)
  end
end
redis.call('DEL', KEYS[1], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""


class RedisJournal(RedisBacked, JournalStore):
    """Durable runs in Redis: every worker with the same URL and namespace shares them.

    ::

        journal = td.RedisJournal("redis://localhost:6379/0", namespace="support")
        async with td.durable(ticket_id, journal) as run:
            ...

    Args:
        url: ``redis://[:password@]host:port/db`` (or ``rediss://``, ``unix://``).
        namespace: prefix of every key.
        lock_ttl: seconds after which the hold of a worker that stopped
            renewing it (killed) expires, letting another enter its run.

    Raises:
        ValueError: ``url`` is not a Redis URL (the message never quotes it),
            or ``lock_ttl`` is not a positive number.
    """

    def __init__(self, url: str, *, namespace: str = "trio_dspy", lock_ttl: float = 15.0) -> None:
        if not math.isfinite(lock_ttl) or lock_ttl <= 0:
            raise ValueError(f"lock_ttl must be a positive number of seconds, got {lock_ttl!r}")
        self.connector = RedisConnector(url)
        self.where = self.connector.public_url
        self.namespace = namespace
        self.lock_ttl = lock_ttl
        self._prefix = f"{namespace}:journal:"

    def __repr__(self) -> str:
        return f"RedisJournal({self.connector.public_url!r}, namespace={self.namespace!r})"

    def _run_keys(self, run_id: str, *names: str) -> list[str]:
        return [f"{self._prefix}run:{run_id}:{name}" for name in names]

    @property
    def _runs(self) -> str:
        return f"{self._prefix}runs"

    @property
    def _blobs(self) -> str:
        return f"{self._prefix}blob:"

    # ------------------------------------------------------------- holding
    @asynccontextmanager
    async def hold(self, run_id: str, wait: float | None = None) -> AsyncIterator[None]:
        """Hold ``run_id`` for the block, in this process and across workers.

        Raises:
            JournalBusy: it was still held by another after ``wait`` seconds.
            JournalUnavailable: Redis could not be reached to take the hold.
        """
        lock = f"{self.namespace}:journal-lock:{check_run_id(run_id)}"
        deadline = trio.current_time() + (math.inf if wait is None else wait)
        key = ("redis-journal", self.connector.public_url, lock)
        async with local_hold(key, deadline, lambda: busy(self, run_id, wait or 0.0)):
            token = uuid.uuid4().hex
            ms = max(1, int(self.lock_ttl * 1000))
            delays = backoff_delays(cap=0.1)
            async with contextlib.AsyncExitStack() as stack:
                try:
                    client = await stack.enter_async_context(self.connector.sharing())
                except redis_errors() as exc:
                    raise self._unavailable(exc, run_id) from None
                while True:
                    try:
                        taken = await run_script(client, TAKE, [lock], [token, ms])
                    except redis_errors() as exc:
                        raise self._unavailable(exc, run_id) from None
                    if taken == 1:
                        break
                    if trio.current_time() >= deadline:
                        raise busy(self, run_id, wait or 0.0)
                    await trio.sleep(min(delays(), max(0.0, deadline - trio.current_time())))
                try:
                    async with renewing() as nursery:
                        renew = functools.partial(self._renew, client, lock, token, ms)
                        nursery.start_soon(keep_alive, renew, self.lock_ttl / 3, lock)
                        yield
                finally:
                    release = functools.partial(self._renew, lock=lock, token=token, ms=0)
                    error = await clean_up(self.connector, client, release)
                    if error is not None:  # the hold expires on its own
                        log.warning("journal.redis_release_failed", lock=lock, error=repr(error))

    async def _renew(self, client: coredis.Redis[bytes], lock: str, token: str, ms: int) -> bool:
        return bool(await run_script(client, LOCK, [lock], [token, ms]))

    # --------------------------------------------------------------- steps
    async def load(self, run_id: str) -> RunRecord:
        """Every recorded step of ``run_id`` and whether it completed."""
        keys = self._run_keys(check_run_id(run_id), "steps", "meta")
        reply = await self._call(run_id, lambda c: run_script(c, LOAD, keys, [self._blobs]))
        try:
            completed = _text(reply[0]) == "1"
            steps: dict[str, StepRecord] = {}
            for i in range(1, len(reply), 3):
                key, entry, payload = (_text(v) for v in reply[i : i + 3])
                kind, fingerprint, digest = entry.split("\t")
                if blob_hash(payload) != digest:
                    raise ValueError("a payload is missing or does not match its hash")
                steps[key] = StepRecord(kind, fingerprint, payload)
        except (ValueError, IndexError, TypeError) as exc:
            raise JournalCorrupt(
                f"run {run_id!r} in {self.where} is not what a journal writes ({exc}); it was "
                "left as it was: delete the run with journal.delete(run_id) or use another",
                journal=self.where,
                run_id=run_id,
            ) from None
        return RunRecord(steps, completed)

    async def record(self, run_id: str, key: str, step: StepRecord) -> None:
        """Store ``step`` under ``key`` of ``run_id``; acknowledged by Redis when this returns."""
        digest = blob_hash(step.payload)
        entry = f"{step.kind}\t{step.fingerprint}\t{digest}"
        steps, meta = self._run_keys(run_id, "steps", "meta")
        keys = [steps, f"{self._prefix}blobrefs", self._runs, meta]
        args = [key, entry, digest, step.payload, time.time(), run_id, self._blobs]
        await self._call(run_id, lambda c: run_script(c, RECORD, keys, args))

    async def complete(self, run_id: str) -> None:
        """Mark ``run_id`` completed."""
        keys = [*self._run_keys(run_id, "meta"), self._runs]
        args = [time.time(), run_id, "completed"]
        await self._call(run_id, lambda c: run_script(c, TOUCH, keys, args))

    # ----------------------------------------------------------- approvals
    async def request_approval(self, run_id: str, requests: Sequence[ApprovalRequest]) -> None:
        """Record that ``run_id`` waits for decisions on ``requests``."""
        keys = [*self._run_keys(run_id, "approvals", "order", "meta"), self._runs]
        args: list[Any] = [time.time(), run_id]
        for request in requests:
            args += [request.call_id, request.to_json()]
        await self._call(run_id, lambda c: run_script(c, REQUEST, keys, args))

    async def pending(self, run_id: str) -> list[ApprovalRequest]:
        """The requests of ``run_id`` without a decision, in the order recorded."""
        approvals, order, decisions = self._run_keys(
            check_run_id(run_id), "approvals", "order", "decisions"
        )

        async def read(client: coredis.Redis[bytes]) -> list[tuple[Any, Any]]:
            ids = await client.lrange(order, 0, -1)
            if not ids:
                return []
            asked = await client.hmget(approvals, ids)
            decided = await client.hmget(decisions, ids)
            return list(zip(asked, decided, strict=True))

        rows = await self._call(run_id, read)
        try:
            return [ApprovalRequest.from_json(raw) for raw, done in rows if done is None and raw]
        except ValueError as exc:
            raise JournalCorrupt(
                f"an approval request of run {run_id!r} in {self.where} is not readable ({exc})",
                journal=self.where,
                run_id=run_id,
            ) from None

    async def decide(
        self, run_id: str, call_id: str, *, approved: bool, note: str | None = None
    ) -> None:
        """Record the decision on ``call_id`` of ``run_id``.

        Raises:
            JournalError: ``run_id`` has no request ``call_id``.
        """
        keys = [*self._run_keys(check_run_id(run_id), "approvals", "decisions", "meta"), self._runs]
        value = f"{int(bool(approved))}\t{note or ''}"
        args = [call_id, value, time.time(), run_id]
        done = await self._call(run_id, lambda c: run_script(c, DECIDE, keys, args))
        if done != 1:
            raise unknown_request(self, run_id, call_id)

    async def decision(self, run_id: str, call_id: str) -> Decision | None:
        """The decision recorded on ``call_id`` of ``run_id``, or ``None``."""
        (decisions,) = self._run_keys(run_id, "decisions")
        raw = await self._call(run_id, lambda c: c.hget(decisions, call_id))
        if raw is None:
            return None
        flag, _, note = _text(raw).partition("\t")
        return Decision(flag == "1", note or None)

    # ----------------------------------------------------------- retention
    async def delete(self, run_id: str) -> None:
        """Forget ``run_id`` and the payloads no other run uses."""
        await self._call(run_id, lambda c: self._delete(c, check_run_id(run_id)))

    async def _delete(self, client: coredis.Redis[bytes], run_id: str) -> None:
        names = ("steps", "meta", "approvals", "order", "decisions")
        steps, meta, approvals, order, decisions = self._run_keys(run_id, *names)
        keys = [steps, f"{self._prefix}blobrefs", self._runs, meta, approvals, order, decisions]
        await run_script(client, DELETE, keys, [run_id, self._blobs])

    async def prune(self, *, older_than: float | datetime.timedelta) -> int:
        """Delete the runs not written to for ``older_than``; return how many."""
        cutoff = time.time() - seconds(older_than)

        async def prune(client: coredis.Redis[bytes]) -> int:
            old = await client.zrangebyscore(self._runs, float("-inf"), cutoff)
            for run_id in old:
                await self._delete(client, _text(run_id))
            return len(old)

        return await self._call(None, prune)

    # ----------------------------------------------------------------- calls
    async def _call(
        self, run_id: str | None, work: Callable[[coredis.Redis[bytes]], Awaitable[T]]
    ) -> T:
        try:
            async with self.connector.client() as client:
                return await work(client)
        except redis_errors() as exc:
            raise self._unavailable(exc, run_id) from None

    def _unavailable(self, exc: BaseException, run_id: str | None) -> JournalUnavailable:
        return JournalUnavailable(
            f"could not reach Redis at {self.where} for the journal "
            f"({type(exc).__name__}: {exc}): check that Redis is up and the URL is right; "
            "nothing was recorded by this call",
            journal=self.where,
            run_id=run_id,
        )


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    raise TypeError(f"expected text, got {type(value).__name__}")
