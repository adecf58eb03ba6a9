"""Small helpers shared by the views: CSRF-checked forms, JSON or HTML, redirects."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from ..._types import Message, Receive
from ...auth import csrf
from ...auth.users import check_email, check_username
from ...exceptions import AccountError
from ..state import state_of
from .forms import FormErrors, check_new_password

if TYPE_CHECKING:
    from ...core import Doorman

__all__ = ["checked_form", "client_address", "json_error", "redirect", "refuse_csrf", "wants_json"]

_MAX_FORM_FIELDS = 50
#: The largest body a form or JSON object of ours may have: three fields of 4096
#: characters, each percent-encoded at up to 12 bytes a character, fit with room to spare.
_MAX_FORM_BYTES = 256 * 1024


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
    return fields if csrf.verify(request.scope["session"], given) else None


async def _fields(request: Request) -> dict[str, str] | None:
    raw = await _body(request)
    if raw is None:
        return None
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            body = json.loads(raw or b"{}")
        except (ValueError, RecursionError):  # not JSON (nor UTF-8), or nested past the limit
            return None
        if not isinstance(body, dict):
            return None
        return {k: _text_of(v) for k, v in body.items() if isinstance(v, str | bool)}
    try:
        form: FormData = await Request(request.scope, _replay(raw)).form(
            max_files=0, max_fields=_MAX_FORM_FIELDS
        )
    except Exception:  # malformed multipart or too many fields: the client's fault
        return None
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def _body(request: Request) -> bytes | None:
    """The request body, or None when it is larger than any form of ours could be."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > _MAX_FORM_BYTES:
        return None  # refused before a byte is read
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > _MAX_FORM_BYTES:
            return None  # a stream without a length: read no further
        chunks.append(chunk)
    return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    """A ``receive`` that hands over a body already read, for Starlette's form parser."""

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _text_of(value: str | bool) -> str:
    """A JSON field as the form would send it: ``true`` is "true", ``false`` is "false"."""
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


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


def field(fields: dict[str, str], name: str, limit: int = 4096) -> str:
    """A field's value, cut to a sane length (passwords are checked for length elsewhere)."""
    return fields.get(name, "")[:limit]


async def new_account_problems(
    doorman: Doorman, username: str, email: str, password: str, again: str
) -> FormErrors:
    """Every problem of a new account's fields: username, email, and both passwords."""
    errors = FormErrors()
    try:
        check_username(username)
    except AccountError as error:
        errors.add(sentence(error), "username")
    else:
        if await doorman.users.by_username(username) is not None:
            errors.add("That username is taken.", "username")
    try:
        check_email(email)
    except AccountError as error:
        errors.add(sentence(error), "email")
    await check_new_password(
        errors, doorman, password, again, username=username, email=email or None
    )
    return errors


def sentence(error: Exception) -> str:
    """An error's message as a sentence: capital first letter, full stop."""
    text = str(error)
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
