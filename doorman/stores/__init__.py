"""Session stores: memory, signed cookie, SQL (SQLite, PostgreSQL), Redis."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..exceptions import ConfigError
from .base import SessionStore, SyncLoadable, is_session_key, new_session_key
from .cookie import CookieStore
from .memory import MemoryStore

if TYPE_CHECKING:
    from .redis import RedisStore
    from .sql import SQLStore

__all__ = [
    "CookieStore",
    "MemoryStore",
    "RedisStore",
    "SQLStore",
    "SessionStore",
    "SyncLoadable",
    "is_session_key",
    "new_session_key",
    "open_store",
]


def __getattr__(name: str) -> Any:
    # The SQL and Redis stores import their drivers only when asked for.
    if name == "SQLStore":
        from .sql import SQLStore

        return SQLStore
    if name == "RedisStore":
        from .redis import RedisStore

        return RedisStore
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
