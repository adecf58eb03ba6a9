"""What each action on one user's admin page writes to the security event log."""

from __future__ import annotations

from typing import Any

from ....accounts.event_log import edit_detail
from ....accounts.users import User
from ....core import Doorman
from ....events import EventKind

__all__ = ["action_event"]

#: The actions that change details: what changed is read back from the database.
_EDITS = frozenset({"details", "groups", "make-admin", "remove-admin"})
#: The actions that revoke the sign-in or token named in the URL: (kind, detail key).
_REVOKES = {
    "revoke-session": (EventKind.SESSION_REVOKED, "signin_id"),
    "revoke-token": (EventKind.TOKEN_REVOKED, "token_id"),
}
#: The actions that write their own event (what they took away is known only to them).
_SELF_LOGGED = frozenset({"two-factor-reset"})
_OTHERS: dict[str, tuple[EventKind, dict[str, Any]]] = {
    "sign-out": (EventKind.SESSIONS_ENDED, {}),
    "revoke-tokens": (EventKind.TOKEN_REVOKED, {"all_tokens": True}),
    "disable": (EventKind.USER_DISABLED, {}),
    "enable": (EventKind.USER_ENABLED, {}),
    "password": (EventKind.PASSWORD_CHANGED, {}),
    "unlock": (EventKind.USER_UNLOCKED, {}),
}


async def action_event(
    action: str, doorman: Doorman, before: User, item: str
) -> tuple[EventKind, dict[str, Any]] | None:
    """The event of ``action`` done to ``before`` (the user as it was); None: nothing
    to log (an edit that changed nothing). ``item``: the URL's sign-in or token id."""
    if action in _SELF_LOGGED:
        return None
    if action in _EDITS:
        after = await doorman.users.get(before.id)
        detail = edit_detail(before, after) if after is not None else None
        return (EventKind.USER_EDITED, detail) if detail is not None else None
    if action in _REVOKES:
        kind, key = _REVOKES[action]
        return kind, {key: item[:64]}
    kind, detail = _OTHERS[action]
    return kind, dict(detail)
