"""The JSON side: ``/-/whoami``, forward-auth ``/-/auth`` and ``/-/health``."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from ..._types import Receive, Scope, Send, send_text
from ...auth.csrf import csrf_token
from ...database import connect
from ...exceptions import StoreError
from ..redirects import host_allowed, origin_of, public_host, safe_path
from ..state import ServerState, state_of

__all__ = ["ForwardAuth", "health", "whoami"]

log = logging.getLogger("doorman.server")
_PRIVATE = {"cache-control": "no-store", "vary": "Cookie, Authorization"}
_PRIVATE_RAW = [(b"vary", b"Cookie, Authorization")]  # send_text adds no-store


async def whoami(request: Request) -> Response:
    """``{"actor": {...}}`` or ``{"actor": null}``; ``?csrf=1`` adds this session's CSRF token."""
    body: dict[str, Any] = {"actor": request.scope.get("actor")}
    if request.query_params.get("csrf") == "1":
        body["csrftoken"] = csrf_token(request.scope["session"])
    return JSONResponse(body, headers=_PRIVATE)


class ForwardAuth:
    """For nginx ``auth_request``, Traefik ``ForwardAuth`` and Caddy ``forward_auth``.

    Signed in and allowed to ``view``: 200 with ``X-Doorman-User``. Signed in
    but not allowed: 403. Not signed in: 401, or a 302 to the login page for a
    browser (``Accept: text/html``) or when ``?rd=`` names where to return.

    A bare ASGI app rather than a Starlette view: a proxy asks it once for every
    request it lets through, so the signed-in answer skips building a
    ``Request`` and a ``Response``.
    """

    def __init__(self, server: ServerState) -> None:
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        actor = scope.get("actor")
        if actor is None:
            response = _signed_out(self.server, Request(scope, receive))
            await response(scope, receive, send)
        elif not await self.server.doorman.allowed(actor, "view"):
            await send_text(send, 403, "Forbidden\n", _PRIVATE_RAW)
        else:
            groups = b",".join(_header_safe(str(g)) for g in actor.get("groups") or [])
            headers = [
                *_PRIVATE_RAW,
                (b"x-doorman-user", _header_safe(str(actor.get("username") or actor["id"]))),
                (b"x-doorman-groups", groups),
                (b"x-doorman-admin", b"true" if actor.get("admin") is True else b"false"),
            ]
            await send_text(send, 200, "OK\n", headers)


def _signed_out(server: ServerState, request: Request) -> Response:
    rd = request.query_params.get("rd")
    if rd is not None or "text/html" in request.headers.get("accept", ""):
        return RedirectResponse(_login_url(server, request, rd), 302, headers=_PRIVATE)
    return PlainTextResponse("Sign in first\n", 401, headers=_PRIVATE)


def _login_url(server: ServerState, request: Request, rd: str | None) -> str:
    """The login page, with a ``next`` that brings the user back to what they asked for."""
    settings = server.settings
    base = (settings.public_url or "").rstrip("/") + server.url("login")
    original = rd or _original_url(request)
    if original is None:
        return base
    if original.startswith("/"):
        return f"{base}?{urlencode({'next': safe_path(original)})}"
    # Only what the login page would take back: origin_of also refuses a URL Python cannot
    # split ("https://[", from a header or ?rd=), which must not be a 500.
    origin = origin_of(original)
    host = urlsplit(origin).hostname if origin else None
    if host is None or not host_allowed(
        host, public_host=public_host(settings), cookie_domain=settings.cookie_domain
    ):
        return base
    signature = server.next_signer.sign(original)
    return f"{base}?{urlencode({'next': original, 'next_sig': signature})}"


def _original_url(request: Request) -> str | None:
    """What the proxy was asked for: nginx's X-Original-URL, or Traefik's and Caddy's headers."""
    headers = request.headers
    if "x-original-url" in headers:
        return headers["x-original-url"]
    host, uri = headers.get("x-forwarded-host"), headers.get("x-forwarded-uri")
    if host and uri is not None:
        proto = headers.get("x-forwarded-proto", "https").split(",")[0].strip()
        return f"{proto}://{host}{uri if uri.startswith('/') else '/' + uri}"
    return None


def _header_safe(value: str) -> bytes:
    """Percent-encoded UTF-8 beyond ASCII: "josé" is "jos%C3%A9", never "jos".

    Usernames and group names cannot contain "%" or ",", so this is unambiguous.
    """
    return quote(value, safe="@.+-_ ").encode("ascii")


async def health(request: Request) -> Response:
    """200 when the database and the session store answer, 503 (with what failed) when not."""
    server = state_of(request)
    failed: list[str] = []
    try:
        async with connect(server.doorman.engine) as connection:
            await connection.execute(sa.text("SELECT 1"))
    except StoreError as error:
        log.error("health: database unavailable: %s", error)
        failed.append("database")
    try:
        await server.store.ping()
    except StoreError as error:
        log.error("health: session store unavailable: %s", error)
        failed.append("sessions")
    status = 503 if failed else 200
    body = {"status": "unavailable" if failed else "ok", "failed": failed}
    return JSONResponse(body, status, headers={"cache-control": "no-store"})
