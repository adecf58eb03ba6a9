"""Transactions: a connection that reads, or one that writes and then moves the epoch.

Every read and write of doorman's tables goes through ``connect``: it turns a
database that does not answer into ``StoreError``, queues this process's
SQLite writers, and once a write has committed, moves the change epoch
(``doorman.db.epochs``) so that every worker reads afresh what it kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .engine import failures
from .epochs import epoch_of

__all__ = ["connect"]


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
    worker reads users and sign-ins afresh (see ``doorman.db.epochs``). Writes that
    cannot end or change a session (a new sign-in, ``last_seen``, throttle
    counts, session data) pass ``changes_accounts=False``; when in doubt, leave
    it: a needless change only costs a re-read. The SQL session store's writes
    pass ``changes_sessions=True``: sessions have an epoch of their own.
    """
    with failures(engine):
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
