"""doorman's database: URLs, engines and tables (SQLite by default, or PostgreSQL).

``DB`` in the CLI and settings is a SQLite path (``doorman.db``) or a URL
(``sqlite:///path``, ``postgresql://user@host/db``); this module turns either
into an async SQLAlchemy engine with the right driver and settings.

A SQLite file holds password hashes and, unless ``DOORMAN_SECRET`` is set, the
secret that signs cookies: it is created readable by its owner alone (0600),
before SQLite opens it, and SQLite gives its -wal and -shm files the same mode.
A file found readable by others is tightened, with a log line.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

from .._extras import needs_extra
from .._files import private
from ..exceptions import ConfigError, StoreError
from . import sqlite_connection

__all__ = [
    "VERSION_TABLE",
    "async_url",
    "create_engine",
    "describe",
    "failures",
    "first_line",
    "in_memory",
    "insert",
    "unavailable",
]

#: Alembic's bookkeeping table, named so it cannot clash with an app's own migrations.
VERSION_TABLE = "doorman_alembic_version"

_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}


def async_url(db: str) -> sa.URL:
    """The SQLAlchemy URL, with an async driver, for a path or a database URL."""
    if "://" not in db:
        if not db:
            raise ConfigError("db: empty; give a SQLite path such as doorman.db, or a URL")
        return sa.make_url("sqlite+aiosqlite://").set(database=db)
    try:
        url = sa.make_url(db)
    except exc.ArgumentError as error:
        raise ConfigError(f"db: cannot read {_redact(db)!r} as a database URL") from error
    driver = _DRIVERS.get(url.drivername)
    if driver is None:
        raise ConfigError(
            f"db: {url.drivername!r} is not supported; use a SQLite path or a postgresql:// URL"
        )
    return url.set(drivername=driver)


#: Connections an engine on PostgreSQL opens at most, unless told (the ``db_pool_size`` setting).
POSTGRES_CONNECTIONS = 20
#: Of those, how many it keeps open when idle.
POSTGRES_KEPT = 10


def create_engine(db: str, *, connections: int | None = None, **options: Any) -> AsyncEngine:
    """An engine tuned for doorman: WAL and a busy timeout on SQLite, timeouts on PostgreSQL.

    ``connections``: the most a PostgreSQL engine opens at once (each worker has its
    engine: PostgreSQL must admit workers times this). SQLite's need no limit.
    """
    url = async_url(db)
    if url.get_backend_name() == "sqlite":
        # Keep enough connections for a busy worker: under load, a small pool closes and
        # reopens them (each one an aiosqlite thread) instead of reusing them. A database
        # in memory is one connection, shared (SQLAlchemy's StaticPool), with no pool to size.
        if not in_memory(url):
            # Named, not left to SQLAlchemy: before 2.0.38 its default here was no pool at all.
            options.setdefault("poolclass", AsyncAdaptedQueuePool)
            options.setdefault("pool_size", 10)
            options.setdefault("max_overflow", 40)
        engine = create_async_engine(url, async_creator=_sqlite_opener(url), **options)
        event.listen(engine.sync_engine, "connect", _tune_sqlite)
        return engine
    with needs_extra("postgres", "a postgresql:// database"):
        import asyncpg  # type: ignore[import-untyped]  # noqa: F401 - SQLAlchemy's driver
    options.setdefault(
        "pool_timeout", 30
    )  # a burst waits for a connection; a dead server fails fast
    most = POSTGRES_CONNECTIONS if connections is None else connections
    options.setdefault("pool_size", min(POSTGRES_KEPT, most))
    options.setdefault("max_overflow", most - options["pool_size"])
    connect_args = {"timeout": 5, "command_timeout": 10}
    return create_async_engine(url, connect_args=connect_args, **options)


def _sqlite_opener(url: sa.URL) -> Callable[[], Awaitable[sqlite_connection.Connection]]:
    """What opens each connection: a private file first, then SQLite with SQLAlchemy's
    own reading of the URL (``file:`` URIs, ``?timeout=``), waiting 5 s on a lock."""
    (database,), options = url.get_dialect()().create_connect_args(url)
    options = {"timeout": 5, **options}
    path = sqlite_path(url)

    async def open_connection() -> sqlite_connection.Connection:
        if path is not None:
            keep_private(path)
        connection = await sqlite_connection.connect(database, **options)
        return cast(sqlite_connection.Connection, connection)

    return open_connection


def insert(table: sa.Table, dialect: str) -> postgresql.Insert | sqlite.Insert:
    """An INSERT into ``table`` with the dialect's ``ON CONFLICT`` clauses (they read alike)."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise ConfigError(f"db: the {dialect!r} database is not supported")


def sqlite_path(url: sa.URL) -> str | None:
    """The file of a SQLite URL; None in memory, or for a ``file:`` URI (it may name anything)."""
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    return None if database.startswith("file:") else database


#: Beside the database: SQLite's own files (doorman's epoch files see to themselves).
_SIDE_FILES = ("", "-wal", "-shm", "-journal")


def keep_private(path: str) -> None:
    """Create the database file for its owner alone; tighten it and its side files if open.

    Runs before every new connection: a stat per file, no more, once all is private.
    An existing database is never opened here (``O_EXCL``): closing any descriptor
    of it would drop every POSIX lock this process holds on it, and another
    process closing its connection would then delete the WAL still in use here.
    """
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    except FileExistsError:
        pass
    except OSError:
        return  # SQLite will say what is wrong with the path
    for suffix in _SIDE_FILES:
        private(path + suffix)


def in_memory(url: sa.URL) -> bool:
    """Whether a SQLite URL names a database in memory, by SQLAlchemy's own rule."""
    return url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run while one writer writes; NORMAL is durable in WAL mode
    # except for the last transactions on power loss, not on a process crash.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def describe(engine: AsyncEngine) -> str:
    """Name the database for messages, without a password."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        return f"SQLite {url.database}"
    return f"PostgreSQL {url.host or 'localhost'}:{url.port or 5432}/{url.database}"


@contextlib.contextmanager
def failures(engine: AsyncEngine) -> Iterator[None]:
    """Turn a database that fails (down, timed out, locked) into ``StoreError``.

    An ``IntegrityError`` passes as it is: callers turn it into what it means
    (a username taken, a user deleted meanwhile).
    """
    try:
        yield
    except exc.IntegrityError:
        raise
    except (exc.DBAPIError, exc.TimeoutError, OSError) as error:  # OSError covers TimeoutError
        raise unavailable(engine, error) from error


def unavailable(engine: AsyncEngine, error: BaseException) -> StoreError:
    """The ``StoreError`` for a database that failed, naming it without its password."""
    cause = getattr(error, "orig", None) or error
    return StoreError(
        f"{describe(engine)} did not answer ({type(cause).__name__}: {first_line(cause)})"
    )


def first_line(error: BaseException) -> str:
    """An error's message in one line, at most 200 characters."""
    text = str(error).strip().splitlines()
    return text[0][:200] if text else "no message"


def _redact(db: str) -> str:
    with contextlib.suppress(exc.ArgumentError):
        return sa.make_url(db).render_as_string(hide_password=True)
    return "<unreadable URL>"
