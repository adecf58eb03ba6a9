"""Naming and removing one's own passkeys, and what ``_passkeys_manage.html`` shows of them.

Forms (``csrftoken``) or JSON (``X-CSRFToken``); a signed-in person acts on
their own passkeys only (their id is in every query's WHERE). Under
``require_two_factor``, the last second factor of a person it covers stays.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ...accounts.passkeys import Passkey
from ...accounts.second_factors import policy_covers
from ...accounts.users import User
from ...events import EventKind
from ...redirects import safe_path
from ..state import ServerState, state_of
from .audit import record
from .common import checked_form, field, json_error, redirect, refuse_csrf, wants_json
from .step_up import step_up_needed

__all__ = ["LAST_FACTOR", "manage_routes", "may_remove", "passkeys_of", "signed_in_user"]

LAST_FACTOR = (
    "This is your last second factor, and this site requires one: "
    "add another passkey or an authenticator app first."
)


def manage_routes(prefix: str) -> list[BaseRoute]:
    """Under ``prefix`` (``/-/passkeys``)."""
    return [
        Route(f"{prefix}/{{passkey_id:int}}/rename", rename_passkey, methods=["POST"]),
        Route(f"{prefix}/{{passkey_id:int}}/remove", remove_passkey, methods=["POST"]),
    ]


async def passkeys_of(request: Request) -> list[Passkey]:
    """The signed-in person's passkeys, for the templates (``passkeys_of(request)``)."""
    server = state_of(request)
    user = await signed_in_user(request, server)
    return [] if user is None else await server.doorman.passkeys.list(user.id)


async def may_remove(server: ServerState, user: User) -> bool:
    """False when removing one passkey would leave ``user`` without the factor the policy
    asks of them."""
    if not policy_covers(server.settings.require_two_factor, user):
        return True
    summary = await server.doorman.factors.summary(user.id)
    return summary.totp or summary.passkeys > 1


async def signed_in_user(request: Request, server: ServerState) -> User | None:
    """The person signed in with a session here (not an API token, not HTTP Basic), or None."""
    actor = request.scope.get("actor")
    if actor is None or actor.get("via") != "session":
        return None
    return await server.doorman.users.by_username(actor["id"])


def _back(request: Request, server: ServerState, fields: dict[str, str], done: str) -> Response:
    """Back to the page the form was on (``next``, a path of this site), else the account."""
    target = safe_path(fields.get("next"), default=server.url("account"))
    separator = "&" if "?" in target else "?"
    return redirect(f"{target}{separator}done={done}")


async def _answer(
    request: Request, server: ServerState, fields: dict[str, str], done: str, data: dict[str, Any]
) -> Response:
    if wants_json(request):
        return JSONResponse(data, headers={"cache-control": "no-store"})
    return _back(request, server, fields, done)


async def _refuse(request: Request, message: str, status: int) -> Response:
    if wants_json(request):
        return json_error(message, status)
    server = state_of(request)
    return await server.templates.render(
        request,
        "message.html",
        status,
        title="Passkeys",
        message=message,
        link={"href": server.url("account"), "label": "Back to your account"},
    )


async def rename_passkey(request: Request) -> Response:
    server = state_of(request)
    fields = await checked_form(request)
    if fields is None:
        return await refuse_csrf(request)
    user = await signed_in_user(request, server)
    if user is None:
        return await _refuse(request, "Sign in to manage your passkeys.", 401)
    passkey_id = request.path_params["passkey_id"]
    if not await server.doorman.passkeys.rename(user.id, passkey_id, field(fields, "name", 400)):
        return await _refuse(request, "You have no such passkey.", 404)
    return await _answer(request, server, fields, "passkey-renamed", {"renamed": passkey_id})


async def remove_passkey(request: Request) -> Response:
    server = state_of(request)
    fields = await checked_form(request)
    if fields is None:
        return await refuse_csrf(request)
    user = await signed_in_user(request, server)
    if user is None:
        return await _refuse(request, "Sign in to manage your passkeys.", 401)
    stale = step_up_needed(request, back=server.url("account/two-factor"))
    if stale is not None:
        return stale
    if not await may_remove(server, user):
        return await _refuse(request, LAST_FACTOR, 409)
    removed = await server.doorman.passkeys.remove(user.id, request.path_params["passkey_id"])
    if removed is None:
        return await _refuse(request, "You have no such passkey.", 404)
    detail = {"passkey_id": removed.id, "name": removed.name}
    await record(request, EventKind.PASSKEY_REMOVED, user, detail)
    return await _answer(request, server, fields, "passkey-removed", {"removed": removed.id})
