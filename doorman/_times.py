"""Durations and moments as people write them: ``30m``, ``12h``, ``90d``, ``2026-12-01``.

Read by the settings (``session_max_age = "14d"``), by ``doorman tokens create
--expires`` and by the event log's filters (``--since 7d``, ``?since=``).
"""

from __future__ import annotations

import datetime
import re

__all__ = ["parse_duration", "parse_moment"]

_DURATION = re.compile(r"(\d+)\s*([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str | int) -> int:
    """Seconds in ``3600``, ``"3600s"``, ``"30m"``, ``"12h"``, ``"90d"`` or ``"2w"``.

    Raises ``ValueError`` for anything else, or a duration of 0.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        seconds = text
    elif isinstance(text, str) and (found := _DURATION.fullmatch(text.strip().lower())):
        seconds = int(found[1]) * _UNITS[found[2]]
    else:
        raise ValueError(f"{text!r} is not a duration such as 3600, 30m, 12h or 90d")
    if seconds <= 0:
        raise ValueError(f"{text!r}: a duration must be above 0 seconds")
    return seconds


#: The longest text ``parse_moment`` reads: a date and time with seconds and an offset.
_MOMENT_LENGTH = 40


def parse_moment(text: str, *, now: float) -> float:
    """A Unix time: ``7d`` (that long before ``now``; also ``12h``, ``30m``...), a date
    ``2026-12-01`` or a date and time ``2026-12-01T12:00``, in UTC unless it says
    otherwise (as the pages show times). Raises ``ValueError`` for anything else."""
    given = text.strip()
    if len(given) <= _MOMENT_LENGTH and _DURATION.fullmatch(given.lower()):
        return max(0.0, now - parse_duration(given))
    try:
        if len(given) > _MOMENT_LENGTH:
            raise ValueError
        moment = datetime.datetime.fromisoformat(given)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
        return moment.timestamp()
    except (ValueError, OverflowError):
        raise ValueError(
            f"{given[:_MOMENT_LENGTH]!r} is not a time: give a duration such as 7d, 12h or "
            "30m, or a date such as 2026-12-01"
        ) from None
