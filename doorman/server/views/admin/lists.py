"""Every sign-in and every API token, of every user, each with a button to end it."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from ....auth.guards import requires
from ....auth.login import current_signin
from ...state import state_of
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
    return await _revoke(request, state_of(request).doorman.signins.revoke, "sessions")


@requires("admin")
async def revoke_any_token(request: Request) -> Response:
    return await _revoke(request, state_of(request).doorman.tokens.revoke, "tokens")


async def _revoke(
    request: Request, revoke: Callable[[str], Awaitable[bool]], page: str
) -> Response:
    if await checked_form(request) is None:
        return await refuse_csrf(request)
    found = await revoke(request.path_params["item"])
    done = ("revoke-session" if page == "sessions" else "revoke-token") if found else "gone"
    return after_change(request, done, f"{state_of(request).url('admin/' + page)}?done={done}")
