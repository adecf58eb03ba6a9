"""Session stores: memory, signed cookie, SQL (SQLite, PostgreSQL), Redis."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..exceptions import ConfigError
from .base import (
    BatchCounter,
    Counter,
    CountingStore,
    ServerSideStore,
    SessionStore,
    SyncLoadable,
    new_session_key,
)
from .cookie import CookieStore
from .memory import MemoryCounter, MemoryStore

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from .redis import RedisCounter, RedisStore
    from .sql import SQLCounter, SQLStore

__all__ = [
    "BatchCounter",
    "CookieStore",
    "Counter",
    "CountingStore",
    "MemoryCounter",
    "MemoryStore",
    "RedisCounter",
    "RedisStore",
    "SQLCounter",
    "SQLStore",
    "ServerSideStore",
    "SessionStore",
    "SyncLoadable",
    "counter_for",
    "new_session_key",
    "open_store",
]


def __getattr__(name: str) -> Any:
    # The SQL and Redis stores import their drivers only when asked for.
    if name in ("SQLStore", "SQLCounter"):
        from . import sql

        return getattr(sql, name)
    if name in ("RedisStore", "RedisCounter"):
        from . import redis

        return getattr(redis, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_store(spec: str = "db", *, db: str = "doorman.db") -> SessionStore:
    """The store named by ``--sessions``/``DOORMAN_SESSIONS``.

    ``db`` (the default) keeps sessions in the database ``db``; ``cookie`` in
    signed cookies; ``memory`` in this process; a ``redis://`` (or
    ``rediss://``, ``unix://``) URL in Redis.
    """
    if spec == "db":
        from .sql import SQLStore

        return SQLStore(db)
    if spec == "cookie":
        return CookieStore()
    if spec == "memory":
        return MemoryStore()
    if spec.startswith(("redis://", "rediss://", "unix://")):
        from .redis import RedisStore  # MissingDependency without the redis extra

        return RedisStore(spec)
    raise ConfigError(f"sessions={spec!r}: use db (the default), cookie, memory or a redis:// URL")


def counter_for(store: object, *, engine: AsyncEngine | None = None) -> Counter:
    """The counter that keeps the throttle's counts where ``store`` keeps sessions.

    The store's own (``store.counter()``): Redis beside Redis sessions, the
    ``doorman_throttle`` table beside SQL ones, memory beside memory. A store
    that keeps nothing on the server (the signed-cookie store) counts in the
    users database, ``engine``.
    """
    if isinstance(store, CountingStore):
        return store.counter()
    if engine is not None:
        from .sql import SQLCounter

        return SQLCounter(engine)
    raise ConfigError(
        f"throttling: failed sign-ins must be counted where every worker sees them, and "
        f"{type(store).__name__} keeps nothing server-side (a stateless session store); "
        "give the users database (engine=...) or use a SQL or Redis session store"
    )
