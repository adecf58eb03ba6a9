"""The account page itself (``/-/account``, as HTML or JSON), and what its views share:
who is asking, and the refusal of what an API token may not do.

A request made with an API token may read the page and manage tokens, within
the token's own reach (``views/account_tokens.py``), but never change the
password or the email address, nor sign a session out: those stay with the
person who signs in with the password.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ...accounts.event_log import EventFilter
from ...accounts.signins import SignIn
from ...accounts.tokens import Token
from ...accounts.users import User
from ...auth.guards import requires
from ...auth.login import current_signin
from ...exceptions import PermissionDenied
from ..devices import describe
from ..state import ServerState, state_of
from .common import json_error, wants_json
from .forms import FormErrors, password_hint

__all__ = [
    "NOTICES",
    "TOKEN_LIFETIMES",
    "account_page",
    "calling_token",
    "forbidden",
    "listed",
    "me",
    "not_with_a_token",
    "render",
]

#: How many of the person's own security events the page shows, newest first.
RECENT_EVENTS = 10
#: Lifetimes offered for a new token, in days (0: no expiry).
TOKEN_LIFETIMES = {"30": 30, "90": 90, "365": 365, "0": 0}


async def me(request: Request) -> tuple[ServerState, User]:
    server = state_of(request)
    return server, await server.doorman.users.require(request.scope["actor"]["id"])


#: Notices after a redirect, by ``?done=``: fixed words, never text from the URL.
NOTICES = {
    "email": "Email address saved.",
    "password": "Password changed. Every other session of yours was signed out.",
    "created": "Your account was created, and you are signed in.",
    "password-reset": "Your new password is set, and every other session was signed out.",
    "email-verified": "Your email address is verified.",
    "email-pending": "Check your new address: it takes effect once you follow the link sent "
    "there. Your old address was told.",
}
#: Where doorman once kept a new token until the next page showed it: cleared on sight.
_OLD_NEW_TOKEN_KEY = "_new_token"  # noqa: S105 - a session key's name, not a secret

View = Callable[[Request], Awaitable[Response]]


def not_with_a_token(view: View) -> View:
    """For what only the person may do, signed in with their password: a token gets 403."""

    @functools.wraps(view)
    async def checked(request: Request) -> Response:
        if _via_token(request):
            return await forbidden(request, "An API token cannot do this: sign in to do it.")
        return await view(request)

    return checked


def _via_token(request: Request) -> bool:
    return bool(request.scope["actor"].get("via") == "token")


async def calling_token(request: Request, server: ServerState) -> Token | None:
    """The token this request came with; None for a person signed in."""
    if not _via_token(request):
        return None
    token = await server.doorman.tokens.get(str(request.scope["actor"].get("token", "")))
    if token is None:  # deleted meanwhile, or an actor from a plugin that says "token"
        raise PermissionDenied("the token this request came with is no longer valid")
    return token


async def forbidden(request: Request, message: str) -> Response:
    """403, as JSON or a page: the request is understood, and not allowed."""
    if wants_json(request) or _via_token(request):
        return json_error(message, 403)
    server = state_of(request)
    link = {"href": server.url("account"), "label": "Back to your account"}
    return await server.templates.render(
        request, "message.html", 403, title="Not allowed", message=message, link=link
    )


@requires("account")
async def account_page(request: Request) -> Response:
    server, user = await me(request)
    session = request.scope["session"]
    if _OLD_NEW_TOKEN_KEY in session:
        del session[_OLD_NEW_TOKEN_KEY]
    notice = NOTICES.get(request.query_params.get("done", ""), "")
    return await render(request, server, user, notice=notice)


async def render(
    request: Request,
    server: ServerState,
    user: User,
    status: int = 200,
    *,
    errors: FormErrors | None = None,
    notice: str = "",
    new_token: tuple[Token, str] | None = None,
) -> Response:
    """The account page, or its JSON; ``new_token`` (record, text) is shown this once."""
    signins = await server.doorman.signins.list(user)
    tokens = await server.doorman.tokens.list(user)
    events = await server.doorman.events.list(EventFilter(user_id=user.id), limit=RECENT_EVENTS)
    current = current_signin(request.scope["session"])
    if wants_json(request):
        body = await _account_json(user, signins, tokens, current, new_token)
        body["events"] = [e.owner_fields() for e in events]
        if errors:
            body.update(errors.json())
        return JSONResponse(body, status, headers={"cache-control": "no-store"})
    return await server.templates.render(
        request,
        "account.html",
        status,
        user=user,
        signins=signins,
        current_signin=current,
        tokens=tokens,
        events=events,
        lifetimes=TOKEN_LIFETIMES,
        **(errors or FormErrors()).context(),
        password_hint=password_hint(server.doorman),
        notice=notice,
        new_token=new_token[1] if new_token else "",
        now=time.time(),
        can_send_mail=server.outbox.can_send,
    )


async def _account_json(
    user: User,
    signins: list[SignIn],
    tokens: list[Token],
    current: str | None,
    new_token: tuple[Token, str] | None,
) -> dict[str, Any]:
    """The account page as JSON: the user, their sessions and tokens, a new token once."""
    body: dict[str, Any] = {
        "user": {"username": user.username, "email": user.email, "groups": list(user.groups)},
        "sessions": [
            {
                "id": s.id,
                "current": s.id == current,
                "address": s.address,
                "user_agent": s.user_agent,
                "device": await describe(s.user_agent),
                "created_at": s.created_at,
                "last_seen": s.last_seen,
            }
            for s in signins
        ],
        "tokens": [
            {
                "id": t.id,
                "name": t.name,
                "scopes": listed(t),
                "created_at": t.created_at,
                "last_used_at": t.last_used_at,
                "expires_at": t.expires_at,
            }
            for t in tokens
        ],
    }
    if new_token:
        made, body["token"] = new_token
        body["created"] = {
            "id": made.id,
            "scopes": listed(made),
            "expires_at": made.expires_at,
        }
    return body


def listed(token: Token) -> list[str] | None:
    return None if token.scopes is None else list(token.scopes)
