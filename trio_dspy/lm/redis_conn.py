"""What :class:`~trio_dspy.lm.redis_limits.RedisLimits` and
:class:`~trio_dspy.lm.redis_cache.RedisCache` share: the connection, errors, polling.

coredis (the ``redis`` extra) is imported here, on first use, never by
``import trio_dspy``. A coredis client runs its connections as tasks in a
task group that must be entered and left by the same task, so a client
cannot outlive the block that opened it (other tasks may send commands
through it while the block is open).
Each limited or cached call therefore opens its own client for exactly as
long as it needs one (:meth:`RedisConnector.client`): nothing outlives the
call, and nothing is bound to a trio run that has ended. That costs a
connection per call; a program that makes many calls opens one client for
all of them with ``async with shared.connected():`` around its work
(:meth:`RedisConnector.connected`), and the calls inside share its pool.
"""

from __future__ import annotations

import functools
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from ..errors import ConfigurationError
from ..logs import get_logger
from ..runlocal import RunLocal
from .redis_url import check_redis_url

if TYPE_CHECKING:
    import coredis

__all__ = [
    "RedisBacked",
    "RedisConnector",
    "backoff_delays",
    "clean_up",
    "keep_alive",
    "redis_errors",
    "renewing",
    "run_script",
]

log = get_logger(__name__)
T = TypeVar("T")

# Seconds to wait for a connection, and for any one reply, before Redis
# counts as unreachable: far below an LM call, far above a healthy round trip.
CONNECT_TIMEOUT = 1.0
REPLY_TIMEOUT = 2.0
# Seconds a shielded clean-up (releasing a lease or a lock) may take.
CLEANUP_TIMEOUT = 2.0


def _coredis() -> Any:
    try:
        import coredis
    except ImportError:  # pragma: no cover - the dev extra installs it
        raise ConfigurationError(
            "Redis limits and caches need coredis: pip install 'trio_dspy[redis]'"
        ) from None
    return coredis


def redis_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean Redis could not be reached or did not answer."""
    coredis = _coredis()
    import anyio  # coredis's own dependency: its streams raise these when a connection dies

    return (
        coredis.exceptions.RedisError,
        anyio.ClosedResourceError,
        anyio.BrokenResourceError,
        anyio.EndOfStream,
        OSError,
        TimeoutError,
        trio.TooSlowError,
    )


@functools.cache
def _script(source: str) -> Any:
    from coredis.commands.script import Script

    return Script(script=source)


class RedisBacked:
    """What :class:`~trio_dspy.lm.redis_limits.RedisLimits` and
    :class:`~trio_dspy.lm.redis_cache.RedisCache` share: their connector."""

    connector: RedisConnector

    def connected(self) -> AbstractAsyncContextManager[None]:
        """Keep one Redis connection pool open for the block, shared by every call in it.

        ::

            async with shared.connected():
                await td.gather(*calls)

        Without it each call opens a connection of its own, which costs
        about 1.5 ms more per call (``benchmarks/scale_out.py``).

        Raises:
            ConfigurationError: coredis is not installed.
        """
        return self.connector.connected()


async def run_script(
    client: coredis.Redis[bytes], source: str, keys: list[str], args: list[Any]
) -> Any:
    """Run the Lua ``source`` (by its SHA, loading it on first use) with ``keys`` and ``args``."""
    return await _script(source)(keys=keys, args=[str(a) for a in args], client=client)


class RedisConnector:
    """Opens coredis clients for one Redis URL: the one of an enclosing
    :meth:`connected` block, else one per call.

    Raises:
        ValueError: ``url`` is not a Redis URL coredis can connect with
            (:func:`~trio_dspy.lm.redis_url.check_redis_url`); the message
            never quotes it.
    """

    def __init__(self, url: str) -> None:
        #: the URL without its password.
        self.public_url = check_redis_url(url)
        self._url = url
        # The clients of this run's open connected() blocks, innermost last.
        self._open: RunLocal[list[coredis.Redis[bytes]]] = RunLocal(
            list, name="trio_dspy.lm.redis_conn"
        )

    @asynccontextmanager
    async def _new_client(self) -> AsyncIterator[coredis.Redis[bytes]]:
        coredis = _coredis()
        redis = coredis.Redis.from_url(
            self._url,
            connect_timeout=CONNECT_TIMEOUT,
            stream_timeout=REPLY_TIMEOUT,
            verify_version=False,  # one round trip less per connection
            decode_components=True,  # a password may hold any character as %XX
        )
        async with _as_itself(redis):
            yield redis

    @asynccontextmanager
    async def client(self) -> AsyncIterator[coredis.Redis[bytes]]:
        """The client of the innermost :meth:`connected` block of this run, else a
        client whose connection lives for the body of this block.

        Raises:
            ConfigurationError: coredis is not installed.
        """
        shared = self._open.get()
        if shared:
            yield shared[-1]
            return
        async with self._new_client() as redis:
            yield redis

    @asynccontextmanager
    async def connected(self) -> AsyncIterator[None]:
        """Keep one client (and its connection pool) open for the block.

        Every call made while the block is open, from any task of this trio
        run, uses it instead of connecting for itself. Its connections are
        tasks of this block: wrap the block around the work that makes the calls.

        Raises:
            ConfigurationError: coredis is not installed.
        """
        async with self._new_client() as redis:
            stack = self._open.get()
            stack.append(redis)
            try:
                yield
            finally:
                stack.remove(redis)

    @asynccontextmanager
    async def sharing(self) -> AsyncIterator[coredis.Redis[bytes]]:
        """A client that every call made while the block is open shares: the one
        of an enclosing :meth:`connected` block, else one opened for this block.

        For work that makes several calls in a row (a session's turn): one
        connection instead of one per call.

        Raises:
            ConfigurationError: coredis is not installed.
        """
        shared = self._open.get()
        if shared:
            yield shared[-1]
            return
        async with self.connected():
            yield self._open.get()[-1]

    def __repr__(self) -> str:
        return f"RedisConnector({self.public_url!r})"


def backoff_delays(first: float = 0.002, cap: float = 0.05) -> Callable[[], float]:
    """Successive polling delays: ``first`` seconds, doubling up to ``cap``, jittered."""
    delay = first

    def next_delay() -> float:
        nonlocal delay
        current = delay
        delay = min(cap, delay * 2)
        return current * random.uniform(0.5, 1.0)

    return next_delay


async def keep_alive(renew: Callable[[], Awaitable[bool]], every: float, what: str) -> None:
    """Call ``renew()`` every ``every`` seconds until cancelled (run it in a nursery).

    A renewal that fails (Redis unreachable) is logged and retried at the next
    tick; one that reports the key gone (``False``) is logged and ends the loop:
    the holder was too slow to renew and the TTL expired.
    """
    errors = redis_errors()
    while True:
        await trio.sleep(every)
        try:
            with trio.fail_after(REPLY_TIMEOUT):
                kept = await renew()
        except errors as exc:
            log.warning("lm.redis_renew_failed", what=what, error=repr(exc))
            continue
        if not kept:
            log.warning("lm.redis_lease_lost", what=what)
            return


@asynccontextmanager
async def _as_itself(manager: AbstractAsyncContextManager[T]) -> AsyncIterator[T]:
    """Enter ``manager``, which runs tasks (a nursery, a coredis client's connection
    tasks): the block's own exception comes out as itself, not wrapped in the
    ``ExceptionGroup`` of those tasks, so a limited or cached call raises what
    it would raise without Redis."""
    body_exc: BaseException | None = None
    reraise: BaseException | None = None
    try:
        async with manager as value:
            try:
                yield value
            except BaseException as exc:
                body_exc = exc
                raise
    except BaseExceptionGroup as group:
        if body_exc is None or len(group.exceptions) != 1 or group.exceptions[0] is not body_exc:
            raise
        reraise = body_exc
    if reraise is not None:
        # Raised outside the except block so that its context is not the group.
        try:
            raise reraise
        finally:
            reraise = body_exc = None


@asynccontextmanager
async def renewing() -> AsyncIterator[trio.Nursery]:
    """A nursery for renewal tasks, which never raise: cancelled when the block ends."""
    async with _as_itself(trio.open_nursery()) as nursery:
        try:
            yield nursery
        finally:
            nursery.cancel_scope.cancel()


async def clean_up(
    connector: RedisConnector,
    client: coredis.Redis[bytes],
    action: Callable[[coredis.Redis[bytes]], Awaitable[object]],
) -> BaseException | None:
    """Run ``action(client)`` shielded from cancellation and bounded in time.

    A cancelled call's client lost its connection with it (the connection's
    tasks live in the call's scope), so the action is tried again on a fresh
    client opened inside the shield. Returns the error if both failed.
    """
    errors = redis_errors()
    with trio.CancelScope(shield=True), trio.move_on_after(CLEANUP_TIMEOUT):
        try:
            await action(client)
            return None
        except errors:
            pass
        try:
            async with connector._new_client() as fresh:
                await action(fresh)
            return None
        except errors as exc:
            return exc
    return TimeoutError(f"no answer from Redis within {CLEANUP_TIMEOUT:g} s")
