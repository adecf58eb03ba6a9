"""``doorman events``: read the security event log, and prune it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import click

from .._times import parse_moment
from ..accounts.event_log import EventFilter
from ..events import EventKind
from ..settings import Settings
from ._options import json_option, run, settings_options, with_doorman
from ._output import echo_json, echo_table, plural, when

if TYPE_CHECKING:
    from ..accounts.event_log import LoggedEvent
    from ..core import Doorman


class _ListByDefault(click.Group):
    """``doorman events [OPTIONS]`` is ``doorman events list [OPTIONS]``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("-h", "--help")):
            args = ["list", *args]
        return super().parse_args(ctx, args)


@click.group("events", cls=_ListByDefault)
def events() -> None:
    """Read the security event log (doorman events [OPTIONS] lists), and prune it."""


@events.command("list")
@click.option("--user", metavar="U", help="Only events about this account, or done by it.")
@click.option(
    "--kind", "kinds", multiple=True, metavar="K", help="Only events of this kind (repeat)."
)
@click.option("--since", metavar="WHEN", help="Only since then: 7d, 12h, 30m, or 2026-12-01.")
@click.option("--until", metavar="WHEN", help="Only before then: the same forms as --since.")
@click.option(
    "--limit", default=100, show_default=True, type=click.IntRange(1), help="At most this many."
)
@json_option
@settings_options("db")
def list_events(
    settings: Settings,
    user: str | None,
    kinds: tuple[str, ...],
    since: str | None,
    until: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List security events, newest first: sign-ins, failures, changes to accounts.

    Dates are in UTC unless they say otherwise (2026-12-01T12:00+02:00).
    """
    now = time.time()
    moments = {
        name: _moment(name, given, now) for name, given in (("since", since), ("until", until))
    }

    async def read(doorman: Doorman) -> list[LoggedEvent]:
        await _check_kinds(doorman, kinds)
        found = None if user is None else await doorman.users.by_username(user)
        where = EventFilter(
            name=found.username if found is not None else user,
            kinds=kinds,
            since=moments["since"],
            until=moments["until"],
        )
        return await doorman.events.list(where, limit=limit)

    found = run(with_doorman(settings, read))
    if as_json:
        echo_json([{**event.public_fields(), "label": event.label} for event in found])
        return
    rows = [(when(e.at), e.kind, e.username, _by(e), e.address, _detail(e.detail)) for e in found]
    echo_table(("WHEN", "KIND", "USER", "BY", "ADDRESS", "DETAIL"), rows, "no events")


def _moment(name: str, given: str | None, now: float) -> float | None:
    if given is None:
        return None
    try:
        return parse_moment(given, now=now)
    except ValueError as error:
        raise click.ClickException(f"--{name}: {error}") from None


async def _check_kinds(doorman: Doorman, kinds: tuple[str, ...]) -> None:
    """Refuse a kind that is not doorman's and that the log does not hold: a typo would
    list nothing, silently."""
    for kind in kinds:
        if kind not in set(EventKind) and not await doorman.events.holds(kind):
            raise click.ClickException(
                f"--kind {kind[:60]!r} is not a kind of event; doorman's are "
                + ", ".join(EventKind)
            )


def _by(event: LoggedEvent) -> str:
    return {"cli": "command line", "self": "themselves", "nobody": ""}.get(
        event.done_by, event.actor or ""
    )


def _detail(detail: dict[str, Any]) -> str:
    """``reason=bad-credentials changed=email,groups``: a detail on one line."""
    return " ".join(f"{key}={_shown(value)}" for key, value in sorted(detail.items()))


def _shown(value: object) -> str:
    if isinstance(value, list):
        return ",".join(_shown(item) for item in value)
    if value is None or isinstance(value, bool):
        return {None: "none", True: "yes", False: "no"}[value]
    return str(value)


@events.command("prune")
@settings_options("db", "events_retention")
def prune(settings: Settings) -> None:
    """Delete events older than events_retention (default 90 days); cron it daily."""

    async def remove(doorman: Doorman) -> int:
        return await doorman.events.prune(settings.events_retention)

    removed = run(with_doorman(settings, remove))
    click.echo(
        f"removed {plural(removed, 'event')} older than {_duration(settings.events_retention)}"
    )


def _duration(seconds: int) -> str:
    """``90 days``, ``2 hours``: the largest whole unit."""
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds % size == 0:
            return plural(seconds // size, unit)
    return plural(seconds, "second")
