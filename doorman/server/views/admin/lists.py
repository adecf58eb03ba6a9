"""Every sign-in and every API token, of every user, each with a button to end it."""

from __future__ import annotations

import dataclasses

from starlette.requests import Request
from starlette.responses import Response

from ....accounts.signins import SignIn
from ....accounts.tokens import Token
from ....auth.guards import requires
from ....auth.login import current_signin
from ....events import EventKind
from ...state import state_of
from ..audit import record
from ..common import checked_form, refuse_csrf, wants_json
from ._common import after_change, done_notice, json_response


@requires("admin")
async def sessions_page(request: Request) -> Response:
    server = state_of(request)
    signins = await server.doorman.signins.list()
    if wants_json(request):
        return json_response({"sessions": [dataclasses.asdict(s) for s in signins]})
    return await server.templates.render(
        request,
        "admin/sessions.html",
        section="sessions",
        signins=signins,
        current_signin=current_signin(request.scope["session"]),
        errors=[],
        notice=done_notice(request),
    )


@requires("admin")
async def tokens_page(request: Request) -> Response:
    server = state_of(request)
    tokens = await server.doorman.tokens.list()
    if wants_json(request):
        return json_response({"tokens": [dataclasses.asdict(t) for t in tokens]})
    return await server.templates.render(
        request,
        "admin/tokens.html",
        section="tokens",
        tokens=tokens,
        errors=[],
        notice=done_notice(request),
    )


@requires("admin")
async def revoke_any_signin(request: Request) -> Response:
    return await _revoke(request, "sessions")


@requires("admin")
async def revoke_any_token(request: Request) -> Response:
    return await _revoke(request, "tokens")


async def _revoke(request: Request, page: str) -> Response:
    """Revoke the sign-in or token named in the URL, and log it against its user."""
    if await checked_form(request) is None:
        return await refuse_csrf(request)
    doorman, item = state_of(request).doorman, request.path_params["item"]
    found: SignIn | Token | None
    if page == "sessions":
        found, kind, key = await doorman.signins.get(item), EventKind.SESSION_REVOKED, "signin_id"
        revoked = await doorman.signins.revoke(item)
    else:
        found, kind, key = await doorman.tokens.get(item), EventKind.TOKEN_REVOKED, "token_id"
        revoked = await doorman.tokens.revoke(item)
    if revoked and found is not None:
        await record(request, kind, await doorman.users.get(found.user_id), {key: item[:64]})
    done = ("revoke-session" if page == "sessions" else "revoke-token") if revoked else "gone"
    return after_change(request, done, f"{state_of(request).url('admin/' + page)}?done={done}")
