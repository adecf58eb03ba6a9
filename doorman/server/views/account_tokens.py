"""API tokens from the account page: make one (shown once), revoke one.

Made with a token, a new token has at most that token's scopes and ends no
later; a token revokes only itself and tokens within its reach. A session
makes a token only with a recent proof of who it is (step-up).
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ...accounts.tokens import Token
from ...accounts.users import User
from ...auth.guards import requires
from ...events import EventKind
from ...exceptions import AccountError, PermissionDenied
from ..state import ServerState
from .account_page import TOKEN_LIFETIMES, calling_token, forbidden, listed, me, render
from .audit import record
from .common import checked_form, field, redirect, refuse_csrf, wants_json
from .forms import FormErrors, sentence
from .step_up import step_up_needed

__all__ = ["create_token", "revoke_token"]

_TOKEN_NOTICE = "Copy this token now: it will not be shown again."  # noqa: S105 - words


@requires("account")
async def create_token(request: Request) -> Response:
    """A new token, shown once in the answer to this POST: it is kept nowhere in plain text.

    Made with a token, the new one has at most that token's scopes and ends no
    later (see ``Tokens.create``).
    """
    server, user = await me(request)
    fields = await checked_form(request)
    if fields is None:
        return await refuse_csrf(request)
    if (stale := step_up_needed(request)) is not None:  # a session's; a token has its scopes
        return stale
    days = TOKEN_LIFETIMES.get(field(fields, "expires", 10))
    if days is None:
        errors = FormErrors()
        errors.add("Choose when the token expires: in 30, 90 or 365 days, or never.", "expires")
        return await render(request, server, user, 400, errors=errors)
    try:
        made = await server.doorman.tokens.create(
            user,
            name=field(fields, "name", 200),
            expires_in=days * 86400 or None,
            scopes=_asked_scopes(fields),
            within=await calling_token(request, server),
        )
    except PermissionDenied as error:
        return await forbidden(request, sentence(error))
    except AccountError as error:
        errors = FormErrors()
        errors.add(sentence(error), "name")  # the one field the library checks
        return await render(request, server, user, 400, errors=errors)
    token = made[0]
    detail = {"token_id": token.id, "name": token.name, "scopes": listed(token)}
    await record(request, EventKind.TOKEN_CREATED, user, detail)
    # The page itself, not a redirect to it: a redirect would need the token kept until then.
    return await render(request, server, user, 201, notice=_TOKEN_NOTICE, new_token=made)


def _asked_scopes(fields: dict[str, str]) -> list[str] | None:
    """The actions a new token is limited to (comma- or space-separated, or a JSON list).

    None when not asked (not limited; made with a token, that token's scopes). Asked
    for none at all (``[]``, ``""``), it is refused rather than read as "not limited".
    """
    if "scopes" not in fields:
        return None
    names = [name for name in re.split(r"[\s,]+", field(fields, "scopes", 1000)) if name]
    if not names:
        raise AccountError("scopes: name at least one action, or leave scopes out")
    return names


@requires("account")
async def revoke_token(request: Request) -> Response:
    """Revoke one of your tokens; with a token, only itself or one within its reach."""
    server, user = await me(request)
    if await checked_form(request) is None:
        return await refuse_csrf(request)
    token_id = request.path_params["token_id"]
    try:
        caller = await calling_token(request, server)
    except PermissionDenied as error:
        return await forbidden(request, sentence(error))
    if caller is not None and not await _in_reach(server, caller, token_id, user):
        return await forbidden(
            request, "A token can revoke only itself and tokens that can do no more than it."
        )
    found = await server.doorman.tokens.revoke(token_id, user=user)
    if found:
        await record(request, EventKind.TOKEN_REVOKED, user, {"token_id": token_id[:64]})
    if wants_json(request):
        return JSONResponse({"revoked": found}, 200 if found else 404)
    return redirect(server.url("account"))


async def _in_reach(server: ServerState, caller: Token, token_id: str, user: User) -> bool:
    """May ``caller`` revoke this token: itself, or one of its user's that it covers?

    True too for a token that is not the user's, or none: revoking it finds nothing (404).
    """
    target = await server.doorman.tokens.get(token_id)
    if target is None or target.user_id != user.id or target.id == caller.id:
        return True
    return caller.covers(target)
