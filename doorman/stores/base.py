"""The store protocol: where session data lives between requests.

A store keeps an opaque text payload (JSON written by ``Session``) under a key,
until an absolute expiry time. Server-side stores mint the key themselves from
``secrets``; the SQL and Redis stores keep only a SHA-256 of it, so a leaked
database or Redis dump holds no usable session ids. The cookie store keeps nothing: its key *is* the
payload, and the middleware's signature is what protects it.

Every store passes the conformance suite in ``doorman.testing``.

A store that keeps sessions on the server keeps the sign-in throttle's counts
beside them, where every worker sees them: ``store.counter()`` (see
``Counter``; docs/throttling.md).
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple, Protocol, runtime_checkable

__all__ = [
    "KEY_BYTES",
    "BatchCounter",
    "Counter",
    "CountingStore",
    "Lease",
    "MakesTables",
    "Outcome",
    "ServerSideStore",
    "SessionStore",
    "Slot",
    "SyncLoadable",
    "Verdict",
    "new_session_key",
    "settle_slots",
    "storage_id",
    "take_slots",
]

KEY_BYTES = 32  # 256 bits from the OS CSPRNG


def new_session_key() -> str:
    return secrets.token_urlsafe(KEY_BYTES)


def storage_id(key: str) -> str:
    """What a server-side store writes down instead of the key itself."""
    return hashlib.sha256(key.encode()).hexdigest()


@runtime_checkable
class SessionStore(Protocol):
    """Async storage for session payloads. Failures raise ``StoreError``."""

    #: True when the store keeps nothing server-side (the signed-cookie store).
    stateless: bool

    async def load(self, key: str) -> str | None:
        """The payload saved under ``key``, or None when unknown or expired."""

    async def save(self, key: str | None, payload: str, expires_at: float) -> str:
        """Save ``payload`` until ``expires_at`` (Unix time) and return the key.

        ``key=None`` creates a session under a new key. Saving under a key that
        no longer exists raises ``SessionInterrupted``: the session was ended
        elsewhere (a logout in another tab) and must not be brought back.
        """

    async def delete(self, key: str) -> None:
        """Forget ``key``; deleting an unknown key is not an error."""

    async def clear_expired(self) -> int:
        """Remove expired sessions; return how many were removed (if known)."""

    async def ping(self) -> None:
        """Return when the store answers; raise ``StoreError`` when it does not."""

    async def close(self) -> None:
        """Release connections."""


@runtime_checkable
class SyncLoadable(Protocol):
    """A store that can load without I/O, so sessions can load on first access."""

    def load_nowait(self, key: str) -> str | None: ...


# A store may also define ``save_nowait(key, payload, expires_at) -> str`` (same
# contract as ``save``) when saving needs no I/O; sessions then skip a coroutine.


@runtime_checkable
class ServerSideStore(SessionStore, Protocol):
    """A store whose sessions live on the server: they can be counted and flushed."""

    async def count(self) -> int:
        """How many sessions the store holds (live or not yet swept)."""

    async def flush(self) -> int:
        """Delete every session (everyone is signed out); return how many."""


# -- the throttle's counters ------------------------------------------------------

#: ``acquire``'s answer: let through; wait for attempts in flight; refused until the window ends.
Verdict = Literal["granted", "busy", "refused"]
#: What ``settle`` does besides giving the slot back: count a failure, nothing, or forget failures.
Outcome = Literal["count", "refund", "clear"]

VERDICTS: dict[str, Verdict] = {"granted": "granted", "busy": "busy", "refused": "refused"}
#: Where a key's attempts in flight are kept: beside its failures, under this mark.
FLIGHT = "~"
#: A key and its limit: what ``acquire_all`` takes a slot in.
Slot = tuple[str, int]


class Lease(NamedTuple):
    """How long a slot in flight is held at most, and the generation it is granted in.

    Slots are counted by generation (``seconds`` long): those granted in one are kept
    under its own count, which lapses at the end of the next generation, between
    ``seconds`` and twice that after the grant. A slot that is never given back (its
    worker died mid-check) so lapses on its own, however busy its bucket stays; a
    single lease for the whole bucket, extended by every grant, never lapsed while
    grants kept coming. The attempt gives its slot back under the lease it got.
    """

    seconds: float
    generation: int

    @classmethod
    def starting(cls, seconds: float, now: float | None = None) -> Lease:
        """The lease of a slot granted now."""
        moment = time.time() if now is None else now
        return cls(seconds, math.floor(moment / seconds))

    @property
    def ends(self) -> float:
        """When this generation's count lapses (Unix time)."""
        return (self.generation + 2) * self.seconds

    def flight(self, key: str) -> str:
        """Where ``key``'s slots of this generation are counted."""
        return f"{FLIGHT}{key}@{self.generation}"

    def earlier_flight(self, key: str) -> str:
        """Where ``key``'s slots of the generation before are counted (still held)."""
        return f"{FLIGHT}{key}@{self.generation - 1}"


class Counter(Protocol):
    """Failures in a fixed window, and attempts in flight; failures raise ``StoreError``."""

    async def acquire(self, key: str, limit: int, lease: Lease) -> tuple[Verdict, float]:
        """Atomically take a slot when failures + attempts in flight < ``limit``.

        In flight are the slots of ``lease``'s generation and the one before it
        (``Lease.flight``, ``Lease.earlier_flight``); the slot counts in the first.
        Returns the verdict and the end of the failures' window (Unix time; 0.0
        when there are none). "refused": failures reached ``limit``; "busy":
        only attempts in flight stand in the way, whose outcome may free a slot.
        """

    async def settle(self, key: str, outcome: Outcome, window: float, lease: Lease) -> int:
        """Give back a slot granted under ``lease`` (unless its generation lapsed),
        atomically, and "count" one failure (an absent or ended window starts at 1
        and lasts ``window`` seconds), "refund" (count nothing) or "clear" the
        failures. Returns the failures now in the window."""

    async def peek(self, key: str) -> tuple[int, float]:
        """(failures, window end) without changing anything; (0, 0.0) when none."""

    async def reset(self, key: str) -> None:
        """Forget the failures of ``key`` (attempts in flight stay)."""

    async def clear_expired(self) -> int:
        """Remove ended windows and lapsed leases; return how many (if known)."""


@runtime_checkable
class BatchCounter(Counter, Protocol):
    """A counter that takes and settles the slots of several keys in one step (one
    transaction or script): a sign-in's buckets cost one round trip, not one per key.
    Optional: the throttle goes key by key with a ``Counter`` that lacks these."""

    async def acquire_all(self, slots: Sequence[Slot], lease: Lease) -> tuple[Verdict, float]:
        """A slot in every ``(key, limit)``, or in none: the first verdict in order that
        is not "granted", with its window's end; else "granted", with the latest window
        end among the keys (0.0 when none has failures): ``acquire`` for one key."""

    async def settle_all(
        self, outcomes: Sequence[tuple[str, Outcome]], window: float, lease: Lease
    ) -> list[int]:
        """``settle`` for each ``(key, outcome)``, atomically each; the failures now in
        each window, in order."""


def decide(failures: int, flying: int, limit: int) -> Verdict:
    """What ``acquire`` answers, given the failures and the attempts in flight."""
    if failures >= limit:
        return "refused"
    return "busy" if failures + flying >= limit else "granted"


async def take_slots(
    counter: Counter, slots: Sequence[Slot], lease: Lease, window: float
) -> tuple[Verdict, float]:
    """A slot in every ``(key, limit)`` or in none, as ``BatchCounter.acquire_all``: in
    one step where the counter can, else key by key, giving back what it took when a
    later key says no."""
    if isinstance(counter, BatchCounter):
        return await counter.acquire_all(slots, lease)
    taken: list[str] = []
    latest = 0.0
    for key, limit in slots:
        verdict, end = await counter.acquire(key, limit, lease)
        if verdict != "granted":
            for held in taken:  # a full bucket must not use up the others
                await counter.settle(held, "refund", window, lease)
            return verdict, end
        taken.append(key)
        latest = max(latest, end)
    return "granted", latest


async def settle_slots(
    counter: Counter, outcomes: Sequence[tuple[str, Outcome]], window: float, lease: Lease
) -> list[int]:
    """``BatchCounter.settle_all``, in one step where the counter can, else key by key."""
    if isinstance(counter, BatchCounter):
        return await counter.settle_all(outcomes, window, lease)
    return [await counter.settle(key, outcome, window, lease) for key, outcome in outcomes]


def decide_all(
    slots: Sequence[Slot], counts: Mapping[str, tuple[int, float]], lease: Lease
) -> tuple[Verdict, float]:
    """What ``acquire_all`` answers under ``lease``, given the (count, end) of each key
    and of its flights of this generation and the one before, absent ones at (0, 0.0)."""
    latest = 0.0
    for key, limit in slots:
        failures, end = counts.get(key, (0, 0.0))
        flying = sum(
            counts.get(flight, (0, 0.0))[0]
            for flight in (lease.flight(key), lease.earlier_flight(key))
        )
        verdict = decide(failures, flying, limit)
        if verdict != "granted":
            return verdict, end
        latest = max(latest, end)
    return "granted", latest


@runtime_checkable
class MakesTables(Protocol):
    """A store or counter with tables of its own, made at start-up (``Doorman.startup``)."""

    async def create_table(self) -> None:
        """Bring the tables up to date (once per database and process)."""


@runtime_checkable
class CountingStore(Protocol):
    """A store that keeps the throttle's counts beside its sessions."""

    def counter(self) -> Counter:
        """The counter that keeps its counts where this store keeps sessions."""
