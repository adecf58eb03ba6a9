"""A forgotten password: ask for a link by email, follow it, choose a new password.

``/-/password-reset`` answers the same words, as fast, whether or not an
account has the address: the lookup and the sending happen in the background
(``ServerState.background``). The link ``/-/password-reset/<token>`` moves its
token into a cookie that only these pages see and redirects to
``/-/password-reset/new``, so the token leaves the address bar, the history and
any ``Referer``; the pages send ``Referrer-Policy: no-referrer`` besides. A
script may POST the password to the link itself. See docs/email.md.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..._scope import client_address
from ..._types import Scope
from ...accounts.link_claims import Claim
from ...accounts.links import AccountLinks
from ...accounts.users import User
from ...events import EventKind
from ...exceptions import NoTrustedOrigin, Throttled
from ...mail import check_address
from ..state import ServerState, state_of
from .audit import record
from .common import checked_form, field, json_error, refuse_csrf, wants_json
from .forms import FormErrors, check_new_password, password_hint
from .held_links import HeldLink, private
from .signin import signed_in
from .verification import verify_by_link

__all__ = ["duration", "private", "reset_link", "routes", "send_reset_link"]

log = logging.getLogger("doorman.mail")

#: Holds the token between the link and the form; these pages only, for a quarter of an hour.
_RESET_LINK = HeldLink("doorman_reset", "password-reset", held_for=900)
_TRUE = frozenset({"on", "1", "true", "yes"})
SENT = (
    "If an account has that address, a link to choose a new password is on its way. "
    "It works once, for {valid_for}. Nothing came? Check the spam folder, or ask again."
)
REFUSED = (
    "This password-reset link does not work: it was used already, it expired, or the "
    "password changed since it was sent. Ask for a new one."
)


def routes(prefix: str) -> list[BaseRoute]:
    return [
        Route(f"{prefix}/password-reset", ask_for_link, methods=["GET", "POST"]),
        Route(f"{prefix}/password-reset/new", choose_password, methods=["GET", "POST"]),
        Route(f"{prefix}/password-reset/{{token}}", follow_link, methods=["GET", "POST"]),
    ]


async def ask_for_link(request: Request) -> Response:
    server = state_of(request)
    if request.method == "GET" or not server.outbox.can_send:
        status = 200 if request.method == "GET" else 503
        if status != 200 and wants_json(request):
            return json_error("This site sends no email; ask an administrator for a link.", 503)
        return await _ask_form(request, server, status=status)
    fields = await checked_form(request)
    if fields is None:
        return await refuse_csrf(request)
    email = field(fields, "email", 300).strip()
    try:
        check_address(email)
        server.outbox.links.base(request.scope)  # no trusted origin: say so, for every address
        attempt = await server.doorman.mail_throttle.attempt(email, client_address(request.scope))
    except ValueError:
        errors = FormErrors()
        errors.add("Enter the email address of your account, such as alice@example.com.", "email")
        return await _ask_form(request, server, errors, email=email, status=400)
    except (NoTrustedOrigin, Throttled) as error:  # 503; 429 (Busy: 503)
        log.warning("no password-reset link sent: %s", error)
        headers = {"retry-after": str(error.retry_after)} if isinstance(error, Throttled) else {}
        errors = FormErrors.of(_refusal(error))
        return await _ask_form(
            request, server, errors, email=email, status=error.status_code, **headers
        )
    async with attempt:  # every request counts, whatever follows
        pass
    server.background.spawn(_send_links(server, email, request.scope))
    sent = SENT.format(valid_for=duration(server.doorman.links.max_ages["password-reset"]))
    if wants_json(request):
        return private(JSONResponse({"sent": True, "message": sent}))
    return await _ask_form(request, server, sent=sent)


def _refusal(error: Exception) -> str:
    if isinstance(error, NoTrustedOrigin):
        return "This site cannot send links until its administrator sets public_url."
    return str(error)


async def _ask_form(
    request: Request,
    server: ServerState,
    errors: FormErrors | None = None,
    *,
    email: str = "",
    sent: str = "",
    status: int = 200,
    **headers: str,
) -> Response:
    errors = errors or FormErrors()
    if errors and wants_json(request):
        return json_error(" ".join(errors.messages), status, **headers)
    response = await server.templates.render(
        request,
        "password_reset.html",
        status,
        email=email,
        sent=sent,
        notice="",
        can_send_mail=server.outbox.can_send,
        **errors.context(),
    )
    response.headers.update(headers)
    return response


async def _send_links(server: ServerState, email: str, scope: Scope) -> None:
    """A link to each active account with that address: run after the answer has gone."""
    address = client_address(scope)
    for user in await server.doorman.users.by_email(email):
        await server.doorman.events.record(
            EventKind.PASSWORD_RESET_REQUESTED, user=user, address=address, detail={"via": "email"}
        )
        await send_reset_link(server, user, scope)


async def send_reset_link(server: ServerState, user: User, scope: Scope | None = None) -> str:
    """Send ``user`` a reset link to their address; return where it went. ``MailNotSent``."""
    assert user.email is not None
    await server.outbox.send(
        "password_reset",
        to=user.email,
        username=user.username,
        link=reset_link(server, user, scope),
        valid_for=duration(server.doorman.links.max_ages["password-reset"]),
    )
    return user.email


def reset_link(server: ServerState, user: User, scope: Scope | None = None) -> str:
    """A new reset link for ``user`` (``NoTrustedOrigin`` when none can be built)."""
    token = server.doorman.links.make("password-reset", user)
    return server.outbox.links.url("password-reset", token, scope=scope)


async def follow_link(request: Request) -> Response:
    """The link from the message: its token into the cookie, then the token-less form."""
    server = state_of(request)
    token = request.path_params["token"]
    if request.method == "POST":
        return await _reset(request, server, token)
    if await _user_for(server, token) is None:
        return await _refused(request, server)
    return _RESET_LINK.hand_over(request, server, token)


async def choose_password(request: Request) -> Response:
    server = state_of(request)
    token = _RESET_LINK.token(request)
    if request.method == "POST":
        return await _reset(request, server, token)
    user = await _user_for(server, token)
    if user is None:
        return await _refused(request, server)
    return await _new_password_form(request, server, user, FormErrors())


async def _reset(request: Request, server: ServerState, token: str) -> Response:
    fields = await checked_form(request)
    if fields is None:
        return await refuse_csrf(request)
    if await _user_for(server, token) is None:  # no claim (no write) for a bad link
        return await _refused(request, server)
    max_age = server.doorman.links.max_ages["password-reset"]
    async with server.doorman.link_claims.claim(token, max_age) as claim:
        # Checked again once held: a request with the same link may have spent it since.
        user = await _user_for(server, token) if claim.granted else None
        if user is None:
            return await _refused(request, server)
        return await _choose(request, server, user, fields, claim)


async def _choose(
    request: Request, server: ServerState, user: User, fields: dict[str, str], claim: Claim
) -> Response:
    password, errors = field(fields, "password"), FormErrors()
    again = fields.get("password2", password) if wants_json(request) else field(fields, "password2")
    await check_new_password(
        errors, server.doorman, password, again, username=user.username, email=user.email
    )
    revoke = field(fields, "revoke_tokens", 10).strip().lower() in _TRUE
    if errors:
        return await _new_password_form(request, server, user, errors, revoke, status=400)
    user = await server.doorman.set_password(user, password, validate=False, revoke_tokens=revoke)
    claim.spend()
    user = await verify_by_link(request, server, user, "password-reset link")
    await server.doorman.throttle.reset(user.username)
    detail = {"via": "email link", "api_tokens_revoked": revoke}
    await record(request, EventKind.PASSWORD_RESET, user, detail, actor=user.username)
    if user.email and server.outbox.can_send:
        changed_at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        server.background.spawn(
            _notify(server, user.email, username=user.username, changed_at=changed_at)
        )
    response = await signed_in(
        request, user, server.url("account?done=password-reset"), via="password-reset"
    )
    _RESET_LINK.forget(response, server)
    return private(response)


async def _notify(server: ServerState, to: str, **context: Any) -> None:
    await server.outbox.send("password_changed", to=to, **context)


async def _new_password_form(
    request: Request,
    server: ServerState,
    user: User,
    errors: FormErrors,
    revoke_tokens: bool = False,
    *,
    status: int = 200,
) -> Response:
    if errors and wants_json(request):
        return private(JSONResponse(errors.json(), status))
    response = await server.templates.render(
        request,
        "password_reset_new.html",
        status,
        action=server.url("password-reset/new"),
        username=user.username,
        notice="",
        password_hint=password_hint(server.doorman),
        revoke_tokens=revoke_tokens,
        **errors.context(),
    )
    return private(response)


async def _user_for(server: ServerState, token: str) -> User | None:
    """The account a valid, unused, unexpired reset token belongs to."""
    user_id = AccountLinks.user_id(token)
    user = await server.doorman.users.get(user_id) if user_id is not None else None
    if user is None or not server.doorman.links.check("password-reset", token, user):
        return None
    return user


async def _refused(request: Request, server: ServerState) -> Response:
    return await _RESET_LINK.refuse(request, server, REFUSED, ask_again=True)


def duration(seconds: int) -> str:
    """``3600`` as "an hour", ``5400`` as "90 minutes", ``259200`` as "3 days"."""
    for size, one, many in ((86400, "a day", "days"), (3600, "an hour", "hours")):
        if seconds % size == 0:
            count = seconds // size
            return one if count == 1 else f"{count} {many}"
    minutes = max(1, seconds // 60)
    return "a minute" if minutes == 1 else f"{minutes} minutes"
