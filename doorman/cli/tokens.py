"""``doorman tokens``: create, list and revoke API tokens."""

from __future__ import annotations

import dataclasses
import difflib
import time
from typing import TYPE_CHECKING, Any

import click

from ..accounts.permissions import BUILT_IN_ACTIONS, Rules, known_actions
from ..events import EventKind
from ..settings import Settings, parse_duration
from ._options import from_cli, json_option, run, settings_options, with_doorman
from ._output import echo_json, echo_table, when

if TYPE_CHECKING:
    from ..core import Doorman


class Lifetime(click.ParamType[int | None]):
    """A lifetime: 90d, 12h, 30m, 3600s, a number of seconds, or never (None)."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> int | None:
        if value is None or (isinstance(value, str) and value.strip().lower() == "never"):
            return None
        try:
            return parse_duration(value)
        except ValueError as error:
            self.fail(f"{error}, or never", param, ctx)


@click.group("tokens")
def tokens() -> None:
    """Create, list and revoke API tokens."""


@tokens.command("create")
@click.argument("username")
@click.option(
    "--expires",
    type=Lifetime(),
    default="90d",
    show_default=True,
    metavar="DURATION",
    help="90d, 12h, 30m, 3600s, or never for a token that does not expire.",
)
@click.option("--name", default="", help="A label to recognise the token by.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    metavar="ACTION",
    help="Allow only this action (repeat): one of doorman's "
    f"({', '.join(sorted(BUILT_IN_ACTIONS))}) or one named under [permissions] in the settings.",
)
@settings_options("db")
def create_token(
    settings: Settings, username: str, expires: int | None, name: str, scopes: tuple[str, ...]
) -> None:
    """Make an API token for a user and print it, once: only its hash is kept."""
    _check_scopes(scopes, known_actions(Rules(settings.permissions)))

    async def create(doorman: Doorman) -> tuple[Any, str]:
        user = await doorman.users.require(username)
        token, text = await doorman.tokens.create(
            user, name=name, expires_in=expires, scopes=scopes or None
        )
        detail = from_cli(token_id=token.id, name=name, scopes=list(scopes) or None)
        await doorman.events.record(EventKind.TOKEN_CREATED, user=user, detail=detail)
        return token, text

    token, text = run(with_doorman(settings, create))
    click.echo(text)
    until = f"valid until {when(token.expires_at)}" if token.expires_at else "never expires"
    click.echo(f"token {token.id} for {username}, {until}; it will not be shown again", err=True)


def _check_scopes(scopes: tuple[str, ...], known: list[str]) -> None:
    """Refuse, in one line, a scope that names no action: the token could never do it."""
    for scope in scopes:
        if scope not in known:
            close = difflib.get_close_matches(scope, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise click.ClickException(
                f"--scope {scope!r} is not an action; {hint}choose from {', '.join(known)}, "
                "or name your own under [permissions] in the settings"
            )


@tokens.command("list")
@click.option("--user", "username", metavar="USERNAME", help="Only this user's tokens.")
@click.option("--all", "include_dead", is_flag=True, help="Include revoked and expired tokens.")
@json_option
@settings_options("db")
def list_tokens(
    settings: Settings, username: str | None, include_dead: bool, as_json: bool
) -> None:
    """List API tokens (never the tokens themselves), newest first."""

    async def every_token(doorman: Doorman) -> list[Any]:
        user = None if username is None else await doorman.users.require(username)
        return await doorman.tokens.list(user, include_dead=include_dead)

    found = run(with_doorman(settings, every_token))
    if as_json:
        echo_json([_public(dataclasses.asdict(token), "user_id") for token in found])
        return
    now = time.time()
    rows = [
        (t.id, t.username, t.name, _scopes(t.scopes), when(t.created_at),
         when(t.last_used_at) or "never", _expiry(t, now))
        for t in found
    ]  # fmt: skip
    headers = ("ID", "USER", "NAME", "SCOPES", "CREATED", "LAST USED", "EXPIRES")
    echo_table(headers, rows, "no tokens")


def _public(record: dict[str, Any], *internal: str) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key not in internal}


def _scopes(scopes: tuple[str, ...] | None) -> str:
    """A token's scopes; "any" when it is not limited to some actions."""
    if scopes is None:
        return "any"
    return ",".join(scopes) or "none"


def _expiry(token: Any, now: float) -> str:
    if token.revoked_at is not None:
        return "revoked"
    if not token.is_live(now):
        return "expired"
    return when(token.expires_at) or "never"


@tokens.command("revoke")
@click.argument("token_id", metavar="ID")
@settings_options("db")
def revoke_token(settings: Settings, token_id: str) -> None:
    """Revoke an API token by its ID (as shown by doorman tokens list)."""

    async def revoke(doorman: Doorman) -> bool:
        token = await doorman.tokens.get(token_id)
        if not await doorman.tokens.revoke(token_id):
            return False
        user = await doorman.users.get(token.user_id) if token is not None else None
        detail = from_cli(token_id=token_id[:64])
        await doorman.events.record(EventKind.TOKEN_REVOKED, user=user, detail=detail)
        return True

    if not run(with_doorman(settings, revoke)):
        raise click.ClickException(
            f"no live token with the ID {token_id!r}; see doorman tokens list"
        )
    click.echo(f"revoked token {token_id}")
