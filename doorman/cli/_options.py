"""What every command shares: settings flags, --json, --yes, the password, ``run()``.

Library errors become one line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..assembly import close_doorman, open_doorman
from ..db.engine import async_url
from ..exceptions import DoormanError, DumpError, PasswordRejected
from ..settings import SETTINGS, Settings, load_settings

if TYPE_CHECKING:
    from ..core import Doorman
    from ..stores.base import SessionStore

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
_SETTINGS = {setting.name: setting for setting in SETTINGS}
#: The metavar of a setting's flag, where its name in capitals would not do.
_METAVARS = {"sessions": "STORE", "workers": "N", "plugins_dir": "DIR", "template_dir": "DIR"}


# -- errors and running library code --------------------------------------------------


def one_line(text: str) -> str:
    return " ".join(text.split())


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Library errors become one line on stderr and exit status 1 (``ClickException``)."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except PasswordRejected as error:
        raise click.ClickException("password rejected: " + "; ".join(error.problems)) from None
    except DumpError as error:  # one line already, quoting the dump's values as they are
        raise click.ClickException(str(error)) from None
    except DoormanError as error:
        raise click.ClickException(one_line(str(error))) from None
    except SQLAlchemyError as error:
        cause = one_line(str(getattr(error, "orig", None) or error))[:200]
        raise click.ClickException(f"database: {type(error).__name__}: {cause}") from None
    except Exception as error:
        if _migrations_error(error):  # a database migrated by a newer doorman, say
            raise click.ClickException(f"migrations: {one_line(str(error))}") from None
        raise


def _migrations_error(error: Exception) -> bool:
    """Whether ``error`` is Alembic's ``CommandError``: only once Alembic was loaded (to
    migrate), so that a command that needs no migration does not import it (0.13 s)."""
    alembic = sys.modules.get("alembic.util.exc")
    return alembic is not None and isinstance(error, alembic.CommandError)


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


async def with_doorman(settings: Settings, action: Callable[[Doorman], Awaitable[T]]) -> T:
    """Open the ``Doorman`` the settings describe, run ``action`` with it, close it."""
    return await with_store(settings, lambda doorman, _store: action(doorman))


async def with_store(
    settings: Settings, action: Callable[[Doorman, SessionStore], Awaitable[T]]
) -> T:
    """Open the ``Doorman`` and the session store, run ``action`` with both, close them."""
    doorman, store, _ = await open_doorman(settings)
    try:
        return await action(doorman, store)
    finally:
        await close_doorman(doorman, store)


def from_cli(**detail: Any) -> dict[str, Any]:
    """The detail of an event a command writes to the security event log: ``via`` is
    ``cli``; the values given, but those that are False or None (nothing to say)."""
    return {"via": "cli", **{k: v for k, v in detail.items() if v is not None and v is not False}}


# -- shared options -------------------------------------------------------------------


def settings_options(*names: str, existing_database: bool = True) -> Callable[[F], F]:
    """``--config`` and a flag per setting in ``names``; the command gets ``settings``.

    The flags' help comes from the settings table; their values go through
    ``load_settings`` like the file's and the environment's, so they are checked
    (and reported) the same way. With ``db`` and ``existing_database``, a SQLite
    file that is not there (a mistyped path) is refused rather than created; the
    commands that make a database (``serve``, ``db init``...) pass False.
    """

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def wrapper(*args: Any, config_file: str | None, **kwargs: Any) -> Any:
            overrides = {name: kwargs.pop(name) for name in names}
            with one_line_errors():
                settings = load_settings(config_file=config_file, overrides=overrides)
            if "db" in names and existing_database:
                require_existing_database(settings.db)
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


def require_existing_database(db: str) -> None:
    """One line and exit 1 when ``db`` is a SQLite file that does not exist.

    Opening it would create an empty database and answer "no users": a typo
    in ``--db`` must not look like an empty install. Server databases are
    not checked (they are not made by connecting).
    """
    url = async_url(db)
    path = url.database
    if url.get_backend_name() != "sqlite" or not path or path == ":memory:":
        return
    if not Path(path).exists():
        raise click.ClickException(
            f"no database at {path} (create it with `doorman db init` or `doorman serve`)"
        )


def json_option(command: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(
        command
    )


def yes_option(command: F) -> F:
    return click.option("--yes", is_flag=True, help="Do not ask for confirmation.")(command)


def revoke_tokens_option(*, default: bool) -> Callable[[F], F]:
    """``--revoke-tokens/--keep-tokens``: whether the user's API tokens end too."""
    choice = "revoke" if default else "keep"
    return click.option(
        "--revoke-tokens/--keep-tokens",
        default=default,
        help=f"Revoke the user's API tokens too, or keep them working (default: {choice}).",
    )


def password_option(command: F) -> F:
    return click.option(
        "--password-stdin",
        is_flag=True,
        help="Read the password from the first line of standard input instead of a prompt.",
    )(command)


def read_password(from_stdin: bool) -> str:
    """The password from a prompt (asked twice), or from the first line of stdin."""
    if not from_stdin:
        return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))
    line = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not line:
        raise click.ClickException(
            "--password-stdin: standard input has no password; pipe it in, such as: "
            "printf '%s\\n' \"$PASSWORD\" | doorman users create NAME --password-stdin"
        )
    return line
