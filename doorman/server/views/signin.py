"""Sign in, sign out, register, and the one-time set-up of the first admin."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..._scope import client_address
from ...accounts.second_factors import policy_covers
from ...accounts.users import User
from ...auth import csrf
from ...auth.login import login, logout
from ...auth.two_step import begin_second_step
from ...events import EventKind
from ...exceptions import AccountError, AuthenticationFailed, Throttled
from ...redirects import origin_of, safe_path
from .. import setup
from ..device_cookie import device_cookie, remember_device
from ..headers import content_security_policy
from ..state import ServerState, state_of
from .audit import record
from .common import checked_form, field, json_error, redirect, refuse_csrf, wants_json
from .errors import way_on
from .forms import FormErrors, new_account_problems, password_hint, sentence
from .verification import verification_gate, verify_new_account

__all__ = [
    "after_sign_in",
    "destination_of",
    "login_page",
    "logout_view",
    "register_page",
    "second_step_for",
    "setup_page",
    "signed_in",
]

#: Notices on the login page after a redirect, by ``?done=``: fixed words, never text from the URL.
_NOTICES = {
    "signed-out": "You have signed out.",
    "email-verified": "Your email address is verified. You can sign in.",
}
_TRUE = frozenset({"on", "1", "true", "yes"})


class _Destination(NamedTuple):
    """Where a sign-in goes, and the ``next`` (with its signature) the form carries there."""

    url: str
    next: str = ""
    next_sig: str = ""


def destination_of(server: ServerState, values: Any) -> _Destination:
    """A URL we signed on an allowed origin, or a same-site path; else ``login_redirect``."""
    given, signature = values.get("next"), values.get("next_sig")
    absolute = server.next_signer.absolute_allowed(given, signature, server.origins)
    if absolute is not None:
        return _Destination(absolute, absolute, signature)
    path = safe_path(given, default="")
    return _Destination(path, path) if path else _Destination(server.login_redirect)


def _remember(request: Request, fields: dict[str, str]) -> bool:
    """Keep me signed in? The form's checkbox; a JSON sign-in keeps the session unless told."""
    if "remember" not in fields:
        return request.headers.get("content-type", "").startswith("application/json")
    return fields["remember"].strip().lower() in _TRUE


async def login_page(request: Request) -> Response:
    server = state_of(request)
    if request.method == "GET":
        destination = destination_of(server, request.query_params)
        if request.scope.get("actor") is not None and "next" in request.query_params:
            return redirect(destination.url)
        notice = _NOTICES.get(request.query_params.get("done", ""), "")
        return await _login_form(request, server, destination, notice=notice)
    fields = await checked_form(request)
    if fields is None:
        if request.scope.get("actor") is not None and not wants_json(request):
            return redirect(server.login_redirect)  # a second login tab: already signed in
        return await refuse_csrf(request)
    destination = destination_of(server, fields)
    username, remember = field(fields, "username", 600), _remember(request, fields)
    try:
        user = await server.doorman.authenticate(
            username,
            field(fields, "password"),
            client=client_address(request.scope),
            device=device_cookie(request),
        )
    except Throttled as error:  # 429; Busy, 503
        headers = {"retry-after": str(error.retry_after)}
        if wants_json(request):
            return json_error(str(error), error.status_code, **headers)
        response = await _login_form(request, server, destination, username, [str(error)], remember)
        response.status_code = error.status_code
        response.headers.update(headers)
        return response
    except AuthenticationFailed as error:
        if wants_json(request):
            return json_error(str(error), 401)
        response = await _login_form(request, server, destination, username, [str(error)], remember)
        response.status_code = 401
        return response
    # 302, as DESIGN.md's route contract says (scripts check for it); browsers GET either way.
    return await signed_in(request, user, destination.url, status=302, remember=remember)


async def _login_form(
    request: Request,
    server: ServerState,
    destination: _Destination,
    username: str = "",
    errors: list[str] | None = None,
    remember: bool = False,
    *,
    notice: str = "",
) -> Response:
    response = await server.templates.render(
        request,
        "login.html",
        next=destination.next,
        next_sig=destination.next_sig,
        username=username,
        errors=errors or [],
        notice=notice,
        remember=remember,
        allow_registration=server.settings.registration_mode == "open",
        can_send_mail=server.outbox.can_send,
        email_sign_in=server.settings.email_sign_in and server.outbox.can_send,
    )
    # Browsers check the redirect that answers this form against the page's form-action:
    # name the one place it may go, besides this site (and the landing, for a second tab).
    targets = [o for o in (origin_of(destination.url), origin_of(server.login_redirect)) if o]
    if targets:
        response.headers["content-security-policy"] = content_security_policy(targets)
    return response


async def signed_in(
    request: Request,
    user: User,
    target: str,
    status: int = 303,
    *,
    remember: bool = True,
    via: str = "password",
    also: Mapping[str, Any] | None = None,
) -> Response:
    """Sign ``user`` in on this request (a new session key and CSRF token); go to ``target``.

    Every way into a session comes here. A person with a second factor, or one
    the ``require_two_factor`` policy covers, is not signed in yet: the session
    notes the first step (its key unchanged) and they go to ``/-/login/two-factor``
    (a JSON client is told that URL). A passkey with user verification is two
    factors by itself (``via="passkey"``). With ``require_verified_email``, an
    unverified account gets the page that says so.
    """
    refused = await verification_gate(request, user)
    if refused is not None:
        return refused
    if via != "passkey":
        step = await second_step_for(request, user)
        if step is not None:
            await begin_second_step(
                request, user, via=via, next=target, remember=remember, must_enrol=step == "enrol"
            )
            url = state_of(request).url("login/two-factor")
            if wants_json(request):
                return JSONResponse({"two_factor": url}, headers={"cache-control": "no-store"})
            return redirect(url, status)
    actor = await login(request, user, via=via)
    return await after_sign_in(request, user, actor, target, status, remember=remember, also=also)


async def second_step_for(request: Request, user: User) -> Literal["code", "enrol"] | None:
    """What stands between ``user``'s first step and their session: a code (or a passkey),
    enrolling a factor (the policy covers them, and they have none), or nothing."""
    if (await state_of(request).doorman.second_factors(user)).any:
        return "code"
    if policy_covers(state_of(request).settings.require_two_factor, user):
        return "enrol"
    return None


async def after_sign_in(
    request: Request,
    user: User,
    actor: dict[str, Any],
    target: str,
    status: int = 303,
    *,
    remember: bool = True,
    response: Response | None = None,
    also: Mapping[str, Any] | None = None,
) -> Response:
    """What follows ``login()``: the session's expiry, a new CSRF token, this browser trusted
    for the account; then ``response``, or the actor (JSON, with ``also``'s keys) or a
    redirect to ``target``."""
    session = request.scope["session"]
    session.set_expiry(None if remember else 0)  # 0: the cookie ends with the browser session
    csrf.rotate(session)  # a token seen before sign-in is worthless after
    if response is None and wants_json(request):
        body = {"actor": actor, **(also or {})}
        response = JSONResponse(body, headers={"cache-control": "no-store"})
    elif response is None:
        response = redirect(target, status)
    remember_device(request, response, user)  # this browser is now trusted for this account
    return response


async def logout_view(request: Request) -> Response:
    server = state_of(request)
    if await checked_form(request) is None:
        if request.scope.get("actor") is None and not wants_json(request):
            return redirect(server.url("login"))  # a stale tab: signed out already
        return await refuse_csrf(request)
    await logout(request)
    if wants_json(request):
        return JSONResponse({"actor": None}, headers={"cache-control": "no-store"})
    return redirect(server.url("login") + "?done=signed-out")


async def register_page(request: Request) -> Response:
    server = state_of(request)
    if server.settings.registration_mode != "open":
        return await _not_found(request, server, "Registration is closed on this site.")
    return await _account_form(request, server, action=server.url("register"), admin=False)


async def setup_page(request: Request) -> Response:
    server = state_of(request)
    token = request.query_params.get("token") if request.method == "GET" else None
    if request.method == "GET" and not await setup.setup_token_valid(server.doorman.engine, token):
        return await _not_found(
            request,
            server,
            "This set-up link is not valid: it was used already, or the server was "
            "restarted and printed a new one.",
        )
    return await _account_form(
        request, server, action=server.url("setup"), admin=True, token=token or ""
    )


async def _account_form(
    request: Request, server: ServerState, *, action: str, admin: bool, token: str = ""
) -> Response:
    """The registration form, and its set-up twin that creates the first admin."""
    template = "setup.html" if admin else "register.html"
    context: dict[str, Any] = {
        "action": action,
        "token": token,
        "username": "",
        "email": "",
        "errors": [],
        "notice": "",
        "min_length": server.doorman.password_min_length,
        "password_hint": password_hint(server.doorman),
        "button": "Create the admin account" if admin else "Create account",
    }
    if request.method == "GET":
        return await server.templates.render(request, template, **context)
    fields = await checked_form(request)
    if fields is None:
        return await refuse_csrf(request)
    username, email = field(fields, "username", 600), field(fields, "email", 300)
    context.update(username=username, email=email, token=field(fields, "token", 200))
    # Sign-ups count per address (in flight too); the set-up link is a limit of its own.
    try:
        attempt = await server.doorman.registrations.attempt(
            None if admin else client_address(request.scope)
        )
    except Throttled as error:  # 429; Busy, 503
        return await _form_errors(
            request, server, template, context, FormErrors.of(str(error)), error
        )
    async with attempt:
        created = await _create_account(server, fields, admin=admin, token=context["token"])
    if isinstance(created, User):
        detail = {"via": "setup" if admin else "registration", "admin": admin}
        # By the person themselves, though nobody is signed in yet.
        await record(request, EventKind.USER_CREATED, created, detail, actor=created.username)
        if not admin and created.email and server.outbox.can_send:
            server.background.spawn(verify_new_account(server, created, request.scope))
        landing = "admin/users" if admin else "account?done=created"
        return await signed_in(request, created, server.url(landing))
    return await _form_errors(request, server, template, context, created)


async def _create_account(
    server: ServerState, fields: dict[str, str], *, admin: bool, token: str
) -> User | FormErrors:
    """The new account, or what is wrong with the form."""
    username, email = field(fields, "username", 600), field(fields, "email", 300)
    password = field(fields, "password")
    errors = await new_account_problems(
        server.doorman, username, email, password, field(fields, "password2")
    )
    if admin and not errors and not await setup.claim_setup_token(server.doorman.engine, token):
        errors = FormErrors.of("This set-up link is not valid any more.")
    if errors:
        return errors
    try:
        return await server.doorman.create_user(
            username, password, email=email or None, admin=admin, validate=False
        )
    except AccountError as error:
        return FormErrors.of(sentence(error))


async def _form_errors(
    request: Request,
    server: ServerState,
    template: str,
    context: dict[str, Any],
    errors: FormErrors,
    refusal: Throttled | None = None,
) -> Response:
    """The form again with ``errors``: 400, or the refusal's status with its ``Retry-After``."""
    status = 400 if refusal is None else refusal.status_code
    headers = {} if refusal is None else {"retry-after": str(refusal.retry_after)}
    if wants_json(request):
        return JSONResponse(errors.json(), status, {"cache-control": "no-store", **headers})
    response = await server.templates.render(
        request, template, status, **{**context, **errors.context()}
    )
    response.headers.update(headers)
    return response


async def _not_found(request: Request, server: ServerState, message: str) -> Response:
    if wants_json(request):
        return json_error(message, 404)
    return await server.templates.render(
        request,
        "message.html",
        404,
        title="Not available",
        message=message,
        link=way_on(request),  # no "Sign in" for someone signed in already
    )
