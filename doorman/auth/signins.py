"""Sign-ins: every signed-in session of a user, listed and revocable one by one.

``login()`` records a row (when, from which address and browser) and keeps its
id in the session; every request checks the row is still there. So a single
session can be signed out from another device or by an admin, in any store,
the stateless signed-cookie store included, which keeps nothing else on the
server. Rows of sessions that were never seen again are swept by
``clear_stale``.
"""

from __future__ import annotations

import builtins
import secrets
import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncEngine

from ..database import connect
from ..epochs import epoch_of
from ..exceptions import UserNotFound
from ..migrations import ensure_schema
from ..schema import signins_table, users_table
from .cache import signed_in_cache
from .users import User

__all__ = ["LAST_SEEN_RESOLUTION", "SignIn", "SignIns"]

#: ``last_seen`` is written at most this often per session, not on every request.
LAST_SEEN_RESOLUTION = 60.0
_s = signins_table.c


@dataclass(frozen=True, slots=True)
class SignIn:
    """One signed-in session: where and when, never the session key."""

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
        """A new sign-in for ``user``; return its id (kept in the session)."""
        now = time.time()
        row = {
            "id": secrets.token_urlsafe(24),
            "user_id": user.id,
            "created_at": now,
            "last_seen": now,
            "user_agent": user_agent[:300],
            "address": address[:64] if address else None,
        }
        await ensure_schema(self.engine)
        try:
            async with connect(self.engine, write=True, changes_accounts=False) as connection:
                await connection.execute(signins_table.insert().values(row))
        except exc.IntegrityError:  # the user row went away meanwhile
            raise UserNotFound(f"no user {user.username!r} (deleted?)") from None
        return str(row["id"])

    async def seen(self, signin_id: str, last_seen: float) -> None:
        """Note activity, at most once per ``LAST_SEEN_RESOLUTION`` seconds."""
        now = time.time()
        if now - last_seen < LAST_SEEN_RESOLUTION:
            return
        cache = signed_in_cache(self.engine)
        epoch = await epoch_of(self.engine).read()
        kept = cache.get(epoch, signin_id) if epoch is not None else None
        if kept is not None:  # first, so that the requests running meanwhile do not write too
            cache.update(signin_id, (kept[0], now))
        async with connect(self.engine, write=True, changes_accounts=False) as connection:
            await connection.execute(
                signins_table.update().where(_s.id == signin_id).values(last_seen=now)
            )

    async def list(self, user: User | None = None) -> builtins.list[SignIn]:
        """Sign-ins, most recently seen first: of one user, or of everyone."""
        query = (
            sa.select(signins_table, users_table.c.username)
            .join(users_table, users_table.c.id == _s.user_id)
            .order_by(_s.last_seen.desc())
        )
        if user is not None:
            query = query.where(_s.user_id == user.id)
        await ensure_schema(self.engine)
        async with connect(self.engine) as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [SignIn(**row) for row in rows]

    async def revoke(self, signin_id: str, *, user: User | None = None) -> bool:
        """Sign one session out (only ``user``'s, when given); False when there was none."""
        query = signins_table.delete().where(_s.id == signin_id)
        if user is not None:
            query = query.where(_s.user_id == user.id)
        await ensure_schema(self.engine)
        async with connect(self.engine, write=True) as connection:
            result = await connection.execute(query)
        return result.rowcount > 0

    async def revoke_all(self, user: User) -> int:
        """Sign every session of ``user`` out; return how many there were."""
        await ensure_schema(self.engine)
        async with connect(self.engine, write=True) as connection:
            result = await connection.execute(signins_table.delete().where(_s.user_id == user.id))
        return max(result.rowcount, 0)

    async def clear_stale(self, older_than: float) -> int:
        """Forget sign-ins not seen for ``older_than`` seconds (their sessions have ended)."""
        cutoff = time.time() - older_than
        await ensure_schema(self.engine)
        async with connect(self.engine, write=True) as connection:
            result = await connection.execute(signins_table.delete().where(_s.last_seen < cutoff))
        return max(result.rowcount, 0)
