"""What a username, a group name and an email address may be, and when two usernames
are one: the rules every way in (sign-up, the admin pages, the CLI, a load)
checks before the database is asked.
"""

from __future__ import annotations

import re
import unicodedata

from .._lookalikes import invisible, mixed_scripts
from .._text import storable
from ..exceptions import AccountError

__all__ = [
    "check_email",
    "check_group",
    "check_new_username",
    "check_username",
    "storable",
    "username_key",
]

_USERNAME = re.compile(r"[\w.@+-]{1,150}")
_GROUP = re.compile(r"[\w.@+-][\w.@+ -]{0,148}[\w.@+-]|[\w.@+-]")


def username_key(username: str) -> str:
    """What usernames are compared by: "Alice", "alice" and its full-width form are one account."""
    return unicodedata.normalize("NFKC", username).casefold()


def check_username(username: str) -> str:
    """The username in NFKC form, or ``AccountError`` saying what is wrong with it."""
    if not isinstance(username, str):
        raise AccountError("a username is text")
    name = unicodedata.normalize("NFKC", username)
    # Case folding can lengthen a name ("ß" -> "ss"); the folded form is stored too.
    if not _USERNAME.fullmatch(name) or len(username_key(name)) > 150:
        raise AccountError("a username is 1 to 150 letters, digits and the characters . @ + - _")
    return name


def check_new_username(username: str) -> str:
    """``check_username``, and one script per name: what a new account's name must pass."""
    name = check_username(username)
    if invisible(name):
        raise AccountError("a username cannot hold characters that show as nothing")
    if mixed_scripts(name):
        raise AccountError(
            "a username is written in one script: not Latin letters mixed with Cyrillic "
            "or Greek ones, for instance"
        )
    return name


def check_group(name: str) -> str:
    name = unicodedata.normalize("NFKC", name).strip()
    if not _GROUP.fullmatch(name):
        raise AccountError("a group name is 1 to 150 letters, digits, spaces and . @ + - _")
    return name


def check_email(email: str | None) -> str | None:
    """The address (None for none or ""), or ``AccountError`` when it is not an email address."""
    if email is None or email == "":
        return None
    if (
        not isinstance(email, str)
        or len(email) > 254
        or email.count("@") != 1
        or any(c.isspace() or unicodedata.category(c)[0] == "C" for c in email)
        or not _mailable(*email.split("@"))
    ):
        raise AccountError(f"{email!r} is not an email address")
    return email


#: What no bare address holds (doorman.mail.addresses takes none of it either): quotes,
#: brackets, lists, comments and escapes.
_UNMAILABLE = frozenset('<>()[],;:"\\')


def _mailable(local: str, domain: str) -> bool:
    """An address a mail server takes: no quoted local part or stray dots in it, and a
    domain of names (letters of any script, digits, inner hyphens; 63 at most each), not
    an IP literal ("[127.0.0.1]") nor ending in a dot. Others were taken here, then refused by the
    mailer when a link was sent to them."""
    if not local or _UNMAILABLE.intersection(local) or ".." in local:
        return False
    if local.startswith(".") or local.endswith("."):
        return False
    labels = domain.split(".")
    return all(
        0 < len(label) <= 63 and not label.startswith("-") and not label.endswith("-")
        and all(c.isalnum() or c == "-" for c in label)
        for label in labels
    )  # fmt: skip
