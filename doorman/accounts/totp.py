"""TOTP codes (RFC 6238: HMAC-SHA-1, six digits, 30-second steps), one secret per account.

``start`` makes a secret in a row that is not yet on; ``confirm`` turns it on
after a correct code, so that nobody is locked out by a secret their app never
got. While a confirmed secret is on, ``start`` refuses: turn it off first
(``disable``), so that a half-made replacement never stands in for the factor
in use.

A code is accepted for the current step and one step either side (clocks
drift), and never for the same or an older step than the last code taken:
``verify`` takes the step in one conditional UPDATE, so of two workers racing
with one code exactly one wins. pyotp (the ``two-factor`` extra) makes the
codes; it is imported on first use, so that the session middleware and the
accounts need it only where TOTP is used.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from .._extras import needs_extra
from ..db.schema import bookkeeping, totp_table
from ..db.transaction import connect
from ..exceptions import AccountError
from .users import User

__all__ = ["STEP", "TOTP", "TOTPState", "normalize_code"]

#: Seconds per step, as every authenticator app counts them.
STEP = 30
#: Steps accepted either side of the current one.
DRIFT = 1
#: Secret length in base32 characters: 32 of them are 160 bits, RFC 4226's recommendation.
SECRET_LENGTH = 32
_DIGITS = 6
_t = totp_table.c


@dataclass(frozen=True, slots=True)
class TOTPState:
    """An account's TOTP row: ``on`` once a correct code confirmed it."""

    secret: str
    created_at: float
    confirmed_at: float | None

    @property
    def on(self) -> bool:
        return self.confirmed_at is not None


def normalize_code(code: object) -> str | None:
    """Six ASCII digits, with spaces taken out ("123 456"); None for anything else."""
    if not isinstance(code, str) or len(code) > 20:
        return None
    digits = code.replace(" ", "").replace("-", "")
    if len(digits) != _DIGITS or not digits.isascii() or not digits.isdigit():
        return None
    return digits


def _pyotp() -> Any:
    with needs_extra("two-factor", "TOTP codes"):
        import pyotp
    return pyotp


class TOTP:
    """TOTP secrets of accounts in the users' database (``doorman.totp``)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def state(self, user: User) -> TOTPState | None:
        """The account's row, on or waiting for its first code; None without one."""
        query = sa.select(_t.secret, _t.created_at, _t.confirmed_at).where(_t.user_id == user.id)
        async with connect(self.engine) as connection:
            row = (await connection.execute(query)).first()
        return None if row is None else TOTPState(row.secret, row.created_at, row.confirmed_at)

    async def enabled(self, user: User) -> bool:
        found = await self.state(user)
        return found is not None and found.on

    async def start(self, user: User) -> str:
        """A new secret for ``user``, not on until ``confirm``; it replaces one not confirmed.

        ``AccountError`` while a confirmed secret is on: ``disable`` it first.
        """
        secret: str = _pyotp().random_base32(SECRET_LENGTH)
        async with connect(self.engine, write=True) as connection:
            query = sa.select(_t.confirmed_at).where(_t.user_id == user.id)
            existing = (await connection.execute(query)).first()
            if existing is not None and existing.confirmed_at is not None:
                raise AccountError("an authenticator app is on already: turn it off first")
            if existing is not None:
                await connection.execute(totp_table.delete().where(_t.user_id == user.id))
            row = {"user_id": user.id, "secret": secret, "created_at": time.time()}
            await connection.execute(totp_table.insert().values(row))
        return secret

    @staticmethod
    def provisioning_uri(secret: str, *, username: str, issuer: str) -> str:
        """The ``otpauth://totp/...`` URI an authenticator app reads (as a QR code, or typed)."""
        return str(_pyotp().TOTP(secret).provisioning_uri(name=username, issuer_name=issuer))

    async def confirm(self, user: User, code: object, *, at: float | None = None) -> bool:
        """Turn the waiting secret on if ``code`` is right for it; the step it names is taken."""
        found = await self.state(user)
        if found is None or found.on:
            return False
        step = _matching_step(found.secret, code, time.time() if at is None else at)
        if step is None:
            return False
        query = (
            totp_table.update()
            .where(_t.user_id == user.id, _t.secret == found.secret, _t.confirmed_at.is_(None))
            .values(confirmed_at=time.time(), last_step=step)
        )
        async with connect(self.engine, write=True) as connection:
            return bool((await connection.execute(query)).rowcount == 1)

    async def verify(self, user: User, code: object, *, at: float | None = None) -> bool:
        """True once for a right code: its step is taken, so the same code (or an older one)
        fails afterwards, on every worker. False for a wrong code, or with TOTP off."""
        found = await self.state(user)
        if found is None or not found.on:
            return False
        step = _matching_step(found.secret, code, time.time() if at is None else at)
        if step is None:
            return False
        query = bookkeeping(
            totp_table,
            sa.and_(
                _t.user_id == user.id,
                _t.secret == found.secret,
                _t.confirmed_at.is_not(None),
                sa.or_(_t.last_step.is_(None), _t.last_step < step),
            ),
            last_step=step,
        )
        async with connect(self.engine, write=True) as connection:
            return bool((await connection.execute(query)).rowcount == 1)

    async def disable(self, user: User) -> bool:
        """Turn TOTP off (the secret is deleted); False when it was not there."""
        async with connect(self.engine, write=True) as connection:
            result = await connection.execute(totp_table.delete().where(_t.user_id == user.id))
        return bool(result.rowcount)


def _matching_step(secret: str, code: object, at: float) -> int | None:
    """The step within the drift whose code ``code`` is, the newest first; None if none."""
    digits = normalize_code(code)
    if digits is None:
        return None
    totp = _pyotp().TOTP(secret)
    current = int(at // STEP)
    found = None
    for step in range(current + DRIFT, current - DRIFT - 1, -1):
        # Every step compared, in constant time: the answer's timing says nothing of which.
        if hmac.compare_digest(totp.generate_otp(step), digits) and found is None:
            found = step
    return found
