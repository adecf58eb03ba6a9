"""How commands print: aligned tables, JSON, times and counts."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence

import click

#: What a terminal would act on rather than show: C0 and C1 controls (ESC, CSI, BEL...),
#: DEL, and the bidirectional overrides that show text backwards. Names, user agents and
#: emails come from users and browsers: an admin's terminal must not run them.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
#: Those that json.dumps leaves as they are (it escapes the C0 controls itself).
_JSON_CONTROL = re.compile(r"[\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _shown(text: str) -> str:
    """``text`` with each control character spelled out (``\\x1b``)."""
    return _CONTROL.sub(lambda found: found.group().encode("unicode_escape").decode(), text)


def _json_escaped(text: str) -> str:
    """JSON text with the controls left in its strings written as ``\\uXXXX``."""
    return _JSON_CONTROL.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


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
    cells = [list(headers), *[["" if c is None else _shown(str(c)) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def echo_json(value: object) -> None:
    click.echo(_json_escaped(json.dumps(value, indent=2, ensure_ascii=False)))
