"""Step-up at ``/-/account/confirm``: prove who you are again, then carry on.

The views that change what could lock a person out (a new password or email
address, second factors, API tokens) ask ``step_up_needed(request)`` first.
None: the session proved who it is within ``step_up_after`` seconds, or the
request is not a session's (an API token's scopes govern it). Otherwise the
answer to send: a 303 to the confirm page, with a ``next`` back (a path on
this site only), or for a JSON client a 403 ``{"error": ..., "step_up": url}``.

The confirm page takes the password (``password``), throttled and logged as a
sign-in is (``Doorman.confirm_password``), or a code from the authenticator app
or a recovery code (``code``, ``Doorman.verify_second_factor``), or a passkey
(``_passkey_confirm.html``, answered by the passkeys views). A success notes the time
(``doorman.auth.step_up.mark_proved``), records ``reauthenticated``, and
returns to ``next``.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..._scope import client_address
from ...accounts.users import User
from ...auth.guards import requires
from ...auth.step_up import mark_proved, proof_is_fresh
from ...events import EventKind
from ...exceptions import AuthenticationFailed, Throttled
from ...redirects import safe_path
from ..device_cookie import device_cookie
from ..state import ServerState, state_of
from .audit import record
from .common import checked_form, field, json_error, redirect, refuse_csrf, wants_json
from .forms import FormErrors

__all__ = ["confirm_page", "routes", "step_up_needed"]

security_log = logging.getLogger("doorman.security")
STEP_UP_MESSAGE = "Confirm it is you first: this needs a recent proof of who you are."


def routes(prefix: str) -> list[BaseRoute]:
    return [Route(f"{prefix}/account/confirm", confirm_page, methods=["GET", "POST"])]


def step_up_needed(request: Request, back: str | None = None) -> Response | None:
    """None when the request may go on; else the way to the confirm page (see the module).

    ``back`` is where the confirm page returns to: by default this request's path
    for a GET, and the account page for anything else (a form is not posted again).
    """
    actor = request.scope.get("actor") or {}
    if actor.get("via") != "session":
        return None  # a token's scopes, or a plugin's actor: nothing to step up
    server = state_of(request)
    if proof_is_fresh(request.scope.get("session"), server.settings.step_up_after):
        return None
    if back is None:
        back = request.url.path if request.method == "GET" else server.url("account")
    url = confirm_url(server, back)
    if wants_json(request):
        return JSONResponse(
            {"error": STEP_UP_MESSAGE, "step_up": url},
            403,
            headers={"cache-control": "no-store"},
        )
    return redirect(url)


def confirm_url(server: ServerState, back: str) -> str:
    return f"{server.url('account/confirm')}?{urlencode({'next': safe_path(back, '')})}"


def _next_of(server: ServerState, value: str) -> str:
    """A path on this site to return to; the account page for anything else."""
    return safe_path(value, server.url("account")) if value else server.url("account")


@requires("account")
async def confirm_page(request: Request) -> Response:
    server = state_of(request)
    if (request.scope.get("actor") or {}).get("via") != "session":
        return json_error("Only a signed-in session confirms who it is.", 403)
    if request.method == "GET":
        return await _render(
            request, server, _next_of(server, request.query_params.get("next", ""))
        )
    fields = await checked_form(request)
    if fields is None:
        return await refuse_csrf(request)
    back = _next_of(server, field(fields, "next", 2000))
    user = await server.doorman.users.require(request.scope["actor"]["id"])
    code = field(fields, "code", 100)
    proof = _code_proof if code else _password_proof
    errors = FormErrors()
    try:
        method = await proof(request, server, user, fields)
    except Throttled as error:
        errors.add(str(error), "code" if code else "password")
        response = await _render(request, server, back, errors, error.status_code)
        response.headers["retry-after"] = str(error.retry_after)
        return response
    except AuthenticationFailed:
        if code:
            errors.add("That code is not right, or was used already.", "code")
        else:
            errors.add("That is not your password.", "password")
        return await _render(request, server, back, errors, 400)
    mark_proved(request.scope["session"], method)
    await record(request, EventKind.REAUTHENTICATED, user, {"method": method})
    security_log.info("user %r confirmed who they are", user.username)
    if wants_json(request):
        return JSONResponse({"ok": True, "next": back}, headers={"cache-control": "no-store"})
    return redirect(back)


async def _password_proof(
    request: Request, server: ServerState, user: User, fields: dict[str, str]
) -> str:
    """The account's password, throttled and logged as a sign-in is; its ``amr``, "pwd"."""
    if not user.has_usable_password:
        raise AuthenticationFailed("no password")
    await server.doorman.confirm_password(
        user,
        field(fields, "password"),
        client=client_address(request.scope),
        device=device_cookie(request),
    )
    return "pwd"


async def _code_proof(
    request: Request, server: ServerState, user: User, fields: dict[str, str]
) -> str:
    """A code from the authenticator app, or a recovery code (then spent); "otp"."""
    code = field(fields, "code", 100)
    return await server.doorman.verify_second_factor(
        user, code, client=client_address(request.scope)
    )


async def _render(
    request: Request,
    server: ServerState,
    back: str,
    errors: FormErrors | None = None,
    status: int = 200,
) -> Response:
    user = await server.doorman.users.require(request.scope["actor"]["id"])
    if wants_json(request):
        body = {"step_up": confirm_url(server, back), **(errors.json() if errors else {})}
        return JSONResponse(body, status, headers={"cache-control": "no-store"})
    factors = await server.doorman.second_factors(user)
    return await server.templates.render(
        request,
        "confirm.html",
        status,
        next=back,
        has_password=user.has_usable_password,
        has_codes=factors.totp or factors.recovery_codes > 0,
        has_passkeys=factors.passkeys > 0,
        **(errors or FormErrors()).context(),
        notice="",
    )
