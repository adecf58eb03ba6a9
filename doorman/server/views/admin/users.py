"""The list of users (searched, a page at a time) and the form that adds one."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ....accounts.factor_status import describe_factors, factors_json
from ....auth.guards import requires
from ....events import EventKind
from ....exceptions import AccountError
from ...state import ServerState, state_of
from ..audit import record
from ..common import checked_form, field, redirect, refuse_csrf, wants_json
from ..forms import FormErrors, new_account_problems, password_hint, sentence
from ._common import NO_STORE, done_notice, group_names, json_response, user_url

PAGE_SIZE = 50
_TRUE = frozenset({"on", "1", "true", "yes"})


@requires("admin")
async def admin_home(request: Request) -> Response:
    return RedirectResponse(state_of(request).url("admin/users"), 302, headers=NO_STORE)


@requires("admin")
async def users_page(request: Request) -> Response:
    server = state_of(request)
    if request.method == "POST":
        return await _create_user(request, server)
    return await _users_list(request, server, notice=done_notice(request))


async def _users_list(
    request: Request,
    server: ServerState,
    status: int = 200,
    *,
    errors: FormErrors | None = None,
    notice: str = "",
    form: dict[str, Any] | None = None,
) -> Response:
    q = request.query_params.get("q", "")[:200].strip()
    users = server.doorman.users
    total = await users.count(search=q or None)
    pages = max(1, math.ceil(total / PAGE_SIZE))
    page = min(_page_number(request.query_params.get("page")), pages)
    found = await users.list(search=q or None, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    factors = await server.doorman.factors.summaries([u.id for u in found])
    if wants_json(request):
        users_json = [
            {**u.public_fields(), "two_factor": factors_json(factors[u.id])} for u in found
        ]
        return json_response({"users": users_json, "total": total, "page": page, "pages": pages})

    def page_url(number: int) -> str:
        query = {"q": q, "page": number} if q else {"page": number}
        return f"{server.url('admin/users')}?{urlencode(query)}"

    return await server.templates.render(
        request,
        "admin/users.html",
        status,
        section="users",
        users=found,
        factors={u.id: describe_factors(factors[u.id]) for u in found},
        q=q,
        total=total,
        page=page,
        pages=pages,
        previous_url=page_url(page - 1) if page > 1 else "",
        next_url=page_url(page + 1) if page < pages else "",
        form=form or {"username": "", "email": "", "groups": "", "admin": False},
        min_length=server.doorman.password_min_length,
        password_hint=password_hint(server.doorman),
        **(errors or FormErrors()).context(),
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
    errors = await new_account_problems(
        server.doorman, username, email, password, field(fields, "password2")
    )
    group_errors, groups = group_names(groups_text)
    for message in group_errors:
        errors.add(message, "groups")
    if not errors:
        try:
            user = await server.doorman.create_user(
                username, password, email=email or None, admin=admin, groups=groups, validate=False
            )
        except AccountError as error:
            errors = FormErrors.of(sentence(error))
        else:
            await record(request, EventKind.USER_CREATED, user, {"admin": user.is_admin})
            if wants_json(request):
                return json_response({"ok": True, "user": user.public_fields()}, 201)
            return redirect(user_url(server, user, "created"))
    if wants_json(request):
        return json_response(errors.json(), 400)
    form = {"username": username, "email": email, "groups": groups_text, "admin": admin}
    return await _users_list(request, server, 400, errors=errors, form=form)
