"""What a process remembers of signed-in users and API tokens between requests.

``Users.get_signed_in`` runs on every signed-in request, ``Tokens.verify_with_user``
on every API request. Their answers are kept here under the database's change
epoch (``doorman.epochs``): any write that could end or change a session moves
the epoch, and an entry read under an older epoch is never used again. So a
password change, a disabled user, a revoked sign-in or token made by any
worker is seen by every worker on its very next request.

Entries also expire after ``max_age`` seconds, which bounds how long a change
made behind doorman's back (an ``UPDATE`` typed into the database) goes
unseen. Only positive answers are kept: a session that fails the check is
flushed, so it is never asked about again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from .tokens import Token
    from .users import User

__all__ = ["MAX_AGE", "EpochCache", "SignedInCache", "TokenCache", "signed_in_cache", "token_cache"]

#: Longest an entry is used, whatever the epoch says.
MAX_AGE = 5.0
#: Most entries kept per cache: about 1 KB each.
MAX_ENTRIES = 10_000

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


#: Per sign-in id: the user and the sign-in's ``last_seen``.
SignedInCache = EpochCache[tuple["User", float]]
#: Per token id: the token's stored hash, the token and its user.
TokenCache = EpochCache[tuple[str, "Token", "User"]]

_signed_in: weakref.WeakKeyDictionary[AsyncEngine, SignedInCache] = weakref.WeakKeyDictionary()
_tokens: weakref.WeakKeyDictionary[AsyncEngine, TokenCache] = weakref.WeakKeyDictionary()


def signed_in_cache(engine: AsyncEngine) -> SignedInCache:
    """The sign-ins kept for ``engine``'s database, shared by everything in this process."""
    cache = _signed_in.get(engine)
    if cache is None:
        cache = _signed_in[engine] = EpochCache()
    return cache


def token_cache(engine: AsyncEngine) -> TokenCache:
    """The API tokens kept for ``engine``'s database, shared by everything in this process."""
    cache = _tokens.get(engine)
    if cache is None:
        cache = _tokens[engine] = EpochCache()
    return cache
