"""An in-process store: for tests and single-process development only.

Sessions vanish on restart and are not shared between workers; nor are the
throttle's counts kept beside them (``MemoryCounter``). Sessions are kept
under their keys: the SQL and Redis stores keep only a SHA-256 of each key, so
that a copy of the database or a Redis dump holds no usable ids, but nothing
copies this dict out of the process, whose memory holds the keys anyway (in
requests, and in the session signer's remembered cookies).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from ..exceptions import SessionInterrupted
from .base import Lease, Outcome, Slot, Verdict, decide_all, new_session_key

__all__ = ["MemoryCounter", "MemoryStore"]


class MemoryStore:
    """Keeps sessions in a dict, keyed by the session key."""

    stateless = False

    def __init__(self) -> None:
        self._sessions: dict[str, tuple[str, float]] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def load_nowait(self, key: str) -> str | None:
        found = self._sessions.get(key)
        if found is None:
            return None
        payload, expires_at = found
        if expires_at <= time.time():
            del self._sessions[key]
            return None
        return payload

    async def load(self, key: str) -> str | None:
        return self.load_nowait(key)

    async def save(self, key: str | None, payload: str, expires_at: float) -> str:
        return self.save_nowait(key, payload, expires_at)

    def save_nowait(self, key: str | None, payload: str, expires_at: float) -> str:
        if key is None:
            key = new_session_key()
            while key in self._sessions:  # pragma: no cover - 2**-256
                key = new_session_key()
        elif key not in self._sessions:
            raise SessionInterrupted("the session was deleted while the request was using it")
        self._sessions[key] = (payload, expires_at)
        return key

    async def delete(self, key: str) -> None:
        self._sessions.pop(key, None)

    async def clear_expired(self) -> int:
        now = time.time()
        expired = [key for key, (_, expires_at) in self._sessions.items() if expires_at <= now]
        for key in expired:
            del self._sessions[key]
        return len(expired)

    async def count(self) -> int:
        return len(self._sessions)

    async def flush(self) -> int:
        removed = len(self._sessions)
        self._sessions.clear()
        return removed

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def counter(self) -> MemoryCounter:
        return MemoryCounter()


class MemoryCounter:
    """Counts in dicts: one process only (tests, the memory session store)."""

    def __init__(self) -> None:
        self._counts: dict[str, tuple[int, float]] = {}  # failures, window end
        self._flying: dict[str, tuple[int, float]] = {}  # in flight by generation, its end

    @staticmethod
    def _live(table: dict[str, tuple[int, float]], key: str) -> tuple[int, float]:
        count, end = table.get(key, (0, 0.0))
        return (count, end) if end > time.time() else (0, 0.0)

    async def acquire(self, key: str, limit: int, lease: Lease) -> tuple[Verdict, float]:
        return await self.acquire_all([(key, limit)], lease)

    async def acquire_all(self, slots: Sequence[Slot], lease: Lease) -> tuple[Verdict, float]:
        counts = {}
        for key, _limit in slots:
            counts[key] = self._live(self._counts, key)
            for flight in (lease.flight(key), lease.earlier_flight(key)):
                counts[flight] = self._live(self._flying, flight)
        verdict, end = decide_all(slots, counts, lease)
        if verdict == "granted":
            for key, _limit in slots:
                flight = lease.flight(key)
                self._flying[flight] = (counts[flight][0] + 1, lease.ends)
        return verdict, end

    async def settle_all(
        self, outcomes: Sequence[tuple[str, Outcome]], window: float, lease: Lease
    ) -> list[int]:
        return [await self.settle(key, outcome, window, lease) for key, outcome in outcomes]

    async def settle(self, key: str, outcome: Outcome, window: float, lease: Lease) -> int:
        flight = lease.flight(key)
        flying, lease_end = self._live(self._flying, flight)
        if flying > 0:
            self._flying[flight] = (flying - 1, lease_end)
        failures, end = self._live(self._counts, key)
        if outcome == "count":
            failures, end = (failures + 1, end) if failures else (1, time.time() + window)
            self._counts[key] = (failures, end)
        elif outcome == "clear":
            self._counts.pop(key, None)
            failures = 0
        return failures

    async def peek(self, key: str) -> tuple[int, float]:
        return self._live(self._counts, key)

    async def reset(self, key: str) -> None:
        self._counts.pop(key, None)

    async def clear_expired(self) -> int:
        now, removed = time.time(), 0
        for table in (self._counts, self._flying):
            expired = [key for key, (_, end) in table.items() if end <= now]
            for key in expired:
                del table[key]
            removed += len(expired)
        return removed
