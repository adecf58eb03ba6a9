"""Change epochs: how every worker learns, on its very next request, that accounts changed.

Each signed-in request needs the user row and the sign-in row. Reading them
from the database on every request costs far more than the rest of the
request, so each process keeps what it read (``doorman.auth.cache``), tagged
with the *epoch* current when it read it. Every write that could end or
change a session (a password, a disabled or deleted user, a revoked sign-in,
new groups) moves the epoch once it has committed; an entry whose epoch is no
longer current is not used.

The epoch must be shared by every process that shares the database, and be
cheap to read:

- a SQLite file: 16 bytes in a file beside it (``doorman.db-epoch``), mapped
  into memory, so reading it costs no system call. SQLite is one machine's
  database, so every worker that can open the database sees the same page;
- an in-memory SQLite database: a counter in this process;
- PostgreSQL: none yet (workers may be on other hosts). Nothing is kept and
  every request reads the database.
"""

from __future__ import annotations

import logging
import mmap
import os
import secrets
import weakref
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["Epoch", "FileEpoch", "LocalEpoch", "epoch_of"]

log = logging.getLogger("doorman.auth")

_SIZE = 16


class Epoch(Protocol):
    def current(self) -> bytes | None:
        """The epoch now; None when there is no shared epoch (nothing may be kept)."""

    def advance(self) -> None:
        """Move the epoch: everything kept under an earlier one is stale."""


class NoEpoch:
    """For databases whose writers may be on other hosts: nothing is ever kept."""

    def current(self) -> bytes | None:
        return None

    def advance(self) -> None:
        pass


class LocalEpoch:
    """For a database only this process can see (in-memory SQLite)."""

    def __init__(self) -> None:
        self._value = 0

    def current(self) -> bytes | None:
        return self._value.to_bytes(8, "big")

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
            if os.fstat(self._fd).st_size < _SIZE:
                os.pwrite(self._fd, secrets.token_bytes(_SIZE), 0)
            self._map = mmap.mmap(self._fd, _SIZE, mmap.MAP_SHARED, mmap.PROT_READ)
        except OSError:
            os.close(self._fd)
            raise

    def current(self) -> bytes | None:
        return self._map[:_SIZE]

    def advance(self) -> None:
        if os.pwrite(self._fd, secrets.token_bytes(_SIZE), 0) != _SIZE:
            raise OSError(f"short write to {self.path}")

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)


_epochs: weakref.WeakKeyDictionary[AsyncEngine, Epoch] = weakref.WeakKeyDictionary()


def epoch_of(engine: AsyncEngine) -> Epoch:
    """The epoch shared by every process that uses ``engine``'s database."""
    epoch = _epochs.get(engine)
    if epoch is None:
        epoch = _epochs[engine] = _new_epoch(engine)
    return epoch


def _new_epoch(engine: AsyncEngine) -> Epoch:
    url = engine.url
    if url.get_backend_name() != "sqlite":
        return NoEpoch()
    database = url.database or ""
    if database.startswith("file:"):
        return NoEpoch()  # a URI filename may name anything: keep nothing
    if database in ("", ":memory:"):
        return LocalEpoch()
    path = f"{database}-epoch"
    try:
        epoch = FileEpoch(path)
    except OSError as error:
        log.warning("cannot use %s (%s): every request will read the database", path, error)
        return NoEpoch()
    weakref.finalize(engine, epoch.close)
    return epoch
