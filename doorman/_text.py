"""What a string must be to be stored or sent: the one answer, for names, ids and paths."""

from __future__ import annotations

import string

__all__ = ["ascii_lower", "storable"]

_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


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


def ascii_lower(text: str) -> str:
    """``text`` with A-Z made a-z and nothing else: how email addresses are compared.

    The databases' ``lower()`` differ past ASCII (SQLite folds only ASCII; PostgreSQL's
    follows its locale, where "İ" becomes "i"; Python's makes it "i̇"), so a rule that
    Python and the databases must agree on folds ASCII alone (``db.schema.ascii_lower``).
    """
    return text.translate(_ASCII_LOWER)
