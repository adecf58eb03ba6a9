"""The sign-in server's own plugin: signed-out browsers go to the login page, not a 401."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.responses import RedirectResponse

from .._types import ASGIApp, Scope
from ..hookspecs import hookimpl

__all__ = ["ServerPlugin"]


class ServerPlugin:
    """Registered by ``create_app``; a plugin of the deployer's may still answer first."""

    def __init__(self, prefix: str) -> None:
        self.login = f"{prefix}/login"

    @hookimpl
    def forbidden(self, doorman: Any, scope: Scope, message: str) -> ASGIApp | None:
        if scope.get("actor") is not None or scope.get("method") not in ("GET", "HEAD"):
            return None
        accept = dict(scope["headers"]).get(b"accept", b"")
        if b"text/html" not in accept:
            return None
        path = scope.get("path", "/")
        query = scope.get("query_string", b"").decode("latin-1")
        target = path + (f"?{query}" if query else "")
        return RedirectResponse(f"{self.login}?{urlencode({'next': target})}", 302)
