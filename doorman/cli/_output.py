"""How commands print: aligned tables, JSON, times and counts."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import click


def when(moment: float | None) -> str:
    return "" if moment is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(moment))


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def tokens_note(count: int, *, one: str, many: str) -> str:
    """What became of a user's API tokens ("; their 2 API tokens still work"), or ""."""
    if not count:
        return ""
    return f"; their {plural(count, 'API token')} {one if count == 1 else many}"


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[object]], empty: str) -> None:
    """Aligned columns, or ``empty`` (on stderr) when there are no rows."""
    if not rows:
        click.echo(empty, err=True)
        return
    cells = [list(headers), *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def echo_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))
