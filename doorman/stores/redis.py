"""The Redis store: sessions shared by any number of workers and hosts, and the
throttle's counts beside them (``RedisCounter``)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from .._batches import Batches
from .._extras import needs_extra
from ..exceptions import SessionInterrupted, StoreError
from .base import VERDICTS, Lease, Outcome, Slot, Verdict, new_session_key, storage_id

with needs_extra("redis", "the Redis session store"):
    import redis.asyncio as aioredis
    from redis import exceptions as redis_errors
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

__all__ = ["RedisCounter", "RedisStore"]

#: What a Redis that is down or restarting raises. uvloop raises RuntimeError for a
#: write to a socket the server closed ("the handler is closed"): down, too, so a 503.
_DOWN = (redis_errors.RedisError, OSError, RuntimeError)


def _where(client: aioredis.Redis) -> str:
    """Redis host:port, for messages."""
    pool_options: dict[str, Any] = client.connection_pool.connection_kwargs
    return f"Redis {pool_options.get('host', '?')}:{pool_options.get('port', '?')}"


def _unavailable(where: str, error: BaseException) -> StoreError:
    return StoreError(f"{where} did not answer ({type(error).__name__})")


@contextlib.asynccontextmanager
async def _answering(where: str) -> AsyncIterator[None]:
    """Redis down, restarting or timed out: ``StoreError`` (a 503), never a guess."""
    try:
        yield
    except _DOWN as error:
        raise _unavailable(where, error) from error


class _BatchReader:
    """A connection of its own for the session reads' MGETs, beside redis-py's client.

    ``Batches`` sends one MGET at a time per event loop, so one connection
    serves them all, and redis-py's client and pool around each command (a
    lock, retries, bookkeeping) cost a third of an MGET's CPU. As the pool
    does: a connection that failed is made again once (a Redis restart), a
    timeout is not retried. Whatever interrupts a command (an error, a
    cancellation) drops its connection: no reply is ever read for another.
    """

    def __init__(self, pool: aioredis.ConnectionPool) -> None:
        self._pool = pool
        self._connection: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def mget(self, names: list[str]) -> list[Any]:
        try:
            return await self._command(names)
        except (redis_errors.ConnectionError, OSError, RuntimeError):
            return await self._command(names)  # once more, on a new connection

    async def _command(self, names: list[str]) -> list[Any]:
        loop = asyncio.get_running_loop()
        connection = self._connection
        if connection is None or self._loop is not loop:
            connection = self._pool.make_connection()  # type: ignore[no-untyped-call]
            self._connection, self._loop = connection, loop
        try:
            await connection.send_command("MGET", *names)
            values: list[Any] = await connection.read_response()
        except BaseException:
            self._connection = None
            await connection.disconnect(nowait=True)
            raise
        return values

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and self._loop is asyncio.get_running_loop():
            await connection.disconnect()


class RedisStore:
    """Sessions as Redis strings with a TTL; Redis itself forgets expired ones.

    Give ``url`` (``redis://host:port/db``, ``rediss://`` for TLS) or a
    ``client`` (``redis.asyncio.Redis`` with ``decode_responses=True``).
    Keys are ``prefix`` + SHA-256 of the session key. At most ``max_connections``
    commands are in flight; more wait for a free connection (10 s at most, then
    ``StoreError``), and reads made together share one MGET.
    """

    stateless = False

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        client: aioredis.Redis | None = None,
        prefix: str = "doorman:session:",
        timeout: float = 2.0,
        max_connections: int = 50,
    ) -> None:
        self._owns_client = client is None
        if client is None:
            # A pool that makes a burst wait for a connection (up to 10 s), where
            # redis-py's default one refuses the 101st concurrent command outright.
            pool = aioredis.BlockingConnectionPool.from_url(
                url,
                max_connections=max_connections,
                timeout=10,
                decode_responses=True,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                health_check_interval=30,
                # After a Redis restart every pooled connection is dead: try once more,
                # on a new one, before answering 503. A timeout is not retried.
                retry=Retry(NoBackoff(), 1),
                retry_on_error=[redis_errors.ConnectionError],
            )
            client = aioredis.Redis.from_pool(pool)
        self.client = client
        self.prefix = prefix
        # Session reads go out in batches, one MGET in flight at a time (doorman._batches):
        # a GET costs far more in redis-py's Python than in Redis. A cluster's MGET must
        # not span slots: other clients than a plain Redis get one GET per read.
        self._reader = _BatchReader(client.connection_pool)
        self._batches: Batches[str, Any] | None = (
            Batches(lambda names: self._reader.mget(names))
            if type(client) is aioredis.Redis
            else None
        )
        self._where = _where(client)

    def _name(self, key: str) -> str:
        return self.prefix + storage_id(key)

    def _answering(self) -> contextlib.AbstractAsyncContextManager[None]:
        return _answering(self._where)

    async def load(self, key: str) -> str | None:
        try:  # inline rather than _answering(): this runs on every request
            name = self._name(key)
            batches = self._batches
            payload: str | bytes | None = await (
                batches.get(name) if batches is not None else self.client.get(name)
            )
        except _DOWN as error:
            raise _unavailable(self._where, error) from error
        if isinstance(payload, bytes):  # a client given without decode_responses=True
            return payload.decode()
        return payload

    async def save(self, key: str | None, payload: str, expires_at: float) -> str:
        ttl_ms = max(1, int((expires_at - time.time()) * 1000))
        async with self._answering():
            if key is not None:
                if not await self.client.set(self._name(key), payload, px=ttl_ms, xx=True):
                    raise SessionInterrupted(
                        "the session was deleted while the request was using it"
                    )
                return key
            for _attempt in range(3):
                key = new_session_key()
                if await self.client.set(self._name(key), payload, px=ttl_ms, nx=True):
                    return key
        raise RuntimeError("could not mint a unique session key")  # pragma: no cover

    async def delete(self, key: str) -> None:
        async with self._answering():
            await self.client.delete(self._name(key))

    async def clear_expired(self) -> int:
        return 0  # Redis expires keys itself

    async def count(self) -> int:
        """How many sessions live under ``prefix``."""
        total = 0
        async with self._answering():
            async for _name in self.client.scan_iter(match=self.prefix + "*", count=500):
                total += 1
        return total

    async def flush(self) -> int:
        """Delete every session under ``prefix``: everyone is signed out."""
        removed = 0
        async with self._answering():
            batch: list[str] = []
            async for name in self.client.scan_iter(match=self.prefix + "*", count=500):
                batch.append(name)
                if len(batch) == 500:
                    removed += await self.client.delete(*batch)
                    batch = []
            if batch:
                removed += await self.client.delete(*batch)
        return removed

    async def ping(self) -> None:
        async with self._answering():
            await self.client.ping()

    async def close(self) -> None:
        await self._reader.close()
        if self._owns_client:
            await self.client.aclose()

    def counter(self) -> RedisCounter:
        """Counts under this store's prefix: ``doorman:session:`` becomes ``doorman:throttle:``."""
        base = self.prefix.removesuffix("session:")
        return RedisCounter(self.client, prefix=base + "throttle:")


# KEYS: of each key in turn, its failures, its flight of this generation and of the one
# before; ARGV: the milliseconds until this generation's flights lapse, then each key's
# limit. All the slots or none. Returns {verdict, failures' TTL in ms}: of the key that
# said no, else the longest.
_ACQUIRE_SCRIPT = """
local latest = -2
for i = 1, #KEYS / 3 do
  local failures = tonumber(redis.call('GET', KEYS[3 * i - 2])) or 0
  local ttl = redis.call('PTTL', KEYS[3 * i - 2])
  local flying = (tonumber(redis.call('GET', KEYS[3 * i - 1])) or 0)
    + (tonumber(redis.call('GET', KEYS[3 * i])) or 0)
  local limit = tonumber(ARGV[i + 1])
  if failures >= limit then return {'refused', ttl} end
  if failures + flying >= limit then return {'busy', ttl} end
  if ttl > latest then latest = ttl end
end
for i = 1, #KEYS / 3 do
  redis.call('INCR', KEYS[3 * i - 1])
  redis.call('PEXPIRE', KEYS[3 * i - 1], ARGV[1])
end
return {'granted', latest}
"""

# KEYS: failures and in flight of each key in turn; ARGV: window (ms), then each key's
# outcome; returns each key's failures. DECR only a live count above 0 (an absent key
# must not come back as -1); INCR starts the window's TTL if there is none.
_SETTLE_SCRIPT = """
local answers = {}
for i = 1, #KEYS / 2 do
  local failures, flight = KEYS[2 * i - 1], KEYS[2 * i]
  local outcome = ARGV[i + 1]
  local flying = tonumber(redis.call('GET', flight))
  if flying and flying > 0 then
    redis.call('DECR', flight)
  end
  if outcome == 'clear' then
    redis.call('DEL', failures)
    answers[i] = 0
  elseif outcome == 'count' then
    answers[i] = redis.call('INCR', failures)
    if redis.call('PTTL', failures) < 0 then
      redis.call('PEXPIRE', failures, ARGV[1])
    end
  else
    answers[i] = tonumber(redis.call('GET', failures)) or 0
  end
end
return answers
"""


def _verdict(answer: list[Any]) -> tuple[Verdict, float]:
    """A script's {verdict, failures' TTL in ms} as (verdict, window end)."""
    verdict, ttl_ms = answer
    text = verdict.decode() if isinstance(verdict, bytes) else str(verdict)
    return VERDICTS[text], time.time() + int(ttl_ms) / 1000 if int(ttl_ms) > 0 else 0.0


def _milliseconds(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class RedisCounter:
    """Counts as Redis integers whose TTL is the window (or the leases); Redis drops ended ones."""

    def __init__(self, client: aioredis.Redis, *, prefix: str = "doorman:throttle:") -> None:
        self.client = client
        self.prefix = prefix
        self._acquire = client.register_script(_ACQUIRE_SCRIPT)
        self._settle = client.register_script(_SETTLE_SCRIPT)
        self._where = _where(client)

    def _answering(self) -> contextlib.AbstractAsyncContextManager[None]:
        return _answering(self._where)

    async def acquire(self, key: str, limit: int, lease: Lease) -> tuple[Verdict, float]:
        return await self.acquire_all([(key, limit)], lease)

    async def acquire_all(self, slots: Sequence[Slot], lease: Lease) -> tuple[Verdict, float]:
        p = self.prefix
        keys = [
            name
            for key, _limit in slots
            for name in (p + key, p + lease.flight(key), p + lease.earlier_flight(key))
        ]
        limits = [limit for _key, limit in slots]
        lapses_in = _milliseconds(lease.ends - time.time())
        async with self._answering():
            answer = await self._acquire(keys=keys, args=[lapses_in, *limits])
        return _verdict(answer)

    async def settle_all(
        self, outcomes: Sequence[tuple[str, Outcome]], window: float, lease: Lease
    ) -> list[int]:
        p = self.prefix
        keys = [name for key, _ in outcomes for name in (p + key, p + lease.flight(key))]
        kinds = [outcome for _key, outcome in outcomes]
        async with self._answering():
            answers = await self._settle(keys=keys, args=[_milliseconds(window), *kinds])
        return [int(failures) for failures in answers]

    async def settle(self, key: str, outcome: Outcome, window: float, lease: Lease) -> int:
        (failures,) = await self.settle_all([(key, outcome)], window, lease)
        return failures

    async def peek(self, key: str) -> tuple[int, float]:
        async with self._answering(), self.client.pipeline(transaction=True) as pipe:
            pipe.get(self.prefix + key)
            pipe.pttl(self.prefix + key)
            hits, ttl_ms = await pipe.execute()
        if hits is None or ttl_ms < 0:  # absent (-2); no TTL (-1) is repaired by the next count
            return 0, 0.0
        return int(hits), time.time() + ttl_ms / 1000

    async def reset(self, key: str) -> None:
        async with self._answering():
            await self.client.delete(self.prefix + key)

    async def clear_expired(self) -> int:
        return 0  # Redis expires keys itself
