"""Throttling that stops password guessing without handing out a lockout switch.

Every password check holds a slot in each *bucket* that applies to it, taken
before the check in one atomic step (see ``doorman.stores.base.Counter``): a slot is granted only
while the bucket's failures plus the checks in flight are under its limit, so
no more checks can fail in a window than the limit, however many run in
parallel. A check that finds no free slot only because others are in flight
waits for their outcome (up to ``wait`` seconds) instead of being refused: a
right password is never refused because other sign-ins were under way.

The buckets of a sign-in (docs/throttling.md has the numbers):

- from a browser holding a *device cookie* for the account (``devices``): that
  browser's own bucket, which failures from anywhere else cannot fill;
- from anywhere else: the account's bucket, shared by every untrusted client,
  and the client address's bucket.

Keys are hashes, never usernames, addresses or cookies. A counter that cannot
be reached raises ``StoreError``: sign-in fails closed (503).
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
from dataclasses import dataclass
from typing import Literal, NamedTuple

from .._tasks import to_the_end
from ..exceptions import Busy, ConfigError, Throttled
from ..signing import normalize_secrets
from ..stores import counter_for
from ..stores.base import Counter, Outcome, Slot, Verdict, settle_slots, take_slots
from .users import username_key

__all__ = [
    "Attempt",
    "Counter",
    "LoginThrottle",
    "MailThrottle",
    "RegistrationThrottle",
    "SecondFactorThrottle",
    "ThrottleLimits",
    "counter_for",
]

security_log = logging.getLogger("doorman.security")

_FIRST_POLL, _LAST_POLL = 0.01, 0.1  # seconds between looks at a busy bucket
_BUSY_RETRY_AFTER = 5


class _Bucket(NamedTuple):
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

    def __init__(self, limiter: _Limiter, buckets: Sequence[_Bucket], address: str | None) -> None:
        self._limiter, self._buckets, self._address = limiter, buckets, address
        self._succeeded = self._settled = False

    def succeeded(self) -> None:
        self._succeeded = True

    async def __aenter__(self) -> Attempt:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if not self._settled:
            self._settled = True
            await self._limiter.settle(self._buckets, self._succeeded, self._address)


class _Limiter:
    """Slots in buckets: what the sign-in and registration throttles share."""

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
        self._key: bytes | None = None
        if secret is not None:  # a key for this purpose only, never the secret itself
            self._key = hmac.digest(normalize_secrets(secret)[0], b"doorman.throttle", "sha256")

    def _hash(self, value: str) -> str:
        data = value.encode("utf-8", "surrogatepass")  # a JSON name may hold a lone surrogate
        if self._key is None:
            return hashlib.sha256(data).hexdigest()[:40]
        return hmac.new(self._key, data, hashlib.sha256).hexdigest()[:40]

    def _address(self, address: str) -> str:
        return self._hash(_network(address))

    async def enter(self, buckets: Sequence[_Bucket], address: str | None) -> Attempt:
        """Take a slot in every bucket, waiting while only checks in flight stand in the way.

        ``Throttled`` when a bucket is full of failures; ``Busy`` (503) when
        ``wait`` seconds pass and checks in flight still hold every slot.
        """
        deadline, delay = time.monotonic() + self.wait, _FIRST_POLL
        while True:
            verdict, end = await self._take(buckets)
            if verdict == "granted":
                return Attempt(self, buckets, address)
            if verdict == "refused":
                raise _throttled(self.refusal, max(1, math.ceil(end - time.time())))
            if time.monotonic() + delay > deadline:
                security_log.warning("checks in flight held every slot for %ss", self.wait)
                raise Busy(
                    "Too many attempts at once; try again in a few seconds.",
                    retry_after=_BUSY_RETRY_AFTER,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, _LAST_POLL)

    async def _take(self, buckets: Sequence[_Bucket]) -> tuple[Verdict, float]:
        """All the slots, or none: what stood in the way, with that bucket's window end.

        Once asked, the counter's answer is awaited to its end even if this request is
        cancelled meanwhile, and slots taken for nobody are given back."""
        if not buckets:
            return "granted", 0.0
        slots = [(bucket.key, bucket.limit) for bucket in buckets]
        taking = take_slots(self.counter, slots, self.lease, self.window)
        return await to_the_end(taking, abandoned=lambda answer: self._abandon(answer, slots))

    async def _abandon(self, answer: tuple[Verdict, float], slots: Sequence[Slot]) -> None:
        if answer[0] == "granted":
            await settle_slots(self.counter, [(key, "refund") for key, _ in slots], self.window)

    async def settle(
        self, buckets: Sequence[_Bucket], succeeded: bool, address: str | None
    ) -> None:
        """Give the slots back and count the outcome, to the end even if cancelled meanwhile."""
        if buckets:
            await to_the_end(self._settle(buckets, succeeded, address))

    async def _settle(
        self, buckets: Sequence[_Bucket], succeeded: bool, address: str | None
    ) -> None:
        outcomes = [(bucket.key, bucket.on_success if succeeded else "count") for bucket in buckets]
        failures = await settle_slots(self.counter, outcomes, self.window)
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


class LoginThrottle(_Limiter):
    """Bounds password checks: ``per_account`` failures per account per ``window``
    for untrusted clients (and as many for each trusted device), ``per_address``
    per client address. A limit of 0 turns it off.

    ``attempt`` before the check, ``succeeded()`` after a right password; see
    ``Attempt``. ``secret`` (or a list, newest first), when given, keys the
    hashes (HMAC-SHA256, with a key derived from the newest secret) so stored
    keys cannot be reversed by guessing; every worker must then be given the
    same one. ``wait`` bounds how long a check waits for checks in flight, and
    ``lease`` how long a check may hold its slot if its worker dies.
    """

    def __init__(
        self,
        counter: Counter,
        *,
        per_account: int = 5,
        per_address: int = 20,
        window: float = 900.0,
        secret: str | bytes | Sequence[str | bytes] | None = None,
        wait: float = 30.0,
        lease: float = 60.0,
    ) -> None:
        _check_limit("per_account", per_account)
        _check_limit("per_address", per_address)
        super().__init__(counter, window=window, secret=secret, wait=wait, lease=lease)
        self.per_account = per_account
        self.per_address = per_address

    def _account(self, username: str) -> str:
        """An account's key: "Alice", "ALICE" and a fullwidth "Alice" share one."""
        return "a:" + self._hash(username_key(username))

    def _buckets(self, username: str, address: str | None, device: str | None) -> list[_Bucket]:
        if device is not None:  # a browser that signed in to this account before
            key = "d:" + self._hash(device)
            return [_Bucket(key, self.per_account, "device", "clear")] if self.per_account else []
        # The address first: one over its limit is refused before anything is stored
        # for the username it tries (a new key per guessed name, otherwise).
        buckets = []
        if self.per_address and address is not None:
            key = "c:" + self._address(address)
            buckets.append(_Bucket(key, self.per_address, "address", "refund"))
        if self.per_account:
            buckets.append(_Bucket(self._account(username), self.per_account, "account", "refund"))
        return buckets

    async def attempt(
        self, username: str, address: str | None, *, device: str | None = None
    ) -> Attempt:
        """Wait for a slot to check a password for ``username`` from ``address``.

        ``device``: the id ``DeviceCookies.device_for`` gave for this browser and
        account, or None for an untrusted client. Raises ``Throttled`` (429)
        when a bucket is full of failures, ``Busy`` (503) when checks in flight
        held every slot for ``wait`` seconds.
        """
        return await self.enter(self._buckets(username, address, device), address)

    async def check(self, username: str, address: str | None = None) -> None:
        """Raise ``Throttled`` when an untrusted attempt would be refused; changes nothing."""
        now = time.time()
        waits = []
        for bucket in self._buckets(username, address, None):
            failures, end = await self.counter.peek(bucket.key)
            if failures >= bucket.limit:
                waits.append(max(1, math.ceil(end - now)))
        if waits:
            raise _throttled(self.refusal, max(waits))

    async def reset(self, username: str) -> None:
        """Unlock an account for untrusted clients now (an admin action)."""
        await self.counter.reset(self._account(username))


class SecondFactorThrottle(_Limiter):
    """Bounds second-factor codes: ``per_account`` wrong ones per account per ``window``
    (0: no limit), counted apart from wrong passwords (whoever is at this step knew the
    password). A right code does not wipe the failures: it refunds its own slot."""

    refusal = "Too many wrong codes; try again in {wait}."

    def __init__(
        self,
        counter: Counter,
        *,
        per_account: int = 5,
        window: float = 900.0,
        secret: str | bytes | Sequence[str | bytes] | None = None,
        wait: float = 30.0,
        lease: float = 60.0,
    ) -> None:
        _check_limit("per_account", per_account)
        super().__init__(counter, window=window, secret=secret, wait=wait, lease=lease)
        self.per_account = per_account

    async def attempt(self, user_id: int, address: str | None) -> Attempt:
        """Wait for a slot to check a code for account ``user_id``; ``Throttled`` over the limit."""
        buckets = []
        if self.per_account:
            key = "f:" + self._hash(str(user_id))
            buckets.append(_Bucket(key, self.per_account, "second-factor", "refund"))
        return await self.enter(buckets, address)


class RegistrationThrottle(_Limiter):
    """At most ``per_address`` registration attempts per client address per ``window``
    (0: no limit), in flight included; each attempt counts, whatever its outcome."""

    refusal = "Too many registrations from your network; try again in {wait}."

    def __init__(
        self,
        counter: Counter,
        *,
        per_address: int = 10,
        window: float = 900.0,
        secret: str | bytes | Sequence[str | bytes] | None = None,
        wait: float = 30.0,
        lease: float = 60.0,
    ) -> None:
        _check_limit("registrations", per_address)
        super().__init__(counter, window=window, secret=secret, wait=wait, lease=lease)
        self.per_address = per_address

    async def attempt(self, address: str | None) -> Attempt:
        """Wait for a slot to register from ``address``; ``Throttled`` over the limit."""
        buckets = []
        if self.per_address and address is not None:
            key = "r:" + self._address(address)
            buckets.append(_Bucket(key, self.per_address, "registration", "count"))
        return await self.enter(buckets, address)


class MailThrottle(_Limiter):
    """At most ``per_email`` links asked for one address and ``per_address`` asks from one
    client address per ``window`` (0: no limit); each ask counts, whatever its outcome.

    The same for addresses that have an account and those that do not, so
    neither the answer nor the refusal tells them apart.
    """

    refusal = "Too many requests for links by email; try again in {wait}."

    def __init__(
        self,
        counter: Counter,
        *,
        per_email: int = 3,
        per_address: int = 10,
        window: float = 900.0,
        secret: str | bytes | Sequence[str | bytes] | None = None,
        wait: float = 30.0,
        lease: float = 60.0,
    ) -> None:
        _check_limit("per_email", per_email)
        _check_limit("per_address", per_address)
        super().__init__(counter, window=window, secret=secret, wait=wait, lease=lease)
        self.per_email, self.per_address = per_email, per_address

    async def attempt(self, email: str, address: str | None) -> Attempt:
        """A slot to send a link to ``email`` for ``address``; ``Throttled`` over a limit."""
        buckets = []
        if self.per_address and address is not None:
            key = "ma:" + self._address(address)
            buckets.append(_Bucket(key, self.per_address, "address", "count"))
        if self.per_email:
            key = "m:" + self._hash(email.strip().lower())
            buckets.append(_Bucket(key, self.per_email, "email", "count"))
        return await self.enter(buckets, address)


@dataclass(frozen=True)
class ThrottleLimits:
    """The limits of both throttles: failed sign-ins per account and per client address,
    registration attempts per address, each within ``window`` seconds (0: no limit).

    The settings ``throttle_per_account``, ``throttle_per_address``,
    ``throttle_registrations`` and ``throttle_window``.
    """

    per_account: int = 5
    per_address: int = 20
    registrations: int = 10
    window: float = 900.0

    def throttles(
        self, counter: Counter, secret: str | bytes | Sequence[str | bytes] | None
    ) -> tuple[LoginThrottle, RegistrationThrottle]:
        """The sign-in and the registration throttle, both counting in ``counter``."""
        login = LoginThrottle(
            counter,
            per_account=self.per_account,
            per_address=self.per_address,
            window=self.window,
            secret=secret,
        )
        registration = RegistrationThrottle(
            counter, per_address=self.registrations, window=self.window, secret=secret
        )
        return login, registration


def _check_limit(name: str, limit: object) -> None:
    if type(limit) is not int or limit < 0:
        raise ConfigError(
            f"throttle_{name}={limit!r}: give a whole number of attempts, or 0 for no limit"
        )


def _network(address: str) -> str:
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


def _throttled(template: str, retry_after: int) -> Throttled:
    """The refusal, with the wait in words ("40 seconds", "15 minutes")."""
    amount, unit = (
        (retry_after, "second") if retry_after < 60 else (math.ceil(retry_after / 60), "minute")
    )
    wait = f"{amount} {unit}{'s' * (amount != 1)}"
    return Throttled(template.format(wait=wait), retry_after=retry_after)
