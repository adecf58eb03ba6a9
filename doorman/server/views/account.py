"""``/-/account``: its routes, and the changes a person makes there with their password:
the email address, the password, signing a session out. The page itself is
``account_page.py``; the API tokens, ``account_tokens.py``.

An API token may do none of these (``not_with_a_token``): they stay with the
person who signs in with the password.

Step-up (``views/step_up.py``): a session makes a token only with a recent
proof of who it is; the password and email forms ask the current password each
time, which is such a proof (an account without a password steps up instead).
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..._scope import client_address
from ...accounts.names import check_email
from ...accounts.users import User
from ...auth.guards import requires
from ...auth.login import update_session_auth
from ...auth.step_up import mark_proved
from ...events import EventKind
from ...exceptions import (
    AccountError,
    AuthenticationFailed,
    MailNotSent,
    NoTrustedOrigin,
    Throttled,
)
from ..device_cookie import device_cookie, remember_device
from ..state import ServerState
from .account_page import NOTICES, account_page, me, not_with_a_token, render
from .account_tokens import create_token, revoke_token
from .audit import record
from .common import checked_form, field, redirect, refuse_csrf, wants_json
from .forms import FormErrors, check_new_password, sentence
from .step_up import step_up_needed
from .verification import TAKEN, ask_to_change_email, to_verify_first

__all__ = ["routes"]

security_log = logging.getLogger("doorman.security")


def routes(prefix: str) -> list[BaseRoute]:
    return [
        Route(f"{prefix}/account", account_page),
        Route(f"{prefix}/account/email", change_email, methods=["POST"]),
        Route(f"{prefix}/account/password", change_password, methods=["POST"]),
        Route(f"{prefix}/account/sessions/{{signin_id}}/revoke", revoke_signin, methods=["POST"]),
        Route(f"{prefix}/account/tokens", create_token, methods=["POST"]),
        Route(f"{prefix}/account/tokens/{{token_id}}/revoke", revoke_token, methods=["POST"]),
    ]


@requires("account")
@not_with_a_token
async def change_email(request: Request) -> Response:
    """A new address (or none), confirmed with the password: it is where resets would go."""
    server, user = await me(request)
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
            try:
                # Counted as a link to it would be: else a signed-in person could ask,
                # unthrottled, which addresses other accounts hold verified.
                await _count_a_link(request, server, email)
            except Throttled as error:
                return await _refused(request, server, user, FormErrors.of(str(error)), error)
    throttled = await _confirm(request, server, user, fields, errors, "email_password")
    if errors:
        return await _refused(request, server, user, errors, throttled)
    done = "email-pending" if to_verify_first(server, user, email) else "email"
    try:
        if done == "email-pending":
            # The link goes to an address the asker need not own: counted as reset links are.
            await _count_a_link(request, server, email)
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
        return await render(request, server, user, notice=NOTICES[done])
    return redirect(server.url("account") + f"?done={done}")


async def _count_a_link(request: Request, server: ServerState, email: str) -> None:
    """One more link asked for to ``email`` from this client: ``Throttled`` past the limits."""
    async with await server.doorman.mail_throttle.attempt(email, client_address(request.scope)):
        pass


@requires("account")
@not_with_a_token
async def change_password(request: Request) -> Response:
    server, user = await me(request)
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
        response = await render(request, server, user, notice=NOTICES["password"])
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
    response = await render(request, server, user, status, errors=errors)
    if throttled is not None:
        response.headers["retry-after"] = str(throttled.retry_after)
    return response


@requires("account")
@not_with_a_token
async def revoke_signin(request: Request) -> Response:
    server, user = await me(request)
    if await checked_form(request) is None:
        return await refuse_csrf(request)
    signin = request.path_params["signin_id"]
    found = await server.doorman.signins.revoke(signin, user=user)
    if found:
        await record(request, EventKind.SESSION_REVOKED, user, {"signin_id": signin[:64]})
    if wants_json(request):
        return JSONResponse({"revoked": found}, 200 if found else 404)
    return redirect(server.url("account"))
