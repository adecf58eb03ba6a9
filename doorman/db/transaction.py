"""Transactions: a connection that reads, or one that writes and then moves the epochs.

Every read and write of doorman's tables goes through ``connect``: it turns a
database that does not answer into ``StoreError``, queues this process's
SQLite writers, and once a write has committed, moves the change epoch
(``doorman.db.epochs``) of each table it changed, so that every worker reads
afresh what it kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .engine import failures
from .epochs import Epoch, epoch_of
from .schema import changes

__all__ = ["connect"]


@contextlib.asynccontextmanager
async def connect(engine: AsyncEngine, *, write: bool = False) -> AsyncIterator[AsyncConnection]:
    """A connection (in a transaction when ``write``) whose failures become ``StoreError``.

    A write moves, once committed, the epoch of every table it changed (a
    table's epoch is part of its definition, ``doorman.db.schema``): every
    worker then reads afresh what it kept from that table. Nothing for the
    caller to remember: the statements say what they change (see ``changes``).
    """
    with failures(engine):
        if not write:
            async with engine.connect() as connection:
                yield connection
            return
        _watch(engine)
        epochs: list[Epoch] = []
        try:
            async with _one_writer(engine), engine.begin() as connection:
                info = connection.sync_connection.info if connection.sync_connection else {}
                changed: set[str] = info.setdefault(_CHANGED, set())
                changed.clear()
                try:
                    yield connection
                finally:
                    epochs = [epoch_of(engine, what) for what in sorted(changed)]
                    info.pop(_CHANGED, None)
                for epoch in epochs:
                    await epoch.mark(connection)  # PostgreSQL: in this very transaction
        finally:
            # SQLite: once committed; and also when the commit failed or was interrupted
            # (a cancelled request): SQLite may have committed all the same, and a
            # needless move only makes the workers read afresh.
            for epoch in epochs:
                epoch.advance()


#: Where a writing connection collects the epochs its statements move.
_CHANGED = "doorman.changed_epochs"
_watched: weakref.WeakSet[Engine] = weakref.WeakSet()


def _watch(engine: AsyncEngine) -> None:
    """Have ``engine`` tell writing connections which epochs each statement moves."""
    sync_engine = engine.sync_engine
    if sync_engine not in _watched:
        event.listen(sync_engine, "before_execute", _note_changes)
        _watched.add(sync_engine)


def _note_changes(connection: Connection, statement: Any, *_args: Any) -> None:
    changed = connection.info.get(_CHANGED)
    if changed is not None:
        what = changes(statement)
        if what is not None:
            changed.add(what)


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
    if lock is None or lock.loop() is not loop:
        lock = _write_locks[engine] = _TaskLock(loop)
    async with lock:
        yield


class _TaskLock:
    """An asyncio lock its holder task may take again."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = weakref.ref(loop)  # a loop may hold, through its tasks, the engine: the key
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
