"""``doorman users``: create, list and change user accounts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ..accounts.event_log import edit_detail
from ..accounts.factor_status import describe_factors, factors_json, reset_detail
from ..events import EventKind
from ..mail import Outbox
from ..mail.links import LinkBuilder
from ..settings import Settings
from ._options import (
    from_cli,
    json_option,
    password_option,
    read_password,
    revoke_tokens_option,
    run,
    settings_options,
    with_doorman,
    yes_option,
)
from ._output import echo_json, echo_table, tokens_note, when

if TYPE_CHECKING:
    from ..core import Doorman


@click.group("users")
def users() -> None:
    """Create, list and change user accounts."""


@users.command("create")
@click.argument("username")
@click.option("--email", metavar="E", help="The user's email address.")
@click.option("--admin", is_flag=True, help="Make the user an admin.")
@click.option("--group", "groups", multiple=True, metavar="NAME", help="Add to a group (repeat).")
@password_option
@settings_options("db", existing_database=False)
def create_user(
    settings: Settings,
    username: str,
    email: str | None,
    admin: bool,
    groups: tuple[str, ...],
    password_stdin: bool,
) -> None:
    """Add a user; the password is asked for (or read with --password-stdin) and checked."""

    async def create(doorman: Doorman) -> str:
        if await doorman.users.by_username(username) is not None:  # ask before the password
            raise click.ClickException(f"the username {username!r} is taken")
        password = read_password(password_stdin)
        user = await doorman.create_user(
            username, password, email=email, admin=admin, groups=groups
        )
        await doorman.events.record(
            EventKind.USER_CREATED, user=user, detail=from_cli(admin=user.is_admin)
        )
        return f"created {'admin' if user.is_admin else 'user'} {user.username}"

    click.echo(run(with_doorman(settings, create)))


@users.command("list")
@click.option("--search", metavar="TEXT", help="Only users whose username or email has TEXT.")
@json_option
@settings_options("db")
def list_users(settings: Settings, search: str | None, as_json: bool) -> None:
    """List users: username, email, admin, active, groups, second factors, last login."""

    async def every_user(doorman: Doorman) -> list[Any]:
        found: list[Any] = []
        while page := await doorman.users.list(search=search, limit=500, offset=len(found)):
            factors = await doorman.factors.summaries([user.id for user in page])
            found.extend((user, factors[user.id]) for user in page)
        return found

    listed = run(with_doorman(settings, every_user))
    if as_json:
        echo_json([{**u.public_fields(), "two_factor": factors_json(f)} for u, f in listed])
        return
    yes = {True: "yes", False: "no"}
    rows = [
        (u.username, u.email, yes[u.is_admin], yes[u.is_active], ", ".join(u.groups),
         describe_factors(f), when(u.last_login) or "never")
        for u, f in listed
    ]  # fmt: skip
    headers = ("USERNAME", "EMAIL", "ADMIN", "ACTIVE", "GROUPS", "2FA", "LAST LOGIN")
    echo_table(headers, rows, "no users")


@users.command("edit")
@click.argument("username")
@click.option("--email", metavar="E", help='A new email address; "" removes it.')
@click.option("--admin/--no-admin", default=None, help="Make the user an admin, or not.")
@click.option(
    "--groups",
    metavar="A,B",
    help='The groups, comma-separated, instead of the current ones; "" for none.',
)
@settings_options("db")
def edit_user(
    settings: Settings, username: str, email: str | None, admin: bool | None, groups: str | None
) -> None:
    """Change a user's email, admin flag or groups; what is not given stays."""
    if email is None and admin is None and groups is None:
        raise click.ClickException(
            "nothing to change: give --email, --admin/--no-admin or --groups"
        )
    names = None if groups is None else [name.strip() for name in groups.split(",") if name.strip()]

    async def change(doorman: Doorman) -> Any:
        user = await doorman.users.require(username)
        edited = await doorman.users.edit(user, email=email, admin=admin, groups=names)
        detail = edit_detail(user, edited)
        if detail is not None:
            await doorman.events.record(
                EventKind.USER_EDITED, user=edited, detail={**from_cli(), **detail}
            )
        return edited

    user = run(with_doorman(settings, change))
    given = {"email": email is not None, "admin": admin is not None, "groups": names is not None}
    click.echo(f"{user.username}: {_what_is_now(user, given)}")


def _what_is_now(user: Any, given: dict[str, bool]) -> str:
    """The fields that were given, as they are now: "email a@example.com; an admin"."""
    now = {
        "email": f"email {user.email}" if user.email else "no email",
        "admin": "an admin" if user.is_admin else "not an admin",
        "groups": f"groups {', '.join(user.groups)}" if user.groups else "no groups",
    }
    return "; ".join(words for name, words in now.items() if given[name])


@users.command("passwd")
@click.argument("username")
@password_option
@revoke_tokens_option(default=True)
@settings_options("db")
def passwd(settings: Settings, username: str, password_stdin: bool, revoke_tokens: bool) -> None:
    """Set a user's password (checked); their sessions end and their API tokens are revoked.

    A reset usually follows a compromise, so the tokens go too, unless --keep-tokens.
    """

    async def change(doorman: Doorman) -> int:
        user = await doorman.users.require(username)
        live = len(await doorman.tokens.list(user))
        await doorman.set_password(user, read_password(password_stdin), revoke_tokens=revoke_tokens)
        detail = from_cli(tokens_revoked=revoke_tokens and live > 0)
        await doorman.events.record(EventKind.PASSWORD_CHANGED, user=user, detail=detail)
        return live

    live = run(with_doorman(settings, change))
    note = (
        tokens_note(live, one="was revoked", many="were revoked")
        if revoke_tokens
        else tokens_note(live, one="still works", many="still work")
    )
    click.echo(f"changed the password of {username}; their sessions have ended{note}")


@users.command("disable")
@click.argument("username")
@revoke_tokens_option(default=True)
@settings_options("db")
def disable(settings: Settings, username: str, revoke_tokens: bool) -> None:
    """Stop a user from signing in; end their sessions and revoke their API tokens.

    With --keep-tokens the tokens only stop working while the user is disabled.
    """

    async def change(doorman: Doorman) -> int:
        user = await doorman.users.require(username)
        live = len(await doorman.tokens.list(user))
        user = await doorman.users.set_active(user, False)
        await doorman.end_sessions(user, revoke_tokens=revoke_tokens)
        detail = from_cli(tokens_revoked=revoke_tokens and live > 0)
        await doorman.events.record(EventKind.USER_DISABLED, user=user, detail=detail)
        return live

    live = run(with_doorman(settings, change))
    if revoke_tokens:
        note = tokens_note(live, one="was revoked", many="were revoked")
    else:
        note = tokens_note(live, one="stops working", many="stop working") + (
            " until they are enabled" if live else ""
        )
    click.echo(f"disabled {username} and ended their sessions{note}")


@users.command("enable")
@click.argument("username")
@settings_options("db")
def enable(settings: Settings, username: str) -> None:
    """Let a disabled user sign in again; their API tokens that were kept work again."""

    async def change(doorman: Doorman) -> int:
        user = await doorman.users.set_active(await doorman.users.require(username), True)
        await doorman.events.record(EventKind.USER_ENABLED, user=user, detail=from_cli())
        return len(await doorman.tokens.list(user))

    live = run(with_doorman(settings, change))
    click.echo(f"enabled {username}{tokens_note(live, one='works again', many='work again')}")


@users.command("delete")
@click.argument("username")
@yes_option
@settings_options("db")
def delete_user(settings: Settings, username: str, yes: bool) -> None:
    """Delete a user with their tokens, group memberships and sessions."""

    async def delete(doorman: Doorman) -> None:
        user = await doorman.users.require(username)
        if not yes:
            click.confirm(f"Delete the user {user.username} for good?", abort=True)
        await doorman.users.delete(user)
        await doorman.events.record(EventKind.USER_DELETED, user=user, detail=from_cli())

    run(with_doorman(settings, delete))
    click.echo(f"deleted {username}")


@users.command("two-factor")
@click.argument("username")
@click.option("--reset", is_flag=True, help="Take every second factor away.")
@json_option
@settings_options("db")
def two_factor(settings: Settings, username: str, reset: bool, as_json: bool) -> None:
    """Show a user's second factors; with --reset, take them all away (TOTP, passkeys and
    recovery codes), for someone who lost them: they then sign in with their password."""

    async def status(doorman: Doorman) -> Any:
        user = await doorman.users.require(username)
        if not reset:
            return await doorman.factors.summary(user.id)
        had = await doorman.factors.reset(user.id)
        if had.totp or had.passkeys or had.recovery_codes:
            detail = from_cli(**reset_detail(had))
            await doorman.events.record(EventKind.TWO_FACTOR_RESET, user=user, detail=detail)
        return had

    summary = run(with_doorman(settings, status))
    if as_json:
        echo_json({"username": username, "reset": reset, **factors_json(summary)})
    elif reset:
        had = describe_factors(summary)
        gone = "had no second factor" if had == "none" else f"second factors reset (had {had})"
        click.echo(f"{username}: {gone}")
    else:
        click.echo(f"{username}: {describe_factors(summary)}")


@users.command("reset-link")
@click.argument("username")
@settings_options("db", "public_url")
def reset_link(settings: Settings, username: str) -> None:
    """Print a one-time link for USERNAME to choose a new password, to hand over yourself.

    It starts with public_url and works once, for password_reset_max_age; a
    new password or a sign-in ends it sooner. Nothing is mailed.
    """
    links = LinkBuilder.from_settings(settings)

    async def make(doorman: Doorman) -> str:
        user = await doorman.users.require(username)
        if not user.is_active:
            raise click.ClickException(f"{user.username} is disabled: enable them first")
        link = links.url("password-reset", doorman.links.make("password-reset", user))
        await doorman.events.record(
            EventKind.PASSWORD_RESET_REQUESTED, user=user, detail=from_cli()
        )
        return link

    click.echo(run(with_doorman(settings, make)))


@users.command("invite")
@click.argument("email")
@click.option("--admin", is_flag=True, help="The new account is an admin.")
@click.option("--groups", default="", metavar="a,b", help="Groups of the new account.")
@settings_options("db", "public_url")
def invite(settings: Settings, email: str, admin: bool, groups: str) -> None:
    """Invite EMAIL to make an account: mailed when smtp_url is set, else printed.

    The link lets the invitee choose a username and password, once, within a
    week; registration must be "invite" or "open".
    """
    if settings.registration_mode == "closed":
        raise click.ClickException(
            'this site takes no invitations: set registration = "invite" (or "open") first'
        )
    outbox = Outbox.from_settings(settings)
    names = tuple(name.strip() for name in groups.split(",") if name.strip())

    async def send(doorman: Doorman) -> str:
        outbox.links.base()  # NoTrustedOrigin before anything is written
        invitation, token = await doorman.invitations.create(email, admin=admin, groups=names)
        link = outbox.links.url("invite", token)
        if outbox.can_send:
            await outbox.send(
                "invitation",
                to=invitation.email,
                link=link,
                invited_by="",
                valid_for=f"{doorman.invitations.max_age // 86400} days",
            )
        detail = from_cli(email=invitation.email, admin=admin, sent=outbox.can_send)
        await doorman.events.record(EventKind.INVITATION_SENT, detail=detail)
        return f"sent an invitation to {invitation.email}" if outbox.can_send else link

    click.echo(run(with_doorman(settings, send)))
