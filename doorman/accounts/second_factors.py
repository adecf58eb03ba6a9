"""Which second factors an account has, and taking them all away.

The factors themselves live in their own modules (TOTP and recovery codes,
passkeys); this is what the sign-in, the policy, the admin pages and the CLI
ask of all of them at once. ``summary`` reads the database on every call.
``needs_second_step``, which HTTP Basic asks on every request, is kept under
the accounts epoch, which any write of a factor table moves (an INSERT too,
``doorman.db.schema``): a factor added or removed on one worker counts for the
next request on every other.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..db.epochs import CachePerEngine, epoch_of
from ..db.schema import passkeys_table, recovery_codes_table, totp_table
from ..db.transaction import connect
from .users import User

__all__ = ["SecondFactors", "SecondFactorsSummary", "policy_covers"]


@dataclass(frozen=True, slots=True)
class SecondFactorsSummary:
    """An account's second factors: TOTP on or not, how many passkeys and unused recovery codes."""

    totp: bool = False
    passkeys: int = 0
    recovery_codes: int = 0

    @property
    def any(self) -> bool:
        """True when a sign-in with a password needs a second step. Recovery codes alone do
        not count: they stand in for a factor, they are not one."""
        return self.totp or self.passkeys > 0


def policy_covers(policy: str, user: User) -> bool:
    """Whether ``require_two_factor = policy`` says ``user`` must have a second factor."""
    return policy == "everyone" or (policy == "admins" and user.is_admin)


#: Per account id: whether a password alone is not enough (``SecondFactorsSummary.any``).
needs_second_step_cache: CachePerEngine[bool] = CachePerEngine()


class SecondFactors:
    """The summary of an account's second factors, and their reset, in one place."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._epoch = epoch_of(engine)
        self._needs_second_step = needs_second_step_cache(engine)

    async def summary(self, user_id: int) -> SecondFactorsSummary:
        async with connect(self.engine) as connection:
            return await _summary(connection, user_id)

    async def needs_second_step(self, user_id: int) -> bool:
        """``summary(user_id).any``, kept while the accounts epoch stands."""
        needed = await self._needs_second_step.fetch(
            self._epoch, str(user_id), lambda: self._read_needs_second_step(user_id)
        )
        return bool(needed)

    async def _read_needs_second_step(self, user_id: int) -> bool:
        return (await self.summary(user_id)).any

    async def summaries(self, user_ids: list[int]) -> dict[int, SecondFactorsSummary]:
        """The summaries of many accounts in three queries (the users list)."""
        if not user_ids:
            return {}
        found: dict[int, dict[str, int]] = {i: {} for i in user_ids}
        queries = {
            "totp": sa.select(totp_table.c.user_id, sa.func.count())
            .where(totp_table.c.user_id.in_(user_ids), totp_table.c.confirmed_at.is_not(None))
            .group_by(totp_table.c.user_id),
            "passkeys": sa.select(passkeys_table.c.user_id, sa.func.count())
            .where(passkeys_table.c.user_id.in_(user_ids))
            .group_by(passkeys_table.c.user_id),
            "recovery_codes": sa.select(recovery_codes_table.c.user_id, sa.func.count())
            .where(
                recovery_codes_table.c.user_id.in_(user_ids),
                recovery_codes_table.c.used_at.is_(None),
            )
            .group_by(recovery_codes_table.c.user_id),
        }
        async with connect(self.engine) as connection:
            for name, query in queries.items():
                for user_id, count in (await connection.execute(query)).all():
                    found[user_id][name] = count
        return {
            user_id: SecondFactorsSummary(
                totp=counts.get("totp", 0) > 0,
                passkeys=counts.get("passkeys", 0),
                recovery_codes=counts.get("recovery_codes", 0),
            )
            for user_id, counts in found.items()
        }

    async def reset(self, user_id: int) -> SecondFactorsSummary:
        """Take every second factor of the account away (an admin's reset, for a person who
        lost theirs); return what it had."""
        async with connect(self.engine, write=True) as connection:
            had = await _summary(connection, user_id)
            for table in (totp_table, recovery_codes_table, passkeys_table):
                await connection.execute(table.delete().where(table.c.user_id == user_id))
        return had


async def _summary(connection: AsyncConnection, user_id: int) -> SecondFactorsSummary:
    """The three counts in one query: it runs at every sign-in (and HTTP Basic request)."""
    counts = [
        sa.select(sa.func.count()).where(table.c.user_id == user_id, counted).scalar_subquery()
        for table, counted in (
            (totp_table, totp_table.c.confirmed_at.is_not(None)),
            (passkeys_table, sa.true()),
            (recovery_codes_table, recovery_codes_table.c.used_at.is_(None)),
        )
    ]
    totp, passkeys, codes = (await connection.execute(sa.select(*counts))).one()
    return SecondFactorsSummary(totp=totp > 0, passkeys=passkeys, recovery_codes=codes)
