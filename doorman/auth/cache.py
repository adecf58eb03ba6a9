"""What a process remembers of signed-in users between requests, while nothing changed.

``Users.get_signed_in`` runs on every signed-in request. Its answer (the user
and the ``last_seen`` of the sign-in) is kept here under the database's change
epoch (``doorman.epochs``): any write that could end or change a session moves
the epoch, and an entry read under an older epoch is never used again. So a
password change, a disabled user or a revoked sign-in made by any worker is
seen by every worker on its very next request.

Entries also expire after ``max_age`` seconds, which bounds how long a change
made behind doorman's back (an ``UPDATE`` typed into the database) goes
unseen. Only positive answers are kept: a session that fails the check is
flushed, so it is never asked about again.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from .users import User

__all__ = ["MAX_AGE", "SignedInCache", "signed_in_cache"]

#: Longest an entry is used, whatever the epoch says.
MAX_AGE = 5.0
#: Most entries kept: about 1 KB each.
MAX_ENTRIES = 10_000


@dataclass(slots=True)
class _Entry:
    epoch: bytes
    expires: float
    user: User
    last_seen: float


class SignedInCache:
    """Per sign-in id: the user and ``last_seen`` read under ``epoch``."""

    def __init__(self, *, max_age: float = MAX_AGE, max_entries: int = MAX_ENTRIES) -> None:
        self.max_age = max_age
        self.max_entries = max_entries
        self._entries: dict[str, _Entry] = {}

    def get(self, epoch: bytes, user_id: int, signin_id: str) -> tuple[User, float] | None:
        entry = self._entries.get(signin_id)
        if entry is None:
            return None
        if entry.epoch != epoch or entry.expires < time.monotonic() or entry.user.id != user_id:
            del self._entries[signin_id]
            return None
        return entry.user, entry.last_seen

    def put(self, epoch: bytes, signin_id: str, user: User, last_seen: float) -> None:
        if self.max_age <= 0:
            return
        entries = self._entries
        entries.pop(signin_id, None)
        entries[signin_id] = _Entry(epoch, time.monotonic() + self.max_age, user, last_seen)
        while len(entries) > self.max_entries:
            del entries[next(iter(entries))]  # the oldest

    def seen(self, signin_id: str, last_seen: float) -> None:
        """``last_seen`` was written: remember it, so it is not written again too soon."""
        entry = self._entries.get(signin_id)
        if entry is not None:
            entry.last_seen = last_seen

    def forget(self, signin_id: str) -> None:
        self._entries.pop(signin_id, None)

    def __len__(self) -> int:
        return len(self._entries)


_caches: weakref.WeakKeyDictionary[AsyncEngine, SignedInCache] = weakref.WeakKeyDictionary()


def signed_in_cache(engine: AsyncEngine) -> SignedInCache:
    """The cache for ``engine``'s database, shared by everything in this process using it."""
    cache = _caches.get(engine)
    if cache is None:
        cache = _caches[engine] = SignedInCache()
    return cache
