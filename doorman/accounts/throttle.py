"""Throttling that stops password guessing without handing out a lockout switch.

Every password check holds a slot in each *bucket* that applies to it
(``doorman.accounts.slots``): no more checks can fail in a window than the
limit, however many run in parallel, and a right password is never refused
because other sign-ins were under way (it waits for their outcome).

The buckets of a sign-in (docs/throttling.md has the numbers):

- from a browser holding a *device cookie* for the account (``devices``): that
  browser's own bucket, which failures from anywhere else cannot fill;
- from anywhere else: the account's bucket, shared by every untrusted client,
  and the client address's bucket.

Keys are hashes, never usernames, addresses or cookies. A counter that cannot
be reached raises ``StoreError``: sign-in fails closed (503).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .._text import ascii_lower
from ..exceptions import ConfigError
from ..stores import counter_for
from ..stores.base import Counter
from .slots import Attempt, Bucket, Limiter, throttled
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


class LoginThrottle(Limiter):
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

    def _buckets(self, username: str, address: str | None, device: str | None) -> list[Bucket]:
        if device is not None:  # a browser that signed in to this account before
            key = "d:" + self._hash(device)
            return [Bucket(key, self.per_account, "device", "clear")] if self.per_account else []
        # The address first: one over its limit is refused before anything is stored
        # for the username it tries (a new key per guessed name, otherwise).
        buckets = []
        if self.per_address and address is not None:
            key = "c:" + self._address(address)
            buckets.append(Bucket(key, self.per_address, "address", "refund"))
        if self.per_account:
            buckets.append(Bucket(self._account(username), self.per_account, "account", "refund"))
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
            raise throttled(self.refusal, max(waits))

    async def reset(self, username: str) -> None:
        """Unlock an account for untrusted clients now (an admin action)."""
        await self.counter.reset(self._account(username))


class SecondFactorThrottle(Limiter):
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
            buckets.append(Bucket(key, self.per_account, "second-factor", "refund"))
        return await self.enter(buckets, address)


class RegistrationThrottle(Limiter):
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
            buckets.append(Bucket(key, self.per_address, "registration", "count"))
        return await self.enter(buckets, address)


class MailThrottle(Limiter):
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
            buckets.append(Bucket(key, self.per_address, "address", "count"))
        if self.per_email:
            key = "m:" + self._hash(ascii_lower(email.strip()))  # as addresses compare
            buckets.append(Bucket(key, self.per_email, "email", "count"))
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
