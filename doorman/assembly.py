"""Assembly: the ``Doorman`` and its session store, built from ``Settings`` at start-up.

``open_doorman`` migrates the database, resolves the secret (configured, or
the one kept in the database since the first start) and builds both on one
engine; ``close_doorman`` closes what it opened. ``doorman serve``, the CLI and
the Datasette plugin start this way; an app that builds ``Doorman(...)``
itself does not need it.
"""

from __future__ import annotations

import logging
import secrets as secrets_module
from collections.abc import Sequence
from typing import TYPE_CHECKING

import sqlalchemy as sa

from .db.engine import create_engine, insert
from .db.migrations import ensure_schema
from .db.schema import settings_table
from .db.transaction import connect
from .exceptions import ConfigError
from .settings import Settings
from .signing import normalize_secrets

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from .core import Doorman
    from .stores.base import SessionStore

__all__ = [
    "COOKIE_SIGNED_WITH_STORED_KEY",
    "SECRET_ROW",
    "assemble",
    "close_doorman",
    "open_doorman",
    "resolve_secrets",
    "secret_in_database",
    "warn_about_secret",
]

security_log = logging.getLogger("doorman.security")

#: The row of ``doorman_settings`` that keeps the secret generated on first start.
SECRET_ROW = "secret"  # noqa: S105 - a row name, not a password


async def resolve_secrets(settings: Settings, engine: AsyncEngine) -> list[str]:
    """The configured secrets, else the one kept in the database (made on first start).

    Workers that start together agree: each offers a new secret, the first
    insert wins, and all read back the one that was kept.
    """
    await ensure_schema(engine)
    if settings.secret:
        try:
            normalize_secrets(list(settings.secret))
        except ConfigError as error:
            raise ConfigError(f"secret = <hidden>: {error}") from None
        return list(settings.secret)
    offering = insert(settings_table, engine.dialect.name)
    offer = {"name": SECRET_ROW, "value": secrets_module.token_urlsafe(48)}
    read = sa.select(settings_table.c.value).where(settings_table.c.name == SECRET_ROW)
    async with connect(engine, write=True) as connection:
        await connection.execute(offering.values(offer).on_conflict_do_nothing())
        kept = (await connection.execute(read)).scalar_one()
    if len(kept) < 32:
        raise ConfigError(
            "secret = <hidden> (from the doorman_settings table): shorter than 32 characters; "
            "delete that row to have a new one made, or set DOORMAN_SECRET"
        )
    return [kept]


#: Logged at start-up when the signed-cookie store signs with the database's secret.
COOKIE_SIGNED_WITH_STORED_KEY = (
    "sessions = cookie, and the secret that signs the session cookies is the one kept in the "
    "database (doorman_settings): anyone who can read the database, a copy or a backup of it "
    "can forge any session data. Set DOORMAN_SECRET to secrets of your own (newest first), "
    "without that one once its sessions have ended; see docs/security.md"
)


async def secret_in_database(engine: AsyncEngine, secrets: Sequence[str]) -> bool:
    """Whether one of ``secrets`` is the one kept in the database's ``doorman_settings``."""
    read = sa.select(settings_table.c.value).where(settings_table.c.name == SECRET_ROW)
    async with connect(engine) as connection:
        kept = (await connection.execute(read)).scalar_one_or_none()
    return kept is not None and any(
        secrets_module.compare_digest(kept.encode(), secret.encode()) for secret in secrets
    )


async def warn_about_secret(
    store: SessionStore, engine: AsyncEngine, secrets: Sequence[str]
) -> None:
    """Log ``COOKIE_SIGNED_WITH_STORED_KEY`` at WARNING when it applies to ``store``."""
    if store.stateless and await secret_in_database(engine, secrets):
        security_log.warning(COOKIE_SIGNED_WITH_STORED_KEY)


def assemble(
    settings: Settings, secrets: Sequence[str], *, engine: AsyncEngine | None = None
) -> tuple[Doorman, SessionStore]:
    """The ``Doorman`` and session store ``settings`` describe, on one engine.

    ``secrets`` must be resolved already (``resolve_secrets``). Nothing is
    opened yet: connections come on first use.
    """
    from .accounts.throttle import ThrottleLimits
    from .core import Doorman
    from .stores import open_store
    from .stores.sql import SQLStore

    if engine is None:
        engine = create_engine(settings.db, connections=settings.db_pool_size)
    store: SessionStore
    if settings.sessions == "db":
        store = SQLStore(engine=engine)
    else:
        store = open_store(settings.sessions, db=settings.db)
    limits = ThrottleLimits(
        per_account=settings.throttle_per_account,
        per_address=settings.throttle_per_address,
        registrations=settings.throttle_registrations,
        window=settings.throttle_window,
    )
    doorman = Doorman(
        engine=engine,
        secret=list(secrets),
        sessions=store,
        throttle_limits=limits,
        rules=settings.permissions,
        plugins_dir=settings.plugins_dir,
        password_min_length=settings.password_min_length,
        link_max_ages={"password-reset": settings.password_reset_max_age},
    )
    return doorman, store


async def open_doorman(settings: Settings) -> tuple[Doorman, SessionStore, list[str]]:
    """The ``Doorman``, its session store and the secrets, as ``settings`` say.

    Migrates the database and resolves the secret first. The engine is shared
    by all three and owned by none of them: close with ``close_doorman``.
    """
    engine = create_engine(settings.db, connections=settings.db_pool_size)
    try:
        found = await resolve_secrets(settings, engine)
        doorman, store = assemble(settings, found, engine=engine)
    except BaseException:
        await engine.dispose()
        raise
    return doorman, store, found


async def close_doorman(doorman: Doorman, store: SessionStore) -> None:
    """Close what ``open_doorman`` opened: the store, the ``Doorman`` and the engine."""
    try:
        await store.close()
        await doorman.close()
    finally:
        await doorman.engine.dispose()
