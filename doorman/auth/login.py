"""``login()`` and ``logout()``: bind a session to a user, and end it."""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any

from ..accounts.signins import signin_id
from ..accounts.users import User
from ..core import Doorman
from ..events import LoginEvent, LogoutEvent
from ..exceptions import AuthenticationFailed
from ..sessions.session import load_session
from .actors import set_actor
from .middleware import SESSION_AUTH_HASH, SESSION_SIGNIN, SESSION_USER_ID

__all__ = ["current_signin", "login", "logout", "update_session_auth"]


async def login(
    conn: Any, user: User, *, doorman: Doorman | None = None, via: str = "password"
) -> dict[str, Any]:
    """Sign ``user`` in on this request's session; return the new actor.

    The session gets a new key (the id an attacker may have planted before
    sign-in dies), keeps its data unless it belonged to another user, and
    records the user id and the session auth hash. ``conn`` is a request, a
    websocket or an ASGI scope; ``doorman`` defaults to the one
    ``AuthMiddleware`` put in the scope. ``via`` says how the user proved it
    (for the ``on_login`` event).
    """
    scope = _scope_of(conn)
    doorman = _doorman_of(scope, doorman)
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
        user, user_agent=_user_agent(scope), address=_client(scope)
    )
    now = time.time()
    await doorman.users.record_login(user, now)
    actor = user.actor("session")
    set_actor(scope, actor)
    event = LoginEvent(actor=actor, via=via, client=_client(scope), at=now)
    await doorman.fire("on_login", event, user=user)
    return actor


async def logout(conn: Any, *, doorman: Doorman | None = None) -> None:
    """End this request's session, server-side too, and forget the actor."""
    scope = _scope_of(conn)
    doorman = _doorman_of(scope, doorman)
    actor = scope.get("actor")
    session = await load_session(conn)
    signin = session.get(SESSION_SIGNIN)
    if isinstance(signin, str):
        await doorman.signins.revoke(signin_id(signin))
    session.flush()
    set_actor(scope, None)
    event = LogoutEvent(actor=actor, client=_client(scope), at=time.time())
    await doorman.fire("on_logout", event)


async def update_session_auth(conn: Any, user: User, *, doorman: Doorman | None = None) -> None:
    """Keep this session signed in after ``user`` changed their password here.

    A password change ends every session of the user; call this with the
    updated user so that the one where the change was made carries on.
    """
    scope = _scope_of(conn)
    doorman = _doorman_of(scope, doorman)
    session = await load_session(conn)
    if session.get(SESSION_USER_ID) == user.id:
        session.cycle_key()
        session[SESSION_AUTH_HASH] = doorman.session_auth_hash(user)
        signin = session.get(SESSION_SIGNIN)
        if isinstance(signin, str):
            await doorman.signins.revoke(signin_id(signin))  # usually gone: set_password did
        session[SESSION_SIGNIN] = await doorman.signins.record(
            user, user_agent=_user_agent(scope), address=_client(scope)
        )


def current_signin(session: Any) -> str | None:
    """The id of the sign-in ``session`` holds (see ``SignIns``), or None."""
    key = session.get(SESSION_SIGNIN)
    return signin_id(key) if isinstance(key, str) else None


def _scope_of(conn: Any) -> MutableMapping[str, Any]:
    scope = getattr(conn, "scope", conn)
    if not isinstance(scope, MutableMapping):
        raise TypeError(f"expected an ASGI scope or a request, got {type(conn).__name__}")
    return scope


def _doorman_of(scope: MutableMapping[str, Any], doorman: Doorman | None) -> Doorman:
    found = doorman if doorman is not None else scope.get("doorman")
    if not isinstance(found, Doorman):
        raise LookupError(
            "no Doorman for this request: install doorman.AuthMiddleware around the app, "
            "or pass doorman= explicitly"
        )
    return found


def _user_agent(scope: MutableMapping[str, Any]) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"user-agent":
            return str(value.decode("latin-1"))[:300]
    return ""


def _client(scope: MutableMapping[str, Any]) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None
