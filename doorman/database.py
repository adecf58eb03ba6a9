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

import asyncio
import contextlib
import os
import weakref
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ._extras import needs_extra
from ._files import private
from .epochs import epoch_of
from .exceptions import ConfigError, StoreError
from .schema import metadata, sessions_table

__all__ = [
    "VERSION_TABLE",
    "async_url",
    "connect",
    "create_engine",
    "in_memory",
    "metadata",
    "sessions_table",
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


def create_engine(db: str, **options: Any) -> AsyncEngine:
    """An engine tuned for doorman: WAL and a busy timeout on SQLite, timeouts on PostgreSQL."""
    url = async_url(db)
    if url.get_backend_name() == "sqlite":
        # Keep enough connections for a busy worker: under load, a small pool closes and
        # reopens them (each one an aiosqlite thread) instead of reusing them. A database
        # in memory is one connection, shared (SQLAlchemy's StaticPool), with no pool to size.
        if not in_memory(url):
            options.setdefault("pool_size", 10)
            options.setdefault("max_overflow", 40)
        engine = create_async_engine(url, connect_args={"timeout": 5}, **options)
        event.listen(engine.sync_engine, "connect", _tune_sqlite)
        path = sqlite_path(url)
        if path is not None:
            event.listen(engine.sync_engine, "do_connect", lambda *_: keep_private(path))
        return engine
    with needs_extra("postgres", "a postgresql:// database"):
        import asyncpg  # type: ignore[import-untyped]  # noqa: F401 - SQLAlchemy's driver
    options.setdefault(
        "pool_timeout", 30
    )  # a burst waits for a connection; a dead server fails fast
    options.setdefault("pool_size", 10)
    options.setdefault("max_overflow", 20)
    connect_args = {"timeout": 5, "command_timeout": 10}
    return create_async_engine(url, connect_args=connect_args, **options)


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
    """
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
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


@contextlib.asynccontextmanager
async def connect(
    engine: AsyncEngine,
    *,
    write: bool = False,
    changes_accounts: bool = True,
    changes_sessions: bool = False,
) -> AsyncIterator[AsyncConnection]:
    """A connection (in a transaction when ``write``) whose failures become ``StoreError``.

    A write moves the database's change epoch once committed, so that every
    worker reads users and sign-ins afresh (see ``doorman.epochs``). Writes that
    cannot end or change a session (a new sign-in, ``last_seen``, throttle
    counts, session data) pass ``changes_accounts=False``; when in doubt, leave
    it: a needless change only costs a re-read. The SQL session store's writes
    pass ``changes_sessions=True``: sessions have an epoch of their own.
    """
    try:
        if write:
            changed = [
                epoch_of(engine, what)
                for what, changes in (
                    ("accounts", changes_accounts),
                    ("sessions", changes_sessions),
                )
                if changes
            ]
            async with _one_writer(engine), engine.begin() as connection:
                yield connection
                for epoch in changed:
                    await epoch.mark(connection)  # PostgreSQL: in this very transaction
            for epoch in changed:
                epoch.advance()  # SQLite: once committed
        else:
            async with engine.connect() as connection:
                yield connection
    except exc.IntegrityError:
        raise
    except (exc.DBAPIError, exc.TimeoutError, OSError) as error:  # OSError covers TimeoutError
        raise unavailable(engine, error) from error


@contextlib.asynccontextmanager
async def _one_writer(engine: AsyncEngine) -> AsyncIterator[None]:
    """On SQLite, this process's writes take turns in order (a lock per engine and loop).

    SQLite has one writer at a time. Left to its busy timeout, a burst of writers
    polls and sleeps, unfairly, and some give up after 5 s ("database is
    locked"); queued here, each waits its turn. Other processes still meet the
    busy timeout. A task that already holds the lock passes (no self-deadlock).
    """
    if engine.dialect.name != "sqlite":
        yield
        return
    lock = _write_locks.get(engine)
    loop = asyncio.get_running_loop()
    if lock is None or lock.loop is not loop:
        lock = _write_locks[engine] = _TaskLock(loop)
    async with lock:
        yield


class _TaskLock:
    """An asyncio lock its holder task may take again."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None
        self._depth = 0

    async def __aenter__(self) -> None:
        task = asyncio.current_task()
        if self._owner is not task or task is None:
            await self._lock.acquire()
            self._owner = task
        self._depth += 1

    async def __aexit__(self, *exc_info: object) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._owner = None
            self._lock.release()


_write_locks: weakref.WeakKeyDictionary[AsyncEngine, _TaskLock] = weakref.WeakKeyDictionary()


def unavailable(engine: AsyncEngine, error: BaseException) -> StoreError:
    """The ``StoreError`` for a database that failed, naming it without its password."""
    cause = getattr(error, "orig", None) or error
    return StoreError(
        f"{describe(engine)} did not answer ({type(cause).__name__}: {_first_line(cause)})"
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else "no message"


def _redact(db: str) -> str:
    with contextlib.suppress(exc.ArgumentError):
        return sa.make_url(db).render_as_string(hide_password=True)
    return "<unreadable URL>"
