"""Recovery codes: ten single-use codes that stand in for a second factor.

Each is 80 random bits, shown as four groups of four characters of Crockford's
base32 (``abcd-efgh-jkmn-pqrs``: no i, l, o or u to misread), and only then: the
table keeps a SHA-256 of the code salted with the account's username (stored
NFKC, never renamed; unlike the row id it survives ``doorman db dump`` and
``load``), never the code. Input
is forgiven its case, spaces and dashes, and the look-alikes (o for 0, i and l
for 1). ``use`` spends a code in one conditional UPDATE (``used_at IS NULL``):
of two requests racing with one code, exactly one wins. The hash is compared
by the database, on a digest the guesser does not choose.
"""

from __future__ import annotations

import hashlib
import secrets
import time

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ..db.schema import recovery_codes_table
from ..db.transaction import connect
from .users import User

__all__ = ["CODE_COUNT", "RecoveryCodes", "normalize_recovery_code"]

#: How many codes an account gets at a time.
CODE_COUNT = 10
ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford's base32, lower case
_LENGTH = 16  # characters: 16 x 5 bits = 80 bits
_LOOK_ALIKES = str.maketrans({"o": "0", "i": "1", "l": "1"})
_r = recovery_codes_table.c


def normalize_recovery_code(code: object) -> str | None:
    """The code's 16 characters as stored, or None when it cannot be one."""
    if not isinstance(code, str) or len(code) > 64:
        return None
    text = code.strip().lower().replace("-", "").replace(" ", "").translate(_LOOK_ALIKES)
    if len(text) != _LENGTH or any(c not in ALPHABET for c in text):
        return None
    return text


def _new_code() -> str:
    text = "".join(secrets.choice(ALPHABET) for _ in range(_LENGTH))
    return "-".join(text[i : i + 4] for i in range(0, _LENGTH, 4))


def _digest(user: User, normalized: str) -> str:
    return hashlib.sha256(f"doorman-recovery:{user.username}:{normalized}".encode()).hexdigest()


class RecoveryCodes:
    """Recovery codes of accounts in the users' database (``doorman.recovery_codes``)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def regenerate(self, user: User) -> list[str]:
        """New codes for ``user``, the old ones gone (used or not); shown this once."""
        codes = [_new_code() for _ in range(CODE_COUNT)]
        now = time.time()
        rows = [
            {
                "user_id": user.id,
                "code_hash": _digest(user, c.replace("-", "")),
                "created_at": now,
            }
            for c in codes
        ]
        async with connect(self.engine, write=True) as connection:
            await connection.execute(recovery_codes_table.delete().where(_r.user_id == user.id))
            await connection.execute(recovery_codes_table.insert(), rows)
        return codes

    async def use(self, user: User, code: object) -> bool:
        """Spend ``code``: True once for an unused code of this account, False otherwise."""
        normalized = normalize_recovery_code(code)
        if normalized is None:
            return False
        query = (
            recovery_codes_table.update()
            .where(
                _r.user_id == user.id,
                _r.code_hash == _digest(user, normalized),
                _r.used_at.is_(None),
            )
            .values(used_at=time.time())
        )
        async with connect(self.engine, write=True) as connection:
            return bool((await connection.execute(query)).rowcount == 1)

    async def remaining(self, user: User) -> int:
        """How many unused codes the account has."""
        query = sa.select(sa.func.count()).where(_r.user_id == user.id, _r.used_at.is_(None))
        async with connect(self.engine) as connection:
            return int((await connection.execute(query)).scalar_one())

    async def delete(self, user: User) -> None:
        """Take every code of the account away (no second factor left to stand in for)."""
        async with connect(self.engine, write=True) as connection:
            await connection.execute(recovery_codes_table.delete().where(_r.user_id == user.id))
