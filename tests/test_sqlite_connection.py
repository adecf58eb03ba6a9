"""SQLite connections take one trip to their thread per statement, and none for nothing."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from doorman.db import connect, create_engine
from doorman.db import sqlite_connection as driver

pytestmark = pytest.mark.anyio

_metadata = sa.MetaData()
_t = sa.Table(
    "t", _metadata, sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.Text)
)


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The name of every call a doorman SQLite connection queues for its thread."""
    seen: list[str] = []
    queue = driver.Connection._execute

    async def counted(self: driver.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(getattr(fn, "__name__", repr(fn)))
        return await queue(self, fn, *args, **kwargs)

    monkeypatch.setattr(driver.Connection, "_execute", counted)
    yield seen


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Any]:
    engine = create_engine(str(tmp_path / "trips.db"))
    async with engine.begin() as connection:
        await connection.run_sync(_metadata.create_all)
        await connection.execute(_t.insert(), [{"name": "a"}, {"name": "b"}])
    yield engine
    await engine.dispose()


async def test_a_read_is_one_trip_and_needs_no_rollback(engine: Any, trips: list[str]) -> None:
    async with connect(engine) as connection:
        await connection.execute(sa.text("SELECT 1"))  # the pool's connection, already open
        trips.clear()
        rows = (await connection.execute(sa.select(_t.c.name).order_by(_t.c.id))).all()
    assert [row.name for row in rows] == ["a", "b"]
    assert trips == ["_run"]  # no cursor, fetch, close, nor rollback of its own


async def test_a_write_is_one_trip_per_statement_and_a_commit(
    engine: Any, trips: list[str]
) -> None:
    async with connect(engine) as connection:
        await connection.execute(sa.text("SELECT 1"))
    trips.clear()
    async with connect(engine, write=True) as connection:
        result = await connection.execute(_t.insert().values(name="c"))
        assert result.inserted_primary_key == (3,)  # the cursor's lastrowid, kept
        result = await connection.execute(_t.update().values(name="z"))
        assert result.rowcount == 3
    assert trips == ["_run", "_run", "commit"]
    async with connect(engine) as connection:
        names = (await connection.execute(sa.select(_t.c.name))).scalars().all()
    assert names == ["z", "z", "z"]


async def test_a_failed_write_is_rolled_back(engine: Any) -> None:
    with pytest.raises(ZeroDivisionError):
        async with connect(engine, write=True) as connection:
            await connection.execute(_t.delete())
            raise ZeroDivisionError
    async with connect(engine) as connection:
        count = (await connection.execute(sa.select(sa.func.count()).select_from(_t))).scalar()
    assert count == 2


async def test_executemany_and_rows_read_one_at_a_time(engine: Any) -> None:
    async with connect(engine, write=True) as connection:
        await connection.execute(_t.insert(), [{"name": "c"}, {"name": "d"}])
    async with connect(engine) as connection:
        result = await connection.execute(sa.select(_t.c.name).order_by(_t.c.id))
        assert result.fetchone() == ("a",)
        assert result.fetchmany(2) == [("b",), ("c",)]
        assert result.fetchall() == [("d",)]


async def test_an_error_in_sqlite_reaches_the_caller_as_sqlalchemy_s(engine: Any) -> None:
    async with connect(engine) as connection:
        with pytest.raises(sa.exc.OperationalError, match="no such table"):
            await connection.execute(sa.text("SELECT * FROM missing"))


async def test_after_an_interrupted_statement_the_rollback_is_not_skipped(
    tmp_path: Path, trips: list[str]
) -> None:
    """A cancelled task leaves its statement queued: whatever it opens must be rolled
    back, though no transaction was open yet when the rollback was asked."""
    path = str(tmp_path / "queued.db")
    setup = sqlite3.connect(path)
    setup.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
    setup.close()
    connection = await driver.connect(path)
    try:
        busy = asyncio.ensure_future(connection._execute(time.sleep, 0.3))  # the thread, busy
        writing = asyncio.ensure_future(
            connection.run("INSERT INTO t (name) VALUES ('x')", (), False)
        )
        await asyncio.sleep(0.05)
        writing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writing
        trips.clear()
        await connection.rollback()  # asked before the thread has even begun the insert
        assert trips == ["rollback"]
        await busy
        assert not await connection._execute(lambda: connection._conn.in_transaction)
        trips.clear()
        await connection.rollback()  # nothing open now, and nothing interrupted
        assert trips == []
    finally:
        await connection.close()


async def test_a_write_cancelled_while_it_commits_still_moves_its_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deleted session is not served from what the process kept: its client went away
    while the DELETE committed (the commit runs on in SQLite's thread)."""
    from doorman.stores.sql import SQLStore

    store = SQLStore(str(tmp_path / "sessions.db"))
    await store.create_table()
    key = await store.save(None, '{"user": 1}', time.time() + 3600)
    assert await store.load(key) is not None  # kept by this process, under the epoch
    commit = driver.Connection.commit
    committing = asyncio.Event()

    async def slow_answer(connection: driver.Connection) -> None:
        done = asyncio.ensure_future(commit(connection))  # queued: it will happen
        committing.set()
        await asyncio.sleep(0.1)  # the answer is slow to come back
        await done

    monkeypatch.setattr(driver.Connection, "commit", slow_answer)
    deleting = asyncio.create_task(store.delete(key))
    await asyncio.wait_for(committing.wait(), 5)
    deleting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await deleting
    monkeypatch.setattr(driver.Connection, "commit", commit)
    await asyncio.sleep(0.2)
    assert await store.load(key) is None
    await store.close()
