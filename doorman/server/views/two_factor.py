"""``/-/login/two-factor``: the second step of a sign-in, after a right password.

Nobody is signed in until this step completes (``doorman.auth.two_step``): the
page asks for a code from the authenticator app or a recovery code (or a
passkey, with the passkeys partial), and then signs the person in, the session
key cycled only now. A person the ``require_two_factor`` policy covers, who has
no factor yet, sets up the authenticator app here instead, sees their recovery
codes once, and is then signed in. With no sign-in waiting (none, older than
five minutes, or the account changed since the password), it is back to
``/-/login``.

JSON clients: ``POST /-/login`` answers ``{"two_factor": URL}``; a JSON ``POST``
of ``{"code": ...}`` to that URL (with the CSRF token) answers ``{"actor": ...}``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..._scope import client_address
from ...auth.two_step import (
    PendingSignIn,
    complete_second_step,
    forget_second_step,
    pending_second_step,
)
from ...events import EventKind
from ...exceptions import AuthenticationFailed, Throttled
from ...redirects import origin_of
from ..headers import content_security_policy
from ..state import ServerState, state_of
from .audit import record
from .common import checked_form, field, json_error, redirect, refuse_csrf, wants_json
from .forms import FormErrors
from .signin import after_sign_in
from .totp_setup import (
    WRONG_SETUP_CODE,
    new_recovery_codes,
    setup_context,
    shown_here,
    waiting_secret,
)

__all__ = ["routes", "second_step_page"]

#: Back to the password: no sign-in waits on this session for its second step.
NO_PENDING = "Your sign-in was not completed in time, or the account changed. Sign in again."


def routes(prefix: str) -> list[BaseRoute]:
    return [Route(f"{prefix}/login/two-factor", second_step_page, methods=["GET", "POST"])]


async def second_step_page(request: Request) -> Response:
    server = state_of(request)
    pending = await pending_second_step(request)
    if pending is None:
        if request.method == "POST" and await checked_form(request) is None:
            return await refuse_csrf(request)
        return _back_to_login(request, server)
    enrol = await _must_enrol(server, pending)
    if request.method == "GET":
        return await _page(request, server, pending, enrol)
    fields = await checked_form(request)
    if fields is None:
        return await refuse_csrf(request)
    if "cancel" in fields:
        await forget_second_step(request)
        return _back_to_login(request, server, cancelled=True)
    if enrol:
        return await _enrol(request, server, pending, field(fields, "code", 100))
    return await _check_code(request, server, pending, field(fields, "code", 100))


async def _must_enrol(server: ServerState, pending: PendingSignIn) -> bool:
    """Enrolment, unless a factor came meanwhile (a passkey added on this very page)."""
    return pending.must_enrol and not (await server.doorman.second_factors(pending.user)).any


async def _check_code(
    request: Request, server: ServerState, pending: PendingSignIn, code: str
) -> Response:
    try:
        method = await server.doorman.verify_second_factor(
            pending.user, code, client=client_address(request.scope)
        )
    except Throttled as error:  # 429; Busy, 503
        return await _page(request, server, pending, False, FormErrors.of(str(error)), error)
    except AuthenticationFailed as error:
        return await _page(request, server, pending, False, FormErrors.of(str(error)), status=401)
    actor = await complete_second_step(request, pending, method)
    return await after_sign_in(
        request, pending.user, actor, pending.next, remember=pending.remember
    )


async def _enrol(
    request: Request, server: ServerState, pending: PendingSignIn, code: str
) -> Response:
    """The covered person's first factor: on with a right code, then signed in, with their
    recovery codes shown this once."""
    user = pending.user
    state = await server.doorman.totp.state(user)
    mine = state is not None and shown_here(request, state.secret)
    if not mine or not await server.doorman.totp.confirm(user, code):
        errors = FormErrors()
        errors.add(WRONG_SETUP_CODE, "code")
        return await _page(request, server, pending, True, errors, status=401)
    await record(request, EventKind.TWO_FACTOR_ENABLED, user, actor=user.username)
    codes = await new_recovery_codes(request, server, user, actor=user.username)
    actor = await complete_second_step(request, pending, "otp")
    if wants_json(request):
        body = {"actor": actor, "recovery_codes": codes}
        response: Response = JSONResponse(body, headers={"cache-control": "no-store"})
    else:
        response = await server.templates.render(
            request, "login_recovery_codes.html", recovery_codes=codes, next=pending.next
        )
        _allow_form_target(response, pending.next)
    return await after_sign_in(
        request, user, actor, pending.next, remember=pending.remember, response=response
    )


async def _page(
    request: Request,
    server: ServerState,
    pending: PendingSignIn,
    enrol: bool,
    errors: FormErrors | None = None,
    refusal: Throttled | None = None,
    *,
    status: int = 200,
) -> Response:
    """The step's page (or JSON): the code field, or the set-up of an authenticator app."""
    errors = errors or FormErrors()
    status = refusal.status_code if refusal is not None else status
    headers = {} if refusal is None else {"retry-after": str(refusal.retry_after)}
    setup: dict[str, Any] = {}
    if enrol:
        secret = await waiting_secret(request, server, pending.user)
        setup = setup_context(server, pending.user, secret)
    if wants_json(request):
        body: dict[str, Any] = {"two_factor": {"username": pending.user.username, "enrol": enrol}}
        if enrol:
            body["two_factor"]["otpauth_uri"] = setup["otpauth_uri"]
        if errors:
            body.update(errors.json(), error=" ".join(errors.messages))
        return JSONResponse(body, status, {"cache-control": "no-store", **headers})
    factors = await server.doorman.second_factors(pending.user)
    response = await server.templates.render(
        request,
        "login_two_factor.html",
        status,
        username=pending.user.username,
        enrol=enrol,
        has_passkeys=factors.passkeys > 0,
        has_totp=factors.totp,
        setup=setup,
        notice="",
        **errors.context(),
    )
    response.headers.update(headers)
    _allow_form_target(response, pending.next)
    return response


def _allow_form_target(response: Response, target: str) -> None:
    """The form's answer redirects to ``target``: browsers check it against form-action."""
    origin = origin_of(target)
    if origin:
        response.headers["content-security-policy"] = content_security_policy([origin])


def _back_to_login(request: Request, server: ServerState, *, cancelled: bool = False) -> Response:
    login = server.url("login")
    if wants_json(request):
        if cancelled:
            return JSONResponse({"actor": None}, headers={"cache-control": "no-store"})
        return json_error(NO_PENDING, 401)
    return redirect(login)
