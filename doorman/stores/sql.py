"""The SQL store: sessions in SQLite (the embedded default) or PostgreSQL."""

from __future__ import annotations

import asyncio
import time

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncEngine

from ..database import connect, create_engine, unavailable
from ..epochs import EpochCache, epoch_of
from ..exceptions import SessionInterrupted
from ..migrations import ensure_schema
from ..schema import sessions_table
from .base import new_session_key, storage_id

__all__ = ["SQLStore"]

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
#: A session written, deleted or swept: every worker reads sessions afresh.
_SESSIONS_CHANGE = {"changes_accounts": False, "changes_sessions": True}


class SQLStore:
    """Sessions in a ``doorman_sessions`` table, through SQLAlchemy Core (async).

    Give ``db`` (a SQLite path or a ``postgresql://`` URL) or an ``engine`` to
    share with the rest of the app. doorman's tables are created (or upgraded,
    by the migrations that ship with doorman) on first use.
    """

    stateless = False

    def __init__(self, db: str = "doorman.db", *, engine: AsyncEngine | None = None) -> None:
        self.engine = engine if engine is not None else create_engine(db)
        self._owns_engine = engine is None
        self._schema_ready = False
        self._schema_lock = asyncio.Lock()
        # What this process read, while no worker has written a session since (see
        # doorman.epochs: a file beside SQLite, a row of PostgreSQL).
        self._epoch = epoch_of(self.engine, "sessions")
        self._kept: EpochCache[tuple[str, float]] = EpochCache()

    async def create_table(self) -> None:
        """Bring doorman's tables up to date, once; every method does this first."""
        async with self._schema_lock:
            if not self._schema_ready:
                await ensure_schema(self.engine)
                self._schema_ready = True

    async def load(self, key: str) -> str | None:
        sid = storage_id(key)
        found = await self._kept.fetch(self._epoch, sid, lambda: self._read(sid))
        if found is None:
            return None
        payload, expires_at = found
        return payload if expires_at > time.time() else None

    async def _read(self, sid: str) -> tuple[str, float] | None:
        """The session's payload and expiry, if it is there and live."""
        if not self._schema_ready:
            await self.create_table()
        try:  # the hot path: connect()'s wrapper inlined
            async with self.engine.connect() as connection:
                result = await connection.execute(_LOAD, {"sid": sid, "now": time.time()})
                row = result.one_or_none()
        except (exc.DBAPIError, exc.TimeoutError, OSError) as error:
            raise unavailable(self.engine, error) from error
        return None if row is None else (str(row.data), float(row.expires_at))

    async def save(self, key: str | None, payload: str, expires_at: float) -> str:
        if not self._schema_ready:
            await self.create_table()
        if key is not None:
            row = {"sid": storage_id(key), "data": payload, "expires_at": expires_at}
            async with connect(self.engine, write=True, **_SESSIONS_CHANGE) as connection:
                result = await connection.execute(_UPDATE, row)
            if result.rowcount == 0:
                raise SessionInterrupted("the session was deleted while the request was using it")
            return key
        for _attempt in range(3):
            key = new_session_key()
            row = {"id": storage_id(key), "data": payload, "expires_at": expires_at}
            try:
                async with connect(self.engine, write=True, changes_accounts=False) as connection:
                    await connection.execute(_INSERT, row)
            except exc.IntegrityError:  # pragma: no cover - a 256-bit collision
                continue
            return key  # a new key: nobody can have kept it, no change to announce
        raise RuntimeError("could not mint a unique session key")  # pragma: no cover

    async def delete(self, key: str) -> None:
        if not self._schema_ready:
            await self.create_table()
        async with connect(self.engine, write=True, **_SESSIONS_CHANGE) as connection:
            await connection.execute(_DELETE, {"sid": storage_id(key)})

    async def clear_expired(self) -> int:
        if not self._schema_ready:
            await self.create_table()
        async with connect(self.engine, write=True, **_SESSIONS_CHANGE) as connection:
            result = await connection.execute(_DELETE_EXPIRED, {"now": time.time()})
        return max(result.rowcount, 0)

    async def count(self) -> int:
        """How many sessions (live or not yet swept) the table holds."""
        if not self._schema_ready:
            await self.create_table()
        async with connect(self.engine) as connection:
            result = await connection.execute(sa.select(sa.func.count()).select_from(_table))
            return int(result.scalar_one())

    async def flush(self) -> int:
        """Delete every session: everyone is signed out."""
        if not self._schema_ready:
            await self.create_table()
        async with connect(self.engine, write=True, **_SESSIONS_CHANGE) as connection:
            result = await connection.execute(_table.delete())
        return max(result.rowcount, 0)

    async def ping(self) -> None:
        async with connect(self.engine) as connection:
            await connection.execute(sa.text("SELECT 1"))

    async def close(self) -> None:
        if self._owns_engine:
            await self.engine.dispose()
