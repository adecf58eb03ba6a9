"""``doorman serve``: the sign-in server, under uvicorn."""

from __future__ import annotations

import dataclasses
import os

import click

from ..assembly import close_doorman, open_doorman
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
    finally:
        await close_doorman(doorman, store)
    return dataclasses.replace(settings, secret=tuple(secrets)), token
