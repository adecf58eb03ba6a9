"""Accepting an invitation: ``/-/invite/<token>``, where the invitee picks a username and password.

As with reset links, opening the link moves its token into a cookie of these
pages only and redirects to ``/-/invite/new``, so the token leaves the URL
(``Referrer-Policy: no-referrer``); a script may POST to the link itself. The
invitation is claimed before the account is made, so two requests cannot both
use it. Invitations work when ``registration`` is "invite" or "open".
"""

from __future__ import annotations

import functools
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..._types import Scope
from ...accounts.invitations import Invitation
from ...accounts.users import User
from ...events import EventKind
from ...exceptions import AccountError, AddressTaken
from ..state import ServerState, state_of
from .audit import record
from .common import checked_form, field, json_error, refuse_csrf, wants_json
from .forms import FormErrors, new_account_problems, password_hint, sentence
from .held_links import HeldLink, private
from .signin import signed_in

__all__ = ["routes", "send_invitation"]

_INVITE_LINK = HeldLink("doorman_invite", "invite", held_for=3600)
REFUSED = (
    "This invitation does not work: it was used already, it expired, or this site takes "
    "no invitations. Ask whoever invited you for a new one."
)


def routes(prefix: str) -> list[BaseRoute]:
    return [
        Route(f"{prefix}/invite/new", choose_account, methods=["GET", "POST"]),
        Route(f"{prefix}/invite/{{token}}", follow_link, methods=["GET", "POST"]),
    ]


async def send_invitation(
    server: ServerState, invitation: Invitation, token: str, scope: Scope | None = None
) -> str:
    """Mail the invitation's link (``MailNotSent``, ``NoTrustedOrigin``); return the link."""
    link = server.outbox.links.url("invite", token, scope=scope)
    await server.outbox.send(
        "invitation",
        to=invitation.email,
        link=link,
        invited_by=invitation.invited_by or "",
        valid_for=f"{server.doorman.invitations.max_age // 86400} days",
    )
    return link


async def _invitation(server: ServerState, token: str) -> Invitation | None:
    if server.settings.registration_mode == "closed":
        return None
    return await server.doorman.invitations.find(token)


async def follow_link(request: Request) -> Response:
    server = state_of(request)
    token = request.path_params["token"]
    if request.method == "POST":
        return await _accept(request, server, token)
    if await _invitation(server, token) is None:
        return await _refused(request, server)
    return _INVITE_LINK.hand_over(request, server, token)


async def choose_account(request: Request) -> Response:
    server = state_of(request)
    token = _INVITE_LINK.token(request)
    if request.method == "POST":
        return await _accept(request, server, token)
    invitation = await _invitation(server, token)
    if invitation is None:
        return await _refused(request, server)
    return await _form(request, server, invitation, FormErrors())


async def _accept(request: Request, server: ServerState, token: str) -> Response:
    fields = await checked_form(request)
    if fields is None:
        return await refuse_csrf(request)
    invitation = await _invitation(server, token)
    if invitation is None:
        return await _refused(request, server)
    username, password = field(fields, "username", 600), field(fields, "password")
    again = fields.get("password2", password) if wants_json(request) else field(fields, "password2")
    errors = await new_account_problems(
        server.doorman, username, invitation.email, password, again, chosen_address=False
    )
    if errors:
        return await _form(request, server, invitation, errors, username, status=400)
    if not await server.doorman.invitations.claim(invitation):
        return await _refused(request, server)
    created = await _create(server, invitation, username, password)
    if not isinstance(created, User):
        await server.doorman.invitations.release(invitation)
        return await _form(request, server, invitation, created, username, status=400)
    await server.doorman.invitations.accepted_by(invitation, created.id)
    detail = {"via": "invitation", "admin": created.is_admin}
    await record(request, EventKind.USER_CREATED, created, detail, actor=created.username)
    accepted = {"invited_by": invitation.invited_by or "cli"}
    await record(request, EventKind.INVITATION_ACCEPTED, created, accepted, actor=created.username)
    response = await signed_in(
        request, created, server.url("account?done=created"), via="invitation"
    )
    _INVITE_LINK.forget(response, server)
    return private(response)


async def _create(
    server: ServerState, invitation: Invitation, username: str, password: str
) -> User | FormErrors:
    """The account, its address verified: the link went there (or an admin vouched); not
    when another account holds that address verified meanwhile (one address, one account)."""
    taken = await server.doorman.users.verified_elsewhere(invitation.email)
    create = functools.partial(
        server.doorman.users.create,
        username,
        password=password,
        email=invitation.email,
        is_admin=invitation.is_admin,
        groups=invitation.groups,
    )
    try:
        try:
            return await create(email_verified=not taken)
        except AddressTaken:  # verified for another account meanwhile
            return await create(email_verified=False)
    except AccountError as error:
        return FormErrors.of(sentence(error))


async def _form(
    request: Request,
    server: ServerState,
    invitation: Invitation,
    errors: FormErrors,
    username: str = "",
    *,
    status: int = 200,
) -> Response:
    if errors and wants_json(request):
        return private(json_error(" ".join(errors.messages), status))
    context: dict[str, Any] = {
        "action": server.url("invite/new"),
        "email": invitation.email,
        "is_admin": invitation.is_admin,
        "username": username,
        "notice": "",
        "password_hint": password_hint(server.doorman),
        **errors.context(),
    }
    return private(await server.templates.render(request, "invite.html", status, **context))


async def _refused(request: Request, server: ServerState) -> Response:
    return await _INVITE_LINK.refuse(
        request, server, REFUSED, title="This invitation does not work"
    )
