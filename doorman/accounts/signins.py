"""Sign-ins: every signed-in session of a user, listed and revocable one by one.

``login()`` records a row (when, from which address and browser) and keeps its
key in the session; every request checks the row is still there. So a single
session can be signed out from another device or by an admin, in any store,
the stateless signed-cookie store included, which keeps nothing else on the
server. Rows of sessions that were never seen again are swept by
``clear_stale``.

The key (256 bits from ``secrets``) is never written down: the row's id is its
SHA-256, as the SQL store does with session keys. So a copy of the database
names no sign-in that a forged session could claim, even with the cookie
store and its secret (see docs/security.md). The id is what lists show and
what ``revoke`` takes; ``signin_id`` turns a session's key into it.
"""

from __future__ import annotations

import builtins
import hashlib
import secrets
import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncEngine

from ..db.epochs import epoch_of
from ..db.schema import bookkeeping, signins_table, users_table
from ..db.transaction import connect
from ..exceptions import UserNotFound
from .users import User, signed_in_cache

__all__ = ["LAST_SEEN_RESOLUTION", "SignIn", "SignIns", "signin_id"]

#: ``last_seen`` is written at most this often per session, not on every request.
LAST_SEEN_RESOLUTION = 60.0
_s = signins_table.c
_KEY_BYTES = 32


def signin_id(key: str) -> str:
    """The id of the sign-in whose key a session holds: what the table keeps instead."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class SignIn:
    """One signed-in session: where and when, never the session key nor the sign-in key."""

    #: SHA-256 of the key the session holds.
    id: str
    user_id: int
    username: str
    created_at: float
    last_seen: float
    user_agent: str
    address: str | None


class SignIns:
    """Records, lists and revokes sign-ins. Every method may raise ``StoreError``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def record(self, user: User, *, user_agent: str = "", address: str | None) -> str:
        """A new sign-in for ``user``; return its key, for the session alone to keep."""
        now = time.time()
        key = secrets.token_urlsafe(_KEY_BYTES)
        row = {
            "id": signin_id(key),
            "user_id": user.id,
            "created_at": now,
            "last_seen": now,
            "user_agent": user_agent[:300],
            "address": address[:64] if address else None,
        }
        try:
            async with connect(self.engine, write=True) as connection:
                await connection.execute(signins_table.insert().values(row))
        except exc.IntegrityError:  # the user row went away meanwhile
            raise UserNotFound(f"no user {user.username!r} (deleted?)") from None
        return key

    async def seen(self, signin: str, last_seen: float) -> None:
        """Note activity of the sign-in ``signin`` (an id), at most once per minute."""
        now = time.time()
        if now - last_seen < LAST_SEEN_RESOLUTION:
            return
        cache = signed_in_cache(self.engine)
        epoch = await epoch_of(self.engine).read()
        kept = cache.get(epoch, signin) if epoch is not None else None
        if kept is not None:  # first, so that the requests running meanwhile do not write too
            cache.update(signin, (kept[0], now))
        async with connect(self.engine, write=True) as connection:
            await connection.execute(bookkeeping(signins_table, _s.id == signin, last_seen=now))

    async def list(self, user: User | None = None) -> builtins.list[SignIn]:
        """Sign-ins, most recently seen first: of one user, or of everyone."""
        query = (
            sa.select(signins_table, users_table.c.username)
            .join(users_table, users_table.c.id == _s.user_id)
            .order_by(_s.last_seen.desc())
        )
        if user is not None:
            query = query.where(_s.user_id == user.id)
        async with connect(self.engine) as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [SignIn(**row) for row in rows]

    async def get(self, signin: str) -> SignIn | None:
        """The sign-in whose id is ``signin``, or None."""
        query = (
            sa.select(signins_table, users_table.c.username)
            .join(users_table, users_table.c.id == _s.user_id)
            .where(_s.id == signin)
        )
        async with connect(self.engine) as connection:
            row = (await connection.execute(query)).mappings().first()
        return SignIn(**row) if row is not None else None

    async def revoke(self, signin: str, *, user: User | None = None) -> bool:
        """Sign out the sign-in whose id is ``signin`` (only ``user``'s, when given).

        False when there was none. A session's own sign-in: ``revoke(signin_id(key))``.
        """
        query = signins_table.delete().where(_s.id == signin)
        if user is not None:
            query = query.where(_s.user_id == user.id)
        async with connect(self.engine, write=True) as connection:
            result = await connection.execute(query)
        return result.rowcount > 0

    async def revoke_all(self, user: User) -> int:
        """Sign every session of ``user`` out; return how many there were."""
        async with connect(self.engine, write=True) as connection:
            result = await connection.execute(signins_table.delete().where(_s.user_id == user.id))
        return max(result.rowcount, 0)

    async def clear_stale(self, older_than: float) -> int:
        """Forget sign-ins not seen for ``older_than`` seconds (their sessions have ended)."""
        cutoff = time.time() - older_than
        async with connect(self.engine, write=True) as connection:
            result = await connection.execute(signins_table.delete().where(_s.last_seen < cutoff))
        return max(result.rowcount, 0)
