"""The one-time set-up link that creates the first admin.

``doorman serve`` calls ``issue_setup_token`` on start: when there are no users
it makes a random token, keeps only its SHA-256 in ``doorman_settings`` (so
every worker can check it) and prints the link. The token works once, and
only while the database has no users.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ..db.engine import insert
from ..db.schema import settings_table, users_table
from ..db.transaction import connect

__all__ = ["claim_setup_token", "issue_setup_token", "needs_setup", "setup_token_valid"]

_NAME = "setup_token_sha256"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


async def needs_setup(engine: AsyncEngine) -> bool:
    """True while the database has no users."""
    async with connect(engine) as connection:
        found = await connection.execute(sa.select(users_table.c.id).limit(1))
        return found.first() is None


async def issue_setup_token(engine: AsyncEngine) -> str | None:
    """A new set-up token when there are no users (replacing any earlier one), else None."""
    if not await needs_setup(engine):
        return None
    token = secrets.token_urlsafe(32)
    new_token = insert(settings_table, engine.dialect.name)
    # One upsert, not a delete and an insert: of servers that start together on one
    # database, each replaces the token (the last one counts), and none fails on the key.
    upsert = new_token.values(name=_NAME, value=_digest(token)).on_conflict_do_update(
        index_elements=[settings_table.c.name], set_={"value": _digest(token)}
    )
    async with connect(engine, write=True) as connection:
        await connection.execute(upsert)
    return token


async def setup_token_valid(engine: AsyncEngine, token: object) -> bool:
    """Whether ``token`` is the current set-up token and set-up is still needed."""
    if not isinstance(token, str) or not token or len(token) > 200:
        return False
    if not await needs_setup(engine):
        return False
    async with connect(engine) as connection:
        stored = (
            await connection.execute(
                sa.select(settings_table.c.value).where(settings_table.c.name == _NAME)
            )
        ).scalar_one_or_none()
    return stored is not None and hmac.compare_digest(stored, _digest(token))


async def claim_setup_token(engine: AsyncEngine, token: object) -> bool:
    """Use the token up, atomically: of two requests racing with it, one wins."""
    if not await setup_token_valid(engine, token):
        return False
    assert isinstance(token, str)
    query = settings_table.delete().where(
        settings_table.c.name == _NAME, settings_table.c.value == _digest(token)
    )
    async with connect(engine, write=True) as connection:
        result = await connection.execute(query)
    return result.rowcount == 1
