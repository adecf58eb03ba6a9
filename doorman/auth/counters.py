"""The throttle's counters: failures in a fixed window, and attempts in flight.

A counter keeps two numbers per key. *Failures* count in a fixed window: the
first one starts it, and it ends ``window`` seconds later whatever happens in
between. *In flight* counts the attempts let through whose outcome is not known
yet; each one holds a lease, and a key's leases lapse together ``lease``
seconds after its last grant, so a worker that died mid-check cannot hold a
slot for ever. ``acquire`` lets an attempt through only while failures plus
attempts in flight are under the limit, in one atomic step, so no more
password checks can fail in a window than the limit, however many run at once.

Counts live where every worker sees them, beside the sessions: in Redis, in
the ``doorman_throttle`` table, or (for one process) in memory. A counter that
cannot be reached raises ``StoreError``: callers fail closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Literal, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..database import connect
from ..exceptions import ConfigError, StoreError
from ..migrations import ensure_schema
from ..schema import throttle_table

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = [
    "Counter",
    "MemoryCounter",
    "Outcome",
    "RedisCounter",
    "SQLCounter",
    "Verdict",
    "counter_for",
]

#: ``acquire``'s answer: let through; wait for attempts in flight; refused until the window ends.
Verdict = Literal["granted", "busy", "refused"]
#: What ``settle`` does besides giving the slot back: count a failure, nothing, or forget failures.
Outcome = Literal["count", "refund", "clear"]

_VERDICTS: dict[str, Verdict] = {"granted": "granted", "busy": "busy", "refused": "refused"}
#: Where a key's attempts in flight are kept: beside its failures, under this mark.
_FLIGHT = "~"


class Counter(Protocol):
    """Failures in a fixed window, and attempts in flight; failures raise ``StoreError``."""

    async def acquire(self, key: str, limit: int, lease: float) -> tuple[Verdict, float]:
        """Atomically take a slot when failures + attempts in flight < ``limit``.

        Returns the verdict and the end of the failures' window (Unix time; 0.0
        when there are none). "refused": failures reached ``limit``; "busy":
        only attempts in flight stand in the way, whose outcome may free a slot.
        """

    async def settle(self, key: str, outcome: Outcome, window: float) -> int:
        """Give a granted slot back, atomically, and "count" one failure (an absent or
        ended window starts at 1 and lasts ``window`` seconds), "refund" (count
        nothing) or "clear" the failures. Returns the failures now in the window."""

    async def peek(self, key: str) -> tuple[int, float]:
        """(failures, window end) without changing anything; (0, 0.0) when none."""

    async def reset(self, key: str) -> None:
        """Forget the failures of ``key`` (attempts in flight stay)."""

    async def clear_expired(self) -> int:
        """Remove ended windows and lapsed leases; return how many (if known)."""


def _decide(failures: int, flying: int, limit: int) -> Verdict:
    if failures >= limit:
        return "refused"
    return "busy" if failures + flying >= limit else "granted"


class MemoryCounter:
    """Counts in dicts: one process only (tests, the memory session store)."""

    def __init__(self) -> None:
        self._counts: dict[str, tuple[int, float]] = {}  # failures, window end
        self._flying: dict[str, tuple[int, float]] = {}  # in flight, lease end

    @staticmethod
    def _live(table: dict[str, tuple[int, float]], key: str) -> tuple[int, float]:
        count, end = table.get(key, (0, 0.0))
        return (count, end) if end > time.time() else (0, 0.0)

    async def acquire(self, key: str, limit: int, lease: float) -> tuple[Verdict, float]:
        failures, end = self._live(self._counts, key)
        flying, _ = self._live(self._flying, key)
        verdict = _decide(failures, flying, limit)
        if verdict == "granted":
            self._flying[key] = (flying + 1, time.time() + lease)
        return verdict, end

    async def settle(self, key: str, outcome: Outcome, window: float) -> int:
        flying, lease_end = self._live(self._flying, key)
        if flying > 0:
            self._flying[key] = (flying - 1, lease_end)
        failures, end = self._live(self._counts, key)
        if outcome == "count":
            failures, end = (failures + 1, end) if failures else (1, time.time() + window)
            self._counts[key] = (failures, end)
        elif outcome == "clear":
            self._counts.pop(key, None)
            failures = 0
        return failures

    async def peek(self, key: str) -> tuple[int, float]:
        return self._live(self._counts, key)

    async def reset(self, key: str) -> None:
        self._counts.pop(key, None)

    async def clear_expired(self) -> int:
        now, removed = time.time(), 0
        for table in (self._counts, self._flying):
            expired = [key for key, (_, end) in table.items() if end <= now]
            for key in expired:
                del table[key]
            removed += len(expired)
        return removed


_table = throttle_table
_NOW = sa.bindparam("now", type_=sa.Float)
_PEEK = sa.select(_table.c.hits, _table.c.expires_at).where(
    _table.c.key == sa.bindparam("key"), _table.c.expires_at > _NOW
)
_PEEK_BOTH = sa.select(_table.c.key, _table.c.hits, _table.c.expires_at).where(
    _table.c.key.in_([sa.bindparam("key"), sa.bindparam("flight_key")]), _table.c.expires_at > _NOW
)
_TAKE = (
    _table.update()
    .where(_table.c.key == sa.bindparam("counter_key"))  # "key" is reserved in an UPDATE
    .values(hits=_table.c.hits + 1, expires_at=sa.bindparam("new_end", type_=sa.Float))
)
_GIVE_BACK = (
    _table.update()
    .where(
        _table.c.key == sa.bindparam("counter_key"), _table.c.hits > 0, _table.c.expires_at > _NOW
    )
    .values(hits=_table.c.hits - 1)
)
_RESET = _table.delete().where(_table.c.key == sa.bindparam("key"))
_DELETE_EXPIRED = _table.delete().where(_table.c.expires_at <= _NOW)


def _upsert(dialect: str, *, start: int) -> sa.Executable:
    """One statement: a new or ended row starts at ``start`` with a new end; a live one
    gains ``start`` and keeps its end. Returns (hits, end)."""
    if dialect not in ("postgresql", "sqlite"):
        raise ConfigError(f"throttling: the {dialect!r} database is not supported")
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    new_end = sa.bindparam("new_end", type_=sa.Float)
    ended = _table.c.expires_at <= _NOW
    statement = insert(_table).values(key=sa.bindparam("key"), hits=start, expires_at=new_end)
    return statement.on_conflict_do_update(
        index_elements=[_table.c.key],
        set_={
            "hits": sa.case((ended, start), else_=_table.c.hits + start),
            "expires_at": sa.case((ended, new_end), else_=_table.c.expires_at),
        },
    ).returning(_table.c.hits, _table.c.expires_at)


class SQLCounter:
    """Counts in the ``doorman_throttle`` table (SQLite or PostgreSQL).

    A key's failures are the row ``key``; its attempts in flight the row
    ``~key``, whose ``expires_at`` is the end of their leases.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._count = _upsert(engine.dialect.name, start=1)
        self._lock_flight = _upsert(engine.dialect.name, start=0)  # also ends lapsed leases
        self._schema_ready = False
        self._schema_lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def _connect(self, *, write: bool = False) -> AsyncIterator[AsyncConnection]:
        """``database.connect``, after bringing the tables up to date once."""
        if not self._schema_ready:
            async with self._schema_lock:
                if not self._schema_ready:
                    await ensure_schema(self.engine)
                    self._schema_ready = True
        async with connect(self.engine, write=write, changes_accounts=False) as connection:
            yield connection

    async def _read(self, key: str) -> tuple[int, float, int]:
        """(failures, window end, in flight), read without a lock."""
        params = {"key": key, "flight_key": _FLIGHT + key, "now": time.time()}
        async with self._connect() as connection:
            rows = (await connection.execute(_PEEK_BOTH, params)).all()
        found = {row[0]: (int(row[1]), float(row[2])) for row in rows}
        failures, end = found.get(key, (0, 0.0))
        return failures, end, found.get(_FLIGHT + key, (0, 0.0))[0]

    async def acquire(self, key: str, limit: int, lease: float) -> tuple[Verdict, float]:
        failures, end, flying = await self._read(key)
        verdict = _decide(failures, flying, limit)
        if verdict != "granted":  # a stale "no" only means asking again: no write, no lock
            return verdict, end
        now = time.time()
        flight = {"key": _FLIGHT + key, "now": now, "new_end": now + lease}
        async with self._connect(write=True) as connection:
            # The flight row first: it serializes the acquires of one key (a row lock on
            # PostgreSQL, the write lock on SQLite) before the failures are read again.
            flying = (await connection.execute(self._lock_flight, flight)).one()[0]
            row = (await connection.execute(_PEEK, {"key": key, "now": now})).first()
            failures, end = (0, 0.0) if row is None else (int(row[0]), float(row[1]))
            verdict = _decide(failures, int(flying), limit)
            if verdict == "granted":
                await connection.execute(
                    _TAKE, {"counter_key": _FLIGHT + key, "new_end": now + lease}
                )
        return verdict, end

    async def settle(self, key: str, outcome: Outcome, window: float) -> int:
        now = time.time()
        async with self._connect(write=True) as connection:
            await connection.execute(_GIVE_BACK, {"counter_key": _FLIGHT + key, "now": now})
            if outcome == "count":
                params = {"key": key, "now": now, "new_end": now + window}
                return int((await connection.execute(self._count, params)).one()[0])
            if outcome == "clear":
                await connection.execute(_RESET, {"key": key})
                return 0
            row = (await connection.execute(_PEEK, {"key": key, "now": now})).first()
        return 0 if row is None else int(row[0])

    async def peek(self, key: str) -> tuple[int, float]:
        async with self._connect() as connection:
            row = (await connection.execute(_PEEK, {"key": key, "now": time.time()})).first()
        return (0, 0.0) if row is None else (int(row[0]), float(row[1]))

    async def reset(self, key: str) -> None:
        async with self._connect(write=True) as connection:
            await connection.execute(_RESET, {"key": key})

    async def clear_expired(self) -> int:
        async with self._connect(write=True) as connection:
            result = await connection.execute(_DELETE_EXPIRED, {"now": time.time()})
        return max(result.rowcount, 0)


# KEYS: failures, in flight; ARGV: limit, lease (ms). Returns {verdict, failures' TTL in ms}.
_ACQUIRE_SCRIPT = """
local failures = tonumber(redis.call('GET', KEYS[1])) or 0
local ttl = redis.call('PTTL', KEYS[1])
local flying = tonumber(redis.call('GET', KEYS[2])) or 0
local limit = tonumber(ARGV[1])
if failures >= limit then return {'refused', ttl} end
if failures + flying >= limit then return {'busy', ttl} end
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return {'granted', ttl}
"""

# KEYS: failures, in flight; ARGV: outcome, window (ms). DECR only a live count above 0
# (an absent key must not come back as -1); INCR starts the window's TTL if there is none.
_SETTLE_SCRIPT = """
local flying = tonumber(redis.call('GET', KEYS[2]))
if flying and flying > 0 then
  redis.call('DECR', KEYS[2])
end
if ARGV[1] == 'clear' then
  redis.call('DEL', KEYS[1])
  return 0
end
if ARGV[1] == 'count' then
  local hits = redis.call('INCR', KEYS[1])
  if redis.call('PTTL', KEYS[1]) < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
  end
  return hits
end
return tonumber(redis.call('GET', KEYS[1])) or 0
"""


def _milliseconds(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class RedisCounter:
    """Counts as Redis integers whose TTL is the window (or the leases); Redis drops ended ones."""

    def __init__(self, client: aioredis.Redis, *, prefix: str = "doorman:throttle:") -> None:
        from redis import exceptions as redis_errors

        self.client = client
        self.prefix = prefix
        # uvloop raises RuntimeError writing to a socket Redis closed: down, too (a 503)
        self._errors = (redis_errors.RedisError, OSError, RuntimeError)
        self._acquire = client.register_script(_ACQUIRE_SCRIPT)
        self._settle = client.register_script(_SETTLE_SCRIPT)
        pool_options: dict[str, Any] = client.connection_pool.connection_kwargs
        self._where = f"Redis {pool_options.get('host', '?')}:{pool_options.get('port', '?')}"

    @contextlib.asynccontextmanager
    async def _answering(self) -> AsyncIterator[None]:
        try:
            yield
        except self._errors as error:
            raise StoreError(f"{self._where} did not answer ({type(error).__name__})") from error

    def _keys(self, key: str) -> list[str]:
        return [self.prefix + key, self.prefix + _FLIGHT + key]

    async def acquire(self, key: str, limit: int, lease: float) -> tuple[Verdict, float]:
        async with self._answering():
            verdict, ttl_ms = await self._acquire(
                keys=self._keys(key), args=[limit, _milliseconds(lease)]
            )
        text = verdict.decode() if isinstance(verdict, bytes) else str(verdict)
        end = time.time() + int(ttl_ms) / 1000 if int(ttl_ms) > 0 else 0.0
        return _VERDICTS[text], end

    async def settle(self, key: str, outcome: Outcome, window: float) -> int:
        async with self._answering():
            failures = await self._settle(
                keys=self._keys(key), args=[outcome, _milliseconds(window)]
            )
        return int(failures)

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


def counter_for(store: object, *, engine: AsyncEngine | None = None) -> Counter:
    """The counter that keeps its counts where ``store`` keeps sessions."""
    from ..stores.memory import MemoryStore
    from ..stores.sql import SQLStore

    if isinstance(store, MemoryStore):
        return MemoryCounter()
    if isinstance(store, SQLStore):
        return SQLCounter(store.engine)
    try:
        from ..stores.redis import RedisStore
    except ImportError:  # redis is optional; without it, store is no RedisStore
        pass
    else:
        if isinstance(store, RedisStore):
            base = store.prefix.removesuffix("session:")  # doorman:session: -> doorman:throttle:
            return RedisCounter(store.client, prefix=base + "throttle:")
    if engine is not None:
        return SQLCounter(engine)
    raise ConfigError(
        f"throttling: failed sign-ins must be counted where every worker sees them, and "
        f"{type(store).__name__} keeps nothing server-side (a stateless session store); "
        "give the users database (engine=...) or use a SQL or Redis session store"
    )
