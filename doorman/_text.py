"""What a string must be to be stored or sent: the one answer, for names, ids and paths."""

from __future__ import annotations

__all__ = ["storable"]


def storable(text: str) -> bool:
    """Whether every database and header can hold ``text``: no NUL (PostgreSQL refuses it)
    and no lone surrogate (a JSON string may carry one; it is not UTF-8). A name, id or
    path that fails this was never stored, so a lookup for one finds nothing, unasked."""
    if "\x00" in text:
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
