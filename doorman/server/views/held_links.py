"""A one-time link's token, held in a cookie of its own while the link's pages are used.

Opening a link moves its token out of the address bar (and so out of Referer
headers, history and access logs) into an HttpOnly cookie scoped to the link's
routes, then redirects to the token-less page (``<route>/new``).
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from ..state import ServerState
from .common import json_error, redirect, wants_json

__all__ = ["HeldLink", "private"]


def private(response: Response) -> Response:
    """No ``Referer`` from a page whose address held a token; never cached."""
    response.headers["referrer-policy"] = "no-referrer"
    response.headers["cache-control"] = "no-store"
    return response


@dataclass(frozen=True)
class HeldLink:
    cookie: str
    route: str  # under the prefix: "password-reset", "invite", ...
    held_for: int  # seconds

    def hand_over(self, request: Request, server: ServerState, token: str) -> Response:
        """The redirect to the token-less page, with the token in the cookie."""
        response = private(redirect(server.url(f"{self.route}/new")))
        response.set_cookie(
            self.cookie,
            token,
            max_age=self.held_for,
            path=server.url(self.route),
            secure=server.settings.cookie_secure or request.url.scheme == "https",
            httponly=True,
            samesite="lax",
        )
        return response

    def token(self, request: Request) -> str:
        return request.cookies.get(self.cookie, "")

    def forget(self, response: Response, server: ServerState) -> None:
        response.delete_cookie(self.cookie, path=server.url(self.route))

    async def refuse(
        self,
        request: Request,
        server: ServerState,
        message: str,
        *,
        title: str = "This link does not work",
        ask_again: bool = False,
    ) -> Response:
        """A 400 page (or JSON) for a link that does not work; the held token dropped.

        ``ask_again`` links to the route's own form, to ask for a new link.
        """
        response: Response
        if wants_json(request):
            response = json_error(message, 400)
        else:
            again = {"href": server.url(self.route), "label": "Ask for a new link"}
            response = await server.templates.render(
                request,
                "message.html",
                400,
                title=title,
                message=message,
                link=again if ask_again else None,
            )
        self.forget(response, server)
        return private(response)
