"""An admin hands someone a way back in: "Send reset link", or the link itself without mail.

Unlike ``/-/password-reset``, this page may say where the message went and
why it did not: only admins reach it. A link made to be handed over is shown
once, on this answer, never put in a URL.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ....auth.guards import requires
from ....events import EventKind
from ....exceptions import MailNotSent, NoTrustedOrigin
from ...state import state_of
from ..audit import record
from ..common import checked_form, refuse_csrf, wants_json
from ..forms import FormErrors
from ..recovery import reset_link, send_reset_link
from ._common import json_response, not_found, target_user
from .user import render_user_page

__all__ = ["reset_link_action"]


@requires("admin")
async def reset_link_action(request: Request) -> Response:
    server = state_of(request)
    user = await target_user(request, server)
    if user is None:
        return await not_found(request, server)
    if await checked_form(request) is None:
        return await refuse_csrf(request)
    if not user.is_active:
        errors = FormErrors.of(f"Enable {user.username} first: a disabled account has no reset.")
        return await render_user_page(request, server, user, 400, errors=errors)
    sent_to, link = "", ""
    try:
        if server.outbox.can_send and user.email:
            sent_to = await send_reset_link(server, user, request.scope)
        else:
            link = reset_link(server, user, request.scope)
    except (MailNotSent, NoTrustedOrigin) as error:  # 503: say what, to the admin
        return await render_user_page(request, server, user, 503, errors=FormErrors.of(str(error)))
    detail = {"via": "admin", "sent": bool(sent_to)}
    await record(request, EventKind.PASSWORD_RESET_REQUESTED, user, detail)
    if wants_json(request):
        return json_response({"sent_to": sent_to} if sent_to else {"link": link})
    notice = f"A password-reset link was sent to {sent_to}." if sent_to else ""
    response = await render_user_page(request, server, user, notice=notice, reset_link=link)
    response.headers["referrer-policy"] = "no-referrer"
    return response
