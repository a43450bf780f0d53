"""A response cache in Redis, shared by every process: ``LM(cache=RedisCache(url))``.

Keys are the LM's cache keys (no credentials) under ``namespace``. Identical
requests in flight in different processes share one call: the first process
to miss takes a lock key (``SET NX`` with a TTL, renewed while its call
runs, so a killed worker's lock expires within ``lock_ttl``); the others poll
with backoff (2 ms doubling to 50 ms) for the answer, which the leader stores
before it lets the lock go. One Lua script reads the answer or takes the
lock atomically, so a waiter never misses an answer stored between its two
looks. If the leader fails, the lock is released without an answer and the
next waiter makes the call itself.

The cache is best-effort: when Redis cannot be reached, calls go uncached
and one warning (``lm.redis_cache_unavailable``) is logged for the outage;
Redis is then left alone for ``retry_interval`` seconds before it is tried
again, so an outage costs no connection attempts on every call. A stored
answer that cannot be read (written by another program, or spoiled) is a
miss, logged once per key (:mod:`trio_dspy.lm.cache_codec`), and the call's
answer replaces it.
"""

from __future__ import annotations

import functools
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio

from ..logs import get_logger
from ..messages import LMResponse
from .cache import Cache, as_cached
from .cache_codec import EntryReader, encode_response
from .redis_conn import (
    RedisBacked,
    RedisConnector,
    backoff_delays,
    clean_up,
    keep_alive,
    redis_errors,
    renewing,
    run_script,
)

if TYPE_CHECKING:
    import coredis

__all__ = ["RedisCache"]

log = get_logger(__name__)

# KEYS answer, lock; ARGV token, lock ttl ms. The stored answer, else 1 if we
# now hold the lock, else 0.
READ_OR_LOCK = """
local answer = redis.call('GET', KEYS[1])
if answer then return answer end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""

# KEYS lock; ARGV token, ttl ms (0: release). 1 if we held it.
LOCK = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '0' then redis.call('DEL', KEYS[1]) else redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""


class RedisCache(RedisBacked, Cache):
    """Responses in Redis, shared by every process with the same URL and namespace.

    ::

        lm = td.LM("openai/gpt-4o-mini", cache=td.RedisCache("redis://localhost:6379/0"))

    Args:
        url: ``redis://[:password@]host:port/db`` (or ``rediss://``, ``unix://``);
            percent-encode the password (``urllib.parse.quote(password, safe="")``).
        namespace: prefix of every key.
        ttl: seconds an answer is kept (``None``: until Redis evicts it).
        lock_ttl: seconds after which the lock of a process that stopped
            renewing it (killed mid-call) expires and another process calls.
        retry_interval: seconds Redis is left alone after it could not be reached.

    Raises:
        ValueError: ``url`` is not a Redis URL coredis can connect with (checked here,
            the message never quotes it), or a duration is not positive.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "trio_dspy",
        ttl: float | None = None,
        lock_ttl: float = 30.0,
        retry_interval: float = 5.0,
    ) -> None:
        for name, value in (("ttl", ttl), ("lock_ttl", lock_ttl)):
            if value is not None and (not math.isfinite(value) or value <= 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if not math.isfinite(retry_interval) or retry_interval < 0:
            raise ValueError(f"retry_interval must be >= 0 seconds, got {retry_interval!r}")
        self.connector = RedisConnector(url)
        self.namespace = namespace
        self.ttl = ttl
        self.lock_ttl = lock_ttl
        self.retry_interval = retry_interval
        self._down_until = -math.inf  # time.monotonic(): shared by every trio run
        self._warned = False
        self._entries = EntryReader()

    def _available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, exc: BaseException) -> None:
        self._down_until = time.monotonic() + self.retry_interval
        if not self._warned:
            self._warned = True
            log.warning(
                "lm.redis_cache_unavailable",
                url=self.connector.public_url,
                error=repr(exc),
                effect="calls go uncached until Redis answers again",
            )

    def _worked(self) -> None:
        if self._warned:
            self._warned = False
            log.info("lm.redis_cache_available", url=self.connector.public_url)

    def _key(self, key: str) -> str:
        return f"{self.namespace}:cache:{key}"

    async def get(self, key: str) -> LMResponse | None:
        """The response under ``key``; ``None`` if absent, unreadable or Redis is unreachable."""
        if not self._available():
            await trio.lowlevel.checkpoint()
            return None
        try:
            async with self.connector.client() as client:
                raw = await client.get(self._key(key))
        except redis_errors() as exc:
            self._failed(exc)
            return None
        self._worked()
        return None if raw is None else self._entries.read(self, key, raw)

    async def put(self, key: str, response: LMResponse) -> None:
        """Store ``response`` under ``key`` for ``ttl`` seconds (skipped if Redis is down)."""
        if not self._available():
            await trio.lowlevel.checkpoint()
            return
        px = None if self.ttl is None else max(1, int(self.ttl * 1000))
        try:
            async with self.connector.client() as client:
                await client.set(self._key(key), encode_response(response), px=px)
        except redis_errors() as exc:
            self._failed(exc)
            return
        self._worked()

    async def call_once(self, key: str, call: Callable[[], Awaitable[LMResponse]]) -> LMResponse:
        """Serve the answer of an identical call running in another process, else run ``call``.

        Raises:
            LMError: ``call`` failed (Redis failures are never raised: the call runs uncached).
        """
        if not self._available():
            return await call()
        token = uuid.uuid4().hex
        lock = f"{self.namespace}:cache-lock:{key}"
        lock_ms = max(1, int(self.lock_ttl * 1000))
        delays = backoff_delays()
        async with self.connector.client() as client:
            while True:
                try:
                    got = await run_script(
                        client, READ_OR_LOCK, [self._key(key), lock], [token, lock_ms]
                    )
                except redis_errors() as exc:
                    self._failed(exc)
                    return await call()
                if isinstance(got, bytes):
                    hit = self._entries.read(self, key, got)
                    # An unreadable answer is replaced by a fresh one.
                    return await call() if hit is None else as_cached(hit)
                if got == 1:
                    break
                await trio.sleep(delays())
            try:
                async with renewing() as nursery:
                    nursery.start_soon(
                        keep_alive,
                        functools.partial(self._lock, client, lock, token, lock_ms),
                        self.lock_ttl / 3,
                        lock,
                    )
                    return await call()
            finally:
                release = functools.partial(self._lock, lock=lock, token=token, ms=0)
                error = await clean_up(self.connector, client, release)
                if error is not None:  # the lock expires on its own
                    self._failed(error)

    async def _lock(self, client: coredis.Redis[bytes], lock: str, token: str, ms: int) -> bool:
        """Extend the lock to ``ms`` from now (``0``: release it); ``False`` if not ours."""
        return bool(await run_script(client, LOCK, [lock], [token, ms]))

    def __repr__(self) -> str:
        return (
            f"RedisCache({self.connector.public_url!r}, namespace={self.namespace!r}, "
            f"ttl={self.ttl})"
        )
