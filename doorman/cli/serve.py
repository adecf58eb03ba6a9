"""``doorman serve``: the sign-in server, under uvicorn."""

from __future__ import annotations

import dataclasses
import importlib
import os
import urllib.parse
from typing import Any

import click

from ..config import SERVE_SETTINGS_ENV, Settings, close_doorman, open_doorman
from ._options import run, settings_options

#: The settings that ``serve`` (and ``protect``) take as flags.
SERVE_SETTINGS = ("db", "sessions", "host", "port", "workers", "plugins_dir", "template_dir")


@click.command("serve")
@settings_options(*SERVE_SETTINGS, existing_database=False)
def serve(settings: Settings) -> None:
    """Run the sign-in server (uvicorn).

    Migrates the database and settles the secret first; when there are no users
    yet, prints a one-time link that creates the first admin.
    """
    try:
        import uvicorn
    except ImportError:
        raise click.ClickException(
            "the sign-in server needs uvicorn: pip install 'doorman[server]'"
        ) from None
    resolved, token = run(_prepare_serve(settings))
    if token is not None:
        click.echo(f"Create the first admin at {_setup_url(resolved, token)}")
    os.environ[SERVE_SETTINGS_ENV] = resolved.to_json()  # the workers read it: one secret
    uvicorn.run("doorman.server.app:from_environment", **uvicorn_options(resolved))


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How ``serve`` and ``protect`` run uvicorn (the app aside)."""
    from ..server.access_log import uvicorn_log_config

    return {
        "factory": True,
        "host": settings.host,
        "port": settings.port,
        "workers": settings.workers,
        "proxy_headers": True,
        "forwarded_allow_ips": settings.forwarded_allow_ips,
        "log_level": "info",
        "log_config": uvicorn_log_config(settings.access_log),
        "access_log": False,  # doorman's own, without query strings: see server/access_log.py
        "lifespan": "on",  # a failed start-up stops the server rather than serving without it
        "server_header": False,  # no "server: uvicorn" advertised on every answer
    }


async def _prepare_serve(settings: Settings) -> tuple[Settings, str | None]:
    """Check everything a worker will need, once: database, secret, store, plugins."""
    try:
        setup = importlib.import_module("doorman.server.setup")
    except ImportError as error:
        raise click.ClickException(
            f"the sign-in server cannot be imported ({error}); pip install 'doorman[server]'"
        ) from None
    doorman, store, secrets = await open_doorman(settings)
    try:
        await store.ping()
        token: str | None = await setup.issue_setup_token(doorman.engine)
    finally:
        await close_doorman(doorman, store)
    return dataclasses.replace(settings, secret=tuple(secrets)), token


def _setup_url(settings: Settings, token: str) -> str:
    if settings.public_url:
        base = settings.public_url
    else:
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(settings.host, settings.host)  # noqa: S104
        host = f"[{host}]" if ":" in host else host
        base = f"http://{host}:{settings.port}"
    return f"{base}{settings.route_prefix}setup?token={urllib.parse.quote(token)}"
