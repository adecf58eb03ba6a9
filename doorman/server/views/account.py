"""``/-/account``: own details, email and password change, own sessions and API tokens,
and recent security activity (the person's own events of the security event log).

A request made with an API token may read the page and manage tokens, within
the token's own reach (see ``create_token`` and ``revoke_token``), but never
change the password or the email address, nor sign a session out: those stay
with the person who signs in with the password.

Step-up (``views/step_up.py``): a session makes a token only with a recent
proof of who it is; the password and email forms ask the current password each
time, which is such a proof (an account without a password steps up instead).
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..._scope import client_address
from ...accounts.event_log import EventFilter
from ...accounts.names import check_email
from ...accounts.signins import SignIn
from ...accounts.tokens import Token
from ...accounts.users import User
from ...auth.guards import requires
from ...auth.login import current_signin, update_session_auth
from ...auth.step_up import mark_proved
from ...events import EventKind
from ...exceptions import (
    AccountError,
    AuthenticationFailed,
    MailNotSent,
    NoTrustedOrigin,
    PermissionDenied,
    Throttled,
)
from ..device_cookie import device_cookie, remember_device
from ..devices import describe
from ..state import ServerState, state_of
from .audit import record
from .common import checked_form, field, json_error, redirect, refuse_csrf, wants_json
from .forms import FormErrors, check_new_password, password_hint, sentence
from .step_up import step_up_needed
from .verification import TAKEN, ask_to_change_email, to_verify_first

__all__ = ["routes"]

security_log = logging.getLogger("doorman.security")

#: How many of the person's own security events the page shows, newest first.
RECENT_EVENTS = 10
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
    "created": "Your account was created, and you are signed in.",
    "password-reset": "Your new password is set, and every other session was signed out.",
    "email-verified": "Your email address is verified.",
    "email-pending": "Check your new address: it takes effect once you follow the link sent "
    "there. Your old address was told.",
}
_TOKEN_NOTICE = "Copy this token now: it will not be shown again."  # noqa: S105 - words
#: Where doorman once kept a new token until the next page showed it: cleared on sight.
_OLD_NEW_TOKEN_KEY = "_new_token"  # noqa: S105 - a session key's name, not a secret

View = Callable[[Request], Awaitable[Response]]


def _not_with_a_token(view: View) -> View:
    """For what only the person may do, signed in with their password: a token gets 403."""

    @functools.wraps(view)
    async def checked(request: Request) -> Response:
        if _via_token(request):
            return await _forbidden(request, "An API token cannot do this: sign in to do it.")
        return await view(request)

    return checked


def _via_token(request: Request) -> bool:
    return bool(request.scope["actor"].get("via") == "token")


async def _calling_token(request: Request, server: ServerState) -> Token | None:
    """The token this request came with; None for a person signed in."""
    if not _via_token(request):
        return None
    token = await server.doorman.tokens.get(str(request.scope["actor"].get("token", "")))
    if token is None:  # deleted meanwhile, or an actor from a plugin that says "token"
        raise PermissionDenied("the token this request came with is no longer valid")
    return token


async def _forbidden(request: Request, message: str) -> Response:
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
    server, user = await _me(request)
    session = request.scope["session"]
    if _OLD_NEW_TOKEN_KEY in session:
        del session[_OLD_NEW_TOKEN_KEY]
    notice = _NOTICES.get(request.query_params.get("done", ""), "")
    return await _render(request, server, user, notice=notice)


async def _render(
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
                "scopes": _listed(t),
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
            "scopes": _listed(made),
            "expires_at": made.expires_at,
        }
    return body


def _listed(token: Token) -> list[str] | None:
    return None if token.scopes is None else list(token.scopes)


@requires("account")
@_not_with_a_token
async def change_email(request: Request) -> Response:
    """A new address (or none), confirmed with the password: it is where resets would go."""
    server, user = await _me(request)
    fields = await checked_form(request)
    if fields is None:
        return await refuse_csrf(request)
    if (stale := _stale_without_password(request, user)) is not None:
        return stale
    errors, email = FormErrors(), field(fields, "email", 300).strip()
    try:
        check_email(email)
    except AccountError as error:
        errors.add(sentence(error), "email")
    else:
        if await server.doorman.users.verified_elsewhere(email, user):
            errors.add(TAKEN, "email")
    throttled = await _confirm(request, server, user, fields, errors, "email_password")
    if errors:
        return await _refused(request, server, user, errors, throttled)
    done = "email-pending" if to_verify_first(server, user, email) else "email"
    try:
        if done == "email-pending":
            # The link goes to an address the asker need not own: counted as reset links are.
            client = client_address(request.scope)
            async with await server.doorman.mail_throttle.attempt(email, client):
                pass
            user = await ask_to_change_email(server, user, email, request.scope)
        else:
            user = await server.doorman.users.set_email(user, email)
    except AccountError as error:
        return await _refused(request, server, user, FormErrors.of(sentence(error)))
    except Throttled as error:
        return await _refused(request, server, user, FormErrors.of(str(error)), error)
    except (MailNotSent, NoTrustedOrigin) as error:  # nothing changed
        security_log.warning("no verification link for a new address: %s", error)
        message = "The link to confirm the new address could not be sent; try again later."
        return await _refused(request, server, user, FormErrors.of(message))
    security_log.info("user %r changed their email address", user.username)
    await record(request, EventKind.EMAIL_CHANGED, user, {"pending": done == "email-pending"})
    if wants_json(request):
        return await _render(request, server, user, notice=_NOTICES[done])
    return redirect(server.url("account") + f"?done={done}")


@requires("account")
@_not_with_a_token
async def change_password(request: Request) -> Response:
    server, user = await _me(request)
    fields = await checked_form(request)
    if fields is None:
        return await refuse_csrf(request)
    if (stale := _stale_without_password(request, user)) is not None:
        return stale
    password, errors = field(fields, "password"), FormErrors()
    throttled = await _confirm(request, server, user, fields, errors)  # every problem at once
    await check_new_password(
        errors,
        server.doorman,
        password,
        field(fields, "password2"),
        username=user.username,
        email=user.email,
    )
    if errors:
        return await _refused(request, server, user, errors, throttled)
    user = await server.doorman.set_password(user, password, validate=False)
    await update_session_auth(request, user)
    await record(request, EventKind.PASSWORD_CHANGED, user)
    response: Response
    if wants_json(request):
        response = await _render(request, server, user, notice=_NOTICES["password"])
    else:
        response = redirect(server.url("account") + "?done=password")  # a reload sends nothing
    remember_device(request, response, user)  # the new password made the old marks untrusted
    return response


async def _confirm(
    request: Request,
    server: ServerState,
    user: User,
    fields: dict[str, str],
    errors: FormErrors,
    field_name: str = "current_password",
) -> Throttled | None:
    """Check the form's ``current_password``, adding what is wrong to ``errors`` beside
    ``field_name``. The sign-in throttle counts and logs a wrong one like a failed
    sign-in; the refusal is returned when it said no (429, or 503 when busy).

    A right one is a proof of who the person is like the confirm page's: it counts
    as a step-up (``mark_proved``). An account without a password has nothing to
    type: ``_stale_without_password`` asked it for a recent proof instead."""
    if not user.has_usable_password:
        return None
    try:
        await server.doorman.confirm_password(
            user,
            field(fields, "current_password"),
            client=client_address(request.scope),
            device=device_cookie(request),
        )
    except Throttled as error:
        errors.add(str(error), field_name)
        return error
    except AuthenticationFailed:
        errors.add("The current password is wrong.", field_name)
    else:
        mark_proved(request.scope["session"], "pwd")
    return None


def _stale_without_password(request: Request, user: User) -> Response | None:
    """For an account without a password (a passkey's), the step-up that stands in for the
    current password the form would ask; None for an account with one (the form asks it)."""
    return None if user.has_usable_password else step_up_needed(request)


async def _refused(
    request: Request,
    server: ServerState,
    user: User,
    errors: FormErrors,
    throttled: Throttled | None = None,
) -> Response:
    """The page again with ``errors``: 400, or the throttle's status with its ``Retry-After``."""
    status = 400 if throttled is None else throttled.status_code
    response = await _render(request, server, user, status, errors=errors)
    if throttled is not None:
        response.headers["retry-after"] = str(throttled.retry_after)
    return response


@requires("account")
@_not_with_a_token
async def revoke_signin(request: Request) -> Response:
    server, user = await _me(request)
    if await checked_form(request) is None:
        return await refuse_csrf(request)
    signin = request.path_params["signin_id"]
    found = await server.doorman.signins.revoke(signin, user=user)
    if found:
        await record(request, EventKind.SESSION_REVOKED, user, {"signin_id": signin[:64]})
    if wants_json(request):
        return JSONResponse({"revoked": found}, 200 if found else 404)
    return redirect(server.url("account"))


@requires("account")
async def create_token(request: Request) -> Response:
    """A new token, shown once in the answer to this POST: it is kept nowhere in plain text.

    Made with a token, the new one has at most that token's scopes and ends no
    later (see ``Tokens.create``).
    """
    server, user = await _me(request)
    fields = await checked_form(request)
    if fields is None:
        return await refuse_csrf(request)
    if (stale := step_up_needed(request)) is not None:  # a session's; a token has its scopes
        return stale
    days = TOKEN_LIFETIMES.get(field(fields, "expires", 10))
    if days is None:
        errors = FormErrors()
        errors.add("Choose when the token expires: in 30, 90 or 365 days, or never.", "expires")
        return await _render(request, server, user, 400, errors=errors)
    try:
        made = await server.doorman.tokens.create(
            user,
            name=field(fields, "name", 200),
            expires_in=days * 86400 or None,
            scopes=_asked_scopes(fields),
            within=await _calling_token(request, server),
        )
    except PermissionDenied as error:
        return await _forbidden(request, sentence(error))
    except AccountError as error:
        errors = FormErrors()
        errors.add(sentence(error), "name")  # the one field the library checks
        return await _render(request, server, user, 400, errors=errors)
    token = made[0]
    detail = {"token_id": token.id, "name": token.name, "scopes": _listed(token)}
    await record(request, EventKind.TOKEN_CREATED, user, detail)
    # The page itself, not a redirect to it: a redirect would need the token kept until then.
    return await _render(request, server, user, 201, notice=_TOKEN_NOTICE, new_token=made)


def _asked_scopes(fields: dict[str, str]) -> list[str] | None:
    """The actions a new token is limited to (comma- or space-separated, or a JSON list).

    None when not asked (not limited; made with a token, that token's scopes). Asked
    for none at all (``[]``, ``""``), it is refused rather than read as "not limited".
    """
    if "scopes" not in fields:
        return None
    names = [name for name in re.split(r"[\s,]+", field(fields, "scopes", 1000)) if name]
    if not names:
        raise AccountError("scopes: name at least one action, or leave scopes out")
    return names


@requires("account")
async def revoke_token(request: Request) -> Response:
    """Revoke one of your tokens; with a token, only itself or one within its reach."""
    server, user = await _me(request)
    if await checked_form(request) is None:
        return await refuse_csrf(request)
    token_id = request.path_params["token_id"]
    try:
        caller = await _calling_token(request, server)
    except PermissionDenied as error:
        return await _forbidden(request, sentence(error))
    if caller is not None and not await _in_reach(server, caller, token_id, user):
        return await _forbidden(
            request, "A token can revoke only itself and tokens that can do no more than it."
        )
    found = await server.doorman.tokens.revoke(token_id, user=user)
    if found:
        await record(request, EventKind.TOKEN_REVOKED, user, {"token_id": token_id[:64]})
    if wants_json(request):
        return JSONResponse({"revoked": found}, 200 if found else 404)
    return redirect(server.url("account"))


async def _in_reach(server: ServerState, caller: Token, token_id: str, user: User) -> bool:
    """May ``caller`` revoke this token: itself, or one of its user's that it covers?

    True too for a token that is not the user's, or none: revoking it finds nothing (404).
    """
    target = await server.doorman.tokens.get(token_id)
    if target is None or target.user_id != user.id or target.id == caller.id:
        return True
    return caller.covers(target)
