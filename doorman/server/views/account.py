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
from ...exceptions import AccountError, AuthenticationFailed, Throttled
from ..devices import describe
from ..state import ServerState, state_of
from .common import (
    checked_form,
    client_address,
    field,
    redirect,
    refuse_csrf,
    sentence,
    wants_json,
)
from .forms import FormErrors, check_new_password, password_hint

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
    errors: FormErrors | None = None,
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
        lifetimes=TOKEN_LIFETIMES,
        **(errors or FormErrors()).context(),
        password_hint=password_hint(server.doorman),
        notice=notice,
        new_token=new_token,
        now=time.time(),
    )


async def _password_failure(
    request: Request, server: ServerState, user: User, fields: dict[str, str], error_field: str
) -> tuple[AuthenticationFailed | None, FormErrors]:
    """Whether ``current_password`` is wrong (``Throttled`` past the limit), and the error.

    Checked as a sign-in is, throttle included: a stolen session (or a token)
    must not guess the password here without limit, nor outside the login's limit.
    """
    errors = FormErrors()
    try:
        await server.doorman.authenticate(
            user.username, field(fields, "current_password"), client=client_address(request)
        )
    except Throttled as failure:
        errors.add(str(failure), error_field)
        return failure, errors
    except AuthenticationFailed as failure:
        errors.add("The current password is wrong.", error_field)
        return failure, errors
    return None, errors


async def _refuse(
    request: Request,
    server: ServerState,
    user: User,
    errors: FormErrors,
    failure: AuthenticationFailed | None,
) -> Response:
    """The account page with the form's errors: 400, or 429 with Retry-After when throttled."""
    if not isinstance(failure, Throttled):
        return await _render(request, server, user, 400, errors=errors)
    response = await _render(request, server, user, 429, errors=errors)
    response.headers["retry-after"] = str(failure.retry_after)
    return response


@requires("account")
async def change_email(request: Request) -> Response:
    """A new address (or none), confirmed with the password: it is where resets would go."""
    server, user = await _me(request)
    fields = await checked_form(request)
    if fields is None:
        return await refuse_csrf(request)
    # The error is keyed apart from the password form's field of the same name.
    failure, errors = await _password_failure(request, server, user, fields, "email_password")
    if failure is not None:
        return await _refuse(request, server, user, errors, failure)
    try:
        user = await server.doorman.users.set_email(user, field(fields, "email", 300).strip())
    except AccountError as error:
        errors.add(sentence(error), "email")
        return await _render(request, server, user, 400, errors=errors)
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
    failure, errors = await _password_failure(request, server, user, fields, "current_password")
    await check_new_password(
        errors,
        server.doorman,
        password,
        field(fields, "password2"),
        username=user.username,
        email=user.email,
    )
    if errors:
        return await _refuse(request, server, user, errors, failure)
    user = await server.doorman.set_password(user, password, validate=False)
    await update_session_auth(request, user)
    if wants_json(request):
        return await _render(request, server, user, notice=_NOTICES["password"])
    return redirect(server.url("account") + "?done=password")  # a reload sends nothing


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
        errors = FormErrors()
        errors.add("Choose when the token expires: in 30, 90 or 365 days, or never.", "expires")
        return await _render(request, server, user, 400, errors=errors)
    try:
        _, text = await server.doorman.tokens.create(
            user, name=field(fields, "name", 200), expires_in=days * 86400 or None
        )
    except AccountError as error:
        errors = FormErrors()
        errors.add(sentence(error), "name")  # the one field the library checks
        return await _render(request, server, user, 400, errors=errors)
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
