"""``RedisSession``: conversations in Redis, shared by every process (the ``redis`` extra).

A conversation is a list, ``{namespace}:session:{session_id}``, one JSON turn
per item (:func:`~trio_dspy.sessions.base.encode_turn`), appended with
``RPUSH`` (atomic: processes appending at once lose no turn). With ``ttl``,
a conversation expires that long after its latest turn.

``td.chat`` turns of one conversation are serialized across processes by a
lock key, ``{namespace}:session-lock:{session_id}``, taken with ``SET NX``
and a TTL (``lock_ttl``) that the holder renews while its turn runs, so the
lock of a killed process expires within ``lock_ttl``; waiters poll for it
with backoff (2 ms doubling to 50 ms). Within a process, waiters queue on a
trio lock first, so only one of them polls Redis.

Connections are as for ``td.RedisCache``: a client per call, or the one of an
enclosing ``async with session.connected():`` block
(:mod:`trio_dspy.lm.redis_conn`); a ``td.chat`` turn opens one client for its
lock, history and append. Unlike the cache, a session cannot do
without Redis: when it cannot be reached, calls raise
:class:`~trio_dspy.errors.SessionUnavailableError`.
"""

from __future__ import annotations

import functools
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from ..errors import SessionUnavailableError
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
from ..types import History
from .base import check_max_turns, check_session_id, decode_turn, encode_turn, latest, turn_lock

if TYPE_CHECKING:
    import coredis

__all__ = ["RedisSession"]

log = get_logger(__name__)
T = TypeVar("T")

# KEYS the list; ARGV the turn, ttl ms (0: none). Appends and sets the expiry
# in one step, so a conversation is never left without one.
APPEND = """
redis.call('RPUSH', KEYS[1], ARGV[1])
if ARGV[2] ~= '0' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""

# KEYS the list; ARGV how many of the latest turns (-1: all). The number of
# turns, then the turns asked for, from one snapshot.
READ = """
local count = redis.call('LLEN', KEYS[1])
local first = 0
if tonumber(ARGV[1]) >= 0 then first = math.max(0, count - tonumber(ARGV[1])) end
if first >= count then return {count} end
local turns = redis.call('LRANGE', KEYS[1], first, -1)
table.insert(turns, 1, count)
return turns
"""

# KEYS lock; ARGV token, ttl ms. 1 if we now hold the lock, else 0.
TAKE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""

# KEYS lock; ARGV token, ttl ms (0: release). 1 if we held it.
LOCK = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '0' then redis.call('DEL', KEYS[1]) else redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""


class RedisSession(RedisBacked):
    """A conversation in Redis: shared by every process with the same URL and
    namespace, its turns serialized across them.

    ::

        session = td.sessions.RedisSession("redis://localhost:6379/0", customer_id,
                                           max_turns=20, ttl=7 * 24 * 3600)

    Args:
        url: ``redis://[:password@]host:port/db`` (or ``rediss://``, ``unix://``);
            percent-encode the password (``urllib.parse.quote(password, safe="")``).
        session_id: which conversation.
        namespace: prefix of every key.
        max_turns: how many of the latest turns :meth:`history` gives
            (``None``: all); every turn is kept.
        ttl: seconds a conversation is kept after its latest turn (``None``: for ever).
        lock_ttl: seconds after which the turn lock of a process that stopped
            renewing it (killed mid-turn) expires.

    Raises:
        ValueError: ``url`` is not a Redis URL coredis can connect with (checked
            here; the message never quotes it), ``session_id`` is empty, or a
            number is out of range.
        TypeError: ``session_id`` is not a string.
    """

    def __init__(
        self,
        url: str,
        session_id: str,
        *,
        namespace: str = "trio_dspy",
        max_turns: int | None = None,
        ttl: float | None = None,
        lock_ttl: float = 30.0,
    ) -> None:
        for name, value in (("ttl", ttl), ("lock_ttl", lock_ttl)):
            if value is not None and (not math.isfinite(value) or value <= 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        self.connector = RedisConnector(url)
        self.session_id = check_session_id(session_id)
        self.namespace = namespace
        self.max_turns = check_max_turns(max_turns)
        self.ttl = ttl
        self.lock_ttl = lock_ttl
        self._key = f"{namespace}:session:{self.session_id}"
        self._lock_key = f"{namespace}:session-lock:{self.session_id}"

    async def history(self) -> History:
        """The latest ``max_turns`` turns (all if ``None``), oldest first.

        Raises:
            SessionUnavailableError: Redis could not be reached.
            SessionCorruptError: a stored turn is not one this class wrote.
            ConfigurationError: coredis is not installed.
        """
        want = -1 if self.max_turns is None else self.max_turns
        reply = await self._call(lambda c: run_script(c, READ, [self._key], [want]))
        count, turns = int(reply[0]), list(reply[1:])
        first = latest(count, self.max_turns)
        store = self.connector.public_url
        return History(
            [
                decode_turn(raw, store=store, session_id=self.session_id, index=first + i)
                for i, raw in enumerate(turns)
            ]
        )

    async def append(self, inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> None:
        """Store one turn (and restart the conversation's ``ttl``).

        Raises:
            TypeError: a value is not JSON-like, or ``inputs``/``outputs`` are not dicts.
            ValueError: a field is both an input and an output.
            SessionUnavailableError: Redis could not be reached; the turn may
                or may not have been stored (the connection died after sending).
            ConfigurationError: coredis is not installed.
        """
        raw = encode_turn(inputs, outputs)
        ms = 0 if self.ttl is None else max(1, int(self.ttl * 1000))
        await self._call(lambda c: run_script(c, APPEND, [self._key], [raw, ms]))

    async def clear(self) -> None:
        """Forget every turn of this conversation.

        Raises:
            SessionUnavailableError: Redis could not be reached.
            ConfigurationError: coredis is not installed.
        """
        await self._call(lambda c: c.delete([self._key]))

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Hold this conversation's turn lock, in this process and in Redis,
        for the block (``td.chat`` holds it around each turn).

        Raises:
            SessionUnavailableError: Redis could not be reached to take the lock.
            ConfigurationError: coredis is not installed.
        """
        async with turn_lock(("redis", self.connector.public_url, self._lock_key)):
            token = uuid.uuid4().hex
            ms = max(1, int(self.lock_ttl * 1000))
            delays = backoff_delays()
            # One connection for the lock and the turn's history and append.
            async with self.connector.sharing() as client:
                while True:
                    try:
                        taken = await run_script(client, TAKE, [self._lock_key], [token, ms])
                    except redis_errors() as exc:
                        raise self._unavailable(exc) from None
                    if taken == 1:
                        break
                    await trio.sleep(delays())
                try:
                    async with renewing() as nursery:
                        renew = functools.partial(self._lock, client, self._lock_key, token, ms)
                        nursery.start_soon(keep_alive, renew, self.lock_ttl / 3, self._lock_key)
                        yield
                finally:
                    release = functools.partial(self._lock, lock=self._lock_key, token=token, ms=0)
                    error = await clean_up(self.connector, client, release)
                    if error is not None:  # the lock expires on its own
                        log.warning(
                            "sessions.redis_unlock_failed",
                            url=self.connector.public_url,
                            lock=self._lock_key,
                            error=repr(error),
                        )

    async def _lock(self, client: coredis.Redis[bytes], lock: str, token: str, ms: int) -> bool:
        """Extend the lock to ``ms`` from now (``0``: release it); ``False`` if not ours."""
        return bool(await run_script(client, LOCK, [lock], [token, ms]))

    async def _call(self, work: Callable[[coredis.Redis[bytes]], Awaitable[T]]) -> T:
        try:
            async with self.connector.client() as client:
                return await work(client)
        except redis_errors() as exc:
            raise self._unavailable(exc) from None

    def _unavailable(self, exc: BaseException) -> SessionUnavailableError:
        url = self.connector.public_url
        return SessionUnavailableError(
            f"could not reach Redis at {url} for session {self.session_id!r} "
            f"({type(exc).__name__}: {exc}): check that Redis is up and the URL is right",
            store=url,
            session_id=self.session_id,
        )

    def __repr__(self) -> str:
        return (
            f"RedisSession({self.connector.public_url!r}, {self.session_id!r}, "
            f"namespace={self.namespace!r}, max_turns={self.max_turns})"
        )
