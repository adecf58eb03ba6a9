"""aiosqlite, with one trip to its thread per statement.

aiosqlite runs each sqlite3 call in the connection's own thread, and SQLAlchemy
makes four such calls per statement (a cursor, the statement, its rows, the
cursor's close) and one more to roll back every read when the connection goes
back to the pool. Each trip costs a queue, a thread switch and a wake-up of the
event loop (about 45 us of CPU), far more than SQLite takes to answer from its
page cache. Here a statement is one trip: it runs, fetches its rows and closes
its cursor in the thread at once; and a connection with no transaction open
(every read: SQLite begins one only before a write) skips the rollback and the
commit that would find nothing to do.

``create_engine`` (``doorman.db.engine``) hands SQLAlchemy these connections
through ``async_creator``, SQLAlchemy's public hook for a driver's connection.
The classes keep aiosqlite's interface; they rely on two of its internals,
``_execute`` (queue a call to the thread) and ``_conn`` (the sqlite3 connection,
touched only in the thread), as SQLAlchemy's own dialect does.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Generator, Iterable, Sequence
from typing import Any, cast

import aiosqlite

__all__ = ["Connection", "connect"]

_Result = tuple[list[Any], Any, int, Any]


def connect(database: str, **kwargs: Any) -> Connection:
    """Like ``aiosqlite.connect``: await it for an open connection."""
    connection = Connection(functools.partial(sqlite3.connect, database, **kwargs), 64)
    connection._thread.daemon = True  # as SQLAlchemy's dialect does: exit never waits on it
    return connection


class Connection(aiosqlite.Connection):
    """An aiosqlite connection whose cursors take one trip per statement."""

    #: Set when a call to the thread was interrupted (a cancelled task): what it left
    #: open is unknown until the thread has run it, so the next rollback is not skipped.
    _interrupted = False

    def cursor(self) -> Cursor:  # type: ignore[override]  # no trip: made in the thread on use
        return Cursor(self)

    async def commit(self) -> None:
        if self._interrupted or self._open_transaction():
            await super().commit()

    async def rollback(self) -> None:
        if self._interrupted or self._open_transaction():
            await super().rollback()
            self._interrupted = False

    def _open_transaction(self) -> bool:
        # Read between calls: SQLAlchemy never runs two at once on one connection.
        connection = self._connection
        return connection is not None and connection.in_transaction

    async def run(self, sql: str, parameters: Any, many: bool) -> _Result:
        """Run a statement in the thread, with its rows, description and counts."""
        try:
            result = await self._execute(_run, self._conn, sql, parameters, many)  # type: ignore[no-untyped-call]
        except BaseException:
            self._interrupted = True
            raise
        return cast(_Result, result)


def _run(connection: sqlite3.Connection, sql: str, parameters: Any, many: bool) -> _Result:
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return rows, description, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class Cursor:
    """What SQLAlchemy's aiosqlite dialect uses of a cursor, its rows fetched at once."""

    arraysize = 1

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._rows: list[Any] = []
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: Any = None

    def __await__(self) -> Generator[Any, None, Cursor]:
        # SQLAlchemy 2.0 awaits what ``cursor()`` gives; 2.1 enters it as a context.
        return self
        yield  # a generator function: awaiting a cursor gives it at once

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def execute(self, sql: str, parameters: Iterable[Any] | None = None) -> Cursor:
        await self._run(sql, () if parameters is None else parameters, many=False)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]) -> Cursor:
        await self._run(sql, parameters, many=True)
        return self

    async def _run(self, sql: str, parameters: Any, *, many: bool) -> None:
        rows, self.description, self.rowcount, self.lastrowid = await self._connection.run(
            sql, parameters, many
        )
        self._rows = rows

    async def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> Sequence[Any]:
        size = self.arraysize if size is None else size
        rows, self._rows = self._rows[:size], self._rows[size:]
        return rows

    async def fetchall(self) -> Sequence[Any]:
        rows, self._rows = self._rows, []
        return rows

    async def close(self) -> None:
        self._rows = []
