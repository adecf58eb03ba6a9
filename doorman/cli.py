"""The ``doorman`` command. Each command is thin: it calls library code.

Settings come from ``load_settings`` (defaults < doorman.toml < DOORMAN_* <
flags); the flags are shared decorators. Every error is one line on stderr and
exit status 1, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import importlib
import json
import os
import sys
import threading
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from . import __version__
from .config import (
    SERVE_SETTINGS_ENV,
    SETTINGS,
    Settings,
    close_doorman,
    load_settings,
    open_doorman,
    parse_duration,
)
from .exceptions import DoormanError, PasswordRejected
from .plugins import list_plugins, make_plugin_manager

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from .core import Doorman
    from .stores.base import SessionStore

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
_SETTINGS = {setting.name: setting for setting in SETTINGS}
#: ``doorman serve`` hands the resolved settings to its workers in this variable.
_METAVARS = {"sessions": "STORE", "workers": "N", "plugins_dir": "DIR"}


# -- errors, settings and shared options -----------------------------------------


def _one_line(text: str) -> str:
    return " ".join(text.split())


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Library errors become one line on stderr and exit status 1 (``ClickException``)."""
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except PasswordRejected as error:
        raise click.ClickException("password rejected: " + "; ".join(error.problems)) from None
    except DoormanError as error:
        raise click.ClickException(_one_line(str(error))) from None
    except CommandError as error:  # a database migrated by a newer doorman, say
        raise click.ClickException(f"migrations: {_one_line(str(error))}") from None
    except SQLAlchemyError as error:
        cause = _one_line(str(getattr(error, "orig", None) or error))[:200]
        raise click.ClickException(f"database: {type(error).__name__}: {cause}") from None


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run library code; its errors become one line on stderr and exit status 1."""
    with one_line_errors():
        return asyncio.run(_settled(coroutine))


async def _settled(coroutine: Coroutine[Any, Any, T]) -> T:
    """Await ``coroutine``, then the SQLite threads it started, while the loop still runs.

    aiosqlite ends a connection that failed to open on its own thread, which then
    reports to the loop: were the loop closed by then, that thread would print a
    traceback after our one-line error.
    """
    before = set(threading.enumerate())
    try:
        return await coroutine
    finally:
        for thread in set(threading.enumerate()) - before:
            if "_connection_worker_thread" in thread.name:
                await asyncio.to_thread(thread.join, 5)


def settings_options(*names: str) -> Callable[[F], F]:
    """``--config`` and a flag per setting in ``names``; the command gets ``settings``.

    The flags' help comes from the settings table; their values go through
    ``load_settings`` like the file's and the environment's, so they are checked
    (and reported) the same way.
    """

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def wrapper(*args: Any, config_file: str | None, **kwargs: Any) -> Any:
            overrides = {name: kwargs.pop(name) for name in names}
            with one_line_errors():
                settings = load_settings(config_file=config_file, overrides=overrides)
            return command(*args, settings=settings, **kwargs)

        for name in reversed(names):
            setting = _SETTINGS[name]
            shown = "" if setting.default is None else f"; default: {setting.default}"
            wrapper = click.option(
                setting.flag,
                name,
                metavar=_METAVARS.get(name, name.upper()),
                help=f"{setting.help} [env {setting.env}{shown}]",
            )(wrapper)
        return click.option(  # type: ignore[return-value]
            "--config",
            "config_file",
            envvar="DOORMAN_CONFIG",
            metavar="FILE",
            help="Settings file (TOML). [env DOORMAN_CONFIG; default: ./doorman.toml if present]",
        )(wrapper)

    return decorate


def json_option(command: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(
        command
    )


def password_option(command: F) -> F:
    return click.option(
        "--password-stdin",
        is_flag=True,
        help="Read the password from the first line of standard input instead of a prompt.",
    )(command)


def yes_option(command: F) -> F:
    return click.option("--yes", is_flag=True, help="Do not ask for confirmation.")(command)


async def _with_doorman(settings: Settings, action: Callable[[Doorman], Awaitable[T]]) -> T:
    """Open the ``Doorman`` the settings describe, run ``action`` with it, close it."""
    doorman, store, _ = await open_doorman(settings)
    try:
        return await action(doorman)
    finally:
        await close_doorman(doorman, store)


def _read_password(from_stdin: bool) -> str:
    if not from_stdin:
        return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))
    line = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not line:
        raise click.ClickException(
            "--password-stdin: standard input has no password; pipe it in, such as: "
            "printf '%s\\n' \"$PASSWORD\" | doorman users create NAME --password-stdin"
        )
    return line


def _when(moment: float | None) -> str:
    return "" if moment is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(moment))


def _echo_table(headers: Sequence[str], rows: Sequence[Sequence[object]], empty: str) -> None:
    """Aligned columns, or ``empty`` when there are no rows."""
    if not rows:
        click.echo(empty, err=True)
        return
    cells = [list(headers), *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _echo_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


# -- the group, and plugins' commands -----------------------------------------------


class DoormanGroup(click.Group):
    """The ``doorman`` group: plugins' ``register_commands`` run once, before it does."""

    plugin_commands_loaded = False

    def main(self, *args: Any, **kwargs: Any) -> Any:
        self.load_plugin_commands()
        return super().main(*args, **kwargs)

    def load_plugin_commands(self) -> None:
        """Let installed plugins (entry points only) add commands; a broken one is one line."""
        if self.plugin_commands_loaded:
            return
        self.plugin_commands_loaded = True
        try:
            make_plugin_manager().hook.register_commands(cli=self)
        except Exception as error:  # a plugin's own code may raise anything
            message = _one_line(f"{type(error).__name__}: {error}")
            click.echo(f"doorman: plugin commands not loaded: {message}", err=True)


@click.group(cls=DoormanGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="doorman")
def main() -> None:
    """doorman: sessions, accounts and sign-in for ASGI apps."""


# -- serve ---------------------------------------------------------------------------


@main.command()
@settings_options("db", "sessions", "host", "port", "workers", "plugins_dir")
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
    uvicorn.run(
        "doorman.server.app:from_environment",
        factory=True,
        host=resolved.host,
        port=resolved.port,
        workers=resolved.workers,
        proxy_headers=True,
        forwarded_allow_ips=resolved.forwarded_allow_ips,
        log_level="info",
    )


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


# -- users ---------------------------------------------------------------------------


@main.group()
def users() -> None:
    """Create, list and change user accounts."""


@users.command("create")
@click.argument("username")
@click.option("--email", metavar="E", help="The user's email address.")
@click.option("--admin", is_flag=True, help="Make the user an admin.")
@click.option("--group", "groups", multiple=True, metavar="NAME", help="Add to a group (repeat).")
@password_option
@settings_options("db")
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
        password = _read_password(password_stdin)
        user = await doorman.create_user(
            username, password, email=email, admin=admin, groups=groups
        )
        return f"created {'admin' if user.is_admin else 'user'} {user.username}"

    click.echo(run(_with_doorman(settings, create)))


@users.command("list")
@click.option("--search", metavar="TEXT", help="Only users whose username or email has TEXT.")
@json_option
@settings_options("db")
def list_users(settings: Settings, search: str | None, as_json: bool) -> None:
    """List users: username, email, admin, active, groups, last login."""

    async def every_user(doorman: Doorman) -> list[Any]:
        found: list[Any] = []
        while page := await doorman.users.list(search=search, limit=500, offset=len(found)):
            found.extend(page)
        return found

    found = [_user_record(user) for user in run(_with_doorman(settings, every_user))]
    if as_json:
        _echo_json(found)
        return
    yes = {True: "yes", False: "no"}
    rows = [
        (u["username"], u["email"], yes[u["admin"]], yes[u["active"]], ", ".join(u["groups"]),
         _when(u["last_login"]) or "never")
        for u in found
    ]  # fmt: skip
    headers = ("USERNAME", "EMAIL", "ADMIN", "ACTIVE", "GROUPS", "LAST LOGIN")
    _echo_table(headers, rows, "no users")


def _user_record(user: Any) -> dict[str, Any]:
    """What ``users list --json`` says about a user: never the password hash."""
    return {
        "username": user.username,
        "email": user.email,
        "admin": user.is_admin,
        "active": user.is_active,
        "groups": list(user.groups),
        "created_at": user.created_at,
        "last_login": user.last_login,
    }


@users.command("passwd")
@click.argument("username")
@password_option
@settings_options("db")
def passwd(settings: Settings, username: str, password_stdin: bool) -> None:
    """Set a user's password (checked); every session of the user ends."""

    async def change(doorman: Doorman) -> None:
        user = await doorman.users.require(username)
        await doorman.set_password(user, _read_password(password_stdin))

    run(_with_doorman(settings, change))
    click.echo(f"changed the password of {username}; their sessions have ended")


@users.command("disable")
@click.argument("username")
@settings_options("db")
def disable(settings: Settings, username: str) -> None:
    """Stop a user from signing in, and end their sessions (tokens stop working too)."""

    async def change(doorman: Doorman) -> None:
        user = await doorman.users.set_active(await doorman.users.require(username), False)
        await doorman.end_sessions(user)

    run(_with_doorman(settings, change))
    click.echo(f"disabled {username} and ended their sessions")


@users.command("enable")
@click.argument("username")
@settings_options("db")
def enable(settings: Settings, username: str) -> None:
    """Let a disabled user sign in again."""

    async def change(doorman: Doorman) -> None:
        await doorman.users.set_active(await doorman.users.require(username), True)

    run(_with_doorman(settings, change))
    click.echo(f"enabled {username}")


@users.command("delete")
@click.argument("username")
@yes_option
@settings_options("db")
def delete_user(settings: Settings, username: str, yes: bool) -> None:
    """Delete a user with their tokens, groups memberships and sessions."""

    async def delete(doorman: Doorman) -> None:
        user = await doorman.users.require(username)
        if not yes:
            click.confirm(f"Delete the user {user.username} for good?", abort=True)
        await doorman.users.delete(user)

    run(_with_doorman(settings, delete))
    click.echo(f"deleted {username}")


# -- sessions ------------------------------------------------------------------------


@main.group()
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

    found = run(_with_doorman(settings, signins))
    if as_json:
        keys = ("id", "username", "address", "user_agent", "created_at", "last_seen")
        _echo_json([{key: getattr(signin, key) for key in keys} for signin in found])
        return
    rows = [
        (s.username, s.address, _shorten(s.user_agent), _when(s.created_at), _when(s.last_seen))
        for s in found
    ]
    _echo_table(("USER", "ADDRESS", "BROWSER", "CREATED", "LAST SEEN"), rows, "no sign-ins")


def _shorten(text: str, width: int = 50) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


@sessions.command("revoke")
@click.argument("username")
@settings_options("db", "sessions")
def revoke_sessions(settings: Settings, username: str) -> None:
    """Sign a user out everywhere, in every store (signed cookies included)."""

    async def revoke(doorman: Doorman) -> None:
        await doorman.end_sessions(await doorman.users.require(username))

    run(_with_doorman(settings, revoke))
    click.echo(f"signed {username} out everywhere")


def _elsewhere(spec: str) -> str | None:
    """Where sessions of a store live when it is not a server-side one, else None."""
    return {"cookie": "in browsers", "memory": "inside each running process"}.get(spec)


async def _with_store(
    settings: Settings, action: Callable[[Doorman, SessionStore], Awaitable[T]]
) -> T:
    doorman, store, _ = await open_doorman(settings)
    try:
        return await action(doorman, store)
    finally:
        await close_doorman(doorman, store)


@sessions.command("clear-expired")
@settings_options("db", "sessions")
def clear_expired(settings: Settings) -> None:
    """Delete expired sessions, stale sign-ins and ended throttle windows (cron this)."""
    where = _elsewhere(settings.sessions)

    async def sweep(doorman: Doorman, store: SessionStore) -> list[str]:
        done = []
        if where is None:
            await store.ping()  # say so when the store is down, rather than "removed 0"
            done.append(_plural(int(await store.clear_expired()), "expired session"))
        stale = await doorman.signins.clear_stale(older_than=settings.session_max_age)
        ended = await doorman.throttle.counter.clear_expired()
        return [*done, _plural(stale, "stale sign-in"), _plural(ended, "ended throttle window")]

    if where is not None:
        click.echo(f"note: {settings.sessions} sessions live {where}: none to sweep", err=True)
    click.echo("removed " + ", ".join(run(_with_store(settings, sweep))))


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
        return removed

    click.echo(f"deleted {_plural(run(_with_store(settings, flush_all)), 'session')}")


# -- tokens --------------------------------------------------------------------------


class Duration(click.ParamType[int]):
    """A lifetime: 90d, 12h, 30m, 3600s or a number of seconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            return parse_duration(value)
        except ValueError as error:
            self.fail(str(error), param, ctx)


@main.group()
def tokens() -> None:
    """Create, list and revoke API tokens."""


@tokens.command("create")
@click.argument("username")
@click.option("--expires", type=Duration(), metavar="DURATION", help="90d, 12h, 30m or 3600s.")
@click.option("--name", default="", help="A label to recognise the token by.")
@click.option(
    "--scope", "scopes", multiple=True, metavar="ACTION", help="Allow only this action (repeat)."
)
@settings_options("db")
def create_token(
    settings: Settings, username: str, expires: int | None, name: str, scopes: tuple[str, ...]
) -> None:
    """Make an API token for a user and print it, once: only its hash is kept."""

    async def create(doorman: Doorman) -> tuple[Any, str]:
        user = await doorman.users.require(username)
        return await doorman.tokens.create(
            user, name=name, expires_in=expires, scopes=scopes or None
        )

    token, text = run(_with_doorman(settings, create))
    click.echo(text)
    until = f", valid until {_when(token.expires_at)}" if token.expires_at else ""
    click.echo(f"token {token.id} for {username}{until}; it will not be shown again", err=True)


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

    found = run(_with_doorman(settings, every_token))
    if as_json:
        _echo_json([_public(dataclasses.asdict(token), "user_id") for token in found])
        return
    now = time.time()
    rows = [
        (t.id, t.username, t.name, _when(t.created_at), _when(t.last_used_at) or "never",
         _expiry(t, now))
        for t in found
    ]  # fmt: skip
    headers = ("ID", "USER", "NAME", "CREATED", "LAST USED", "EXPIRES")
    _echo_table(headers, rows, "no tokens")


def _public(record: dict[str, Any], *internal: str) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key not in internal}


def _expiry(token: Any, now: float) -> str:
    if token.revoked_at is not None:
        return "revoked"
    if not token.is_live(now):
        return "expired"
    return _when(token.expires_at) or "never"


@tokens.command("revoke")
@click.argument("token_id", metavar="ID")
@settings_options("db")
def revoke_token(settings: Settings, token_id: str) -> None:
    """Revoke an API token by its ID (as shown by doorman tokens list)."""

    async def revoke(doorman: Doorman) -> bool:
        return await doorman.tokens.revoke(token_id)

    if not run(_with_doorman(settings, revoke)):
        raise click.ClickException(
            f"no live token with the ID {token_id!r}; see doorman tokens list"
        )
    click.echo(f"revoked token {token_id}")


# -- db ------------------------------------------------------------------------------


@main.group("db")
def db_group() -> None:
    """Create, upgrade, dump and load doorman's tables."""


async def _with_engine(settings: Settings, action: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    from .database import create_engine

    engine = create_engine(settings.db)
    try:
        return await action(engine)
    finally:
        await engine.dispose()


async def _migrate(engine: AsyncEngine) -> tuple[str, str | None, str | None]:
    """Where, the revision before and the revision after migrating."""
    from .database import describe
    from .migrations import migrate, schema_revision

    before = await schema_revision(engine)
    await migrate(engine)
    return describe(engine), before, await schema_revision(engine)


@db_group.command("init")
@settings_options("db")
def db_init(settings: Settings) -> None:
    """Create doorman's tables (or bring them up to date)."""
    where, before, after = run(_with_engine(settings, _migrate))
    if before is None:
        click.echo(f"created doorman's tables in {where}, at revision {after}")
    elif before == after:
        click.echo(f"doorman's tables are already in {where}, at revision {after}")
    else:
        click.echo(f"upgraded doorman's tables in {where} from revision {before} to {after}")


@db_group.command("migrate")
@settings_options("db")
def db_migrate(settings: Settings) -> None:
    """Upgrade doorman's tables to this version's newest revision."""
    where, before, after = run(_with_engine(settings, _migrate))
    if before == after:
        click.echo(f"{where}: already at revision {after}, the newest")
    else:
        click.echo(f"{where}: migrated from revision {before or 'none (no tables)'} to {after}")


@db_group.command("schema")
@click.option(
    "--dialect",
    type=click.Choice(["sqlite", "postgresql"]),
    help="The SQL dialect; default: that of --db.",
)
@settings_options("db")
def db_schema(settings: Settings, dialect: str | None) -> None:
    """Print the SQL that creates doorman's tables, for DBAs who apply it themselves."""
    from .database import async_url
    from .migrations import schema_sql

    with one_line_errors():
        chosen = dialect or async_url(settings.db).get_backend_name()
        click.echo(schema_sql("postgresql" if chosen == "postgresql" else "sqlite"), nl=False)


@db_group.command("dump")
@click.argument("target", metavar="[FILE]", default="-")
@settings_options("db")
def db_dump(settings: Settings, target: str) -> None:
    """Write users, groups and tokens as JSON to FILE (default: standard output).

    Password and token hashes are included (never a token itself): the file is
    made readable by its owner only.
    """
    data = run(_with_engine(settings, _dump))
    text = json.dumps(data, indent=2) + "\n"
    if target == "-":
        click.echo(text, nl=False)
    else:
        _write_private(Path(target), text)
        counts = ", ".join(_plural(len(data[k]), k.rstrip("s")) for k in _KINDS)
        click.echo(f"wrote {counts} to {target}", err=True)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (mode 0600) through a temporary file, so it is whole or absent."""
    partial = path.with_name(path.name + ".partial")
    try:
        partial.unlink(missing_ok=True)  # then O_EXCL: a file of ours, never one found there
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(partial, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise click.ClickException(f"cannot write {str(path)!r}: {error.strerror}") from None


@db_group.command("load")
@click.argument("source", metavar="FILE")
@click.option(
    "--skip-existing", is_flag=True, help="Keep users that exist already; load the others."
)
@settings_options("db")
def db_load(settings: Settings, source: str, skip_existing: bool) -> None:
    """Load users, groups and tokens from a dump (- reads standard input), in one transaction."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
        data = json.loads(text)
    except OSError as error:
        raise click.ClickException(f"cannot read {source!r}: {error.strerror}") from None
    except ValueError as error:
        raise click.ClickException(
            f"{source}: not JSON ({error}); give a doorman db dump"
        ) from None
    with one_line_errors():
        _check_dump(data, source)
    summary = run(_with_engine(settings, lambda e: _load(e, data, skip_existing)))
    click.echo(summary)


# -- plugins -------------------------------------------------------------------------


@main.command("plugins")
@json_option
@settings_options("plugins_dir")
def plugins_command(settings: Settings, as_json: bool) -> None:
    """List the plugins doorman loads: name, version and hooks."""
    with one_line_errors():
        found = list_plugins(make_plugin_manager(plugins_dir=settings.plugins_dir))
    if as_json:
        _echo_json(found)
        return
    rows = [(p["name"], p["version"] or "", ", ".join(p["hooks"])) for p in found]
    _echo_table(("NAME", "VERSION", "HOOKS"), rows, "no plugins")


# -- the JSON of db dump and db load ---------------------------------------------------
# Users and tokens carry every column but the internal ids (so a dump loads into a
# database that has users already): users name their groups, tokens their user.

_KINDS = ("users", "groups", "tokens")
_CHUNK = 500


def _fields(table: Any, leave_out: set[str], add: set[str]) -> set[str]:
    return {c.name for c in table.columns if c.name not in leave_out} | add


def _progress(total: int, label: str) -> Any:
    """A progress bar on stderr, for big tables on a terminal only: stdout stays pure JSON."""
    return click.progressbar(
        length=total, label=label, file=sys.stderr, hidden=total < 1000 or not _stderr_is_tty()
    )


def _stderr_is_tty() -> bool:
    return sys.stderr.isatty()


async def _fetch(connection: Any, query: Any, label: str) -> list[Any]:
    import sqlalchemy as sa

    total = await connection.execute(sa.select(sa.func.count()).select_from(query.subquery()))
    rows: list[Any] = []
    with _progress(int(total.scalar_one()), label) as bar:
        result = await connection.stream(query)
        async for part in result.mappings().partitions(_CHUNK):
            rows.extend(part)
            bar.update(len(part))
    return rows


async def _dump(engine: AsyncEngine) -> dict[str, Any]:
    """Users (with password hashes and groups), groups and tokens (hashes only)."""
    import sqlalchemy as sa

    from .database import connect
    from .migrations import ensure_schema, schema_revision
    from .schema import groups_table, tokens_table, user_groups_table, users_table

    await ensure_schema(engine)
    u, g, t = users_table.c, groups_table.c, tokens_table.c
    memberships = sa.select(user_groups_table.c.user_id, g.name).join(groups_table)
    async with connect(engine) as connection:
        users = await _fetch(connection, sa.select(users_table), "dumping users")
        member_rows = await _fetch(connection, memberships, "dumping group memberships")
        groups = (await connection.execute(sa.select(g.name))).scalars().all()
        token_query = sa.select(tokens_table, u.username).join(users_table, u.id == t.user_id)
        tokens = await _fetch(connection, token_query, "dumping tokens")
    groups_of: dict[int, list[str]] = {}
    for row in member_rows:
        groups_of.setdefault(row["user_id"], []).append(row["name"])
    user_fields = [c.name for c in users_table.columns if c.name not in ("id", "username_key")]
    token_fields = [c.name for c in tokens_table.columns if c.name != "user_id"]
    return {
        "doorman": __version__,
        "revision": await schema_revision(engine),
        "users": [
            {**{f: row[f] for f in user_fields}, "groups": sorted(groups_of.get(row["id"], []))}
            for row in sorted(users, key=lambda row: row["username_key"])
        ],
        "groups": sorted(groups),
        "tokens": [
            {**{f: row[f] for f in token_fields}, "username": row["username"]}
            for row in sorted(tokens, key=lambda row: str(row["id"]))
        ],
    }


def _check_dump(data: Any, source: str) -> None:
    """Raise ``ClickException`` naming the first thing that is not as ``_dump`` writes it."""
    from .schema import tokens_table, users_table

    if not isinstance(data, dict) or set(data) != {"doorman", "revision", *_KINDS}:
        raise click.ClickException(f"{source}: not a doorman dump; make one with doorman db dump")
    if not all(isinstance(data[kind], list) for kind in _KINDS):
        raise click.ClickException(f"{source}: users, groups and tokens must be lists")
    if not all(isinstance(name, str) for name in data["groups"]):
        raise click.ClickException(f"{source}: groups must be a list of names")
    for kind, table, leave_out, add in (
        ("users", users_table, {"id", "username_key"}, {"groups"}),
        ("tokens", tokens_table, {"user_id"}, {"username"}),
    ):
        expected = _fields(table, leave_out, add)
        for position, record in enumerate(data[kind]):
            where = f"{source}: {kind}[{position}]"
            if not isinstance(record, dict) or set(record) != expected:
                found = sorted(record) if isinstance(record, dict) else type(record).__name__
                raise click.ClickException(f"{where}: has {found}; expected {sorted(expected)}")
            for column in table.columns:
                if column.name not in leave_out and not _fits(column, record[column.name]):
                    raise click.ClickException(
                        f"{where}.{column.name}: {record[column.name]!r:.60} is not a "
                        f"{column.type.python_type.__name__}"
                        + ("" if column.nullable else " (it cannot be null)")
                    )
    for position, user in enumerate(data["users"]):
        if not all(isinstance(name, str) for name in user["groups"]):
            raise click.ClickException(f"{source}: users[{position}].groups: a list of names")


def _fits(column: Any, value: object) -> bool:
    if value is None:
        return bool(column.nullable)
    kind = column.type.python_type
    if kind is bool:
        return isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, kind) and not isinstance(value, bool)


async def _load(engine: AsyncEngine, data: dict[str, Any], skip_existing: bool) -> str:
    """Insert a checked dump in one transaction; say what was loaded."""
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql, sqlite

    from .auth.users import check_group, check_username, username_key
    from .database import connect, describe
    from .migrations import ensure_schema
    from .schema import groups_table, tokens_table, user_groups_table, users_table

    users = {}
    for user in data["users"]:
        name = check_username(user["username"])
        users[username_key(name)] = {**user, "username": name}
    if len(users) != len(data["users"]):
        raise click.ClickException("the dump has the same username twice (compared without case)")
    group_names = sorted(
        {check_group(n) for n in data["groups"]}
        | {check_group(n) for u in data["users"] for n in u["groups"]}
    )
    insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    await ensure_schema(engine)
    async with connect(engine, write=True) as connection:
        taken = await _existing(connection, users_table.c.username_key, list(users))
        if taken and not skip_existing:
            names = sorted(users[key]["username"] for key in taken)
            more = f" and {len(names) - 10} more" if len(names) > 10 else ""
            raise click.ClickException(
                f"users of the dump exist already: {', '.join(names[:10])}{more}; "
                "pass --skip-existing to keep them as they are and load the others"
            )
        new = {key: user for key, user in users.items() if key not in taken}
        new_groups = set(group_names) - await _existing(
            connection, groups_table.c.name, group_names
        )
        if new_groups:
            rows = [{"name": name} for name in sorted(new_groups)]
            await connection.execute(insert(groups_table).on_conflict_do_nothing(), rows)
        group_ids = dict(
            (await connection.execute(sa.select(groups_table.c.name, groups_table.c.id))).all()
        )
        user_rows = [
            {**{k: v for k, v in user.items() if k != "groups"}, "username_key": key}
            for key, user in new.items()
        ]
        for chunk in _chunks(user_rows):
            await connection.execute(users_table.insert(), chunk)
        ids = await _ids(connection, list(new))
        memberships = [
            {"user_id": ids[key], "group_id": group_ids[check_group(name)]}
            for key, user in new.items()
            for name in set(user["groups"])
        ]
        for chunk in _chunks(memberships):
            await connection.execute(user_groups_table.insert(), chunk)
        tokens = await _token_rows(connection, data["tokens"], ids, users, skip_existing)
        for chunk in _chunks(tokens):
            await connection.execute(tokens_table.insert(), chunk)
    skipped = f"; kept {_plural(len(taken), 'existing user')} as they were" if taken else ""
    return (
        f"loaded {_plural(len(new), 'user')}, {_plural(len(new_groups), 'new group')} and "
        f"{_plural(len(tokens), 'token')} into {describe(engine)}{skipped}"
    )


def _chunks(rows: list[T]) -> Iterator[list[T]]:
    for start in range(0, len(rows), _CHUNK):
        yield rows[start : start + _CHUNK]


async def _existing(connection: Any, column: Any, values: list[str]) -> set[str]:
    import sqlalchemy as sa

    found: set[str] = set()
    for chunk in _chunks(values):
        found.update(
            (await connection.execute(sa.select(column).where(column.in_(chunk)))).scalars()
        )
    return found


async def _ids(connection: Any, keys: list[str]) -> dict[str, int]:
    import sqlalchemy as sa

    from .schema import users_table

    u = users_table.c
    ids: dict[str, int] = {}
    for chunk in _chunks(keys):
        query = sa.select(u.username_key, u.id).where(u.username_key.in_(chunk))
        ids.update((key, user_id) for key, user_id in (await connection.execute(query)).all())
    return ids


async def _token_rows(
    connection: Any,
    tokens: list[dict[str, Any]],
    ids: dict[str, int],
    users: dict[str, Any],
    skip_existing: bool,
) -> list[dict[str, Any]]:
    """The rows to insert for the tokens of newly loaded users."""
    from .auth.users import username_key
    from .schema import tokens_table

    for token in tokens:
        if username_key(token["username"]) not in users:
            raise click.ClickException(
                f"token {token['id']!r} belongs to {token['username']!r}, who is not in the dump"
            )
    wanted = [t for t in tokens if username_key(t["username"]) in ids]
    taken = await _existing(connection, tokens_table.c.id, [t["id"] for t in wanted])
    if taken and not skip_existing:
        shown = ", ".join(sorted(taken)[:10])
        raise click.ClickException(
            f"tokens of the dump exist already: {shown}; pass --skip-existing to keep them"
        )
    return [
        {
            **{k: v for k, v in t.items() if k != "username"},
            "user_id": ids[username_key(t["username"])],
        }
        for t in wanted
        if t["id"] not in taken
    ]
