"""``doorman serve``: the sign-in server, under uvicorn."""

from __future__ import annotations

import dataclasses
import os

import click
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ..assembly import close_doorman, open_doorman
from ..db.transaction import connect
from ..settings import SERVE_SETTINGS_ENV, Settings
from ._options import run, settings_options
from ._uvicorn import check_can_listen, run_uvicorn

#: The settings that ``serve`` (and ``protect``) take as flags.
SERVE_SETTINGS = ("db", "sessions", "host", "port", "workers", "plugins_dir", "template_dir")


@click.command("serve")
@settings_options(*SERVE_SETTINGS, existing_database=False)
def serve(settings: Settings) -> None:
    """Run the sign-in server (uvicorn).

    Migrates the database and settles the secret first; when there are no users
    yet, prints a one-time link that creates the first admin once the server listens.
    """
    check_can_listen(settings)
    resolved, token = run(prepare_serve(settings))
    os.environ[SERVE_SETTINGS_ENV] = resolved.to_json()  # the workers read it: one secret
    run_uvicorn("doorman.server.workers:serve_app", resolved, token)


async def prepare_serve(settings: Settings) -> tuple[Settings, str | None]:
    """Check once what every worker will need: packages, database, secret, store, plugins.

    Returns the settings with the secret resolved, and a set-up token when
    there are no users yet.
    """
    from ..server import app  # noqa: F401 - MissingDependency without the server extra
    from ..server.redirects import login_landing
    from ..server.setup import issue_setup_token

    login_landing(settings, prefix=settings.route_prefix.rstrip("/"))  # ConfigError if not allowed
    doorman, store, secrets = await open_doorman(settings)
    try:
        await store.ping()
        token = await issue_setup_token(doorman.engine)
        short = await connections_short(settings, doorman.engine)
    finally:
        await close_doorman(doorman, store)
    if short:
        click.echo(f"doorman serve: warning: {short}", err=True)
    return dataclasses.replace(settings, secret=tuple(secrets)), token


_LIMITS = sa.text(
    "SELECT current_setting('max_connections'), current_setting('superuser_reserved_connections')"
)


async def connections_short(settings: Settings, engine: AsyncEngine) -> str | None:
    """What to say when the workers may open more connections than PostgreSQL admits.

    Each worker's pool opens up to ``db_pool_size`` under a burst: beyond what the
    server admits, sign-ins get "too many clients" and answer 503.
    """
    if engine.dialect.name != "postgresql":
        return None
    async with connect(engine) as connection:
        row = (await connection.execute(_LIMITS)).one()
    most, reserved = int(row[0]), int(row[1])
    wanted, admitted = settings.workers * settings.db_pool_size, most - reserved
    if wanted <= admitted:
        return None
    return (
        f"{settings.workers} workers with db_pool_size {settings.db_pool_size} may open "
        f"{wanted} connections to PostgreSQL, which admits {admitted} (max_connections "
        f"{most}, {reserved} kept for superusers): a burst of requests would get 503s. "
        "Lower --workers or db_pool_size, or raise max_connections."
    )
