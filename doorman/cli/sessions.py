"""``doorman sessions``: list, end and sweep signed-in sessions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ..events import EventKind
from ..settings import Settings
from ._options import (
    from_cli,
    json_option,
    revoke_tokens_option,
    run,
    settings_options,
    with_doorman,
    with_store,
    yes_option,
)
from ._output import echo_json, echo_table, plural, tokens_note, when

if TYPE_CHECKING:
    from ..core import Doorman
    from ..stores.base import SessionStore


@click.group("sessions")
def sessions() -> None:
    """List, end and sweep signed-in sessions."""


@sessions.command("list")
@click.argument("username", required=False)
@json_option
@settings_options("db", "sessions")
def list_sessions(settings: Settings, username: str | None, as_json: bool) -> None:
    """List sign-ins (of everyone, or of USERNAME), most recently seen first."""

    async def signins(doorman: Doorman) -> list[Any]:
        user = None if username is None else await doorman.users.require(username)
        return await doorman.signins.list(user)

    found = run(with_doorman(settings, signins))
    if as_json:
        keys = ("id", "username", "address", "user_agent", "created_at", "last_seen")
        echo_json([{key: getattr(signin, key) for key in keys} for signin in found])
        return
    rows = [
        (s.username, s.address, _shorten(s.user_agent), when(s.created_at), when(s.last_seen))
        for s in found
    ]
    echo_table(("USER", "ADDRESS", "BROWSER", "CREATED", "LAST SEEN"), rows, "no sign-ins")


def _shorten(text: str, width: int = 50) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


@sessions.command("revoke")
@click.argument("username")
@revoke_tokens_option(default=False)
@settings_options("db", "sessions")
def revoke_sessions(settings: Settings, username: str, revoke_tokens: bool) -> None:
    """Sign a user out everywhere, in every store (signed cookies included).

    Their API tokens keep working unless --revoke-tokens.
    """

    async def revoke(doorman: Doorman) -> int:
        user = await doorman.users.require(username)
        live = len(await doorman.tokens.list(user))
        await doorman.end_sessions(user, revoke_tokens=revoke_tokens)
        detail = from_cli(tokens_revoked=revoke_tokens and live > 0)
        await doorman.events.record(EventKind.SESSIONS_ENDED, user=user, detail=detail)
        return live

    live = run(with_doorman(settings, revoke))
    note = (
        tokens_note(live, one="was revoked", many="were revoked")
        if revoke_tokens
        else tokens_note(live, one="still works", many="still work")
    )
    click.echo(f"signed {username} out everywhere{note}")


def _elsewhere(spec: str) -> str | None:
    """Where sessions of a store live when it is not a server-side one, else None."""
    return {"cookie": "in browsers", "memory": "inside each running process"}.get(spec)


@sessions.command("clear-expired")
@settings_options("db", "sessions")
def clear_expired(settings: Settings) -> None:
    """Delete expired sessions, stale sign-ins and ended throttle windows (cron this)."""
    where = _elsewhere(settings.sessions)

    async def sweep(doorman: Doorman, store: SessionStore) -> list[str]:
        done = []
        if where is None:
            await store.ping()  # say so when the store is down, rather than "removed 0"
            done.append(plural(int(await store.clear_expired()), "expired session"))
        stale = await doorman.signins.clear_stale(older_than=settings.session_max_age)
        ended = await doorman.throttle.counter.clear_expired()
        return [*done, plural(stale, "stale sign-in"), plural(ended, "ended throttle window")]

    if where is not None:
        click.echo(f"note: {settings.sessions} sessions live {where}: none to sweep", err=True)
    click.echo("removed " + ", ".join(run(with_store(settings, sweep))))


@sessions.command("flush")
@yes_option
@settings_options("db", "sessions")
def flush(settings: Settings, yes: bool) -> None:
    """Delete every session and sign-in: everyone is signed out."""
    where = _elsewhere(settings.sessions)
    if where is not None:
        fix = "rotate the secret" if settings.sessions == "cookie" else "restart the server"
        raise click.ClickException(
            f"{settings.sessions} sessions live {where}, so they cannot be flushed; {fix}"
            " to end them all"
        )
    if not yes:
        click.confirm("Sign everyone out by deleting every session?", abort=True)

    async def flush_all(doorman: Doorman, store: SessionStore) -> int:
        removed = int(await store.flush())  # type: ignore[attr-defined]
        await doorman.signins.clear_stale(older_than=0)  # not seen for 0 s: every one
        detail = from_cli(everyone=True)
        await doorman.events.record(EventKind.SESSIONS_ENDED, detail=detail)
        return removed

    click.echo(f"deleted {plural(run(with_store(settings, flush_all)), 'session')}")
