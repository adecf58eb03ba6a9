"""HTTP helpers shared by the views: CSRF-checked forms, JSON or HTML, redirects."""

from __future__ import annotations

import json

from starlette.datastructures import FormData
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from ...auth import csrf
from ...exceptions import RequestTooLarge
from ..state import state_of

__all__ = ["checked_form", "field", "json_error", "redirect", "refuse_csrf", "wants_json"]

_MAX_FORM_FIELDS = 50


def wants_json(request: Request) -> bool:
    """JSON for API clients (a JSON body, or an Accept without text/html), pages for browsers."""
    if request.headers.get("content-type", "").startswith("application/json"):
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


async def checked_form(request: Request) -> dict[str, str] | None:
    """The submitted fields (form or JSON object), or None when the CSRF check fails.

    A request authenticated by an API token needs no CSRF token: it carries no
    ambient authority a third-party page could borrow.
    """
    fields = await _fields(request)
    if fields is None:
        return None
    actor = request.scope.get("actor")
    if actor is not None and actor.get("via") == "token":
        return fields
    if csrf.is_cross_site(request.headers):
        return None
    given = request.headers.get(csrf.HEADER.decode()) or fields.get(csrf.FIELD)
    return fields if state_of(request).csrf.verify(request.scope, given) else None


async def _fields(request: Request) -> dict[str, str] | None:
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            body = json.loads(await request.body() or b"{}")
        except (ValueError, RecursionError):  # not JSON, or nested deeper than json parses
            return None
        except ClientDisconnect:  # cut short: the client left (a form's parser says so too)
            return None
        if not isinstance(body, dict):
            return None
        return {k: _text_of(v) for k, v in body.items() if _is_field(v)}
    try:
        form: FormData = await request.form(max_files=0, max_fields=_MAX_FORM_FIELDS)
    except RequestTooLarge:
        raise  # BodyLimitMiddleware answers 413
    except Exception:  # malformed multipart or too many fields: the client's fault
        return None
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _is_field(value: object) -> bool:
    return isinstance(value, str | bool) or (
        isinstance(value, list) and all(isinstance(item, str) for item in value)
    )


def _text_of(value: str | bool | list[str]) -> str:
    """A JSON field as the form would send it: ``true`` is "true", ``false`` is "false",
    and a list of strings is comma-separated (``["view", "edit"]`` is "view,edit")."""
    if isinstance(value, list):
        return ",".join(value)
    return value if isinstance(value, str) else str(value).lower()


async def refuse_csrf(request: Request) -> Response:
    """403 for a missing or wrong CSRF token: the page is stale, or the request forged."""
    message = "This form has expired or did not come from this site. Reload the page and try again."
    if wants_json(request):
        return json_error(message, 403)
    server = state_of(request)
    return await server.templates.render(
        request,
        "message.html",
        403,
        title="Please try again",
        message=message,
        link={"href": server.url("login"), "label": "Back to sign-in"},
    )


def json_error(message: str, status: int, **headers: str) -> JSONResponse:
    return JSONResponse(
        {"error": message}, status, headers={"cache-control": "no-store", **headers}
    )


def redirect(url: str, status: int = 303) -> RedirectResponse:
    """303 See Other by default: after a POST the browser follows with a GET."""
    return RedirectResponse(url, status, headers={"cache-control": "no-store"})


def field(fields: dict[str, str], name: str, limit: int = 4096) -> str:
    """A field's value, cut to a sane length (passwords are checked for length elsewhere)."""
    return fields.get(name, "")[:limit]
