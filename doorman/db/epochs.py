"""Change epochs: how every worker learns, on its very next request, that accounts changed.

Each signed-in request needs the user row and the sign-in row. Reading them
from the database on every request costs far more than the rest of the
request, so each process keeps what it read (``doorman.accounts.cache``), tagged
with the *epoch* current when it read it. Every write that could end or
change a session (a password, a disabled or deleted user, a revoked sign-in,
new groups) moves the epoch once it has committed; an entry whose epoch is no
longer current is not used.

The epoch must be shared by every process that shares the database, and be
cheap to read:

- a SQLite file: 16 bytes in a file beside it (``doorman.db-epoch``, and
  ``doorman.db-sessions-epoch`` for the SQL session store), mapped
  into memory, so reading it costs no system call. SQLite is one machine's
  database, so every worker that can open the database sees the same page;
- an in-memory SQLite database: a counter in this process;
- PostgreSQL: a row of ``doorman_settings``, written in the same transaction
  as the change and read once per request (workers may be on other hosts):
  every epoch row in one query, shared by the requests that arrived before it
  started (``doorman.db.epoch_reads``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import mmap
import os
import secrets
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .._files import private
from .engine import failures, unavailable
from .epoch_reads import EpochReads
from .schema import settings_table

__all__ = [
    "MAX_AGE",
    "CachePerEngine",
    "Epoch",
    "EpochCache",
    "FileEpoch",
    "LocalEpoch",
    "epoch_of",
]

log = logging.getLogger("doorman.auth")

_SIZE = 16

#: Longest a kept entry is used, whatever the epoch says: the bound on how long a
#: change made behind doorman's back (an UPDATE typed into the database) goes unseen.
MAX_AGE = 5.0
#: Most entries kept per cache: about 1 KB each.
MAX_ENTRIES = 10_000


class Epoch(Protocol):
    def current(self) -> bytes | None:
        """The epoch now, when it can be had without I/O; else None (keep nothing)."""

    async def read(self) -> bytes | None:
        """The epoch now, as of a read that starts after this call; None: keep nothing."""

    async def mark(self, connection: AsyncConnection) -> None:
        """Move the epoch inside the write's own transaction (PostgreSQL)."""

    def advance(self) -> None:
        """Move the epoch after the write committed: everything kept before is stale."""


class NoEpoch:
    """For databases whose writers may be on other hosts: nothing is ever kept."""

    def current(self) -> bytes | None:
        return None

    async def read(self) -> bytes | None:
        return None

    async def mark(self, connection: AsyncConnection) -> None:
        pass

    def advance(self) -> None:
        pass


class LocalEpoch:
    """For a database only this process can see (in-memory SQLite)."""

    def __init__(self) -> None:
        self._value = 0

    def current(self) -> bytes | None:
        return self._value.to_bytes(8, "big")

    async def read(self) -> bytes | None:
        return self.current()

    async def mark(self, connection: AsyncConnection) -> None:
        pass

    def advance(self) -> None:
        self._value += 1


class FileEpoch:
    """16 random bytes in a file, rewritten on every change, read through ``mmap``.

    A new random value (not a counter) needs no lock between writers: two
    concurrent changes each leave a value that no reader has seen before.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            private(path, self._fd)  # made by an older doorman, or copied
            if os.fstat(self._fd).st_size < _SIZE:
                os.pwrite(self._fd, secrets.token_bytes(_SIZE), 0)
            self._map = mmap.mmap(self._fd, _SIZE, mmap.MAP_SHARED, mmap.PROT_READ)
        except OSError:
            os.close(self._fd)
            raise

    def current(self) -> bytes | None:
        return self._map[:_SIZE]

    async def read(self) -> bytes | None:
        return self._map[:_SIZE]

    async def mark(self, connection: AsyncConnection) -> None:
        pass

    def advance(self) -> None:
        if os.pwrite(self._fd, secrets.token_bytes(_SIZE), 0) != _SIZE:
            raise OSError(f"short write to {self.path}")

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)


class PostgresEpoch:
    """A row of ``doorman_settings``, written in the same transaction as each change.

    Workers on PostgreSQL may be on other hosts, so the epoch lives in the
    database, and each request reads it: one short query for every epoch of
    the database, shared by the requests that arrived before it started
    (``doorman.db.epoch_reads``: a read always starts after the request arrived,
    so a change committed before is seen). The rows a request needs, kept
    under that epoch, cost no query. A database that does not answer fails the
    read: ``StoreError``, a 503, never a kept answer.
    """

    def __init__(self, engine: AsyncEngine, name: str) -> None:
        # Held by the engine's entry in ``_epochs``: a reference back would keep it forever.
        self.name = f"epoch:{name}"
        self._reads = _epoch_reads(engine)

    def current(self) -> bytes | None:
        return None  # only a query can tell

    async def read(self) -> bytes | None:
        return await self._reads.get(self.name)

    async def mark(self, connection: AsyncConnection) -> None:
        upsert = postgresql.insert(settings_table).values(
            name=self.name, value=secrets.token_hex(_SIZE)
        )
        await connection.execute(
            upsert.on_conflict_do_update(
                index_elements=["name"], set_={"value": upsert.excluded.value}
            )
        )

    def advance(self) -> None:
        pass  # marked in the transaction itself


_EPOCH_NAMES = ["epoch:accounts", "epoch:sessions"]  # every `what` of epoch_of
_READ_EPOCHS = "SELECT name, value FROM doorman_settings WHERE name = ANY($1::text[])"
_reads: weakref.WeakKeyDictionary[AsyncEngine, EpochReads] = weakref.WeakKeyDictionary()


def _epoch_reads(engine: AsyncEngine) -> EpochReads:
    """The reads of ``engine``'s epoch rows, shared by every epoch of that database."""
    reads = _reads.get(engine)
    if reads is None:
        reads = _reads[engine] = EpochReads(functools.partial(_reading, weakref.ref(engine)))
    return reads


@contextlib.asynccontextmanager
async def _reading(
    ref: weakref.ref[AsyncEngine],
) -> AsyncIterator[Callable[[], Awaitable[dict[str, bytes]]]]:
    """A pooled connection, and the read of every epoch row through its driver.

    The read is asyncpg's own, outside any transaction (each statement sees every
    commit before it): through SQLAlchemy's execution it costs nine times the
    CPU, and every request on PostgreSQL waits for one. SQLAlchemy never starts
    a transaction on the connection, so it goes back to the pool as it came.
    """
    engine = ref()
    assert engine is not None, "an engine read after it was collected"
    with failures(engine):
        async with engine.connect() as connection:
            driver = (await connection.get_raw_connection()).driver_connection
            assert driver is not None

            async def fetch() -> dict[str, bytes]:
                try:
                    rows = await driver.fetch(_READ_EPOCHS, _EPOCH_NAMES)
                except Exception as error:  # the driver's own: no SQLAlchemy wrapping here
                    await connection.invalidate()  # it may be broken: never back to the pool
                    raise unavailable(engine, error) from error
                return {name: (value or "").encode() for name, value in rows}

            yield fetch


_epochs: weakref.WeakKeyDictionary[AsyncEngine, dict[str, Epoch]] = weakref.WeakKeyDictionary()
#: The file beside the database for each epoch.
_SUFFIXES = {"accounts": "-epoch", "sessions": "-sessions-epoch"}


def epoch_of(engine: AsyncEngine, what: str = "accounts") -> Epoch:
    """The epoch of ``what`` (accounts, or the SQL store's sessions) in ``engine``'s database.

    Shared by every process that uses the database. Sessions have an epoch of
    their own, so that the many session writes (a visitor's first CSRF token,
    say) do not make every worker read the users again.
    """
    epochs = _epochs.get(engine)
    if epochs is None:
        epochs = _epochs[engine] = {}
    epoch = epochs.get(what)
    if epoch is None:
        epoch = epochs[what] = _new_epoch(engine, what)
    return epoch


def _new_epoch(engine: AsyncEngine, what: str) -> Epoch:
    url = engine.url
    if url.get_backend_name() == "postgresql":
        return PostgresEpoch(engine, what)
    if url.get_backend_name() != "sqlite":
        return NoEpoch()
    suffix = _SUFFIXES[what]
    database = url.database or ""
    if database.startswith("file:"):
        return NoEpoch()  # a URI filename may name anything: keep nothing
    if database in ("", ":memory:"):
        return LocalEpoch()
    # Beside the file itself: SQLite follows a symlink to the one database, and a
    # process given the link must move the epoch that one given the file reads.
    path = os.path.realpath(database) + suffix
    try:
        epoch = FileEpoch(path)
    except OSError as error:
        log.warning("cannot use %s (%s): every request will read the database", path, error)
        return NoEpoch()
    weakref.finalize(engine, epoch.close)
    return epoch


V = TypeVar("V")


@dataclass(slots=True)
class _Entry(Generic[V]):
    epoch: bytes
    expires: float
    value: V


class EpochCache(Generic[V]):
    """Values by key, each usable while the epoch it was read under stands (and ``max_age``)."""

    def __init__(self, *, max_age: float = MAX_AGE, max_entries: int = MAX_ENTRIES) -> None:
        self.max_age = max_age
        self.max_entries = max_entries
        self._entries: dict[str, _Entry[V]] = {}
        self._readers: dict[str, asyncio.Lock] = {}

    def get(self, epoch: bytes, key: str) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.epoch != epoch or entry.expires < time.monotonic():
            del self._entries[key]
            return None
        return entry.value

    def put(self, epoch: bytes, key: str, value: V) -> None:
        if self.max_age <= 0:
            return
        entries = self._entries
        entries.pop(key, None)
        entries[key] = _Entry(epoch, time.monotonic() + self.max_age, value)
        while len(entries) > self.max_entries:
            del entries[next(iter(entries))]  # the oldest

    async def fetch(
        self,
        epoch: Epoch,
        key: str,
        read: Callable[[], Awaitable[V | None]],
        *,
        usable: Callable[[V], bool] = lambda value: True,
        keep: Callable[[V], bool] = lambda value: True,
    ) -> V | None:
        """What ``read()`` answers for ``key``, kept while ``epoch`` stands.

        A kept value is used when ``usable`` says so; a value read is kept when
        ``keep`` says so (never None). With no shared epoch, every call reads.
        """
        current = await epoch.read()
        if current is None:
            return await read()
        kept = self.get(current, key)
        if kept is not None and usable(kept):
            return kept
        async with self.one_reader(key):
            current = await epoch.read() or b""  # it may have moved while this waited
            kept = self.get(current, key)
            if kept is not None and usable(kept):
                return kept
            found = await read()
            if found is not None and keep(found):
                self.put(current, key, found)
            return found

    @contextlib.asynccontextmanager
    async def one_reader(self, key: str) -> AsyncIterator[None]:
        """Misses for one key take turns: the first reads, the others then find its answer.

        Without this, every request in flight when an entry expires (every
        ``max_age`` on a busy sign-in) reads the database at once.
        """
        lock = self._readers.get(key)
        if lock is None:
            lock = self._readers[key] = asyncio.Lock()
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and self._readers.get(key) is lock:
                del self._readers[key]

    def update(self, key: str, value: V) -> None:
        """A newer value read under the same epoch (a ``last_seen`` just written, say)."""
        entry = self._entries.get(key)
        if entry is not None:
            entry.value = value

    def __len__(self) -> int:
        return len(self._entries)


class CachePerEngine(Generic[V]):
    """One ``EpochCache`` per engine, shared by everything in this process that reads
    through that engine: ``cache(engine)``."""

    def __init__(self) -> None:
        self._caches: weakref.WeakKeyDictionary[AsyncEngine, EpochCache[V]] = (
            weakref.WeakKeyDictionary()
        )

    def __call__(self, engine: AsyncEngine) -> EpochCache[V]:
        cache = self._caches.get(engine)
        if cache is None:
            cache = self._caches[engine] = EpochCache()
        return cache
