"""``/-/admin/events``: the security event log, filtered by user, kind and time, a page at a time.

Filters come from the query string (``user``, ``kind``, ``since``, ``until``)
and the page from ``before`` or ``after`` (an event's id): newest first, with
links to older and newer pages. A filter that cannot be read is a 400 that
says why, never a 500.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from ...._times import parse_moment
from ....accounts.event_details import check_kind
from ....accounts.event_log import EventFilter, EventPage
from ....auth.guards import requires
from ....events import kind_label
from ...state import ServerState, state_of
from ..common import wants_json
from ._common import json_response

__all__ = ["PAGE_SIZE", "events_page"]

PAGE_SIZE = 50
_FIELDS = ("user", "kind", "since", "until")
#: Longest value read from each field; beyond, it is cut (a username is at most 150).
_LIMIT = 150


@dataclass(frozen=True, slots=True)
class _Asked:
    """What the query string asks for, as given (to fill the form) and as read."""

    given: dict[str, str]
    where: EventFilter
    before: int | None
    after: int | None


@requires("admin")
async def events_page(request: Request) -> Response:
    server = state_of(request)
    errors: list[str] = []
    asked = await _read(server, request.query_params, errors)
    if errors:
        if wants_json(request):
            return json_response({"errors": errors}, 400)
        return await _render(request, server, asked, None, errors, 400)
    page = await server.doorman.events.page(
        asked.where, before=asked.before, after=asked.after, limit=PAGE_SIZE
    )
    if wants_json(request):
        return json_response(
            {
                "events": [{**e.public_fields(), "label": e.label} for e in page.events],
                "older": page.older,
                "newer": page.newer,
            }
        )
    return await _render(request, server, asked, page, errors)


async def _read(server: ServerState, query: QueryParams, errors: list[str]) -> _Asked:
    given = {name: query.get(name, "")[:_LIMIT].strip() for name in _FIELDS}
    now = time.time()
    moments: dict[str, float | None] = {}
    for name in ("since", "until"):
        try:
            moments[name] = parse_moment(given[name], now=now) if given[name] else None
        except ValueError as error:
            errors.append(f"{name.capitalize()}: {error}.")
            moments[name] = None
    kinds: tuple[str, ...] = ()
    if given["kind"]:
        try:
            kinds = (check_kind(given["kind"]),)
        except ValueError:
            errors.append("Kind: choose one from the list.")
    where = EventFilter(
        name=await _name(server, given["user"]),
        kinds=kinds,
        since=moments["since"],
        until=moments["until"],
    )
    before, after = _cursor(query, "before", errors), _cursor(query, "after", errors)
    return _Asked(given, where, before, after)


async def _name(server: ServerState, given: str) -> str | None:
    """The username as the log holds it (as the account spells it), or as typed."""
    if not given:
        return None
    user = await server.doorman.users.by_username(given)
    return user.username if user is not None else given


def _cursor(query: QueryParams, name: str, errors: list[str]) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        errors.append("That page of events does not exist: start from the newest.")
        return None
    return int(raw)


async def _render(
    request: Request,
    server: ServerState,
    asked: _Asked,
    page: EventPage | None,
    errors: list[str],
    status: int = 200,
) -> Response:
    filters = {name: value for name, value in asked.given.items() if value}

    def page_url(**cursor: int) -> str:
        return f"{server.url('admin/events')}?{urlencode({**filters, **cursor})}"

    context: dict[str, Any] = {
        "section": "events",
        "form": asked.given,
        "kinds": [(kind, kind_label(kind)) for kind in await server.doorman.events.kinds()],
        "events": page.events if page else [],
        "filtered": bool(filters),
        "older_url": page_url(before=page.older) if page and page.older else "",
        "newer_url": page_url(after=page.newer) if page and page.newer else "",
        "newest_url": page_url() if asked.before or asked.after else "",
        "errors": errors,
        "notice": "",
    }
    return await server.templates.render(request, "admin/events.html", status, **context)
