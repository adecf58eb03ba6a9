"""The JSON side: ``/-/whoami``, forward-auth ``/-/auth`` and ``/-/health``."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from ..._identity import identity_headers
from ..._types import Receive, Scope, Send, send_text
from ...auth.auth_methods import auth_methods, meets, methods_header, requirements
from ...db.transaction import connect
from ...exceptions import StoreError
from ...redirects import safe_path
from ..state import ServerState, state_of

__all__ = ["ForwardAuth", "health", "whoami", "whoami_response"]

log = logging.getLogger("doorman.server")
_PRIVATE = {"cache-control": "no-store", "vary": "Cookie, Authorization"}
_PRIVATE_RAW = [(b"vary", b"Cookie, Authorization")]  # send_text adds no-store


async def whoami(request: Request) -> Response:
    """``{"actor": {...}}`` or ``{"actor": null}``; ``?csrf=1`` adds this browser's CSRF token."""
    csrftoken = None
    if request.query_params.get("csrf") == "1":
        csrftoken = state_of(request).csrf.token(request.scope)
    actor = request.scope.get("actor")
    return whoami_response(actor, auth_methods(request.scope), csrftoken)


def whoami_response(
    actor: dict[str, Any] | None, methods: list[str], csrftoken: str | None = None
) -> JSONResponse:
    """What ``/-/whoami`` answers (the forward-auth fast path answers it too): the actor, and
    how they signed in (``auth_methods``) when there is one."""
    body: dict[str, Any] = {"actor": actor}
    if actor is not None:
        body["auth_methods"] = methods
    if csrftoken is not None:
        body["csrftoken"] = csrftoken
    return JSONResponse(body, headers=_PRIVATE)


class ForwardAuth:
    """For nginx ``auth_request``, Traefik ``ForwardAuth`` and Caddy ``forward_auth``.

    Signed in and allowed to ``view``: 200 with ``X-Doorman-User`` and
    ``X-Doorman-Auth-Methods``. Signed in but not allowed, or without the
    methods ``?require=`` asks for: 403. Not signed in: 401, or a 302 to the
    login page for a browser (``Accept: text/html``) or when ``?rd=`` names
    where to return. A ``?require=`` naming something unknown: 400, whoever asks.

    A bare ASGI app rather than a Starlette view: a proxy asks it once for every
    request it lets through, so the signed-in answer skips building a
    ``Request`` and a ``Response``.
    """

    def __init__(self, server: ServerState) -> None:
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        actor = scope.get("actor")
        required = requirements(scope.get("query_string", b""))
        if required is None:
            await send_text(send, 400, _BAD_REQUIRE, _PRIVATE_RAW)
        elif actor is None:
            response = _signed_out(self.server, Request(scope, receive))
            await response(scope, receive, send)
        elif not await self.server.doorman.allowed(actor, "view"):
            await send_text(send, 403, "Forbidden\n", _PRIVATE_RAW)
        elif not meets(methods := auth_methods(scope), required):
            await send_text(send, 403, "A second factor is required\n", _PRIVATE_RAW)
        else:
            headers = [*_PRIVATE_RAW, *identity_headers(actor), methods_header(methods)]
            await send_text(send, 200, "OK\n", headers)


_BAD_REQUIRE = "require= takes otp, hwk or mfa\n"


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
    if not server.origins.allows_url(original):  # scheme, host and port, exactly
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
