"""Password hashing with argon2id, and the rules a new password must pass.

``PasswordHasher`` makes argon2id hashes with the OWASP parameters (19 MiB,
two passes, one lane) and verifies argon2 hashes and the ``pbkdf2_sha256`` and
``argon2`` hashes of Django (and datasette-auth-passwords), asking for a rehash
of anything it would not make itself. The async methods hash in a small thread
pool of the hasher's own, so a burst of sign-ins waits its turn instead of
blocking the event loop or exhausting memory; new hashes (registrations) may
take only half of it, so sign-ins never queue behind a flood of them. A
missing, unusable or malformed hash still costs a verify, so the time taken
does not tell whether an account exists or has a password.

The list of common passwords is Django's ``common-passwords.txt.gz`` (from
Royce Williams' list of the 20,000 most common passwords), used under Django's
BSD-3-Clause license.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import difflib
import functools
import gzip
import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import NamedTuple, TypeVar

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ..exceptions import AccountError, ConfigError

__all__ = [
    "MAX_PASSWORD_LENGTH",
    "PasswordHasher",
    "Verdict",
    "is_common_password",
    "password_rules",
    "validate_password",
]

MAX_PASSWORD_LENGTH = 4096  # characters; longer ones are refused before any hashing
_PBKDF2_MAX_ITERATIONS = 10_000_000
# Ceilings for the parameters of a stored argon2 hash (or the hasher's own, if higher):
# argon2-cffi trusts the hash, and m=4294967295 would ask for 4 TiB.
_ARGON2_MAX_MEMORY = 1024 * 1024  # KiB
_ARGON2_MAX_TIME = 100
_ARGON2_MAX_LANES = 64
_SIMILARITY = 0.7

T = TypeVar("T")
log = logging.getLogger("doorman.auth")


class Verdict(NamedTuple):
    """What ``verify`` found: a match, and whether the stored hash should be replaced."""

    ok: bool
    needs_rehash: bool


_NO = Verdict(ok=False, needs_rehash=False)


def _secret(password: str) -> bytes | None:
    """The password as UTF-8, or None when it is empty, too long or not text (lone surrogates)."""
    if not password or len(password) > MAX_PASSWORD_LENGTH:
        return None
    try:
        return password.encode()
    except UnicodeEncodeError:
        return None


class PasswordHasher:
    """argon2id (OWASP parameters) for new hashes; verifies argon2 and Django pbkdf2_sha256."""

    def __init__(
        self,
        *,
        time_cost: int = 2,
        memory_cost: int = 19456,
        parallelism: int = 1,
        max_concurrency: int | None = None,
    ) -> None:
        if max_concurrency is None:
            max_concurrency = min(4, os.cpu_count() or 1)
        for name, value in [
            ("time_cost", time_cost),
            ("parallelism", parallelism),
            ("max_concurrency", max_concurrency),
        ]:
            if value < 1:
                raise ConfigError(f"{name} is {value}; it must be at least 1")
        if memory_cost < 8 * parallelism:
            raise ConfigError(
                f"memory_cost is {memory_cost} KiB; argon2 needs at least 8 KiB per lane "
                f"({8 * parallelism} for parallelism={parallelism})"
            )
        self._argon2 = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_cost,
            parallelism=parallelism,
            type=argon2.Type.ID,
        )
        self._max_concurrency = max_concurrency
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._dummy: str | None = None
        self._new_hashes: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    async def hash(self, password: str) -> str:
        """Return a new argon2id hash; raise ``AccountError`` for an empty or too long password.

        New hashes (registrations, password changes) take at most half the
        threads, so a flood of them never leaves sign-ins waiting in a queue.
        """
        async with self._new_hash_slots():
            return await self._run(functools.partial(self.hash_sync, password))

    async def verify(self, password: str, encoded: str | None) -> Verdict:
        """Check ``password`` against a stored hash; never raises for a bad hash."""
        return await self._run(functools.partial(self.verify_sync, password, encoded))

    async def burn(self, password: str) -> None:
        """Spend what a verify costs, for an unknown user or one with no usable password."""
        secret = _secret(password)
        if secret is not None:
            await self._run(functools.partial(self._burn, secret))

    def hash_sync(self, password: str) -> str:
        """Blocking ``hash``, for the CLI and tests."""
        if not password:
            raise AccountError("password is empty")
        secret = _secret(password)
        if secret is None:
            raise AccountError(
                f"password is longer than {MAX_PASSWORD_LENGTH} characters or is not valid text"
            )
        return self._argon2.hash(secret)

    def verify_sync(self, password: str, encoded: str | None) -> Verdict:
        """Blocking ``verify``, for the CLI and tests."""
        secret = _secret(password)
        if secret is None:
            return _NO  # refused for every account alike, so there is nothing to hide
        encoded = encoded or ""
        if encoded.startswith("$argon2"):
            return self._verify_argon2(secret, encoded, stale=False)
        if encoded.startswith("argon2$argon2"):  # Django's argon2 format
            return self._verify_argon2(secret, encoded.removeprefix("argon2"), stale=True)
        if encoded.startswith("pbkdf2_sha256$"):
            return self._verify_pbkdf2(secret, encoded)
        self._burn(secret)
        return _NO

    def needs_rehash(self, encoded: str) -> bool:
        """Whether a hash is not argon2 made with this hasher's parameters."""
        if not encoded.startswith("$argon2"):
            return True
        try:
            return self._argon2.check_needs_rehash(encoded)
        except InvalidHashError:
            return True

    def close(self) -> None:
        """Shut the worker threads down once running hashes end; a later call starts new ones."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)

    def _new_hash_slots(self) -> asyncio.Semaphore:
        """The semaphore of ``hash``, made for the running loop (a semaphore belongs to one)."""
        loop = asyncio.get_running_loop()
        if self._new_hashes is None or self._new_hashes[0] is not loop:
            self._new_hashes = (loop, asyncio.Semaphore(max(1, self._max_concurrency // 2)))
        return self._new_hashes[1]

    async def _run(self, call: Callable[[], T]) -> T:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self._max_concurrency, thread_name_prefix="doorman-hash"
                )
            executor = self._executor
        return await asyncio.get_running_loop().run_in_executor(executor, call)

    def _burn(self, secret: bytes) -> None:
        if self._dummy is None:  # a race only makes two dummies; either one serves
            self._dummy = self._argon2.hash(secrets.token_bytes(32))
        with contextlib.suppress(VerificationError):
            self._argon2.verify(self._dummy, secret)

    def _verify_argon2(self, secret: bytes, encoded: str, *, stale: bool) -> Verdict:
        try:
            if not (encoded.isascii() and self._affordable(argon2.extract_parameters(encoded))):
                raise InvalidHashError
            self._argon2.verify(encoded, secret)
        except VerifyMismatchError:
            return _NO
        except (VerificationError, InvalidHashError):
            return self._refuse(secret, "argon2")
        return Verdict(ok=True, needs_rehash=stale or self.needs_rehash(encoded))

    def _refuse(self, secret: bytes, scheme: str) -> Verdict:
        log.warning("a stored %s password hash is malformed or too costly to check", scheme)
        self._burn(secret)
        return _NO

    def _affordable(self, stored: argon2.Parameters) -> bool:
        own = self._argon2
        return (
            stored.memory_cost <= max(own.memory_cost, _ARGON2_MAX_MEMORY)
            and stored.time_cost <= max(own.time_cost, _ARGON2_MAX_TIME)
            and stored.parallelism <= max(own.parallelism, _ARGON2_MAX_LANES)
        )

    def _verify_pbkdf2(self, secret: bytes, encoded: str) -> Verdict:
        parsed = _parse_pbkdf2(encoded)
        if parsed is None:
            return self._refuse(secret, "pbkdf2_sha256")
        iterations, salt, expected = parsed
        derived = hashlib.pbkdf2_hmac("sha256", secret, salt, iterations)
        if hmac.compare_digest(base64.b64encode(derived), expected):
            return Verdict(ok=True, needs_rehash=True)
        return _NO


def _parse_pbkdf2(encoded: str) -> tuple[int, bytes, bytes] | None:
    """Django's ``pbkdf2_sha256$<iterations>$<salt>$<base64 key>``, or None if malformed."""
    fields = encoded.split("$")
    if len(fields) != 4 or not all(field.isascii() for field in fields):
        return None
    _, count, salt, expected = fields
    if not (count.isdigit() and len(count) <= 8 and salt and expected):
        return None
    iterations = int(count)
    if not 1 <= iterations <= _PBKDF2_MAX_ITERATIONS:
        return None
    return iterations, salt.encode(), expected.encode()


@functools.cache
def _common_passwords() -> frozenset[str]:
    data = resources.files("doorman.accounts").joinpath("common-passwords.txt.gz").read_bytes()
    return frozenset(gzip.decompress(data).decode().splitlines())


def is_common_password(password: str) -> bool:
    """Whether the password, without case or surrounding spaces, is in the common list."""
    return password.strip().lower() in _common_passwords()


def _too_similar(password: str, value: str) -> bool:
    """Django's ``UserAttributeSimilarityValidator``: the value, or a word of it, is too alike.

    Alike means a ``SequenceMatcher.quick_ratio`` of 0.7 or more, both sides
    case-folded. A word is a run of the value between non-word characters, so
    "jane.doe@example.com" is looked at whole and as "jane", "doe", "example"
    and "com". A value found inside the password is not refused for that
    alone: "ann" in "planning the summer" is no weakness.
    """
    password, value = password.casefold(), value.casefold()
    for part in {value, *re.split(r"\W+", value)}:
        if not part or _far_too_short(part, password):
            continue
        if difflib.SequenceMatcher(a=password, b=part).quick_ratio() >= _SIMILARITY:
            return True
    return False


def _far_too_short(part: str, password: str) -> bool:
    """Whether ``part`` is so much shorter than the password that it cannot be alike.

    A quick ratio is at most 2 / (1 + length ratio), about 0.18 at ten times
    shorter: Django skips such parts without comparing them.
    """
    return len(password) >= 10 * len(part) and len(part) < _SIMILARITY / 2 * len(password)


def validate_password(
    password: str,
    *,
    username: str | None = None,
    email: str | None = None,
    min_length: int = 10,
    max_length: int = 1024,
    check_common: bool = True,
) -> list[str]:
    """Return what is wrong with a new password, or ``[]`` when nothing is.

    Each problem is a short phrase that reads after "This password ...", such as
    "is shorter than 10 characters"; lengths count characters, not bytes.
    ``max_length`` should stay at or below ``MAX_PASSWORD_LENGTH``, which the
    hasher refuses.
    """
    problems = []
    if len(password) < min_length:
        problems.append(f"is shorter than {min_length} characters")
    if len(password) > max_length:
        problems.append(f"is longer than {max_length} characters")
    if password.isdigit():
        problems.append("is entirely numeric")
    if check_common and is_common_password(password):
        problems.append("is one of the 20,000 most common passwords")
    if username and _too_similar(password, username):
        problems.append("is too similar to the username")
    if email and _too_similar(password, email):
        problems.append("is too similar to the email address")
    return problems


def password_rules(
    *, min_length: int = 10, max_length: int = 1024, check_common: bool = True
) -> list[str]:
    """What ``validate_password`` asks of a password, as phrases a form's hint can list."""
    rules = [f"between {min_length} and {max_length:,} characters", "not all digits"]
    if check_common:
        rules.append("not one of the 20,000 most common passwords")
    rules.append("not too similar to the username or email address")
    return rules
