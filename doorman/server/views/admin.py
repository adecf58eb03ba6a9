"""``/-/admin``: users, every sign-in and every API token; for admins only.

Each page answers JSON to API clients and HTML to browsers, like ``/-/account``.
Every change is a CSRF-checked POST that redirects back (303) with ``?done=``,
which picks one of the fixed ``NOTICES``: nothing from the URL is shown as is.
An admin cannot disable, demote or delete themselves, so one admin always remains.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ...auth.guards import requires
from ...auth.login import update_session_auth
from ...auth.middleware import SESSION_SIGNIN
from ...auth.users import User, check_group, check_username, username_key
from ...core import Doorman
from ...exceptions import AccountError, PasswordRejected, Throttled, UserNotFound
from ..state import ServerState, state_of
from .common import checked_form, field, redirect, refuse_csrf, wants_json

__all__ = ["NOTICES", "PAGE_SIZE", "routes"]

PAGE_SIZE = 50
_NO_STORE = {"cache-control": "no-store"}
_TRUE = frozenset({"on", "1", "true", "yes"})

#: What ``?done=<action>`` shows after a change.
NOTICES = {
    "created": "User created.",
    "groups": "Groups saved.",
    "sign-out": "Signed out everywhere.",
    "revoke-session": "Session signed out.",
    "revoke-token": "Token revoked.",
    "revoke-tokens": "Every token of this user was revoked.",
    "disable": "User disabled and signed out everywhere.",
    "enable": "User enabled.",
    "make-admin": "User is now an administrator.",
    "remove-admin": "User is no longer an administrator.",
    "password": "Password reset. The user was signed out everywhere.",
    "unlock": "Sign-in unlocked: this account's failed attempts were forgotten.",
    "deleted": "User deleted.",
    "gone": "Nothing to do: that was signed out or revoked already.",
}


def routes(prefix: str) -> list[BaseRoute]:
    base = f"{prefix}/admin"
    one = f"{base}/users/{{username}}"
    return [
        Route(base, admin_home),
        Route(f"{base}/users", users_page, methods=["GET", "POST"]),
        Route(one, user_page),
        Route(f"{one}/delete", delete_user, methods=["GET", "POST"]),
        Route(f"{one}/sessions/{{item}}/revoke", revoke_user_signin, methods=["POST"]),
        Route(f"{one}/tokens/{{item}}/revoke", revoke_user_token, methods=["POST"]),
        Route(f"{one}/{{action}}", user_action, methods=["POST"]),
        Route(f"{base}/sessions", sessions_page),
        Route(f"{base}/sessions/{{item}}/revoke", revoke_any_signin, methods=["POST"]),
        Route(f"{base}/tokens", tokens_page),
        Route(f"{base}/tokens/{{item}}/revoke", revoke_any_token, methods=["POST"]),
    ]


@requires("admin")
async def admin_home(request: Request) -> Response:
    return RedirectResponse(state_of(request).url("admin/users"), 302, headers=_NO_STORE)


# -- the list of users, and new users ----------------------------------------------


@requires("admin")
async def users_page(request: Request) -> Response:
    server = state_of(request)
    if request.method == "POST":
        return await _create_user(request, server)
    return await _users_list(request, server, notice=_notice(request))


async def _users_list(
    request: Request,
    server: ServerState,
    status: int = 200,
    *,
    errors: list[str] | None = None,
    notice: str = "",
    form: dict[str, Any] | None = None,
) -> Response:
    q = request.query_params.get("q", "")[:200].strip()
    users = server.doorman.users
    total = await users.count(search=q or None)
    pages = max(1, math.ceil(total / PAGE_SIZE))
    page = min(_page_number(request.query_params.get("page")), pages)
    found = await users.list(search=q or None, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    if wants_json(request):
        users_json = [_user_json(u) for u in found]
        return _json({"users": users_json, "total": total, "page": page, "pages": pages})

    def page_url(number: int) -> str:
        query = {"q": q, "page": number} if q else {"page": number}
        return f"{server.url('admin/users')}?{urlencode(query)}"

    return await server.templates.render(
        request,
        "admin/users.html",
        status,
        section="users",
        users=found,
        q=q,
        total=total,
        page=page,
        pages=pages,
        previous_url=page_url(page - 1) if page > 1 else "",
        next_url=page_url(page + 1) if page < pages else "",
        form=form or {"username": "", "email": "", "groups": "", "admin": False},
        min_length=server.doorman.password_min_length,
        errors=errors or [],
        notice=notice,
    )


def _page_number(raw: str | None) -> int:
    try:
        return max(1, int((raw or "1")[:9]))
    except ValueError:
        return 1


async def _create_user(request: Request, server: ServerState) -> Response:
    fields = await checked_form(request)
    if fields is None:
        return await refuse_csrf(request)
    username, email = field(fields, "username", 600), field(fields, "email", 300)
    password, groups_text = field(fields, "password"), field(fields, "groups")
    admin = field(fields, "admin", 10).lower() in _TRUE
    errors, groups = _group_names(groups_text)
    errors += await _new_user_problems(
        server.doorman, username, email, password, field(fields, "password2")
    )
    if not errors:
        try:
            user = await server.doorman.create_user(
                username, password, email=email or None, admin=admin, groups=groups, validate=False
            )
        except AccountError as error:
            errors = [_sentence(error)]
        else:
            if wants_json(request):
                return _json({"ok": True, "user": _user_json(user)}, 201)
            return redirect(_user_url(server, user, "created"))
    if wants_json(request):
        return _json({"errors": errors}, 400)
    form = {"username": username, "email": email, "groups": groups_text, "admin": admin}
    return await _users_list(request, server, 400, errors=errors, form=form)


async def _new_user_problems(
    doorman: Doorman, username: str, email: str, password: str, again: str
) -> list[str]:
    """What registration checks: the username, both passwords, the password rules."""
    errors: list[str] = []
    try:
        check_username(username)
    except AccountError as error:
        errors.append(_sentence(error))
    if password != again:
        errors.append("The two passwords differ.")
    problems = await doorman.password_problems(password, username=username, email=email or None)
    errors.extend(f"This password {problem}." for problem in problems)
    if not errors and await doorman.users.by_username(username) is not None:
        errors.append("That username is taken.")
    return errors


def _group_names(text: str) -> tuple[list[str], list[str]]:
    """(errors, names) of a comma-separated list of groups."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        try:
            check_group(name)
        except AccountError as error:
            return [_sentence(error)], []
    return [], names


# -- one user ----------------------------------------------------------------------


@requires("admin")
async def user_page(request: Request) -> Response:
    server = state_of(request)
    user = await _target(request, server)
    if user is None:
        return await _missing(request, server)
    return await _user_page(request, server, user, notice=_notice(request))


async def _user_page(
    request: Request,
    server: ServerState,
    user: User,
    status: int = 200,
    *,
    errors: list[str] | None = None,
    notice: str = "",
) -> Response:
    if wants_json(request) and errors:
        return _json({"errors": errors}, status)
    signins = await server.doorman.signins.list(user)
    tokens = await server.doorman.tokens.list(user)
    try:
        await server.doorman.throttle.check(user.username, None)
        locked = False
    except Throttled:
        locked = True
    if wants_json(request):
        return _json(
            {
                "user": {**_user_json(user), "locked": locked},
                "sessions": [dataclasses.asdict(s) for s in signins],
                "tokens": [dataclasses.asdict(t) for t in tokens],
            }
        )
    return await server.templates.render(
        request,
        "admin/user.html",
        status,
        section="user",
        user=user,
        is_self=_is_self(request, user),
        locked=locked,
        signins=signins,
        current_signin=request.scope["session"].get(SESSION_SIGNIN),
        tokens=tokens,
        min_length=server.doorman.password_min_length,
        errors=errors or [],
        notice=notice,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class _Act:
    """What an action on one user is given."""

    request: Request
    doorman: Doorman
    user: User
    fields: dict[str, str]

    @property
    def is_self(self) -> bool:
        return _is_self(self.request, self.user)


class _Refused(Exception):
    """The action cannot be done as asked: the errors to show, with a 400."""

    def __init__(self, *errors: str) -> None:
        super().__init__(*errors)
        self.errors = list(errors)


#: An action: None when done, or the ``NOTICES`` key to show instead ("gone").
Action = Callable[[_Act], Awaitable[str | None]]


async def _run(request: Request, done: str, action: Action) -> Response:
    """The common part of every action on one user: 404, CSRF, errors, redirect back."""
    server = state_of(request)
    user = await _target(request, server)
    if user is None:
        return await _missing(request, server)
    fields = await checked_form(request)
    if fields is None:
        return await refuse_csrf(request)
    try:
        done = await action(_Act(request, server.doorman, user, fields)) or done
    except _Refused as refusal:
        return await _user_page(request, server, user, 400, errors=refusal.errors)
    except UserNotFound:  # deleted meanwhile
        return await _missing(request, server)
    return _done(request, done, _user_url(server, user, done))


def _not_self(act: _Act, doing: str) -> None:
    if act.is_self:
        raise _Refused(f"You cannot {doing} your own account: ask another administrator.")


async def _set_groups(act: _Act) -> None:
    errors, names = _group_names(field(act.fields, "groups"))
    if errors:
        raise _Refused(*errors)
    await act.doorman.users.set_groups(act.user, names)


async def _sign_out(act: _Act) -> None:
    await act.doorman.end_sessions(act.user)


async def _revoke_tokens(act: _Act) -> None:
    await act.doorman.tokens.revoke_all(act.user)


async def _disable(act: _Act) -> None:
    _not_self(act, "disable")
    user = await act.doorman.users.set_active(act.user, False)
    await act.doorman.end_sessions(user)  # the middleware would, on their next request


async def _enable(act: _Act) -> None:
    await act.doorman.users.set_active(act.user, True)


async def _promote(act: _Act) -> None:
    await act.doorman.users.set_admin(act.user, True)


async def _demote(act: _Act) -> None:
    _not_self(act, "remove administrator rights from")
    await act.doorman.users.set_admin(act.user, False)


async def _password(act: _Act) -> None:
    password = field(act.fields, "password")
    if password != field(act.fields, "password2"):
        raise _Refused("The two passwords differ.")
    try:
        user = await act.doorman.set_password(act.user, password)
    except PasswordRejected as error:
        raise _Refused(*(f"This password {problem}." for problem in error.problems)) from None
    if act.is_self:  # every session ended; keep this one
        await update_session_auth(act.request, user)


async def _unlock(act: _Act) -> None:
    await act.doorman.throttle.reset(act.user.username)


ACTIONS: dict[str, Callable[[_Act], Awaitable[None]]] = {
    "groups": _set_groups,
    "sign-out": _sign_out,
    "revoke-tokens": _revoke_tokens,
    "disable": _disable,
    "enable": _enable,
    "make-admin": _promote,
    "remove-admin": _demote,
    "password": _password,
    "unlock": _unlock,
}


@requires("admin")
async def user_action(request: Request) -> Response:
    name = request.path_params["action"]
    action = ACTIONS.get(name)
    if action is None:
        return await _missing(request, state_of(request), "There is no such action.")
    return await _run(request, name, action)


@requires("admin")
async def revoke_user_signin(request: Request) -> Response:
    async def revoke(act: _Act) -> str | None:
        found = await act.doorman.signins.revoke(request.path_params["item"], user=act.user)
        return None if found else "gone"

    return await _run(request, "revoke-session", revoke)


@requires("admin")
async def revoke_user_token(request: Request) -> Response:
    async def revoke(act: _Act) -> str | None:
        found = await act.doorman.tokens.revoke(request.path_params["item"], user=act.user)
        return None if found else "gone"

    return await _run(request, "revoke-token", revoke)


@requires("admin")
async def delete_user(request: Request) -> Response:
    server = state_of(request)
    user = await _target(request, server)
    if user is None:
        return await _missing(request, server)
    errors: list[str] = []
    if request.method == "POST":
        fields = await checked_form(request)
        if fields is None:
            return await refuse_csrf(request)
        if _is_self(request, user):
            errors = ["You cannot delete your own account: ask another administrator."]
        elif field(fields, "confirm", 600) != user.username:
            errors = ["The username you typed does not match: nothing was deleted."]
        else:
            await server.doorman.users.delete(user)
            return _done(request, "deleted", f"{server.url('admin/users')}?done=deleted")
        if wants_json(request):
            return _json({"errors": errors}, 400)
    return await server.templates.render(
        request,
        "admin/delete.html",
        400 if errors else 200,
        section="user",
        user=user,
        is_self=_is_self(request, user),
        errors=errors,
        notice="",
    )


# -- every sign-in, every token --------------------------------------------------


@requires("admin")
async def sessions_page(request: Request) -> Response:
    server = state_of(request)
    signins = await server.doorman.signins.list()
    if wants_json(request):
        return _json({"sessions": [dataclasses.asdict(s) for s in signins]})
    return await server.templates.render(
        request,
        "admin/sessions.html",
        section="sessions",
        signins=signins,
        current_signin=request.scope["session"].get(SESSION_SIGNIN),
        errors=[],
        notice=_notice(request),
    )


@requires("admin")
async def tokens_page(request: Request) -> Response:
    server = state_of(request)
    tokens = await server.doorman.tokens.list()
    if wants_json(request):
        return _json({"tokens": [dataclasses.asdict(t) for t in tokens]})
    return await server.templates.render(
        request,
        "admin/tokens.html",
        section="tokens",
        tokens=tokens,
        errors=[],
        notice=_notice(request),
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
    return _done(request, done, f"{state_of(request).url('admin/' + page)}?done={done}")


# -- small helpers -----------------------------------------------------------------


async def _target(request: Request, server: ServerState) -> User | None:
    return await server.doorman.users.by_username(request.path_params["username"])


def _is_self(request: Request, user: User) -> bool:
    actor = request.scope.get("actor") or {}
    return username_key(str(actor.get("id", ""))) == username_key(user.username)


def _done(request: Request, done: str, url: str) -> Response:
    """After a change: JSON ``{"ok": true}`` (404 when there was nothing to change), or back."""
    if wants_json(request):
        return _json({"errors": [NOTICES[done]]}, 404) if done == "gone" else _json({"ok": True})
    return redirect(url)


async def _missing(
    request: Request, server: ServerState, message: str = "There is no such user."
) -> Response:
    if wants_json(request):
        return _json({"errors": [message]}, 404)
    link = {"href": server.url("admin/users"), "label": "Back to the users"}
    return await server.templates.render(
        request, "message.html", 404, title="Not found", message=message, link=link
    )


def _notice(request: Request) -> str:
    return NOTICES.get(request.query_params.get("done", ""), "")


def _json(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status, headers=_NO_STORE)


def _user_url(server: ServerState, user: User, done: str) -> str:
    return f"{server.url('admin/users')}/{quote(user.username, safe='')}?done={done}"


def _sentence(error: Exception) -> str:
    text = str(error)
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _user_json(user: User) -> dict[str, Any]:
    """A user without the password hash."""
    return {
        "username": user.username,
        "email": user.email,
        "admin": user.is_admin,
        "active": user.is_active,
        "groups": list(user.groups),
        "created_at": user.created_at,
        "last_login": user.last_login,
    }
