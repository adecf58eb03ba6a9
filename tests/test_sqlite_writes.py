"""On SQLite, one process's writes take turns instead of racing SQLite's busy timeout."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from doorman.accounts.passwords import PasswordHasher
from doorman.accounts.users import Users
from doorman.db import connect, create_engine
from doorman.db.migrations import ensure_schema

pytestmark = pytest.mark.anyio


def impatient(engine: Any) -> None:
    """SQLite gives up on a busy database after 1 ms instead of 5 s."""

    def shorten(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=1")
        cursor.close()

    event.listen(engine.sync_engine, "connect", shorten)


async def test_a_burst_of_writers_in_one_process_never_sees_a_lock(tmp_path: Path) -> None:
    engine = create_engine(str(tmp_path / "doorman.db"))
    impatient(engine)
    try:
        await ensure_schema(engine)
        users = Users(engine, PasswordHasher(time_cost=1, memory_cost=1024))
        made = await asyncio.gather(
            *(users.create(f"user{n}", password_hash="!") for n in range(150)),
        )
        assert len({user.id for user in made}) == 150
    finally:
        await engine.dispose()


async def test_a_task_may_write_inside_its_own_write(tmp_path: Path) -> None:
    """The turn-taking lock lets its holder in again: nesting cannot deadlock."""
    engine = create_engine(str(tmp_path / "doorman.db"))
    try:
        await ensure_schema(engine)
        outer = connect(engine, write=True)
        inner = connect(engine, write=True)
        async with outer, asyncio.timeout(5), inner:
            pass
    finally:
        await engine.dispose()


async def test_an_in_memory_database_works_in_the_library() -> None:
    """One connection, shared: a test or a script may keep users in memory."""
    engine = create_engine(":memory:")
    try:
        await ensure_schema(engine)
        users = Users(engine, PasswordHasher(time_cost=1, memory_cost=1024))
        await users.create("alice", password="correct horse battery staple")
        assert (await users.require("alice")).username == "alice"
    finally:
        await engine.dispose()
