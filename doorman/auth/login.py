"""``login()`` and ``logout()``: bind a session to a user, and end it."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from .._scope import client_address, scope_of, user_agent
from ..accounts.signins import signin_id
from ..accounts.users import User
from ..core import Doorman
from ..events import LoginEvent, LogoutEvent
from ..exceptions import AuthenticationFailed
from ..sessions.session import load_session
from .actors import set_actor
from .guards import current_doorman
from .signed_in import (
    SESSION_AUTH_HASH,
    SESSION_AUTH_METHODS,
    SESSION_AUTHENTICATED_AT,
    SESSION_SIGNIN,
    SESSION_USER_ID,
    current_signin,
)

__all__ = ["METHODS_BY_VIA", "current_signin", "login", "logout", "update_session_auth"]

#: The ``amr`` values (RFC 8176) a sign-in gets from ``via`` when ``login()`` is not told.
#: A link mailed to the person proves they hold the mailbox: no RFC value says so.
METHODS_BY_VIA: dict[str, tuple[str, ...]] = {
    "password": ("pwd",),
    "password-reset": ("pwd", "email"),
    "invitation": ("pwd", "email"),
    "setup": ("pwd",),
    "email-link": ("email",),
    "passkey": ("hwk", "user"),
}


async def login(
    conn: Any,
    user: User,
    *,
    doorman: Doorman | None = None,
    via: str = "password",
    methods: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Sign ``user`` in on this request's session; return the new actor.

    The session gets a new key (the id an attacker may have planted before
    sign-in dies), keeps its data unless it belonged to another user, and
    records the user id and the session auth hash. ``conn`` is a request, a
    websocket or an ASGI scope; ``doorman`` defaults to the one
    ``AuthMiddleware`` put in the scope. ``via`` says how the user proved it
    (for the ``on_login`` event); ``methods``, the ``amr`` values the session
    keeps (``SESSION_AUTH_METHODS``; from ``via`` when not given, else none).
    """
    scope = scope_of(conn)
    doorman = doorman if doorman is not None else current_doorman(scope)
    if not user.is_active:
        raise AuthenticationFailed("this account is disabled")
    session = await load_session(conn)
    previous = session.get(SESSION_SIGNIN)
    if isinstance(previous, str):
        await doorman.signins.revoke(signin_id(previous))
    if session.get(SESSION_USER_ID) not in (None, user.id):
        session.clear()  # another user's data must not carry over
    session.cycle_key()
    session[SESSION_USER_ID] = user.id
    session[SESSION_AUTH_HASH] = doorman.session_auth_hash(user)
    session[SESSION_SIGNIN] = await doorman.signins.record(
        user, user_agent=user_agent(scope), address=client_address(scope)
    )
    now = time.time()
    session[SESSION_AUTH_METHODS] = list(
        methods if methods is not None else METHODS_BY_VIA.get(via, ())
    )
    session[SESSION_AUTHENTICATED_AT] = now
    await doorman.users.record_login(user, now)
    actor = user.actor("session")
    set_actor(scope, actor)
    event = LoginEvent(actor=actor, via=via, client=client_address(scope), at=now)
    await doorman.fire("on_login", event, user=user)
    return actor


async def logout(conn: Any, *, doorman: Doorman | None = None) -> None:
    """End this request's session, server-side too, and forget the actor."""
    scope = scope_of(conn)
    doorman = doorman if doorman is not None else current_doorman(scope)
    actor = scope.get("actor")
    session = await load_session(conn)
    signin = session.get(SESSION_SIGNIN)
    if isinstance(signin, str):
        await doorman.signins.revoke(signin_id(signin))
    session.flush()
    set_actor(scope, None)
    event = LogoutEvent(actor=actor, client=client_address(scope), at=time.time())
    await doorman.fire("on_logout", event)


async def update_session_auth(conn: Any, user: User, *, doorman: Doorman | None = None) -> None:
    """Keep this session signed in after ``user`` changed their password here.

    A password change ends every session of the user; call this with the
    updated user so that the one where the change was made carries on.
    """
    scope = scope_of(conn)
    doorman = doorman if doorman is not None else current_doorman(scope)
    session = await load_session(conn)
    if session.get(SESSION_USER_ID) == user.id:
        session.cycle_key()
        session[SESSION_AUTH_HASH] = doorman.session_auth_hash(user)
        signin = session.get(SESSION_SIGNIN)
        if isinstance(signin, str):
            await doorman.signins.revoke(signin_id(signin))  # usually gone: set_password did
        session[SESSION_SIGNIN] = await doorman.signins.record(
            user, user_agent=user_agent(scope), address=client_address(scope)
        )
