"""The SQL store: sessions in SQLite (the embedded default) or PostgreSQL, and the
throttle's counts beside them (``SQLCounter``, the ``doorman_throttle`` table)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Sequence

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..db.engine import create_engine, failures, insert
from ..db.epochs import EpochCache, epoch_of
from ..db.migrations import ensure_schema
from ..db.schema import sessions_table, throttle_table
from ..db.transaction import connect
from ..exceptions import SessionInterrupted
from .base import (
    FLIGHT,
    Lease,
    Outcome,
    Slot,
    Verdict,
    decide_all,
    new_session_key,
    storage_id,
)

__all__ = ["SQLCounter", "SQLStore"]

_table = sessions_table
_LOAD = sa.select(_table.c.data, _table.c.expires_at).where(
    _table.c.id == sa.bindparam("sid"), _table.c.expires_at > sa.bindparam("now")
)
_INSERT = _table.insert()
_UPDATE = (
    _table.update()
    .where(_table.c.id == sa.bindparam("sid"))
    .values(data=sa.bindparam("data"), expires_at=sa.bindparam("expires_at"))
)
_DELETE = _table.delete().where(_table.c.id == sa.bindparam("sid"))
_DELETE_EXPIRED = _table.delete().where(_table.c.expires_at <= sa.bindparam("now"))


class SQLStore:
    """Sessions in a ``doorman_sessions`` table, through SQLAlchemy Core (async).

    Give ``db`` (a SQLite path or a ``postgresql://`` URL) or an ``engine`` to
    share with the rest of the app. ``Doorman.startup`` (or ``doorman db
    migrate``) makes doorman's tables; a store used on its own, under the session
    middleware alone, makes them itself: nothing else starts it.
    """

    stateless = False

    def __init__(self, db: str = "doorman.db", *, engine: AsyncEngine | None = None) -> None:
        self.engine = engine if engine is not None else create_engine(db)
        self._owns_engine = engine is None
        # What this process read, while no worker has written a session since (see
        # doorman.db.epochs: a file beside SQLite, a row of PostgreSQL).
        self._epoch = epoch_of(self.engine, "sessions")
        self._kept: EpochCache[tuple[str, float]] = EpochCache()

    async def create_table(self) -> None:
        """Bring doorman's tables up to date (once per engine and process)."""
        await ensure_schema(self.engine)

    @contextlib.asynccontextmanager
    async def _connect(self, *, write: bool = False) -> AsyncIterator[AsyncConnection]:
        # The one place a table is made on first use: the session middleware has no
        # start-up of its own (an app may use this store with nothing else of doorman),
        # and after the first call this is a set lookup.
        await ensure_schema(self.engine)
        async with connect(self.engine, write=write) as connection:
            yield connection

    async def load(self, key: str) -> str | None:
        sid = storage_id(key)
        found = await self._kept.fetch(self._epoch, sid, lambda: self._read(sid))
        if found is None:
            return None
        payload, expires_at = found
        return payload if expires_at > time.time() else None

    async def _read(self, sid: str) -> tuple[str, float] | None:
        """The session's payload and expiry, if it is there and live."""
        await ensure_schema(self.engine)
        with failures(self.engine):  # the hot path: connect()'s wrapper left out
            async with self.engine.connect() as connection:
                result = await connection.execute(_LOAD, {"sid": sid, "now": time.time()})
                row = result.one_or_none()
        return None if row is None else (str(row.data), float(row.expires_at))

    async def save(self, key: str | None, payload: str, expires_at: float) -> str:
        if key is not None:
            row = {"sid": storage_id(key), "data": payload, "expires_at": expires_at}
            async with self._connect(write=True) as connection:
                result = await connection.execute(_UPDATE, row)
            if result.rowcount == 0:
                raise SessionInterrupted("the session was deleted while the request was using it")
            return key
        for _attempt in range(3):
            key = new_session_key()
            row = {"id": storage_id(key), "data": payload, "expires_at": expires_at}
            try:
                async with self._connect(write=True) as connection:
                    await connection.execute(_INSERT, row)
            except exc.IntegrityError:  # pragma: no cover - a 256-bit collision
                continue
            return key  # an insert: nobody can have kept it, no epoch moves
        raise RuntimeError("could not mint a unique session key")  # pragma: no cover

    async def delete(self, key: str) -> None:
        async with self._connect(write=True) as connection:
            await connection.execute(_DELETE, {"sid": storage_id(key)})

    async def clear_expired(self) -> int:
        async with self._connect(write=True) as connection:
            result = await connection.execute(_DELETE_EXPIRED, {"now": time.time()})
        return max(result.rowcount, 0)

    async def count(self) -> int:
        """How many sessions (live or not yet swept) the table holds."""
        async with self._connect() as connection:
            result = await connection.execute(sa.select(sa.func.count()).select_from(_table))
            return int(result.scalar_one())

    async def flush(self) -> int:
        """Delete every session: everyone is signed out."""
        async with self._connect(write=True) as connection:
            result = await connection.execute(_table.delete())
        return max(result.rowcount, 0)

    async def ping(self) -> None:
        async with connect(self.engine) as connection:
            await connection.execute(sa.text("SELECT 1"))

    async def close(self) -> None:
        if self._owns_engine:
            await self.engine.dispose()

    def counter(self) -> SQLCounter:
        return SQLCounter(self.engine)


_throttle = throttle_table
_NOW = sa.bindparam("now", type_=sa.Float)
_GIVE_BACK = (
    _throttle.update()
    .where(
        _throttle.c.key == sa.bindparam("counter_key"),
        _throttle.c.hits > 0,
        _throttle.c.expires_at > _NOW,
    )
    .values(hits=_throttle.c.hits - 1)
)
_KEYS: sa.BindParameter[str] = sa.bindparam("keys", expanding=True)
_PEEK = sa.select(_throttle.c.key, _throttle.c.hits, _throttle.c.expires_at).where(
    _throttle.c.key.in_(_KEYS), _throttle.c.expires_at > _NOW
)
_RESET = _throttle.delete().where(_throttle.c.key == sa.bindparam("key"))
_DELETE_ENDED = _throttle.delete().where(_throttle.c.expires_at <= _NOW)


def _upsert(dialect: str, *, start: int, returning: bool = True) -> sa.Executable:
    """One statement: a new or ended row starts at ``start`` with a new end; a live one
    gains ``start`` and keeps its end. Returns (hits, end), if ``returning``."""
    new_end = sa.bindparam("new_end", type_=sa.Float)
    ended = _throttle.c.expires_at <= _NOW
    statement = insert(_throttle, dialect).values(
        key=sa.bindparam("key"), hits=start, expires_at=new_end
    )
    upsert = statement.on_conflict_do_update(
        index_elements=[_throttle.c.key],
        set_={
            "hits": sa.case((ended, start), else_=_throttle.c.hits + start),
            "expires_at": sa.case((ended, new_end), else_=_throttle.c.expires_at),
        },
    )
    return upsert.returning(_throttle.c.hits, _throttle.c.expires_at) if returning else upsert


async def _counts(
    connection: AsyncConnection, keys: list[str], now: float
) -> dict[str, tuple[int, float]]:
    """The live rows among ``keys``: key -> (hits, end)."""
    rows = (await connection.execute(_PEEK, {"keys": keys, "now": now})).all()
    return {str(row[0]): (int(row[1]), float(row[2])) for row in rows}


class SQLCounter:
    """Counts in the ``doorman_throttle`` table (SQLite or PostgreSQL).

    A key's failures are the row ``key``; its attempts in flight the rows
    ``~key@generation``, one per generation of leases (``Lease``), whose
    ``expires_at`` is the end of the next generation. The row ``~key`` (no
    count) is locked by each acquire of the key, whatever its generation.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._count = _upsert(engine.dialect.name, start=1)
        self._lock = _upsert(engine.dialect.name, start=0)
        self._take = _upsert(engine.dialect.name, start=1, returning=False)

    async def create_table(self) -> None:
        """Bring doorman's tables up to date: ``Doorman.startup`` does, when this counts
        in another database than the users'."""
        await ensure_schema(self.engine)

    async def acquire(self, key: str, limit: int, lease: Lease) -> tuple[Verdict, float]:
        return await self.acquire_all([(key, limit)], lease)

    async def settle(self, key: str, outcome: Outcome, window: float, lease: Lease) -> int:
        (failures,) = await self.settle_all([(key, outcome)], window, lease)
        return failures

    async def acquire_all(self, slots: Sequence[Slot], lease: Lease) -> tuple[Verdict, float]:
        """One read without a lock, then, unless it says no, one transaction for all."""
        keys = [key for key, _limit in slots]
        flights = [lease.flight(key) for key in keys]
        read = [*keys, *flights, *(lease.earlier_flight(key) for key in keys)]
        async with connect(self.engine) as connection:
            counts = await _counts(connection, read, time.time())
        verdict, end = decide_all(slots, counts, lease)
        if verdict != "granted":  # a stale "no" only means asking again: no write, no lock
            return verdict, end
        now = time.time()
        async with connect(self.engine, write=True) as connection:
            # The lock rows first, in one order for every caller (no deadlock): they
            # serialize the acquires of each key (of any generation: one at a generation's
            # end sees the one before in the earlier flight) before the counts are read again.
            for key in sorted(keys):
                params = {"key": FLIGHT + key, "now": now, "new_end": lease.ends}
                await connection.execute(self._lock, params)
            counts = await _counts(connection, read, now)
            verdict, end = decide_all(slots, counts, lease)
            if verdict == "granted":
                taken = [{"key": f, "now": now, "new_end": lease.ends} for f in sorted(flights)]
                await connection.execute(self._take, taken)
        return verdict, end

    async def settle_all(
        self, outcomes: Sequence[tuple[str, Outcome]], window: float, lease: Lease
    ) -> list[int]:
        now = time.time()
        failures: dict[str, int] = {}
        flights = [lease.flight(key) for key, _outcome in outcomes]
        async with connect(self.engine, write=True) as connection:
            # Row by row, in acquire_all's order: one UPDATE of several rows locks them in
            # the order PostgreSQL scans them, and two transactions could each wait for the other.
            for flight in sorted(flights):
                await connection.execute(_GIVE_BACK, {"counter_key": flight, "now": now})
            for key, outcome in outcomes:
                if outcome == "count":
                    params = {"key": key, "now": now, "new_end": now + window}
                    failures[key] = int((await connection.execute(self._count, params)).one()[0])
                elif outcome == "clear":
                    await connection.execute(_RESET, {"key": key})
                    failures[key] = 0
            refunded = [key for key, outcome in outcomes if outcome == "refund"]
            if refunded:
                counts = await _counts(connection, refunded, now)
                failures.update((key, counts.get(key, (0, 0.0))[0]) for key in refunded)
        return [failures[key] for key, _outcome in outcomes]

    async def peek(self, key: str) -> tuple[int, float]:
        async with connect(self.engine) as connection:
            counts = await _counts(connection, [key], time.time())
        return counts.get(key, (0, 0.0))

    async def reset(self, key: str) -> None:
        async with connect(self.engine, write=True) as connection:
            await connection.execute(_RESET, {"key": key})

    async def clear_expired(self) -> int:
        async with connect(self.engine, write=True) as connection:
            result = await connection.execute(_DELETE_ENDED, {"now": time.time()})
        return max(result.rowcount, 0)
