"""Invitations: a one-time link with which someone makes their own account.

Unlike the stateless links of ``accounts.links``, an invitation has no account
to be bound to yet, so it is a row: the SHA-256 of a random token (never the
token), the address it went to, what the account gets (admin, groups), who
invited, when it expires and when it was accepted. ``claim`` marks it
accepted in one UPDATE that only one request can win, before the account is
made; ``release`` gives it back if making the account fails.
"""

from __future__ import annotations

import builtins
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ..db.schema import invitations_table
from ..db.transaction import connect
from ..exceptions import AccountError
from .names import check_email, check_group

__all__ = ["DEFAULT_MAX_AGE", "Invitation", "Invitations"]

#: How long an invitation works: a week.
DEFAULT_MAX_AGE = 7 * 86400
_i = invitations_table.c


@dataclass(frozen=True, slots=True)
class Invitation:
    id: int
    email: str
    is_admin: bool
    groups: tuple[str, ...]
    invited_by: str | None
    created_at: float
    expires_at: float
    accepted_at: float | None

    @property
    def usable(self) -> bool:
        return self.accepted_at is None and self.expires_at > time.time()

    def public_fields(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "email": self.email,
            "admin": self.is_admin,
            "groups": list(self.groups),
            "invited_by": self.invited_by,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "accepted_at": self.accepted_at,
        }


class Invitations:
    def __init__(self, engine: AsyncEngine, *, max_age: int = DEFAULT_MAX_AGE) -> None:
        self.engine = engine
        self.max_age = max_age

    async def create(
        self,
        email: str,
        *,
        admin: bool = False,
        groups: tuple[str, ...] = (),
        invited_by: str | None = None,
    ) -> tuple[Invitation, str]:
        """A new invitation for ``email`` and its token, shown this once."""
        address = check_email(email)
        if address is None:
            raise AccountError("an invitation needs an email address")
        names = tuple(check_group(name) for name in groups)
        token, now = secrets.token_urlsafe(32), time.time()
        row = {
            "token_hash": _hash(token),
            "email": address,
            "is_admin": admin,
            "groups": ",".join(names),
            "invited_by": invited_by,
            "created_at": now,
            "expires_at": now + self.max_age,
        }
        async with connect(self.engine, write=True) as connection:
            result = await connection.execute(invitations_table.insert().values(row))
            invitation_id = result.inserted_primary_key[0]  # type: ignore[index]
        return _invitation({**row, "id": invitation_id, "accepted_at": None}), token

    async def find(self, token: str) -> Invitation | None:
        """The usable invitation ``token`` names: not accepted, not expired."""
        if not isinstance(token, str) or not 20 <= len(token) <= 100:
            return None
        query = sa.select(invitations_table).where(_i.token_hash == _hash(token))
        async with connect(self.engine) as connection:
            row = (await connection.execute(query)).mappings().first()
        found = _invitation(row) if row is not None else None
        return found if found is not None and found.usable else None

    async def claim(self, invitation: Invitation) -> bool:
        """Mark it accepted; False when another request did first, or it expired."""
        query = (
            invitations_table.update()
            .where(_i.id == invitation.id, _i.accepted_at.is_(None), _i.expires_at > time.time())
            .values(accepted_at=time.time())
        )
        async with connect(self.engine, write=True) as connection:
            return bool((await connection.execute(query)).rowcount)

    async def release(self, invitation: Invitation) -> None:
        """Give a claimed invitation back: making the account failed."""
        query = invitations_table.update().where(_i.id == invitation.id).values(accepted_at=None)
        async with connect(self.engine, write=True) as connection:
            await connection.execute(query)

    async def accepted_by(self, invitation: Invitation, user_id: int) -> None:
        query = invitations_table.update().where(_i.id == invitation.id).values(user_id=user_id)
        async with connect(self.engine, write=True) as connection:
            await connection.execute(query)

    async def list(self, *, limit: int = 100) -> builtins.list[Invitation]:
        """The newest invitations first."""
        query = sa.select(invitations_table).order_by(_i.id.desc()).limit(limit)
        async with connect(self.engine) as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [_invitation(row) for row in rows]


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _invitation(row: Any) -> Invitation:
    return Invitation(
        id=row["id"],
        email=row["email"],
        is_admin=bool(row["is_admin"]),
        groups=tuple(name for name in row["groups"].split(",") if name),
        invited_by=row["invited_by"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        accepted_at=row["accepted_at"],
    )
