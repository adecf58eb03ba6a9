"""The Redis store: sessions shared by any number of workers and hosts."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from .._batches import Batches
from .._extras import needs_extra
from ..exceptions import SessionInterrupted, StoreError
from .base import new_session_key, storage_id

with needs_extra("redis", "the Redis session store"):
    import redis.asyncio as aioredis
    from redis import exceptions as redis_errors
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

__all__ = ["RedisStore"]

#: What a Redis that is down or restarting raises. uvloop raises RuntimeError for a
#: write to a socket the server closed ("the handler is closed"): down, too, so a 503.
_DOWN = (redis_errors.RedisError, OSError, RuntimeError)


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
        self._batches: Batches[str, Any] | None = (
            Batches(lambda names: self.client.mget(names))
            if type(client) is aioredis.Redis
            else None
        )
        pool_options: dict[str, Any] = client.connection_pool.connection_kwargs
        self._where = f"Redis {pool_options.get('host', '?')}:{pool_options.get('port', '?')}"

    def _name(self, key: str) -> str:
        return self.prefix + storage_id(key)

    def _unavailable(self, error: BaseException) -> StoreError:
        return StoreError(f"{self._where} did not answer ({type(error).__name__})")

    @contextlib.asynccontextmanager
    async def _answering(self) -> AsyncIterator[None]:
        try:
            yield
        except _DOWN as error:
            raise self._unavailable(error) from error

    async def load(self, key: str) -> str | None:
        try:  # inline rather than _answering(): this runs on every request
            name = self._name(key)
            batches = self._batches
            payload: str | bytes | None = await (
                batches.get(name) if batches is not None else self.client.get(name)
            )
        except _DOWN as error:
            raise self._unavailable(error) from error
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
        if self._owns_client:
            await self.client.aclose()
