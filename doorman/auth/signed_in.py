"""What a signed-in session holds, and whether it still stands.

``login()`` writes three keys into the session; ``AuthMiddleware`` reads them
back on every request (``actor_from_session``). The session stands while its
user exists and is active, its sign-in row is there (not revoked) and its auth
hash matches the user's (no new password, no "sign out everywhere" since).
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from ..accounts.signins import signin_id
from ..core import Doorman
from ..sessions.session import Session

__all__ = [
    "SESSION_AUTHENTICATED_AT",
    "SESSION_AUTH_HASH",
    "SESSION_AUTH_METHODS",
    "SESSION_SIGNIN",
    "SESSION_USER_ID",
    "actor_from_session",
    "current_signin",
]

security_log = logging.getLogger("doorman.security")

#: The user's id.
SESSION_USER_ID = "_auth_user_id"
#: ``Doorman.session_auth_hash`` of the user when the session was signed in.
SESSION_AUTH_HASH = "_auth_hash"
#: The sign-in's key (the table keeps only its SHA-256, ``signin_id``).
SESSION_SIGNIN = "_auth_signin"
#: How the person proved who they are, as RFC 8176 ``amr`` values: ``["pwd"]``,
#: ``["pwd", "otp"]``, ``["hwk"]`` (a passkey)... (``doorman.auth.login.METHODS_BY_VIA``).
SESSION_AUTH_METHODS = "_auth_methods"
#: When they last proved it (Unix seconds): the sign-in, or a later step-up.
SESSION_AUTHENTICATED_AT = "_auth_at"


def current_signin(session: Any) -> str | None:
    """The id of the sign-in ``session`` holds (see ``SignIns``), or None."""
    key = session.get(SESSION_SIGNIN)
    return signin_id(key) if isinstance(key, str) else None


async def actor_from_session(doorman: Doorman, session: Any) -> dict[str, Any] | None:
    """The actor a session is signed in as; None, and the session ended, when it no longer
    stands (the user deleted or disabled, signed out elsewhere, a new password)."""
    if isinstance(session, Session):
        if not session.cookie_present:
            return None  # a new visitor: nothing to look up
        await session.load()
    elif not isinstance(session, MutableMapping):
        return None
    user_id = session.get(SESSION_USER_ID)
    if user_id is None:
        return None
    key = session.get(SESSION_SIGNIN)
    signin = signin_id(key) if type(key) is str else ""
    user, last_seen = None, None
    if type(user_id) is int and signin:
        user, last_seen = await doorman.users.get_signed_in(user_id, signin)
    if (
        user is None
        or last_seen is None
        or not user.is_active
        or not doorman.session_auth_hash_matches(user, session.get(SESSION_AUTH_HASH))
    ):
        security_log.info("ending a session of user id %r: no longer valid", user_id)
        if isinstance(session, Session):
            session.flush()
        else:
            session.clear()
        return None
    await doorman.signins.seen(signin, last_seen)
    return user.actor("session")
