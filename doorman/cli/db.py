"""``doorman db``: create, upgrade, dump and load doorman's tables.

``db dump`` and ``db load`` are ``doorman.transfer``; here are only the files,
the progress bar and the messages.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from ..settings import Settings
from ._options import one_line_errors, run, settings_options
from ._output import plural

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from ..transfer import Loaded

T = TypeVar("T")


@click.group("db")
def db_group() -> None:
    """Create, upgrade, dump and load doorman's tables."""


async def _with_engine(settings: Settings, action: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    from ..db.engine import create_engine

    engine = create_engine(settings.db, connections=settings.db_pool_size)
    try:
        return await action(engine)
    finally:
        await engine.dispose()


async def _migrate(engine: AsyncEngine) -> tuple[str, str | None, str | None]:
    """Where, the revision before and the revision after migrating."""
    from ..db.engine import describe
    from ..db.migrations import migrate, schema_revision

    before = await schema_revision(engine)
    await migrate(engine)
    return describe(engine), before, await schema_revision(engine)


@db_group.command("init")
@settings_options("db", existing_database=False)
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
@settings_options("db", existing_database=False)  # it only prints SQL
def db_schema(settings: Settings, dialect: str | None) -> None:
    """Print the SQL that creates doorman's tables, for DBAs who apply it themselves."""
    from ..db.engine import async_url
    from ..db.migrations import schema_sql

    with one_line_errors():
        chosen = dialect or async_url(settings.db).get_backend_name()
        click.echo(schema_sql("postgresql" if chosen == "postgresql" else "sqlite"), nl=False)


# -- dump and load ---------------------------------------------------------------------


@db_group.command("dump")
@click.argument("target", metavar="[FILE]", default="-")
@settings_options("db")
def db_dump(settings: Settings, target: str) -> None:
    """Write users, groups and tokens as JSON to FILE (default: standard output).

    Password and token hashes are included (never a token itself): the file is
    made readable by its owner only.
    """
    from ..transfer import KINDS, dump

    data = run(_with_engine(settings, lambda engine: dump(engine, progress=_progress)))
    text = json.dumps(data, indent=2) + "\n"
    if target == "-":
        click.echo(text, nl=False)
    else:
        _write_private(Path(target), text)
        counts = ", ".join(plural(len(data[k]), k.rstrip("s")) for k in KINDS)
        click.echo(f"wrote {counts} to {target}", err=True)


@contextlib.contextmanager
def _progress(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr, for big tables on a terminal only: stdout stays pure JSON."""
    hidden = total < 1000 or not _stderr_is_tty()
    with click.progressbar(length=total, label=label, file=sys.stderr, hidden=hidden) as bar:
        yield bar.update


def _stderr_is_tty() -> bool:
    return sys.stderr.isatty()


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
@settings_options("db", existing_database=False)
def db_load(settings: Settings, source: str, skip_existing: bool) -> None:
    """Load users, groups and tokens from a dump (- reads standard input), in one transaction."""
    from ..db.engine import describe
    from ..transfer import load

    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
        data = json.loads(text)
    except OSError as error:
        raise click.ClickException(f"cannot read {source!r}: {error.strerror}") from None
    except ValueError as error:
        raise click.ClickException(
            f"{source}: not JSON ({error}); give a doorman db dump"
        ) from None

    async def load_into(engine: AsyncEngine) -> tuple[str, Loaded]:
        loaded = await load(engine, data, skip_existing=skip_existing, source=source)
        return describe(engine), loaded

    where, loaded = run(_with_engine(settings, load_into))
    kept = f"; kept {plural(loaded.kept, 'existing user')} as they were" if loaded.kept else ""
    click.echo(
        f"loaded {plural(loaded.users, 'user')}, {plural(loaded.new_groups, 'new group')} and "
        f"{plural(loaded.tokens, 'token')} into {where}{kept}"
    )
