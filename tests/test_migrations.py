"""Migrations: fresh and legacy databases, the schema against ``doorman.db.schema``, concurrency."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncEngine

import doorman.db.migrations
from doorman.db import VERSION_TABLE, connect, create_engine
from doorman.db.migrations import (
    ensure_schema,
    head_revision,
    migrate,
    schema_revision,
    schema_sql,
    scripts_head,
)
from doorman.db.schema import metadata, sessions_table, users_table
from doorman.exceptions import StoreError

from .helpers import sqlite_threads_settled

pytestmark = pytest.mark.anyio

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
DOWN = {
    "sqlite": "/nonexistent-doorman-dir/doorman.db",
    "postgres": "postgresql://postgres@127.0.0.1:1/test",
}
DOORMAN_TABLES = set(metadata.tables)


async def _postgres_admin(postgres_url: str, sql: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(postgres_url, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def _run_apart(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run on a loop of its own: module fixtures may be set up inside a test's loop."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coroutine).result()


@pytest.fixture(scope="module")
def scratch_postgres_urls(postgres_url: str) -> Iterator[list[str]]:
    """Two PostgreSQL databases of this module's own, beside the shared test database.

    Made once: CREATE DATABASE takes half a second, emptying a schema a few milliseconds.
    """
    names = ["doorman_migrations_" + secrets.token_hex(4) for _ in range(2)]
    for name in names:
        _run_apart(_postgres_admin(postgres_url, f'CREATE DATABASE "{name}"'))
    base = postgres_url.rpartition("/")[0]
    yield [f"{base}/{name}" for name in names]
    for name in names:
        _run_apart(_postgres_admin(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


NewDatabase = Callable[[], Awaitable[str]]


@pytest.fixture
async def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> NewDatabase:
    """A factory of databases doorman has never touched, of this test's backend.

    SQLite: new files. PostgreSQL: the scratch databases (two at most), their schema emptied.
    """
    backend = request.param
    handed: list[str] = []

    async def new() -> str:
        if backend == "sqlite":
            db = str(tmp_path / f"doorman-{len(handed)}.db")
        else:
            db = request.getfixturevalue("scratch_postgres_urls")[len(handed)]
            await _postgres_admin(db, "DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        handed.append(db)
        return db

    return new


@pytest.fixture
async def engines() -> AsyncIterator[list[AsyncEngine]]:
    """Engines a test makes (append to this list), disposed afterwards."""
    made: list[AsyncEngine] = []
    yield made
    for engine in made:
        await engine.dispose()


def _engine(engines: list[AsyncEngine], db: str) -> AsyncEngine:
    engine = create_engine(db)
    engines.append(engine)
    return engine


async def _table_names(engine: AsyncEngine) -> set[str]:
    async with connect(engine) as connection:
        return set(await connection.run_sync(lambda sync: sa.inspect(sync).get_table_names()))


async def _versions(engine: AsyncEngine) -> list[str]:
    async with connect(engine) as connection:
        result = await connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}"))
        return [row[0] for row in result]


def _differences(connection: sa.Connection) -> list[Any]:
    with warnings.catch_warnings():
        # SQLAlchemy does not read SQLite's expression indexes back (lower(email)), so
        # the comparison skips that one there: test_the_verified_address_index_... checks it.
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based")
        warnings.filterwarnings("ignore", "autogenerate skipping metadata-specified expression")
        found = compare_metadata(MigrationContext.configure(connection), metadata)
    return [
        diff for diff in found if not (diff[0] == "remove_table" and diff[1].name == VERSION_TABLE)
    ]


def _sqlite_indexes(connection: sa.Connection) -> dict[str, str]:
    """SQLite's own text of each index of doorman's, by name."""
    rows = connection.exec_driver_sql(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    )
    return {str(name): " ".join(str(sql).split()) for name, sql in rows}


async def _migrate_together(*engines: AsyncEngine) -> None:
    """Migrate all at once; wait for every one (none is left running) before raising."""
    results = await asyncio.gather(*(migrate(engine) for engine in engines), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


def _user_row(name: str) -> dict[str, Any]:
    return {"username": name, "username_key": name, "created_at": time.time()}


# -- a fresh database ----------------------------------------------------------------------


@pytest.mark.parametrize("new_database", BACKENDS, indirect=True)
async def test_fresh_database_migrates_to_head_and_again_is_a_no_op(
    new_database: NewDatabase, engines: list[AsyncEngine]
) -> None:
    db = await new_database()
    engine = _engine(engines, db)
    assert await schema_revision(engine) is None
    assert head_revision() == "0007" == scripts_head()

    await migrate(engine)
    assert await schema_revision(engine) == head_revision()
    assert await _table_names(engine) == DOORMAN_TABLES | {VERSION_TABLE}
    async with connect(engine, write=True) as connection:
        await connection.execute(users_table.insert().values(_user_row("alice")))

    await migrate(engine)  # a second time, and from a second engine: nothing changes
    await migrate(_engine(engines, db))
    assert await _versions(engine) == [head_revision()]
    async with connect(engine) as connection:
        names = (await connection.execute(sa.select(users_table.c.username))).scalars().all()
    assert names == ["alice"]


@pytest.mark.parametrize("new_database", BACKENDS, indirect=True)
async def test_ensure_schema_migrates_a_fresh_database(
    new_database: NewDatabase, engines: list[AsyncEngine]
) -> None:
    engine = _engine(engines, await new_database())
    await ensure_schema(engine)
    assert await schema_revision(engine) == head_revision()
    await ensure_schema(engine)  # once per engine: the second call returns at once
    assert await _versions(engine) == [head_revision()]


@pytest.mark.parametrize("new_database", BACKENDS, indirect=True)
async def test_migrated_schema_matches_the_metadata(
    new_database: NewDatabase, engines: list[AsyncEngine]
) -> None:
    engine = _engine(engines, await new_database())
    await migrate(engine)
    async with connect(engine) as connection:
        assert await connection.run_sync(_differences) == []


async def test_the_comparison_sees_a_difference(tmp_path: Path, engines: list[AsyncEngine]) -> None:
    # The check above is only worth something if a missing index shows up in it.
    engine = _engine(engines, str(tmp_path / "d.db"))
    await migrate(engine)
    async with connect(engine, write=True) as connection:
        await connection.execute(sa.text("DROP INDEX ix_doorman_tokens_user_id"))
        differences = await connection.run_sync(_differences)
    assert [diff[0] for diff in differences] == ["add_index"]


# -- a database from before the migrations -------------------------------------------------


@pytest.mark.parametrize("new_database", BACKENDS, indirect=True)
async def test_an_existing_sessions_table_is_kept_with_its_rows(
    new_database: NewDatabase, engines: list[AsyncEngine]
) -> None:
    engine = _engine(engines, await new_database())
    row = {"id": "a" * 64, "data": '{"user": "alice"}', "expires_at": time.time() + 3600}
    # Not through doorman's accounts: no change epoch to move (its table is not there yet).
    async with connect(engine, write=True) as connection:
        await connection.run_sync(lambda sync: metadata.create_all(sync, tables=[sessions_table]))
        await connection.execute(sessions_table.insert().values(row))
    assert await schema_revision(engine) is None

    await migrate(engine)

    assert await schema_revision(engine) == head_revision()
    async with connect(engine) as connection:
        rows = (await connection.execute(sa.select(sessions_table))).mappings().all()
        assert [dict(found) for found in rows] == [row]
        assert await connection.run_sync(_differences) == []


# -- workers migrating at once ---------------------------------------------------------------

CONCURRENT = [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
]


@pytest.mark.parametrize("new_database", CONCURRENT, indirect=True)
async def test_two_engines_on_one_database_migrate_at_once(
    new_database: NewDatabase, engines: list[AsyncEngine]
) -> None:
    db = await new_database()
    first, second = _engine(engines, db), _engine(engines, db)
    await _migrate_together(first, second)
    assert await schema_revision(first) == head_revision()
    assert await _versions(first) == [head_revision()]
    assert await _table_names(first) == DOORMAN_TABLES | {VERSION_TABLE}


@pytest.mark.parametrize("new_database", BACKENDS, indirect=True)
async def test_two_databases_migrate_at_once_in_one_process(
    new_database: NewDatabase, engines: list[AsyncEngine]
) -> None:
    # Two apps (or a store and a Doorman on separate databases) starting together.
    first = _engine(engines, await new_database())
    second = _engine(engines, await new_database())
    await _migrate_together(first, second)
    for engine in (first, second):
        assert await schema_revision(engine) == head_revision()
        assert await _table_names(engine) == DOORMAN_TABLES | {VERSION_TABLE}


async def test_migrate_retries_when_another_worker_holds_the_database(
    tmp_path: Path, engines: list[AsyncEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    # What another process migrating at the same moment looks like to SQLite: a lock.
    real_upgrade = doorman.db.migrations._upgrade
    calls: list[str] = []

    def upgrade_once_locked(connection: sa.Connection, revision: str) -> None:
        calls.append(revision)
        if len(calls) == 1:
            raise exc.OperationalError("CREATE TABLE ...", {}, Exception("database is locked"))
        real_upgrade(connection, revision)

    monkeypatch.setattr(doorman.db.migrations, "_upgrade", upgrade_once_locked)
    engine = _engine(engines, str(tmp_path / "locked.db"))
    await migrate(engine)
    assert len(calls) == 2
    assert await schema_revision(engine) == head_revision()


# -- SQL for DBAs ----------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_schema_sql_creates_every_table_and_records_the_revision(dialect: Any) -> None:
    sql = schema_sql(dialect)
    for table in DOORMAN_TABLES:
        assert f"CREATE TABLE {table} " in sql
    assert "CREATE TABLE doorman_users (" in sql
    assert f"INSERT INTO {VERSION_TABLE} (version_num) VALUES ('0001')" in sql
    last_step = sql.rstrip().rsplit(f"{VERSION_TABLE} ", 1)[1]
    assert f"'{head_revision()}'" in last_step, "the script ends at the newest revision"


def test_schema_sql_differs_by_dialect() -> None:
    # PostgreSQL numbers ids with SERIAL; SQLite does not know the word.
    assert "SERIAL" in schema_sql("postgresql")
    assert "SERIAL" not in schema_sql("sqlite")


# -- a store that is down --------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
@pytest.mark.parametrize("call", [migrate, ensure_schema, schema_revision])
async def test_a_database_that_is_down_raises_store_error(
    backend: str, call: Any, engines: list[AsyncEngine]
) -> None:
    engine = _engine(engines, DOWN[backend])
    with sqlite_threads_settled(), pytest.raises(StoreError) as raised:
        await call(engine)
    assert "did not answer" in str(raised.value)
    assert not isinstance(raised.value, exc.SQLAlchemyError)


# -- 0007: a verified address belongs to one account ----------------------------------------


@pytest.mark.parametrize("new_database", BACKENDS, indirect=True)
async def test_two_accounts_holding_one_address_verified_keep_it_for_the_oldest(
    new_database: NewDatabase, engines: list[AsyncEngine], caplog: pytest.LogCaptureFixture
) -> None:
    """Before 0007 two accounts verifying one address at the same instant on PostgreSQL
    could both win: the upgrade keeps the oldest account's, and then the index holds."""
    engine = _engine(engines, await new_database())
    await migrate(engine, "0006")
    people = [
        ("ann", "Shared@Example.com", True),
        ("bob", "shared@example.com", True),
        ("cy", "SHARED@example.com", False),
        ("dee", "own@example.com", True),
        ("eve", None, False),
    ]
    async with connect(engine, write=True) as connection:
        for name, email, verified in people:
            row = {**_user_row(name), "email": email, "email_verified": verified}
            await connection.execute(users_table.insert().values(row))
    with caplog.at_level(logging.WARNING, logger="doorman"):
        await migrate(engine)
    assert "migration 0007: 1 accounts held verified" in caplog.text
    assert caplog.text.rstrip().endswith("one account): bob")
    query = sa.select(users_table.c.username, users_table.c.email_verified)
    async with connect(engine) as connection:
        verified = dict((await connection.execute(query.order_by(users_table.c.id))).all())
    assert verified == {"ann": True, "bob": False, "cy": False, "dee": True, "eve": False}
    with pytest.raises(sa.exc.IntegrityError):
        async with connect(engine, write=True) as connection:
            await connection.execute(
                users_table.update()
                .where(users_table.c.username == "cy")
                .values(email_verified=True)
            )


async def test_the_verified_address_index_is_made_on_sqlite_as_declared(
    tmp_path: Path, engines: list[AsyncEngine]
) -> None:
    """SQLite's reflection skips expression indexes, so the comparison above cannot."""
    engine = _engine(engines, str(tmp_path / "d.db"))
    await migrate(engine)
    async with connect(engine) as connection:
        indexes = await connection.run_sync(_sqlite_indexes)
    assert indexes["ix_doorman_users_verified_email"] == (
        "CREATE UNIQUE INDEX ix_doorman_users_verified_email ON doorman_users "
        "(lower(email)) WHERE email_verified"
    )
