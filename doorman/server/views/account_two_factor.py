"""``/-/account/two-factor``: turn the authenticator app on and off, and the recovery codes.

Every POST needs the CSRF token, and the person signed in (an API token gets
403). The field ``action`` says what to do; each action is one function
(``ACTIONS``), so that a check before it ("confirm your password again") is one
line in each. The app is on only after a correct code; the recovery codes are
shown once, by the answer to the POST that made them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ...accounts.second_factors import policy_covers
from ...accounts.users import User
from ...auth.guards import requires
from ...events import EventKind
from ...exceptions import AccountError
from ..state import ServerState, state_of
from .audit import record
from .common import checked_form, field, json_error, redirect, refuse_csrf, wants_json
from .forms import FormErrors, sentence
from .passkeys_manage import LAST_FACTOR
from .step_up import step_up_needed
from .totp_setup import (
    WRONG_SETUP_CODE,
    new_recovery_codes,
    setup_context,
    shown_here,
    waiting_secret,
)

__all__ = [
    "ACTIONS",
    "confirm_totp",
    "disable_totp",
    "regenerate_recovery_codes",
    "routes",
    "start_totp",
    "two_factor_page",
]

#: Notices after a redirect, by ``?done=``: fixed words, never text from the URL.
_NOTICES = {"off": "The authenticator app is off: a password alone signs you in again."}

Action = Callable[[Request, ServerState, User, dict[str, str]], Awaitable[Response]]


def routes(prefix: str) -> list[BaseRoute]:
    return [Route(f"{prefix}/account/two-factor", two_factor_page, methods=["GET", "POST"])]


@requires("account")
async def two_factor_page(request: Request) -> Response:
    server = state_of(request)
    if request.scope["actor"].get("via") == "token":
        return json_error("An API token cannot do this: sign in to do it.", 403)
    user = await server.doorman.users.require(request.scope["actor"]["id"])
    if request.method == "GET":
        notice = _NOTICES.get(request.query_params.get("done", ""), "")
        return await _render(request, server, user, notice=notice)
    fields = await checked_form(request)
    if fields is None:
        return await refuse_csrf(request)
    action = ACTIONS.get(field(fields, "action", 20) or ("confirm" if "code" in fields else ""))
    if action is None:
        errors = FormErrors.of("Choose what to do: set up, confirm, turn off, or new codes.")
        return await _render(request, server, user, 400, errors=errors)
    stale = step_up_needed(request, back=server.url("account/two-factor"))
    if stale is not None:
        return stale  # changing the factors needs a recent proof of who this is
    return await action(request, server, user, fields)


async def start_totp(
    request: Request, server: ServerState, user: User, fields: dict[str, str]
) -> Response:
    """A new secret to set the app up with (on once confirmed); refused while the app is on."""
    try:
        secret = await waiting_secret(request, server, user)
    except AccountError as error:
        return await _render(request, server, user, 409, errors=FormErrors.of(sentence(error)))
    return await _render(request, server, user, setup=setup_context(server, user, secret))


async def confirm_totp(
    request: Request, server: ServerState, user: User, fields: dict[str, str]
) -> Response:
    """The app on after a correct code, and the first recovery codes, shown this once."""
    state = await server.doorman.totp.state(user)
    if state is None or state.on or not shown_here(request, state.secret):
        errors = FormErrors.of("Nothing to confirm: set up the authenticator app first.")
        return await _render(request, server, user, 409, errors=errors)
    if not await server.doorman.totp.confirm(user, field(fields, "code", 100)):
        errors = FormErrors()
        errors.add(WRONG_SETUP_CODE, "code")
        setup = setup_context(server, user, state.secret)
        return await _render(request, server, user, 400, errors=errors, setup=setup)
    await record(request, EventKind.TWO_FACTOR_ENABLED, user)
    codes = await new_recovery_codes(request, server, user)
    notice = "The authenticator app is on: your next sign-in asks for a code from it."
    return await _render(request, server, user, notice=notice, recovery_codes=codes)


async def regenerate_recovery_codes(
    request: Request, server: ServerState, user: User, fields: dict[str, str]
) -> Response:
    """New recovery codes, shown this once; the old ones end."""
    if not (await server.doorman.second_factors(user)).any:
        errors = FormErrors.of("Recovery codes stand in for a second factor: set one up first.")
        return await _render(request, server, user, 409, errors=errors)
    codes = await new_recovery_codes(request, server, user)
    notice = "New recovery codes: the old ones no longer work."
    return await _render(request, server, user, notice=notice, recovery_codes=codes)


async def disable_totp(
    request: Request, server: ServerState, user: User, fields: dict[str, str]
) -> Response:
    """The app off; the recovery codes go too when no factor is left for them to stand in for.
    Refused when it is the last factor of a person ``require_two_factor`` covers."""
    covered = policy_covers(server.settings.require_two_factor, user)
    if covered and not (await server.doorman.second_factors(user)).passkeys:
        return await _render(request, server, user, 409, errors=FormErrors.of(LAST_FACTOR))
    if await server.doorman.totp.disable(user):
        await record(request, EventKind.TWO_FACTOR_DISABLED, user)
    if not (await server.doorman.second_factors(user)).any:
        await server.doorman.recovery_codes.delete(user)
    if wants_json(request):
        return await _render(request, server, user, notice=_NOTICES["off"])
    return redirect(server.url("account/two-factor") + "?done=off")


#: What a POST may do, by its ``action`` field.
ACTIONS: dict[str, Action] = {
    "start": start_totp,
    "confirm": confirm_totp,
    "regenerate": regenerate_recovery_codes,
    "disable": disable_totp,
}


async def _render(
    request: Request,
    server: ServerState,
    user: User,
    status: int = 200,
    *,
    errors: FormErrors | None = None,
    notice: str = "",
    setup: dict[str, Any] | None = None,
    recovery_codes: list[str] | None = None,
) -> Response:
    """The page (or its JSON): the status, and a set-up or new recovery codes when given."""
    errors = errors or FormErrors()
    factors = await server.doorman.second_factors(user)
    state = await server.doorman.totp.state(user)
    if wants_json(request):
        body: dict[str, Any] = {
            "totp": factors.totp,
            "passkeys": factors.passkeys,
            "recovery_codes_left": factors.recovery_codes,
        }
        if setup:
            body["otpauth_uri"] = setup["otpauth_uri"]
        if recovery_codes:
            body["recovery_codes"] = recovery_codes
        if notice:
            body["notice"] = notice
        if errors:
            body.update(errors.json(), error=" ".join(errors.messages))
        return JSONResponse(body, status, {"cache-control": "no-store"})
    return await server.templates.render(
        request,
        "account_two_factor.html",
        status,
        user=user,
        factors=factors,
        totp_since=state.confirmed_at if state is not None else None,
        setup=setup or {},
        recovery_codes=recovery_codes or [],
        action=server.url("account/two-factor"),
        replace_url=server.url("account/two-factor"),
        notice=notice,
        **errors.context(),
    )
