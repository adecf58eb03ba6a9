"""Login throttling: sign-in attempts counted per account and per client address.

Every attempt is counted before its password is checked, so parallel attempts
cannot get past a limit; a successful sign-in gives its count back. Counts live
where every worker sees them, beside the sessions: in Redis, in the
``doorman_throttle`` table, or (for one process) in memory. Each counter is a
fixed window: the first attempt starts it, and it ends ``window`` seconds later
whatever happens in between. Keys are hashes, never usernames or addresses. A
counter that cannot be reached raises ``StoreError``: sign-in fails closed
(503), it is never waved through unthrottled.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import math
import time
import unicodedata
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..database import connect
from ..exceptions import ConfigError, StoreError, Throttled
from ..migrations import ensure_schema
from ..schema import throttle_table
from ..signing import normalize_secrets

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["Counter", "LoginThrottle", "MemoryCounter", "RedisCounter", "SQLCounter", "counter_for"]

security_log = logging.getLogger("doorman.security")


class Counter(Protocol):
    """A fixed-window counter; failures raise ``StoreError``."""

    async def hit(self, key: str, window: float) -> tuple[int, float]:
        """Count one, atomically; return (hits in the window, window end as Unix time)."""

    async def peek(self, key: str) -> tuple[int, float]:
        """(hits, window end) without counting; (0, 0.0) when absent or expired."""

    async def release(self, key: str) -> None:
        """Take one hit back, atomically: never below 0; nothing when absent or expired."""

    async def reset(self, key: str) -> None:
        """Forget ``key``."""

    async def clear_expired(self) -> int:
        """Remove ended windows; return how many were removed (if known)."""


class MemoryCounter:
    """Counts in a dict: one process only (tests, the memory session store)."""

    def __init__(self) -> None:
        self._counts: dict[str, tuple[int, float]] = {}

    async def hit(self, key: str, window: float) -> tuple[int, float]:
        now = time.time()
        hits, end = self._counts.get(key, (0, 0.0))
        self._counts[key] = found = (hits + 1, end) if end > now else (1, now + window)
        return found

    async def peek(self, key: str) -> tuple[int, float]:
        hits, end = self._counts.get(key, (0, 0.0))
        return (hits, end) if end > time.time() else (0, 0.0)

    async def release(self, key: str) -> None:
        hits, end = self._counts.get(key, (0, 0.0))
        if hits > 0 and end > time.time():
            self._counts[key] = (hits - 1, end)

    async def reset(self, key: str) -> None:
        self._counts.pop(key, None)

    async def clear_expired(self) -> int:
        now = time.time()
        expired = [key for key, (_, end) in self._counts.items() if end <= now]
        for key in expired:
            del self._counts[key]
        return len(expired)


_table = throttle_table
_PEEK = sa.select(_table.c.hits, _table.c.expires_at).where(
    _table.c.key == sa.bindparam("key"), _table.c.expires_at > sa.bindparam("now", type_=sa.Float)
)
_RELEASE = (
    _table.update()
    .where(
        _table.c.key == sa.bindparam("counter_key"),  # "key" is reserved in an UPDATE
        _table.c.hits > 0,
        _table.c.expires_at > sa.bindparam("now", type_=sa.Float),
    )
    .values(hits=_table.c.hits - 1)
)
_RESET = _table.delete().where(_table.c.key == sa.bindparam("key"))
_DELETE_EXPIRED = _table.delete().where(_table.c.expires_at <= sa.bindparam("now", type_=sa.Float))


def _upsert(dialect: str) -> sa.Executable:
    """One statement that counts: a new or ended window starts at 1, else +1."""
    if dialect not in ("postgresql", "sqlite"):
        raise ConfigError(f"throttling: the {dialect!r} database is not supported")
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    new_end = sa.bindparam("new_end", type_=sa.Float)
    ended = _table.c.expires_at <= sa.bindparam("now", type_=sa.Float)
    statement = insert(_table).values(key=sa.bindparam("key"), hits=1, expires_at=new_end)
    return statement.on_conflict_do_update(
        index_elements=[_table.c.key],
        set_={
            "hits": sa.case((ended, 1), else_=_table.c.hits + 1),
            "expires_at": sa.case((ended, new_end), else_=_table.c.expires_at),
        },
    ).returning(_table.c.hits, _table.c.expires_at)


class SQLCounter:
    """Counts in the ``doorman_throttle`` table (SQLite or PostgreSQL)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._hit = _upsert(engine.dialect.name)
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

    async def hit(self, key: str, window: float) -> tuple[int, float]:
        now = time.time()
        params = {"key": key, "now": now, "new_end": now + window}
        async with self._connect(write=True) as connection:
            hits, end = (await connection.execute(self._hit, params)).one()
        return int(hits), float(end)

    async def peek(self, key: str) -> tuple[int, float]:
        async with self._connect() as connection:
            row = (await connection.execute(_PEEK, {"key": key, "now": time.time()})).first()
        return (0, 0.0) if row is None else (int(row[0]), float(row[1]))

    async def release(self, key: str) -> None:
        async with self._connect(write=True) as connection:
            await connection.execute(_RELEASE, {"counter_key": key, "now": time.time()})

    async def reset(self, key: str) -> None:
        async with self._connect(write=True) as connection:
            await connection.execute(_RESET, {"key": key})

    async def clear_expired(self) -> int:
        async with self._connect(write=True) as connection:
            result = await connection.execute(_DELETE_EXPIRED, {"now": time.time()})
        return max(result.rowcount, 0)


# INCR, and start the window's TTL if the key has none: atomic, in one round trip.
_HIT_SCRIPT = """
local hits = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  ttl = tonumber(ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return {hits, ttl}
"""

# DECR only a live count above 0: an absent (or expired) key must not come back as -1.
_RELEASE_SCRIPT = """
local hits = tonumber(redis.call('GET', KEYS[1]))
if hits and hits > 0 then
  redis.call('DECR', KEYS[1])
end
return 0
"""


class RedisCounter:
    """Counts as Redis integers whose TTL is the window; Redis forgets ended ones."""

    def __init__(self, client: aioredis.Redis, *, prefix: str = "doorman:throttle:") -> None:
        from redis import exceptions as redis_errors

        self.client = client
        self.prefix = prefix
        # uvloop raises RuntimeError writing to a socket Redis closed: down, too (a 503)
        self._errors = (redis_errors.RedisError, OSError, RuntimeError)
        self._script = client.register_script(_HIT_SCRIPT)
        self._release_script = client.register_script(_RELEASE_SCRIPT)
        pool_options: dict[str, Any] = client.connection_pool.connection_kwargs
        self._where = f"Redis {pool_options.get('host', '?')}:{pool_options.get('port', '?')}"

    @contextlib.asynccontextmanager
    async def _answering(self) -> AsyncIterator[None]:
        try:
            yield
        except self._errors as error:
            raise StoreError(f"{self._where} did not answer ({type(error).__name__})") from error

    async def hit(self, key: str, window: float) -> tuple[int, float]:
        async with self._answering():
            hits, ttl_ms = await self._script(
                keys=[self.prefix + key], args=[max(1, math.ceil(window * 1000))]
            )
        return int(hits), time.time() + int(ttl_ms) / 1000

    async def peek(self, key: str) -> tuple[int, float]:
        async with self._answering(), self.client.pipeline(transaction=True) as pipe:
            pipe.get(self.prefix + key)
            pipe.pttl(self.prefix + key)
            hits, ttl_ms = await pipe.execute()
        if hits is None or ttl_ms < 0:  # absent (-2); no TTL (-1) is repaired by the next hit
            return 0, 0.0
        return int(hits), time.time() + ttl_ms / 1000

    async def release(self, key: str) -> None:
        async with self._answering():
            await self._release_script(keys=[self.prefix + key])

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


class _Limit(NamedTuple):
    key: str
    limit: int
    kind: Literal["account", "address"]


class LoginThrottle:
    """Refuses sign-in attempts beyond ``per_account`` for an account, or
    beyond ``per_address`` from a client address, within ``window`` seconds.

    Call ``attempt`` before checking the password and ``succeeded`` after a
    good one: every attempt counts, and a success gives its count back. A limit
    of 0 turns that limit off. ``secret`` (or a list, newest first), when
    given, keys the hashes (HMAC-SHA256, with a key derived from the newest
    secret) so stored keys cannot be reversed by guessing; every worker must
    then be given the same one.
    """

    def __init__(
        self,
        counter: Counter,
        *,
        per_account: int = 5,
        per_address: int = 20,
        window: float = 900.0,
        secret: str | bytes | Sequence[str | bytes] | None = None,
    ) -> None:
        for name, limit in (("per_account", per_account), ("per_address", per_address)):
            if type(limit) is not int or limit < 0:
                raise ConfigError(
                    f"throttle_{name}={limit!r}: give a whole number of attempts, or 0 for no limit"
                )
        if type(window) not in (int, float) or not 0 < window < math.inf:  # no bool, nan, inf
            raise ConfigError(
                f"throttle_window={window!r}: give a positive number of seconds, such as 900"
            )
        self.counter = counter
        self.per_account = per_account
        self.per_address = per_address
        self.window = float(window)
        self._key: bytes | None = None
        if secret is not None:  # a key for this purpose only, never the secret itself
            self._key = hmac.digest(normalize_secrets(secret)[0], b"doorman.throttle", "sha256")

    def _hash(self, value: str) -> str:
        if self._key is None:
            return hashlib.sha256(value.encode()).hexdigest()[:40]
        return hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()[:40]

    def _account(self, username: str) -> str:
        """An account's key: "Alice", "ALICE" and a fullwidth "Alice" share one."""
        return "a:" + self._hash(unicodedata.normalize("NFKC", username).casefold())

    def _limits(self, username: str, address: str | None) -> list[_Limit]:
        """The limits that apply to this attempt."""
        limits = []
        if self.per_account:
            limits.append(_Limit(self._account(username), self.per_account, "account"))
        if self.per_address and address is not None:
            limits.append(_Limit("c:" + self._hash(_network(address)), self.per_address, "address"))
        return limits

    async def attempt(self, username: str, address: str | None) -> None:
        """Count one sign-in attempt; raise ``Throttled`` when it is over a limit.

        Call it before checking the password: a burst of parallel attempts is
        counted before any of them is answered, so no more than the limit pass.
        A refused attempt stays counted against the limit that refused it (the
        fixed window does not grow) and is given back to the other.
        """
        waits, under = [], []
        for limit in self._limits(username, address):
            hits, end = await self.counter.hit(limit.key, self.window)
            if hits <= limit.limit:
                under.append(limit)
                continue
            waits.append(max(1, math.ceil(end - time.time())))
            # Logged once per window, never with the username (it may be a password).
            if hits == limit.limit + 1:
                security_log.warning(
                    "sign-in throttled: over %s attempts for one %s within %ss, from %s",
                    limit.limit,
                    limit.kind,
                    self.window,
                    address or "-",
                )
        if waits:
            for limit in under:  # a locked account must not use up its address's budget
                await self.counter.release(limit.key)
            raise _throttled(max(waits))

    async def check(self, username: str, address: str | None) -> None:
        """Raise ``Throttled`` when the next attempt would be refused; counts nothing."""
        now = time.time()
        waits = []
        for limit in self._limits(username, address):
            hits, end = await self.counter.peek(limit.key)
            if hits >= limit.limit:
                waits.append(max(1, math.ceil(end - now)))
        if waits:
            raise _throttled(max(waits))

    async def succeeded(self, username: str, address: str | None) -> None:
        """After a good password: clear the account's count, give the address its attempt back."""
        for limit in self._limits(username, address):
            if limit.kind == "account":
                await self.counter.reset(limit.key)
            else:
                await self.counter.release(limit.key)

    async def reset(self, username: str) -> None:
        """Unlock an account now (an admin action)."""
        await self.counter.reset(self._account(username))


def _network(address: str) -> str:
    """What an address is counted as: itself for IPv4, its /64 for IPv6."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return f"{ipaddress.IPv6Address(int(ip) >> 64 << 64)}/64"
    return str(ip)


def _throttled(retry_after: int) -> Throttled:
    """The refusal, in the same words for either limit: they must not tell whether the
    account exists."""
    amount, unit = (
        (retry_after, "second") if retry_after < 60 else (math.ceil(retry_after / 60), "minute")
    )
    wait = f"{amount} {unit}{'s' * (amount != 1)}"
    return Throttled(
        f"Too many failed sign-in attempts; try again in {wait}.", retry_after=retry_after
    )
