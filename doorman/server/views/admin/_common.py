"""What the admin pages share: the notices, the user in the URL, answers after a change."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ....accounts.names import check_group, username_key
from ....accounts.users import User
from ....exceptions import AccountError
from ...state import ServerState
from ..common import redirect, wants_json
from ..forms import sentence

NO_STORE = {"cache-control": "no-store"}

#: What ``?done=<action>`` shows after a change.
NOTICES = {
    "created": "User created.",
    "details": "Details saved.",
    "groups": "Groups saved.",
    "sign-out": "Signed out everywhere.",
    "sign-out-tokens-revoked": "Signed out everywhere, and their API tokens revoked.",
    "sign-out-tokens-kept": (
        "Signed out everywhere. Their API tokens still work: revoke them below if they should not."
    ),
    "revoke-session": "Session signed out.",
    "revoke-token": "Token revoked.",
    "revoke-tokens": "Every token of this user was revoked.",
    "disable": "User disabled and signed out everywhere.",
    "disable-tokens-revoked": "User disabled, signed out everywhere, and their API tokens revoked.",
    "disable-tokens-kept": (
        "User disabled and signed out everywhere. Their API tokens stop working while they are"
        " disabled, and work again if they are enabled."
    ),
    "enable": "User enabled.",
    "enable-tokens": (
        "User enabled. Their API tokens work again: revoke them below if they should not."
    ),
    "make-admin": "User is now an administrator.",
    "remove-admin": "User is no longer an administrator.",
    "password": "Password reset. The user was signed out everywhere.",
    "password-tokens-revoked": (
        "Password reset. The user was signed out everywhere, and their API tokens revoked."
    ),
    "password-tokens-kept": (
        "Password reset. The user was signed out everywhere; their API tokens still work."
    ),
    "unlock": "Sign-in unlocked: this account's failed attempts were forgotten.",
    "two-factor-reset": (
        "Second factors reset: TOTP, passkeys and recovery codes are gone. The user signs in"
        " with a password alone until they enrol again."
    ),
    "two-factor-none": "Nothing to do: this user had no second factor.",
    "deleted": "User deleted.",
    "gone": "Nothing to do: that was signed out or revoked already.",
}


async def target_user(request: Request, server: ServerState) -> User | None:
    """The user named in the URL, if there is one."""
    return await server.doorman.users.by_username(request.path_params["username"])


def is_self(request: Request, user: User) -> bool:
    actor = request.scope.get("actor") or {}
    return username_key(str(actor.get("id", ""))) == username_key(user.username)


def after_change(request: Request, done: str, url: str) -> Response:
    """After a change: JSON ``{"ok": true}`` (404 when there was nothing to change), or back."""
    if not wants_json(request):
        return redirect(url)
    if done == "gone":
        return json_response({"errors": [NOTICES[done]]}, 404)
    return json_response({"ok": True, "notice": NOTICES.get(done, "")})


async def not_found(
    request: Request, server: ServerState, message: str = "There is no such user."
) -> Response:
    if wants_json(request):
        return json_response({"errors": [message]}, 404)
    link = {"href": server.url("admin/users"), "label": "Back to the users"}
    return await server.templates.render(
        request, "message.html", 404, title="Not found", message=message, link=link
    )


def done_notice(request: Request) -> str:
    """The notice ``?done=`` picks, if any."""
    return NOTICES.get(request.query_params.get("done", ""), "")


def json_response(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status, headers=NO_STORE)


def user_url(server: ServerState, user: User, done: str) -> str:
    return f"{server.url('admin/users')}/{quote(user.username, safe='')}?done={done}"


def group_names(text: str) -> tuple[list[str], list[str]]:
    """(errors, names) of a comma-separated list of groups."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        try:
            check_group(name)
        except AccountError as error:
            return [sentence(error)], []
    return [], names
