"""Slots in buckets: what every throttle shares (sign-ins, second-factor codes,
registrations, links by mail; the policies are in ``doorman.accounts.throttle``).

Every check holds a slot in each *bucket* that applies to it, taken before the
check in one atomic step (see ``doorman.stores.base.Counter``): a slot is granted
only while the bucket's failures plus the checks in flight are under its limit,
so no more checks can fail in a window than the limit, however many run in
parallel. A check that finds no free slot only because others are in flight
waits for their outcome (up to ``wait`` seconds) instead of being refused,
unless its client hangs up meanwhile (``client_gone``).
Keys are hashes; a counter that cannot be reached raises ``StoreError``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import math
import time
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Literal, NamedTuple

from .._tasks import to_the_end
from ..exceptions import Abandoned, Busy, ConfigError, Throttled
from ..signing import normalize_secrets
from ..stores.base import Counter, Lease, Outcome, Verdict, settle_slots, take_slots

__all__ = [
    "Attempt",
    "Bucket",
    "Limiter",
    "Waiting",
    "client_gone",
    "counted_network",
    "throttled",
]

security_log = logging.getLogger("doorman.security")

# Seconds between looks at a busy bucket, for the slots that other processes give back
# (those of this one wake a waiting check at once: ``Waiting``): 10 ms at first, then at
# most every 100 ms, and less often the more checks wait here, so that together they ask
# the counter some 100 times a second at most (1,000 waiting: each every 10 s).
_FIRST_POLL, _LAST_POLL, _LOOKS_PER_SECOND = 0.01, 0.1, 100
_BUSY_RETRY_AFTER = 5

#: For the length of a request, where the HTTP layer watches its connection (the sign-in
#: server does): a future done once the client has hung up. An attempt then stops waiting
#: for a slot, and one granted its slots gives them back unused: no check for nobody.
client_gone: ContextVar[asyncio.Future[None] | None] = ContextVar("client_gone", default=None)


class Bucket(NamedTuple):
    key: str
    limit: int
    kind: Literal["account", "address", "device", "registration", "email", "second-factor"]
    #: What a success does to the bucket: nothing counted ("refund"), its failures
    #: forgotten ("clear"), or counted like a failure ("count": every registration).
    on_success: Outcome


class Attempt:
    """One check holding its slots: ``async with await throttle.attempt(...) as attempt``.

    Call ``succeeded()`` once the password proved right. Leaving the block
    otherwise (a wrong password, or any error) counts a failure in each bucket.
    """

    def __init__(
        self, limiter: Limiter, buckets: Sequence[Bucket], address: str | None, lease: Lease
    ) -> None:
        self._limiter, self._buckets, self._address = limiter, buckets, address
        self._lease = lease  # the slots are given back under it
        self._succeeded = self._settled = False

    def succeeded(self) -> None:
        self._succeeded = True

    async def __aenter__(self) -> Attempt:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if not self._settled:
            self._settled = True
            await self._limiter.settle(self._buckets, self._succeeded, self._address, self._lease)


class Waiting:
    """This process's checks waiting for a slot, by bucket key, oldest first.

    Each slot given back here wakes one of them: hundreds of checks asking the
    counter every few milliseconds kept it too busy to settle the checks that
    would free them (300 sign-ins at once on SQLite: 270 answered 503 after 30 s).
    """

    def __init__(self) -> None:
        # Per key, the waiting checks' futures in arrival order (a dict: an ordered set).
        self._by_key: dict[str, dict[asyncio.Future[None], None]] = {}
        self.count = 0  # checks waiting now

    async def until_freed(
        self, keys: Sequence[str], within: float, gone: asyncio.Future[None] | None = None
    ) -> None:
        """Until a slot of one of ``keys`` comes back here, ``within`` seconds pass, or the
        future ``gone`` is done (the client hung up)."""
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for key in keys:
            self._by_key.setdefault(key, {})[woken] = None
        self.count += 1
        try:
            either = [woken] if gone is None else [woken, gone]
            await asyncio.wait(either, timeout=within, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.count -= 1
            for key in keys:
                line = self._by_key.get(key, {})
                line.pop(woken, None)
                if not line:
                    self._by_key.pop(key, None)

    def freed(self, keys: Sequence[str]) -> None:
        """A slot of each of ``keys`` came back: wake the oldest check waiting for it."""
        for key in keys:
            for woken in self._by_key.get(key, {}):
                if not woken.done():
                    _wake(woken)
                    break


def _wake(woken: asyncio.Future[None]) -> None:
    """Done at once on its own loop (so the next slot given back wakes the next check);
    through the loop on another thread's."""
    loop = woken.get_loop()
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if loop is running:
        _set(woken)
    elif not loop.is_closed():
        loop.call_soon_threadsafe(_set, woken)


def _set(woken: asyncio.Future[None]) -> None:
    if not woken.done():
        woken.set_result(None)


class Limiter:
    """Slots in buckets, taken and settled: what every throttle shares."""

    #: The refusal, in the same words for every bucket: it must not tell which one.
    refusal = "Too many failed sign-in attempts; try again in {wait}."

    def __init__(
        self,
        counter: Counter,
        *,
        window: float,
        secret: str | bytes | Sequence[str | bytes] | None,
        wait: float,
        lease: float,
    ) -> None:
        for name, seconds in (("window", window), ("wait", wait), ("lease", lease)):
            if type(seconds) not in (int, float) or not 0 < seconds < math.inf:  # no bool, nan
                raise ConfigError(
                    f"throttle_{name}={seconds!r}: give a positive number of seconds, such as 900"
                )
        self.counter = counter
        self.window, self.wait, self.lease = float(window), float(wait), float(lease)
        self.waiting = Waiting()
        self._key: bytes | None = None
        if secret is not None:  # a key for this purpose only, never the secret itself
            self._key = hmac.digest(normalize_secrets(secret)[0], b"doorman.throttle", "sha256")

    def _hash(self, value: str) -> str:
        data = value.encode("utf-8", "surrogatepass")  # a JSON name may hold a lone surrogate
        if self._key is None:
            return hashlib.sha256(data).hexdigest()[:40]
        return hmac.new(self._key, data, hashlib.sha256).hexdigest()[:40]

    def _address(self, address: str) -> str:
        return self._hash(counted_network(address))

    async def enter(self, buckets: Sequence[Bucket], address: str | None) -> Attempt:
        """Take a slot in every bucket, waiting while only checks in flight stand in the way.

        ``Throttled`` when a bucket is full of failures; ``Busy`` (503) when
        ``wait`` seconds pass and checks in flight still hold every slot;
        ``Abandoned`` when the client hangs up first (``client_gone``).
        """
        deadline, delay = time.monotonic() + self.wait, _FIRST_POLL
        gone = client_gone.get()
        while True:
            lease = Lease.starting(self.lease)
            verdict, end = await self._take(buckets, lease)
            if verdict == "granted":
                if not _hung_up(gone):
                    return Attempt(self, buckets, address, lease)
                await self._abandon((verdict, end), buckets, lease)
                raise _abandoned()
            if verdict == "refused":
                raise throttled(self.refusal, max(1, math.ceil(end - time.time())))
            left = deadline - time.monotonic()
            if left <= 0:
                security_log.warning("checks in flight held every slot for %ss", self.wait)
                raise Busy(
                    "Too many attempts at once; try again in a few seconds.",
                    retry_after=_BUSY_RETRY_AFTER,
                )
            # Up to the deadline, then one last look: a wake-up may come at any time.
            keys = [bucket.key for bucket in buckets]
            await self.waiting.until_freed(keys, min(delay, left), gone)
            if _hung_up(gone):
                raise _abandoned()
            delay = min(delay * 2, max(_LAST_POLL, self.waiting.count / _LOOKS_PER_SECOND))

    async def _take(self, buckets: Sequence[Bucket], lease: Lease) -> tuple[Verdict, float]:
        """All the slots, or none: what stood in the way, with that bucket's window end.

        Once asked, the counter's answer is awaited to its end even if this request is
        cancelled meanwhile, and slots taken for nobody are given back."""
        if not buckets:
            return "granted", 0.0
        slots = [(bucket.key, bucket.limit) for bucket in buckets]
        taking = take_slots(self.counter, slots, lease, self.window)
        return await to_the_end(
            taking, abandoned=lambda answer: self._abandon(answer, buckets, lease)
        )

    async def _abandon(
        self, answer: tuple[Verdict, float], buckets: Sequence[Bucket], lease: Lease
    ) -> None:
        """Slots granted for no one (the request was cancelled, or its client hung up)
        go back uncounted."""
        if answer[0] == "granted" and buckets:
            keys = [bucket.key for bucket in buckets]
            refunds: list[tuple[str, Outcome]] = [(key, "refund") for key in keys]
            await to_the_end(settle_slots(self.counter, refunds, self.window, lease))
            self.waiting.freed(keys)

    async def settle(
        self, buckets: Sequence[Bucket], succeeded: bool, address: str | None, lease: Lease
    ) -> None:
        """Give back the slots granted under ``lease`` and count the outcome, to the end
        even if cancelled meanwhile."""
        if buckets:
            await to_the_end(self._settle(buckets, succeeded, address, lease))

    async def _settle(
        self, buckets: Sequence[Bucket], succeeded: bool, address: str | None, lease: Lease
    ) -> None:
        outcomes = [(bucket.key, bucket.on_success if succeeded else "count") for bucket in buckets]
        failures = await settle_slots(self.counter, outcomes, self.window, lease)
        self.waiting.freed([bucket.key for bucket in buckets])
        for bucket, (_key, outcome), count in zip(buckets, outcomes, failures, strict=True):
            if outcome == "count" and count == bucket.limit:  # once per window
                # Never with the username: people type their password there by mistake.
                security_log.warning(
                    "throttle: the %s limit of %s within %ss was reached, the last from %s",
                    bucket.kind,
                    bucket.limit,
                    self.window,
                    address or "-",
                )


def _hung_up(gone: asyncio.Future[None] | None) -> bool:
    return gone is not None and gone.done()


def _abandoned() -> Abandoned:
    return Abandoned("The client hung up before its attempt was checked.", retry_after=0)


def counted_network(address: str) -> str:
    """What an address is counted as: itself for IPv4, its /64 for IPv6."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return f"{ipaddress.IPv6Address(int(ip) >> 64 << 64)}/64"
    return str(ip)


def throttled(template: str, retry_after: int) -> Throttled:
    """The refusal, with the wait in words ("40 seconds", "15 minutes")."""
    amount, unit = (
        (retry_after, "second") if retry_after < 60 else (math.ceil(retry_after / 60), "minute")
    )
    wait = f"{amount} {unit}{'s' * (amount != 1)}"
    return Throttled(template.format(wait=wait), retry_after=retry_after)
