"""One user's page and what an admin can do to them: details, sign-out, tokens, delete.

An admin cannot disable, demote or delete themselves, so one admin always remains.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from starlette.requests import Request
from starlette.responses import Response

from ....accounts.factor_status import describe_factors, factors_json, reset_detail
from ....accounts.names import check_email
from ....accounts.users import User
from ....auth.guards import requires
from ....auth.login import current_signin, update_session_auth
from ....core import Doorman
from ....events import EventKind
from ....exceptions import AccountError, Throttled, UserNotFound
from ...state import ServerState, state_of
from ..audit import record
from ..common import checked_form, field, refuse_csrf, wants_json
from ..forms import FormErrors, check_new_password, password_hint, sentence
from ._common import (
    after_change,
    done_notice,
    group_names,
    is_self,
    json_response,
    not_found,
    target_user,
    user_url,
)
from ._logged import action_event

security_log = logging.getLogger("doorman.security")


@requires("admin")
async def user_page(request: Request) -> Response:
    server = state_of(request)
    user = await target_user(request, server)
    if user is None:
        return await not_found(request, server)
    return await render_user_page(request, server, user, notice=done_notice(request))


async def render_user_page(
    request: Request,
    server: ServerState,
    user: User,
    status: int = 200,
    *,
    errors: FormErrors | None = None,
    notice: str = "",
    reset_link: str = "",
) -> Response:
    """The user's page; ``reset_link``, a link an admin just made, is shown this once."""
    if wants_json(request) and errors:
        return json_response(errors.json(), status)
    signins = await server.doorman.signins.list(user)
    tokens = await server.doorman.tokens.list(user)
    factors = await server.doorman.factors.summary(user.id)
    try:
        await server.doorman.throttle.check(user.username, None)
        locked = False
    except Throttled:
        locked = True
    if wants_json(request):
        return json_response(
            {
                "user": {**user.public_fields(), "locked": locked},
                "two_factor": factors_json(factors),
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
        is_self=is_self(request, user),
        locked=locked,
        signins=signins,
        current_signin=current_signin(request.scope["session"]),
        tokens=tokens,
        factors=factors,
        factors_text=describe_factors(factors),
        min_length=server.doorman.password_min_length,
        password_hint=password_hint(server.doorman),
        **(errors or FormErrors()).context(),
        notice=notice,
        reset_link=reset_link,
        can_send_mail=server.outbox.can_send,
    )


# -- actions -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Act:
    """What an action on one user is given."""

    request: Request
    doorman: Doorman
    user: User
    fields: dict[str, str]

    @property
    def is_self(self) -> bool:
        return is_self(self.request, self.user)


class _Refused(Exception):
    """The action cannot be done as asked: the errors to show, with a 400."""

    def __init__(self, errors: FormErrors) -> None:
        super().__init__(*errors.messages)
        self.errors = errors


#: An action: None when done, or the ``NOTICES`` key to show instead ("gone").
Action = Callable[[_Act], Awaitable[str | None]]


async def _run(request: Request, done: str, action: Action) -> Response:
    """The common part of every action on one user: 404, CSRF, errors, redirect back."""
    server = state_of(request)
    user = await target_user(request, server)
    if user is None:
        return await not_found(request, server)
    fields = await checked_form(request)
    if fields is None:
        return await refuse_csrf(request)
    act = _Act(request, server.doorman, user, fields)
    try:
        result = await action(act) or done
    except _Refused as refusal:
        return await render_user_page(request, server, user, 400, errors=refusal.errors)
    except UserNotFound:  # deleted meanwhile
        return await not_found(request, server)
    if result != "gone":
        item = request.path_params.get("item", "")
        logged = await action_event(done, server.doorman, user, item)
        if logged is not None:
            kind, detail = logged
            if result.endswith("-tokens-revoked"):
                detail = {**detail, "tokens_revoked": True}
            await record(request, kind, user, detail)
    return after_change(request, result, user_url(server, user, result))


def _not_self(act: _Act, doing: str) -> None:
    if act.is_self:
        message = f"You cannot {doing} your own account: ask another administrator."
        raise _Refused(FormErrors.of(message))


async def _set_groups(act: _Act) -> None:
    messages, names = group_names(field(act.fields, "groups"))
    if messages:
        errors = FormErrors()
        for message in messages:
            errors.add(message, "groups")
        raise _Refused(errors)
    await act.doorman.users.set_groups(act.user, names)


#: The admin flag as a form sends it: a hidden "off" before the checkbox's "on".
_FLAG = {"on": True, "true": True, "1": True, "off": False, "false": False, "0": False}


async def _edit_details(act: _Act) -> None:
    """Email, groups and the admin flag, each only when the form has its field; all or none."""
    fields, errors = act.fields, FormErrors()
    admin = _FLAG.get(field(fields, "admin", 10).lower()) if "admin" in fields else None
    if "admin" in fields and admin is None:
        errors.add("Administrator: give on or off.", "admin")
    if admin is False and act.user.is_admin and act.is_self:
        errors.add(  # about the whole form: one's own page shows no admin field to put it by
            "You cannot remove administrator rights from your own account: "
            "ask another administrator."
        )
    messages, groups = group_names(field(fields, "groups")) if "groups" in fields else ([], None)
    for message in messages:
        errors.add(message, "groups")
    email = field(fields, "email", 300).strip() if "email" in fields else None
    if email:
        try:
            check_email(email)
        except AccountError as error:
            errors.add(sentence(error), "email")
    if errors:
        raise _Refused(errors)
    try:
        await act.doorman.users.edit(act.user, email=email, admin=admin, groups=groups)
    except AccountError as error:
        raise _Refused(FormErrors.of(sentence(error))) from None
    changed = ", ".join(name for name in ("email", "admin", "groups") if name in fields)
    actor = (act.request.scope.get("actor") or {}).get("id")
    security_log.info("admin %r changed %s of user %r", actor, changed, act.user.username)


async def _sign_out(act: _Act) -> str:
    revoke = _revoke_tokens_asked(act, default=False)
    live = await _live_tokens(act)
    await act.doorman.end_sessions(act.user, revoke_tokens=revoke)
    return _with_tokens("sign-out", live, revoke)


async def _revoke_tokens(act: _Act) -> None:
    await act.doorman.tokens.revoke_all(act.user)


async def _disable(act: _Act) -> str:
    _not_self(act, "disable")
    revoke = _revoke_tokens_asked(act, default=True)  # else enabling them brings them back
    live = await _live_tokens(act)
    user = await act.doorman.users.set_active(act.user, False)
    await act.doorman.end_sessions(user, revoke_tokens=revoke)  # the middleware would, later
    return _with_tokens("disable", live, revoke)


async def _enable(act: _Act) -> str:
    await act.doorman.users.set_active(act.user, True)
    return "enable-tokens" if await _live_tokens(act) else "enable"


async def _promote(act: _Act) -> None:
    await act.doorman.users.set_admin(act.user, True)


async def _demote(act: _Act) -> None:
    _not_self(act, "remove administrator rights from")
    await act.doorman.users.set_admin(act.user, False)


async def _password(act: _Act) -> str:
    password, errors = field(act.fields, "password"), FormErrors()
    await check_new_password(
        errors,
        act.doorman,
        password,
        field(act.fields, "password2"),
        username=act.user.username,
        email=act.user.email,
    )
    if errors:
        raise _Refused(errors)
    revoke = _revoke_tokens_asked(act, default=True)  # a reset usually follows a compromise
    live = await _live_tokens(act)
    user = await act.doorman.set_password(act.user, password, validate=False, revoke_tokens=revoke)
    if act.is_self:  # every session ended; keep this one
        await update_session_auth(act.request, user)
    return _with_tokens("password", live, revoke)


def _revoke_tokens_asked(act: _Act, *, default: bool) -> bool:
    """The form's "also revoke API tokens" box; ``default`` when the form has none."""
    if "revoke_tokens" not in act.fields:
        return default
    asked = _FLAG.get(field(act.fields, "revoke_tokens", 10).lower())
    if asked is None:
        raise _Refused(FormErrors.of("Also revoke API tokens: give on or off."))
    return asked


async def _live_tokens(act: _Act) -> int:
    return len(await act.doorman.tokens.list(act.user))


def _with_tokens(done: str, live: int, revoked: bool) -> str:
    """The notice for ``done`` that also says what became of the user's API tokens."""
    if not live:
        return done
    return f"{done}-tokens-revoked" if revoked else f"{done}-tokens-kept"


async def _unlock(act: _Act) -> None:
    await act.doorman.throttle.reset(act.user.username)


async def _reset_factors(act: _Act) -> str | None:
    """Take every second factor away (a person who lost theirs): logged with what they had,
    and by whom. Their sessions stand: the person is who the admin says they are."""
    had = await act.doorman.factors.reset(act.user.id)
    if not (had.totp or had.passkeys or had.recovery_codes):
        return "two-factor-none"
    await record(act.request, EventKind.TWO_FACTOR_RESET, act.user, reset_detail(had))
    actor = (act.request.scope.get("actor") or {}).get("id")
    security_log.info("admin %r reset the second factors of %r", actor, act.user.username)
    return None


ACTIONS: dict[str, Action] = {
    "details": _edit_details,
    "groups": _set_groups,
    "sign-out": _sign_out,
    "revoke-tokens": _revoke_tokens,
    "disable": _disable,
    "enable": _enable,
    "make-admin": _promote,
    "remove-admin": _demote,
    "password": _password,
    "unlock": _unlock,
    "two-factor-reset": _reset_factors,
}


@requires("admin")
async def user_action(request: Request) -> Response:
    name = request.path_params["action"]
    action = ACTIONS.get(name)
    if action is None:
        return await not_found(request, state_of(request), "There is no such action.")
    return await _run(request, name, action)


@requires("admin")
async def revoke_user_signin(request: Request) -> Response:
    return await _run(request, "revoke-session", _revoking(lambda doorman: doorman.signins))


@requires("admin")
async def revoke_user_token(request: Request) -> Response:
    return await _run(request, "revoke-token", _revoking(lambda doorman: doorman.tokens))


class _Revocable(Protocol):
    async def revoke(self, item: str, /, *, user: User | None = None) -> bool: ...


def _revoking(kind: Callable[[Doorman], _Revocable]) -> Action:
    """The action that revokes the user's sign-in or token named in the URL ("gone" if none)."""

    async def revoke(act: _Act) -> str | None:
        found = await kind(act.doorman).revoke(act.request.path_params["item"], user=act.user)
        return None if found else "gone"

    return revoke


# -- delete --------------------------------------------------------------------------


@requires("admin")
async def delete_user(request: Request) -> Response:
    server = state_of(request)
    user = await target_user(request, server)
    if user is None:
        return await not_found(request, server)
    errors = FormErrors()
    if request.method == "POST":
        fields = await checked_form(request)
        if fields is None:
            return await refuse_csrf(request)
        if is_self(request, user):
            errors.add("You cannot delete your own account: ask another administrator.")
        elif field(fields, "confirm", 600) != user.username:
            errors.add("The username you typed does not match: nothing was deleted.", "confirm")
        else:
            await server.doorman.users.delete(user)
            await record(request, EventKind.USER_DELETED, user)  # kept, unlinked: it is gone
            url = f"{server.url('admin/users')}?done=deleted"
            return after_change(request, "deleted", url)
        if wants_json(request):
            return json_response(errors.json(), 400)
    return await server.templates.render(
        request,
        "admin/delete.html",
        400 if errors else 200,
        section="user",
        user=user,
        is_self=is_self(request, user),
        **errors.context(),
        notice="",
    )
