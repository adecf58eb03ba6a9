"""Email addresses as doorman accepts them: one mailbox, nothing a header could be built from.

A recipient is a bare ``local@domain``; the sender (``email_from``) may carry a
name, ``Doorman <noreply@example.com>``. Quoted local parts, comments, groups and
lists are refused: an address that holds a comma or a line break could add
recipients or headers. Non-ASCII is fine (servers that speak SMTPUTF8 take it).
"""

from __future__ import annotations

import email.utils
import re
import unicodedata

__all__ = ["check_address", "check_sender"]

_ATOM = r"[^\s@<>()\[\],;:\"\\]+"
_ADDRESS = re.compile(rf"{_ATOM}@{_ATOM}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
_NAMED = re.compile(r"(?P<name>[^<>]*)<(?P<address>[^<>]*)>")
#: RFC 5321's limit on the path, less its angle brackets.
MAX_LENGTH = 254


def check_address(text: str) -> str:
    """``text`` as one bare address, ``local@domain``; ``ValueError`` saying what to give."""
    address = text.strip() if isinstance(text, str) else ""
    if (
        len(address) > MAX_LENGTH
        or not _ADDRESS.fullmatch(address)
        or any(unicodedata.category(c)[0] == "C" for c in address)  # DEL, bidi, BOM...
    ):
        raise ValueError("give one email address, such as alice@example.com")
    return address


def check_sender(text: str) -> str:
    """``text`` as a From address, with or without a name: ``Doorman <noreply@example.com>``."""
    if not isinstance(text, str) or _CONTROL.search(text):
        raise ValueError("give one address, such as noreply@example.com, on one line")
    found = _NAMED.fullmatch(text.strip())
    if found is None:
        return check_address(text)
    name = found["name"].strip().strip('"').strip()
    if any(mark in name for mark in '"\\'):
        raise ValueError('give a name without " or \\, such as Doorman <noreply@example.com>')
    return email.utils.formataddr((name, check_address(found["address"])))
