"""Answers for paths and methods the server does not have: a page of the site, or JSON.

Starlette answers these with a bare "Not Found"; a person who mistyped a
link gets the site's own page with a way on instead, and an API client gets
``{"error": ...}`` like every other refusal.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ..state import state_of
from .common import json_error, wants_json

__all__ = ["error_handlers", "way_on"]

_ANSWERS = {
    404: ("Page not found", "There is no page at this address. Check the link, or start again."),
    405: ("Not allowed here", "This address does not take that kind of request."),
}


def way_on(request: Request) -> dict[str, str]:
    """The link a page of bad news offers: your account when signed in, else sign-in."""
    server = state_of(request)
    if request.scope.get("actor") is not None:
        return {"href": server.url("account"), "label": "Your account"}
    return {"href": server.url("login"), "label": "Sign in"}


async def _answer(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    title, message = _ANSWERS[error.status_code]
    headers = dict(error.headers or {})  # 405 keeps its Allow header
    if wants_json(request) or "session" not in request.scope:
        return json_error(message, error.status_code, **headers)
    response = await state_of(request).templates.render(
        request,
        "message.html",
        error.status_code,
        title=title,
        message=message,
        link=way_on(request),
    )
    response.headers.update(headers)
    return response


error_handlers = {status: _answer for status in _ANSWERS}
