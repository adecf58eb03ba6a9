"""Alembic migrations for doorman's tables, and the functions that run them.

doorman keeps its migrations inside the package and runs them itself, once, at
start-up: ``Doorman.startup`` and ``doorman serve`` run ``ensure_schema``,
``doorman db migrate`` runs ``migrate``. Several workers may start at once: PostgreSQL
serialises them with an advisory lock, SQLite with its write lock and a retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import weakref
from typing import TYPE_CHECKING, Literal

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from ...exceptions import StoreError
from ..engine import VERSION_TABLE, describe, first_line, unavailable
from ..transaction import connect

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["ensure_schema", "head_revision", "migrate", "schema_revision", "schema_sql"]

#: The newest revision in ``versions/``, which a migrated database records. Alembic (its
#: import, with Mako's and Pygments', and the reading of every script) is loaded only to
#: migrate: a database already there costs a worker's start one SELECT, not 0.2 s of
#: imports. A new revision changes this; tests/test_migrations.py checks it is the head.
HEAD = "0007"
_VERSIONS = sa.table(VERSION_TABLE)

# Any constant will do: it names the lock that migrating workers queue on.
_ADVISORY_LOCK = 0x646F6F726D616E  # "doorman"
_ATTEMPTS = 5
_migrated: weakref.WeakSet[Engine] = weakref.WeakSet()
_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "doorman.db:migrations")
    return config


def head_revision() -> str:
    """The newest revision this version of doorman ships."""
    return HEAD


def scripts_head() -> str | None:
    """The head of the revision scripts, as Alembic reads them (``HEAD`` must be it)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()


async def schema_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at; None when doorman's tables are not there yet."""
    async with connect(engine) as connection:
        return await connection.run_sync(_current_revision)


def _current_revision(connection: Connection) -> str | None:
    """The revision in Alembic's version table (as Alembic reads it: none without the table
    or a row; more than one row is a branched history, which doorman's never is)."""
    if not sa.inspect(connection).has_table(VERSION_TABLE):
        return None
    version = sa.column("version_num", sa.String)
    revisions = list(connection.execute(sa.select(version).select_from(_VERSIONS)).scalars())
    if len(revisions) > 1:  # Alembic's own reading refuses it alike
        from alembic.util import CommandError

        raise CommandError(f"{VERSION_TABLE} holds several revisions: {sorted(revisions)}")
    return revisions[0] if revisions else None


async def migrate(engine: AsyncEngine, revision: str = "head") -> None:
    """Create or upgrade doorman's tables to ``revision`` (default: the newest)."""
    # Alembic's `context` and `op` are process-wide: one migration at a time per process.
    async with _process_lock():
        for attempt in range(_ATTEMPTS):
            try:
                # Creating tables moves no epoch (a migration's statements are DDL, or
                # run on Alembic's own table objects, which name none).
                async with connect(engine, write=True) as connection:
                    await connection.run_sync(_upgrade, revision)
                break
            except (StoreError, exc.IntegrityError) as error:
                # Another process migrated between our check and our DDL ("database
                # is locked", "table already exists"): try again, a bounded number of times.
                made, last = _made_meanwhile(error), attempt == _ATTEMPTS - 1
                if made and last:  # no other worker made them, then: they were there
                    raise _not_as_recorded(engine, error) from error
                if last or not (made or _locked(error)):
                    if isinstance(error, StoreError):
                        raise
                    raise unavailable(engine, error) from error
                await asyncio.sleep(0.05 * (attempt + 1))
    _migrated.add(engine.sync_engine)


def _not_as_recorded(engine: AsyncEngine, error: BaseException) -> StoreError:
    cause, _text = _cause_text(error)
    return StoreError(
        f"{describe(engine)}: cannot migrate: its tables are not at the revision that "
        f"{VERSION_TABLE} records (the table missing, emptied or changed?): "
        f"{first_line(getattr(cause, 'orig', None) or cause)}"
    )


def _cause_text(error: BaseException) -> tuple[BaseException, str]:
    cause = (error.__cause__ if isinstance(error, StoreError) else error) or error
    return cause, str(cause).lower()


def _made_meanwhile(error: BaseException) -> bool:
    """Whether a failed migration met tables that another worker's made meanwhile."""
    cause, text = _cause_text(error)
    return isinstance(cause, exc.IntegrityError) or "already exists" in text or "duplicate" in text


def _locked(error: BaseException) -> bool:
    """Whether a failed migration met the database locked by another worker's DDL."""
    return "locked" in _cause_text(error)[1]


def _process_lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _locks.get(loop)
    if lock is None:
        lock = _locks[loop] = asyncio.Lock()
    return lock


def _upgrade(connection: Connection, revision: str) -> None:
    if connection.dialect.name == "postgresql":
        # Held until the transaction ends: concurrent workers migrate one at a time.
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_ADVISORY_LOCK})")
    if revision in ("head", head_revision()) and _current_revision(connection) == head_revision():
        return  # there already: no need to load Alembic's environment and scripts
    from alembic import command

    config = _config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def ensure_schema(engine: AsyncEngine) -> None:
    """Migrate once per engine and process; later calls return at once."""
    if engine.sync_engine not in _migrated:
        await migrate(engine)


def schema_sql(dialect: Literal["sqlite", "postgresql"] = "sqlite") -> str:
    """The SQL that creates doorman's tables, for DBAs who apply it themselves."""
    from alembic import command

    config = _config()
    config.set_main_option("sqlalchemy.url", f"{dialect}://")
    buffer = io.StringIO()
    config.output_buffer = buffer
    with contextlib.redirect_stdout(buffer):
        command.upgrade(config, "head", sql=True)
    return buffer.getvalue()
