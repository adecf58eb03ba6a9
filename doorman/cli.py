"""The ``doorman`` command. Each command is thin: it calls library code."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

from . import __version__
from .exceptions import DoormanError
from .stores import open_store

F = TypeVar("F", bound=Callable[..., Any])


def store_options(command: F) -> F:
    """``--db`` and ``--sessions``, shared by every command that opens the session store."""
    command = click.option(
        "--sessions",
        "sessions_spec",
        envvar="DOORMAN_SESSIONS",
        default="db",
        show_default=True,
        metavar="STORE",
        help="Session store: db (the database), cookie, memory or a redis:// URL.",
    )(command)
    return click.option(
        "--db",
        envvar="DOORMAN_DB",
        default="doorman.db",
        show_default=True,
        metavar="DB",
        help="SQLite path or postgresql:// URL.",
    )(command)


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run library code; its errors become one line on stderr and exit status 1."""
    try:
        return asyncio.run(coroutine)
    except DoormanError as error:
        raise click.ClickException(str(error)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="doorman")
def main() -> None:
    """doorman: sessions, accounts and sign-in for ASGI apps."""


@main.group()
def sessions() -> None:
    """Look after stored sessions."""


async def _with_store(spec: str, db: str, action: Callable[[Any], Any]) -> Any:
    store = open_store(spec, db=db)
    try:
        return await action(store)
    finally:
        await store.close()


def _server_side(spec: str, what: str) -> None:
    if spec in ("cookie", "memory"):
        where = "in browsers" if spec == "cookie" else "inside each running process"
        fix = "; rotate the secret to end them all" if spec == "cookie" else ""
        raise click.ClickException(f"{spec} sessions live {where}, so they cannot be {what}{fix}")


@sessions.command("clear-expired")
@store_options
def clear_expired(db: str, sessions_spec: str) -> None:
    """Delete expired sessions from the store (Redis does this by itself)."""
    _server_side(sessions_spec, "swept")

    async def sweep(store: Any) -> int:
        await store.ping()  # say so when the store is down, rather than "removed 0"
        return int(await store.clear_expired())

    removed = run(_with_store(sessions_spec, db, sweep))
    click.echo(f"removed {removed} expired session{'s' if removed != 1 else ''}")


@sessions.command("flush")
@store_options
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def flush(db: str, sessions_spec: str, yes: bool) -> None:
    """Delete every session: everyone is signed out."""
    _server_side(sessions_spec, "flushed")
    if not yes:
        click.confirm("Sign everyone out by deleting every session?", abort=True)
    removed = run(_with_store(sessions_spec, db, lambda store: store.flush()))
    click.echo(f"deleted {removed} session{'s' if removed != 1 else ''}")
