"""Verified addresses: the link that proves one, sending it again, and the sign-in gate.

``/-/verify-email/<token>`` moves its token into a cookie of these pages and
shows a "Verify" button at ``/-/verify-email/new``: only its POST marks the
account's address verified (or makes a new address waiting for its link the
account's own), so a mail scanner that opens links verifies nothing. A script
may POST to the link itself. An address another account holds verified is
never verified again, for a second account. With ``require_verified_email``,
``verification_gate`` keeps an account (admins aside) whose address is not
verified from signing in: the page offers to send the link again, with a
short-lived token that allows that and nothing else. See docs/email.md.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..._scope import client_address
from ..._text import ascii_lower
from ..._types import Scope
from ...accounts.links import AccountLinks, Purpose
from ...accounts.users import User
from ...events import EventKind
from ...exceptions import AddressTaken, MailNotSent, NoTrustedOrigin, Throttled
from ..state import ServerState, state_of
from .audit import record
from .common import checked_form, field, json_error, redirect, refuse_csrf, wants_json
from .forms import ADDRESS_TAKEN
from .held_links import HeldLink, private

__all__ = [
    "ask_to_change_email",
    "routes",
    "send_verification",
    "to_verify_first",
    "verification_gate",
    "verify_by_link",
    "verify_new_account",
]

log = logging.getLogger("doorman.mail")

REFUSED = (
    "This verification link does not work: it was used already, it expired, or the "
    "address changed since it was sent. Sign in to send a new one."
)
#: Another account holds the address verified; which one is not said.
TAKEN = ADDRESS_TAKEN
UNVERIFIED = "Your email address is not verified yet: follow the link we sent to it, then sign in."


def routes(prefix: str) -> list[BaseRoute]:
    return [
        Route(f"{prefix}/verify-email", send_again, methods=["POST"]),
        Route(f"{prefix}/verify-email/new", verify_page, methods=["GET", "POST"]),
        Route(f"{prefix}/verify-email/{{token}}", follow_link, methods=["GET", "POST"]),
    ]


async def send_verification(server: ServerState, user: User, scope: Scope | None = None) -> str:
    """Send the link that verifies ``user``'s pending address, else their address."""
    to = user.pending_email or user.email
    assert to is not None
    token = server.doorman.links.make("verify-email", user)
    await server.outbox.send(
        "verify_email",
        to=to,
        username=user.username,
        link=server.outbox.links.url("verify-email", token, scope=scope),
        changing=bool(user.pending_email),
    )
    return to


async def verify_new_account(server: ServerState, user: User, scope: Scope) -> None:
    """The first link of a new account, in the background: throttled per address, as every
    link is, for the address typed at registration need not be the registrant's. Over the
    limit nothing is sent; the account page sends it again."""
    assert user.email is not None
    try:
        async with await server.doorman.mail_throttle.attempt(user.email, client_address(scope)):
            pass
    except Throttled as error:
        log.warning("no verification link for a new account: %s", error)
        return
    await send_verification(server, user, scope)


def to_verify_first(server: ServerState, user: User, email: str) -> bool:
    """A new address (not the same one in other case) waits for its link, when mail is on."""
    return (
        bool(email)
        and ascii_lower(email) != ascii_lower(user.email or "")
        and server.outbox.can_send
    )


async def ask_to_change_email(
    server: ServerState, user: User, email: str, scope: Scope | None = None
) -> User:
    """``email`` waits for its link, sent now (``MailNotSent``: nothing changed); the old
    address, if any, is told in the background.    holds ``email`` verified."""
    pending = await server.doorman.users.set_pending_email(user, email)
    try:
        await send_verification(server, pending, scope)
    except (MailNotSent, NoTrustedOrigin):
        await server.doorman.users.set_pending_email(pending, None)
        raise
    if user.email:
        notice = server.outbox.send(
            "email_change_notice", to=user.email, username=user.username, new_address=email
        )
        server.background.spawn(notice)
    return pending


async def user_for(server: ServerState, purpose: Purpose, token: str) -> User | None:
    """The account a valid ``purpose`` token belongs to, as it is now."""
    user_id = AccountLinks.user_id(token)
    user = await server.doorman.users.get(user_id) if user_id is not None else None
    if user is None or not server.doorman.links.check(purpose, token, user):
        return None
    return user


async def follow_link(request: Request) -> Response:
    """The link from the message: its token into the cookie, then the token-less page."""
    server = state_of(request)
    token = request.path_params["token"]
    if request.method == "POST":
        return await _verify(request, server, token)
    if await user_for(server, "verify-email", token) is None:
        return await _refused(request, server)
    return _VERIFY_LINK.hand_over(request, server, token)


async def verify_page(request: Request) -> Response:
    """The "Verify" button: a GET (a scanner's too) changes nothing."""
    server = state_of(request)
    token = _VERIFY_LINK.token(request)
    if request.method == "POST":
        return await _verify(request, server, token)
    user = await user_for(server, "verify-email", token)
    if user is None:
        return await _refused(request, server)
    address = user.pending_email or user.email
    page = await server.templates.render(request, "verify_email_link.html", address=address)
    return private(page)


_VERIFY_LINK = HeldLink("doorman_verify_email", "verify-email", held_for=900)


async def _verify(request: Request, server: ServerState, token: str) -> Response:
    if await checked_form(request) is None:
        return await refuse_csrf(request)
    if await user_for(server, "verify-email", token) is None:  # no claim (no write)
        return await _refused(request, server)
    max_age = server.doorman.links.max_ages["verify-email"]
    async with server.doorman.link_claims.claim(token, max_age) as claim:
        # Checked again once held: a request with the same link may have spent it since.
        user = await user_for(server, "verify-email", token) if claim.granted else None
        if user is None:
            return await _refused(request, server)
        old = user.email
        try:
            user = await server.doorman.users.verify_email(user)
        except AddressTaken:  # another account verified it since the link was sent
            claim.spend()
            return await _refused(request, server, TAKEN, 409)
        claim.spend()
    detail = {"changed": old != user.email}
    await record(request, EventKind.EMAIL_VERIFIED, user, detail, actor=user.username)
    if wants_json(request):
        answer = JSONResponse({"verified": True, "email": user.email, **detail})
        _VERIFY_LINK.forget(answer, server)
        return private(answer)
    actor = request.scope.get("actor")
    signed_in = actor is not None and actor.get("id") == user.username
    target = "account?done=email-verified" if signed_in else "login?done=email-verified"
    response = private(redirect(server.url(target)))
    _VERIFY_LINK.forget(response, server)
    return response


async def _refused(
    request: Request, server: ServerState, text: str = REFUSED, status: int = 400
) -> Response:
    response = await _message(request, server, "This link does not work", text, status)
    _VERIFY_LINK.forget(response, server)
    return private(response)


async def verify_by_link(request: Request, server: ServerState, user: User, via: str) -> User:
    """A link sent to ``user``'s address was used: the address is proven, so verified; not
    while another address waits for its own link, nor when another account holds it."""
    if user.email_verified or user.pending_email or not user.email:
        return user
    try:
        user = await server.doorman.users.verify_email(user)
    except AddressTaken:
        return user
    await record(request, EventKind.EMAIL_VERIFIED, user, {"via": via})
    return user


async def verification_gate(request: Request, user: User) -> Response | None:
    """The page that refuses ``user`` a sign-in for an unverified address, or None."""
    server = state_of(request)
    if not server.settings.require_verified_email or user.is_admin or user.email_verified:
        return None
    if wants_json(request):
        return json_error(UNVERIFIED, 403)
    token = server.doorman.links.make("resend-verification", user) if user.email else ""
    return await server.templates.render(
        request,
        "verify_email.html",
        403,
        message=UNVERIFIED if user.email else _NO_ADDRESS,
        token=token,
        can_send_mail=server.outbox.can_send,
        sent="",
    )


_NO_ADDRESS = (
    "This site lets in verified email addresses only, and your account has none: "
    "ask an administrator."
)


async def send_again(request: Request) -> Response:
    """Send the link again: for the signed-in account, or the one a gate's token names."""
    server = state_of(request)
    fields = await checked_form(request)
    if fields is None:
        return await refuse_csrf(request)
    user = await _asker(request, server, field(fields, "token", 200))
    if user is None or not _needs_verifying(user):
        text = "There is no address to verify."
        return await _message(request, server, "Nothing to send", text, 400)
    try:
        to = user.pending_email or user.email or ""
        async with await server.doorman.mail_throttle.attempt(to, client_address(request.scope)):
            pass
        to = await send_verification(server, user, request.scope)
    except (MailNotSent, NoTrustedOrigin, Throttled) as error:
        log.warning("no verification link sent: %s", error)
        text = str(error) if isinstance(error, Throttled) else _NOT_SENT
        return await _message(request, server, "Not sent", text, error.status_code)
    sent = f"A new link is on its way to {to}."
    if wants_json(request):
        return JSONResponse({"sent_to": to}, headers={"cache-control": "no-store"})
    return await _message(request, server, "Check your email", sent, 200)


_NOT_SENT = "The link could not be sent just now; try again in a few minutes."


def _needs_verifying(user: User) -> bool:
    return bool(user.pending_email) or (bool(user.email) and not user.email_verified)


async def _asker(request: Request, server: ServerState, token: str) -> User | None:
    actor = request.scope.get("actor")
    if actor is not None and actor.get("via") == "session":
        return await server.doorman.users.by_username(actor["id"])
    return await user_for(server, "resend-verification", token) if token else None


async def _message(
    request: Request, server: ServerState, title: str, message: str, status: int
) -> Response:
    if wants_json(request):
        return json_error(message, status) if status >= 400 else JSONResponse({"message": message})
    return await server.templates.render(
        request, "message.html", status, title=title, message=message, link=None
    )
