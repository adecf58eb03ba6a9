"""Session stores: memory, signed cookie, SQL (SQLite, PostgreSQL), Redis."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
