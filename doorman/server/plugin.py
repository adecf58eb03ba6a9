"""The sign-in server's own plugin: refusals a person can act on, not a bare 401 or 403.

A signed-out browser asking for a page goes to the login page (and comes back
after). A form sent after the session ended elsewhere, or a page the actor may
not see, gets a page of the site with a way on: sign in, or go back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from .._types import Scope
from ..hookspecs import hookimpl

if TYPE_CHECKING:
    from .templates import Templates

__all__ = ["ServerPlugin"]


class ServerPlugin:
    """Registered by ``create_app``; a plugin of the deployer's may still answer first."""

    def __init__(self, prefix: str, templates: Templates) -> None:
        self.prefix = prefix
        self.templates = templates

    @hookimpl
    async def forbidden(self, doorman: Any, scope: Scope, message: str) -> Response | None:
        accept = dict(scope["headers"]).get(b"accept", b"")
        if b"text/html" not in accept or "session" not in scope:
            return None  # API clients get the default JSON answer
        signed_in = scope.get("actor") is not None
        if not signed_in and scope.get("method") in ("GET", "HEAD"):
            path = scope.get("path", "/")
            query = scope.get("query_string", b"").decode("latin-1")
            target = path + (f"?{query}" if query else "")
            return RedirectResponse(f"{self.prefix}/login?{urlencode({'next': target})}", 302)
        if signed_in:
            title, link = "Not for you", {"href": f"{self.prefix}/account", "label": "Your account"}
        else:
            title = "Please sign in again"
            message = "Your session has ended, so this was not done. Sign in and try again."
            link = {"href": f"{self.prefix}/login", "label": "Sign in"}
        return await self.templates.render(
            Request(scope),
            "message.html",
            403 if signed_in else 401,
            title=title,
            message=message,
            link=link,
        )
