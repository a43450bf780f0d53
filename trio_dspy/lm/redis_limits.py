"""Limits shared by every process that uses one Redis: ``LM(..., limits=RedisLimits(url))``.

The LM's ``max_concurrency``, ``rpm`` and ``tpm`` hold across all worker
processes (and machines) that name the same Redis, namespace and model.
Everything that decides is a Lua script, atomic on the server and timed by
the server's clock (``TIME``), so the workers' clocks do not matter:

* ``rpm`` and ``tpm`` are token buckets (a hash of level and stamp). A
  taker *reserves*: the script takes the amount at once, possibly driving
  the level below zero, and returns how long until the refill covers it;
  the taker sleeps that long. Reservations are therefore served in the
  order they reach Redis. ``tpm`` reserves the LM's estimate and settles to
  the real usage when the call ends, as the local limiter does.
* ``max_concurrency`` is a set of leases (a sorted set scored by expiry).
  A holder renews its lease every third of ``lease_ttl`` from a task in a
  nursery scoped to the call, so a worker killed mid-call frees its slot
  within ``lease_ttl``. Waiters take a ticket in a FIFO queue and poll, the
  next in line every few milliseconds, those further back less often (4 ms
  per waiter ahead, at most 250 ms, jittered); a ticket is granted a slot
  when its place in the queue is below the number of free slots, so slots go
  out in ticket order (a waiter polling late may start a few milliseconds
  after one behind it, never instead of it). Tickets expire like leases, so a killed
  waiter leaves the queue too.

A cancelled waiter takes nothing: its ticket, any lease granted by a reply
it did not read, and its bucket reservations are given back (shielded).

If Redis cannot be reached when a call asks for admission, the call fails
with :class:`~trio_dspy.errors.LimitsUnavailableError` before anything is
sent: falling back to per-process limits would multiply the budget by the
number of workers, which is what the shared limits exist to prevent. Once
admitted, a call finishes even if Redis goes away (its lease then expires
on its own; renewals, releases and settlements are best-effort and logged).
"""

from __future__ import annotations

import functools
import math
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio

from ..errors import LimitsUnavailableError
from ..logs import get_logger
from .limits import Limits
from .redis_conn import (
    RedisBacked,
    RedisConnector,
    clean_up,
    keep_alive,
    redis_errors,
    renewing,
    run_script,
)

if TYPE_CHECKING:
    import coredis

__all__ = ["RedisLimiter", "RedisLimits"]

log = get_logger(__name__)

#: Seconds between a waiter's polls per waiter ahead of it, and at most.
POLL_STEP = 0.004
POLL_CAP = 0.25

# KEYS[1] the bucket; ARGV capacity, refill per ms, amount (negative gives back).
# Returns the milliseconds until the level is back to zero (0 if it is not below).
BUCKET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'level', 'stamp')
local level = tonumber(state[1]) or capacity
local stamp = tonumber(state[2]) or now
level = math.min(capacity, level + math.max(0, now - stamp) * rate)
level = math.min(capacity, level - tonumber(ARGV[3]))
redis.call('HSET', KEYS[1], 'level', tostring(level), 'stamp', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - level) / rate) + 1000)
if level >= 0 then return '0' end
return tostring(-level / rate)
"""

# KEYS leases, queue (score: ticket number), tickets (score: expiry), counter;
# ARGV id, max_concurrency, ttl ms. Returns -1 when the id now holds a lease,
# else how many waiters must be served before it.
SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
for _, dead in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)) do
  redis.call('ZREM', KEYS[2], dead)
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[4]), ARGV[1])
end
local free = tonumber(ARGV[2]) - redis.call('ZCARD', KEYS[1])
local ahead = redis.call('ZRANK', KEYS[2], ARGV[1]) - free
if ahead < 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
else
  redis.call('ZADD', KEYS[3], now + ttl, ARGV[1])
end
for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], 2 * ttl) end
return ahead
"""

# KEYS leases; ARGV id, ttl ms. Returns 0 if the lease is gone (expired).
RENEW = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[2]))
return 1
"""

# KEYS leases, queue, tickets; ARGV id: leave, whatever was held.
LEAVE = """
for i = 1, 3 do redis.call('ZREM', KEYS[i], ARGV[1]) end
return 1
"""


class RedisLimits(RedisBacked):
    """Limits kept in Redis, shared by every process with the same URL and namespace.

    ::

        shared = td.RedisLimits("redis://localhost:6379/0")
        lm = td.LM("openai/gpt-4o-mini", max_concurrency=8, rpm=600, limits=shared)

    The LM's own ``max_concurrency``, ``rpm`` and ``tpm`` are the numbers
    enforced; each model (and server) has its own budgets under ``namespace``.
    Give every worker the same numbers. Without any limit set, the LM ignores
    ``limits=``.

    Args:
        url: ``redis://[:password@]host:port/db`` (or ``rediss://``, ``unix://``);
            percent-encode the password (``urllib.parse.quote(password, safe="")``).
        namespace: prefix of every key; processes share budgets only within one.
        lease_ttl: seconds after which a concurrency slot whose holder stopped
            renewing (a killed worker) is free again.

    Raises:
        ValueError: ``url`` is not a Redis URL coredis can connect with (checked here,
            the message never quotes it), or ``lease_ttl`` is not above 0.1 s.
    """

    def __init__(self, url: str, *, namespace: str = "trio_dspy", lease_ttl: float = 10.0) -> None:
        if not math.isfinite(lease_ttl) or lease_ttl < 0.1:
            raise ValueError(f"lease_ttl must be at least 0.1 seconds, got {lease_ttl!r}")
        self.connector = RedisConnector(url)
        self.namespace = namespace
        self.lease_ttl = lease_ttl

    def bind(self, limits: Limits, scope: str) -> RedisLimiter:
        """The limiter enforcing ``limits`` on the budgets of ``scope`` (model and server)."""
        return RedisLimiter(self, limits, scope)

    def __repr__(self) -> str:
        return (
            f"RedisLimits({self.connector.public_url!r}, namespace={self.namespace!r}, "
            f"lease_ttl={self.lease_ttl:g})"
        )


class _Permit:
    """The permit of one admitted call: records the real usage to settle on exit."""

    __slots__ = ("actual", "taken")

    def __init__(self, taken: float) -> None:
        self.taken = taken
        self.actual: int | None = None

    def settle(self, actual_tokens: int) -> None:
        """Charge ``actual_tokens`` instead of the estimate (sent to Redis when the call ends)."""
        self.actual = actual_tokens


class RedisLimiter:
    """One model's limits in Redis (made by :meth:`RedisLimits.bind`)."""

    def __init__(self, store: RedisLimits, limits: Limits, scope: str) -> None:
        self.store = store
        self.limits = limits
        prefix = f"{store.namespace}:limits:{scope}:"
        self.slot_keys = [prefix + name for name in ("leases", "queue", "tickets", "counter")]
        self.rpm_key = prefix + "rpm"
        self.tpm_key = prefix + "tpm"
        self._ttl_ms = int(store.lease_ttl * 1000)

    @asynccontextmanager
    async def acquire(self, estimated_tokens: int = 0) -> AsyncIterator[_Permit]:
        """Hold a shared slot (and rate budget) for one request for the body of the block.

        Call ``permit.settle(total_tokens)`` after the call; the correction
        reaches Redis when the block ends.

        Raises:
            LimitsUnavailableError: Redis could not be reached to admit the call.
        """
        lease = uuid.uuid4().hex
        async with self.store.connector.client() as client, renewing() as nursery:
            permit = await self._admit(client, nursery, lease, estimated_tokens)
            try:
                yield permit
            finally:
                nursery.cancel_scope.cancel()  # no renewal after the release
                returns = []
                if self.limits.tpm and permit.actual is not None:
                    returns.append((self.tpm_key, self.limits.tpm, permit.taken - permit.actual))
                await self._release(client, lease, returns)

    async def _admit(
        self, client: coredis.Redis[bytes], nursery: trio.Nursery, lease: str, estimate: int
    ) -> _Permit:
        """Wait for a slot (renewed from ``nursery``) and the rate budget.

        Raises:
            LimitsUnavailableError: Redis could not be reached.
        """
        reserved: list[tuple[str, float, float]] = []  # (key, per minute, amount)
        try:
            if self.limits.max_concurrency:
                await self._take_slot(client, lease)
                nursery.start_soon(
                    keep_alive,
                    functools.partial(self._renew, client, lease),
                    self.store.lease_ttl / 3,
                    self.slot_keys[0],
                )
            wait = 0.0
            for key, per_minute, amount in (
                (self.rpm_key, self.limits.rpm, 1.0),
                (self.tpm_key, self.limits.tpm, float(estimate)),
            ):
                if per_minute:
                    amount = min(max(amount, 0.0), per_minute)
                    # Counted as reserved before the reply: if we are cancelled
                    # while it is on its way, the give-back covers it.
                    reserved.append((key, per_minute, amount))
                    wait = max(wait, await self._bucket(client, key, per_minute, amount))
            await trio.sleep(wait)
        except redis_errors() as exc:
            await self._release(client, lease, reserved)
            raise LimitsUnavailableError(
                f"the shared limits in Redis at {self.store.connector.public_url} "
                f"cannot be reached ({exc!r}); the request was not sent: "
                "check that Redis is running and the URL is right"
            ) from None
        except BaseException:
            await self._release(client, lease, reserved)
            raise
        return _Permit(reserved[-1][2] if self.limits.tpm else 0.0)

    async def _take_slot(self, client: coredis.Redis[bytes], lease: str) -> None:
        args = [lease, self.limits.max_concurrency, self._ttl_ms]
        while True:
            ahead = await run_script(client, SLOT, self.slot_keys, args)
            if ahead < 0:
                return
            # The next in line polls every few milliseconds, those far behind
            # rarely: polling costs every waiter's process CPU, not just Redis.
            await trio.sleep(min(POLL_CAP, POLL_STEP * (ahead + 1)) * random.uniform(0.5, 1.0))

    async def _renew(self, client: coredis.Redis[bytes], lease: str) -> bool:
        return bool(await run_script(client, RENEW, self.slot_keys[:1], [lease, self._ttl_ms]))

    async def _bucket(
        self, client: coredis.Redis[bytes], key: str, per_minute: float, amount: float
    ) -> float:
        """Take ``amount`` (negative gives back); the seconds until it is covered."""
        waited = await run_script(client, BUCKET, [key], [per_minute, per_minute / 60_000, amount])
        return float(waited) / 1000

    async def _release(
        self, client: coredis.Redis[bytes], lease: str, returns: list[tuple[str, float, float]]
    ) -> None:
        """Free the slot and give back ``(bucket, per minute, amount)`` (shielded, best-effort)."""

        async def release(client: coredis.Redis[bytes]) -> None:
            if self.limits.max_concurrency:
                await run_script(client, LEAVE, self.slot_keys[:3], [lease])
            for key, per_minute, amount in returns:
                if amount:
                    await self._bucket(client, key, per_minute, -amount)

        error = await clean_up(self.store.connector, client, release)
        if error is not None:  # the lease expires on its own
            log.warning("lm.redis_limits_release_failed", error=repr(error))

    def __repr__(self) -> str:
        return f"RedisLimiter({self.store!r}, {self.limits!r})"
