"""``/-/account``: own details, email and password change, own sessions and API tokens."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ...auth.guards import requires
from ...auth.login import update_session_auth
from ...auth.middleware import SESSION_SIGNIN
from ...auth.users import User
from ...exceptions import AccountError, AuthenticationFailed, PasswordRejected, Throttled
from ..device_cookie import device_cookie, remember_device
from ..devices import describe
from ..state import ServerState, state_of
from .common import (
    checked_form,
    client_address,
    field,
    json_error,
    redirect,
    refuse_csrf,
    sentence,
    wants_json,
)

__all__ = ["routes"]

security_log = logging.getLogger("doorman.security")

#: Lifetimes offered for a new token, in days (0: no expiry).
TOKEN_LIFETIMES = {"30": 30, "90": 90, "365": 365, "0": 0}


def routes(prefix: str) -> list[BaseRoute]:
    return [
        Route(f"{prefix}/account", account_page),
        Route(f"{prefix}/account/email", change_email, methods=["POST"]),
        Route(f"{prefix}/account/password", change_password, methods=["POST"]),
        Route(f"{prefix}/account/sessions/{{signin_id}}/revoke", revoke_signin, methods=["POST"]),
        Route(f"{prefix}/account/tokens", create_token, methods=["POST"]),
        Route(f"{prefix}/account/tokens/{{token_id}}/revoke", revoke_token, methods=["POST"]),
    ]


async def _me(request: Request) -> tuple[ServerState, User]:
    server = state_of(request)
    return server, await server.doorman.users.require(request.scope["actor"]["id"])


#: Notices after a redirect, by ``?done=``: fixed words, never text from the URL.
_NOTICES = {
    "email": "Email address saved.",
    "password": "Password changed. Every other session of yours was signed out.",
    "token": "Copy this token now: it will not be shown again.",
    "created": "Your account was created, and you are signed in.",
}
#: A token made on the previous request waits here for the page that shows it once.
_NEW_TOKEN = "_new_token"  # noqa: S105 - a session key's name, not a secret


@requires("account")
async def account_page(request: Request) -> Response:
    server, user = await _me(request)
    new_token = request.scope["session"].pop(_NEW_TOKEN, "")
    done = "token" if new_token else request.query_params.get("done", "")
    notice = "" if done == "token" and not new_token else _NOTICES.get(done, "")
    return await _render(request, server, user, notice=notice, new_token=new_token)


async def _render(
    request: Request,
    server: ServerState,
    user: User,
    status: int = 200,
    *,
    errors: list[str] | None = None,
    notice: str = "",
    new_token: str = "",
) -> Response:
    signins = await server.doorman.signins.list(user)
    tokens = await server.doorman.tokens.list(user)
    current = request.scope["session"].get(SESSION_SIGNIN)
    if wants_json(request):
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
                    "scopes": None if t.scopes is None else list(t.scopes),
                    "created_at": t.created_at,
                    "last_used_at": t.last_used_at,
                    "expires_at": t.expires_at,
                }
                for t in tokens
            ],
        }
        if new_token:
            body["token"] = new_token
        if errors:
            body["errors"] = errors
        return JSONResponse(body, status, headers={"cache-control": "no-store"})
    return await server.templates.render(
        request,
        "account.html",
        status,
        user=user,
        signins=signins,
        current_signin=current,
        tokens=tokens,
        lifetimes=TOKEN_LIFETIMES,
        errors=errors or [],
        notice=notice,
        new_token=new_token,
        now=time.time(),
    )


@requires("account")
async def change_email(request: Request) -> Response:
    """A new address (or none), confirmed with the password: it is where resets would go."""
    server, user = await _me(request)
    fields = await checked_form(request)
    if fields is None:
        return await refuse_csrf(request)
    refusal = await _confirm(request, server, user, field(fields, "current_password"))
    if refusal is not None:
        return refusal
    try:
        user = await server.doorman.users.set_email(user, field(fields, "email", 300).strip())
    except AccountError as error:
        return await _render(request, server, user, 400, errors=[sentence(error)])
    security_log.info("user %r changed their email address", user.username)
    if wants_json(request):
        return await _render(request, server, user, notice=_NOTICES["email"])
    return redirect(server.url("account") + "?done=email")


@requires("account")
async def change_password(request: Request) -> Response:
    server, user = await _me(request)
    fields = await checked_form(request)
    if fields is None:
        return await refuse_csrf(request)
    password = field(fields, "password")
    if password != field(fields, "password2"):  # checked first: a typo costs no attempt
        return await _render(request, server, user, 400, errors=["The two new passwords differ."])
    refusal = await _confirm(request, server, user, field(fields, "current_password"))
    if refusal is not None:
        return refusal
    try:
        user = await server.doorman.set_password(user, password)
    except PasswordRejected as error:
        errors = [f"This password {problem}." for problem in error.problems]
        return await _render(request, server, user, 400, errors=errors)
    await update_session_auth(request, user)
    response: Response
    if wants_json(request):
        response = await _render(request, server, user, notice=_NOTICES["password"])
    else:
        response = redirect(server.url("account") + "?done=password")  # a reload sends nothing
    remember_device(request, response, user)  # the new password made the old marks untrusted
    return response


async def _confirm(
    request: Request, server: ServerState, user: User, password: str
) -> Response | None:
    """None when ``password`` is the user's; else the page that says why not (400, or 429
    and 503 from the sign-in throttle, which counts and logs this check like a sign-in)."""
    try:
        await server.doorman.confirm_password(
            user, password, client=client_address(request), device=device_cookie(request)
        )
    except Throttled as error:
        response = await _render(request, server, user, error.status_code, errors=[str(error)])
        response.headers["retry-after"] = str(error.retry_after)
        return response
    except AuthenticationFailed:
        return await _render(request, server, user, 400, errors=["The current password is wrong."])
    return None


@requires("account")
async def revoke_signin(request: Request) -> Response:
    server, user = await _me(request)
    if await checked_form(request) is None:
        return await refuse_csrf(request)
    found = await server.doorman.signins.revoke(request.path_params["signin_id"], user=user)
    if wants_json(request):
        return JSONResponse({"revoked": found}, 200 if found else 404)
    return redirect(server.url("account"))


@requires("account")
async def create_token(request: Request) -> Response:
    server, user = await _me(request)
    fields = await checked_form(request)
    if fields is None:
        return await refuse_csrf(request)
    days = TOKEN_LIFETIMES.get(field(fields, "expires", 10))
    if days is None:
        return json_error("expires: choose 30, 90, 365 or 0 (never)", 400)
    try:
        _, text = await server.doorman.tokens.create(
            user, name=field(fields, "name", 200), expires_in=days * 86400 or None
        )
    except AccountError as error:
        return await _render(request, server, user, 400, errors=[str(error)])
    if wants_json(request):
        return await _render(request, server, user, 201, notice=_NOTICES["token"], new_token=text)
    request.scope["session"][_NEW_TOKEN] = text  # shown once by the page this redirects to
    return redirect(server.url("account") + "?done=token")


@requires("account")
async def revoke_token(request: Request) -> Response:
    server, user = await _me(request)
    if await checked_form(request) is None:
        return await refuse_csrf(request)
    found = await server.doorman.tokens.revoke(request.path_params["token_id"], user=user)
    if wants_json(request):
        return JSONResponse({"revoked": found}, 200 if found else 404)
    return redirect(server.url("account"))
