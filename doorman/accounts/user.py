"""One account as read from the database: ``User``, and the query and rows that make one.

``Users`` reads users through ``user_rows`` (a user joined with its groups,
one row per group); so do the token and sign-in reads that need the user too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import sqlalchemy as sa

from ..db.schema import groups_table, user_groups_table, users_table

__all__ = ["User", "user_rows", "users_from_rows"]

_u, _g, _ug = users_table.c, groups_table.c, user_groups_table.c


@dataclass(frozen=True, slots=True)
class User:
    """One account, as read from the database. Immutable: methods of ``Users`` change it."""

    id: int
    username: str
    email: str | None
    is_admin: bool
    is_active: bool
    session_version: int
    created_at: float
    last_login: float | None
    groups: tuple[str, ...] = ()
    password_hash: str | None = field(default=None, repr=False)
    #: The person followed a link sent to ``email`` (or an admin vouched for it).
    email_verified: bool = False
    #: A new address waiting for its verification link before it replaces ``email``.
    pending_email: str | None = None

    @property
    def has_usable_password(self) -> bool:
        return bool(self.password_hash)

    def public_fields(self) -> dict[str, Any]:
        """The user as JSON for the CLI and the admin pages: never the password hash."""
        return {
            "username": self.username,
            "email": self.email,
            "admin": self.is_admin,
            "active": self.is_active,
            "groups": list(self.groups),
            "email_verified": self.email_verified,
            "created_at": self.created_at,
            "last_login": self.last_login,
        }

    def actor(self, via: str) -> dict[str, Any]:
        """The actor dict for ``scope["actor"]``: the id is the username."""
        return {
            "id": self.username,
            "username": self.username,
            "admin": self.is_admin,
            "groups": list(self.groups),
            "via": via,
        }


def user_rows(where: sa.ColumnElement[bool], *extra: Any) -> sa.Select[Any]:
    """Users joined with their groups (one row per group), as ``_users`` reads them."""
    joined = users_table.outerjoin(user_groups_table, _ug.user_id == _u.id).outerjoin(
        groups_table, _g.id == _ug.group_id
    )
    return (
        sa.select(users_table, _g.name.label("group_name"), *extra)
        .select_from(joined)
        .where(where)
        .order_by(_u.username_key, _g.name)
    )


def users_from_rows(rows: Sequence[Any]) -> list[User]:
    """Users from rows of users joined with their groups (one row per group)."""
    users: dict[int, User] = {}
    groups: dict[int, list[str]] = {}
    for row in rows:
        if row["id"] not in users:
            users[row["id"]] = _user(row)
            groups[row["id"]] = []
        if row["group_name"] is not None:
            groups[row["id"]].append(row["group_name"])
    return [replace(user, groups=tuple(groups[user.id])) for user in users.values()]


def _user(row: Any) -> User:
    return User(
        id=row["id"],
        username=row["username"],
        email=row["email"],
        is_admin=bool(row["is_admin"]),
        is_active=bool(row["is_active"]),
        session_version=row["session_version"],
        created_at=row["created_at"],
        last_login=row["last_login"],
        password_hash=row["password_hash"],
        email_verified=bool(row["email_verified"]),
        pending_email=row["pending_email"],
    )
