"""Passkeys (WebAuthn credentials): the rows of ``doorman_passkeys`` and what changes them.

The ceremonies that prove a passkey live in the sign-in server; this is what
they read and write. Every query that touches one person's passkey names that
person in its WHERE, so nobody renames or removes another's. Read from the
database on every use, never kept: a passkey removed on one worker fails on
the next request on every other.

Sign counters (WebAuthn §6.1.1): an authenticator that counts says how often it
signed; a count that does not go up means a clone. ``record_use`` takes the
new count with one conditional UPDATE, so two workers given the same
assertion at once cannot both accept it.
"""

from __future__ import annotations

import builtins
import re
import secrets
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncEngine

from ..db.schema import bookkeeping, passkeys_table
from ..db.transaction import connect
from ..exceptions import AccountError
from .names import storable

__all__ = ["NAME_MAX", "Passkey", "Passkeys", "clean_name"]

#: The longest name a passkey may have (the column's width).
NAME_MAX = 100
#: Bytes of a new user handle (WebAuthn allows up to 64; 32 random bytes are plenty).
_HANDLE_BYTES = 32
#: A transport as WebAuthn names them ("usb", "internal", "hybrid", "smart-card"...).
_TRANSPORT = re.compile(r"[a-z][a-z-]{0,19}")


@dataclass(frozen=True, slots=True)
class Passkey:
    """One registered passkey. ``credential_id``, ``user_handle``, ``public_key``: base64url."""

    id: int
    user_id: int
    credential_id: str
    user_handle: str
    public_key: str
    sign_count: int
    name: str
    transports: tuple[str, ...]
    aaguid: str
    backup_eligible: bool
    backed_up: bool
    created_at: float
    last_used_at: float | None

    @property
    def synced(self) -> bool:
        """Backed up to a cloud account (a synced passkey), as its authenticator last said."""
        return self.backed_up


def clean_name(name: object, default: str = "Passkey") -> str:
    """A name fit to show: one line of printable text, at most ``NAME_MAX`` characters."""
    if not isinstance(name, str):
        return default
    text = unicodedata.normalize("NFKC", name)
    text = "".join(c if unicodedata.category(c)[0] not in "CZ" else " " for c in text)
    text = " ".join(text.split())[:NAME_MAX].strip()
    return text or default


class Passkeys:
    """A person's passkeys: list, add, rename, remove; find one by credential; count a use."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def list(self, user_id: int) -> builtins.list[Passkey]:
        """``user_id``'s passkeys, oldest first."""
        query = (
            sa.select(passkeys_table)
            .where(passkeys_table.c.user_id == user_id)
            .order_by(passkeys_table.c.id)
        )
        async with connect(self.engine) as connection:
            return [_passkey(row) for row in (await connection.execute(query)).mappings()]

    async def find(self, credential_id: str) -> Passkey | None:
        """The passkey with this credential id (base64url), whoever's it is; None if unknown."""
        if not isinstance(credential_id, str) or not 0 < len(credential_id) <= 1400:
            return None
        if not storable(credential_id):  # base64url never holds a NUL or a lone surrogate
            return None
        query = sa.select(passkeys_table).where(passkeys_table.c.credential_id == credential_id)
        async with connect(self.engine) as connection:
            row = (await connection.execute(query)).mappings().first()
        return _passkey(row) if row is not None else None

    async def user_handle(self, user_id: int) -> str:
        """The handle authenticators keep for ``user_id``: the one of their passkeys, else new.

        Random, never the id or the name: a passkey tells nothing about the account.
        """
        query = (
            sa.select(passkeys_table.c.user_handle)
            .where(passkeys_table.c.user_id == user_id)
            .order_by(passkeys_table.c.id)
            .limit(1)
        )
        async with connect(self.engine) as connection:
            found = (await connection.execute(query)).scalar_one_or_none()
        return found if found is not None else _new_handle()

    async def add(
        self,
        user_id: int,
        *,
        credential_id: str,
        user_handle: str,
        public_key: str,
        sign_count: int,
        name: str,
        transports: Iterable[str] = (),
        aaguid: str = "",
        backup_eligible: bool = False,
        backed_up: bool = False,
    ) -> Passkey:
        """Store a verified new passkey; ``AccountError`` when its credential is known already."""
        values: dict[str, Any] = {
            "user_id": user_id,
            "credential_id": credential_id,
            "user_handle": user_handle,
            "public_key": public_key,
            "sign_count": sign_count,
            "name": clean_name(name),
            "transports": ",".join(t for t in transports if _TRANSPORT.fullmatch(t))[:200],
            "aaguid": aaguid[:36],
            "backup_eligible": backup_eligible,
            "backed_up": backed_up,
            "created_at": time.time(),
            "last_used_at": None,
        }
        try:
            async with connect(self.engine, write=True) as connection:
                result = await connection.execute(passkeys_table.insert().values(**values))
                (new_id,) = result.inserted_primary_key or (None,)
        except exc.IntegrityError as error:
            raise AccountError("This passkey is registered already.") from error
        return _passkey({**values, "id": new_id})

    async def rename(self, user_id: int, passkey_id: int, name: str) -> bool:
        """Give one of ``user_id``'s passkeys a new name; False if they have no such passkey."""
        if not _storable(passkey_id):
            return False
        query = (
            passkeys_table.update()
            .where(passkeys_table.c.id == passkey_id, passkeys_table.c.user_id == user_id)
            .values(name=clean_name(name))
        )
        async with connect(self.engine, write=True) as connection:
            return (await connection.execute(query)).rowcount == 1

    async def remove(self, user_id: int, passkey_id: int) -> Passkey | None:
        """Delete one of ``user_id``'s passkeys; return it, or None if they have no such one."""
        if not _storable(passkey_id):
            return None
        table = passkeys_table
        mine = (table.c.id == passkey_id, table.c.user_id == user_id)
        async with connect(self.engine, write=True) as connection:
            row = (await connection.execute(sa.select(table).where(*mine))).mappings().first()
            if row is None:
                return None
            await connection.execute(table.delete().where(*mine))
        return _passkey(row)

    async def record_use(self, passkey: Passkey, sign_count: int, *, backed_up: bool) -> bool:
        """Count a verified use of ``passkey`` whose authenticator now says ``sign_count``.

        False, and nothing written, when the count does not go up (either it or the
        stored one non-zero): a cloned authenticator, or the same assertion twice.
        Also False when the passkey is gone (removed meanwhile).
        """
        table = passkeys_table
        goes_up = sa.or_(
            table.c.sign_count < sign_count,
            sa.and_(sa.literal(sign_count) == 0, table.c.sign_count == 0),
        )
        query = bookkeeping(
            table,
            sa.and_(table.c.id == passkey.id, table.c.user_id == passkey.user_id, goes_up),
            sign_count=sign_count,
            backed_up=backed_up,
            last_used_at=time.time(),
        )
        async with connect(self.engine, write=True) as connection:
            return (await connection.execute(query)).rowcount == 1


def _new_handle() -> str:
    return secrets.token_urlsafe(_HANDLE_BYTES)


def _passkey(row: Any) -> Passkey:
    transports = row["transports"] or ""
    return Passkey(
        id=row["id"],
        user_id=row["user_id"],
        credential_id=row["credential_id"],
        user_handle=row["user_handle"],
        public_key=row["public_key"],
        sign_count=row["sign_count"],
        name=row["name"],
        transports=tuple(t for t in transports.split(",") if t),
        aaguid=row["aaguid"] or "",
        backup_eligible=bool(row["backup_eligible"]),
        backed_up=bool(row["backed_up"]),
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
    )


def _storable(passkey_id: int) -> bool:
    """An id a database row can have: one from a URL may have any number of digits."""
    return 0 < passkey_id < 2**63
