"""``/-/admin/invitations``: invite someone by email (or make a link to hand over), and the list."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ....auth.guards import requires
from ....events import EventKind
from ....exceptions import AccountError, MailNotSent, NoTrustedOrigin
from ...state import ServerState, state_of
from ..audit import record
from ..common import checked_form, field, refuse_csrf, wants_json
from ..forms import FormErrors, sentence
from ..invitations import send_invitation
from ._common import group_names, json_response

__all__ = ["invitations_page"]


@requires("admin")
async def invitations_page(request: Request) -> Response:
    server = state_of(request)
    if request.method == "GET":
        return await _page(request, server)
    fields = await checked_form(request)
    if fields is None:
        return await refuse_csrf(request)
    email, groups_text = field(fields, "email", 300).strip(), field(fields, "groups", 2000)
    admin = field(fields, "admin", 10).lower() in ("on", "1", "true", "yes")
    form = {"email": email, "groups": groups_text}
    messages, groups = group_names(groups_text)
    errors = FormErrors()
    for message in messages:
        errors.add(message, "groups")
    if server.settings.registration_mode == "closed":
        errors.add('This site takes no invitations: set registration = "invite" first.')
    if errors:
        return await _page(request, server, errors, status=400, **form)
    actor = request.scope["actor"]["id"]
    try:
        invitation, token = await server.doorman.invitations.create(
            email, admin=admin, groups=tuple(groups), invited_by=actor
        )
    except AccountError as error:
        errors.add(sentence(error), "email")
        return await _page(request, server, errors, status=400, **form)
    sent_to, link, problem = "", "", ""
    try:
        if server.outbox.can_send:
            await send_invitation(server, invitation, token, request.scope)
            sent_to = invitation.email
        else:
            link = server.outbox.links.url("invite", token, scope=request.scope)
    except MailNotSent as error:  # the admin hands the link over instead
        problem, link = str(error), server.outbox.links.url("invite", token, scope=request.scope)
    except NoTrustedOrigin as error:
        return await _page(request, server, FormErrors.of(str(error)), status=503, **form)
    detail = {"email": invitation.email, "admin": admin, "sent": bool(sent_to)}
    await record(request, EventKind.INVITATION_SENT, None, detail)
    if wants_json(request):
        return json_response({"sent_to": sent_to} if sent_to else {"link": link})
    notice = f"An invitation was sent to {sent_to}." if sent_to else ""
    shown = FormErrors.of(f"Not sent: {problem}") if problem else FormErrors()
    response = await _page(
        request, server, shown, notice=notice, link=link, link_email=invitation.email
    )
    response.headers["referrer-policy"] = "no-referrer"
    return response


async def _page(
    request: Request,
    server: ServerState,
    errors: FormErrors | None = None,
    *,
    status: int = 200,
    **context: Any,
) -> Response:
    errors = errors or FormErrors()
    if wants_json(request) and errors:
        return json_response(errors.json(), status)
    invitations = await server.doorman.invitations.list()
    if wants_json(request):
        return json_response({"invitations": [i.public_fields() for i in invitations]})
    values: dict[str, Any] = {
        "email": "",
        "groups": "",
        "notice": "",
        "link": "",
        "link_email": "",
        "sent_to": "",
        **context,
    }
    return await server.templates.render(
        request,
        "admin/invitations.html",
        status,
        section="invitations",
        invitations=invitations,
        registration=server.settings.registration_mode,
        can_send_mail=server.outbox.can_send,
        **errors.context(),
        **values,
    )
