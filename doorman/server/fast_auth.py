"""Forward-auth at the server's entrance: ``/-/auth`` without the page stack.

A proxy asks ``/-/auth`` before every request it lets through, so its cost is
paid on all of a site's traffic. The sign-in server's stack is built for pages
(websocket origins, ``doorman protect``'s routing, security headers added by a
wrapper, Starlette's routing); ``FastForwardAuth`` sends ``/-/auth`` down a
short stack of the same parts instead: the session middleware, the auth
middleware and the answer, with the security headers written into it.

Every answer is the one the full stack gives, byte for byte
(``tests/test_fast_auth.py`` checks): the same session and actor code runs, so
the same stores are read, the same events and log lines happen, and a store
that is down gives the same 503. Only the signed-in 200 and the plain 401 are
written here; the rarer answers (a redirect to the login page, a 403) come
from the server's own ``ForwardAuth`` view.
"""

from __future__ import annotations

from collections.abc import Collection

from .._identity import identity_headers
from .._types import ASGIApp, Receive, Scope, Send
from ..core import Doorman
from .headers import SECURITY_HEADERS

__all__ = ["FastForwardAuth", "ForwardAuthAnswer"]

_OK = b"OK\n"
_SIGN_IN_FIRST = b"Sign in first\n"
_VARY = (b"vary", b"Cookie, Authorization")
_OK_HEADERS = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", b"3"),
    (b"cache-control", b"no-store"),
    _VARY,
]
# As PlainTextResponse("Sign in first\n", 401, headers=...) sends them, then the security headers.
_SIGNED_OUT_HEADERS = [
    (b"cache-control", b"no-store"),
    _VARY,
    (b"content-length", b"14"),
    (b"content-type", b"text/plain; charset=utf-8"),
    *SECURITY_HEADERS,
]


class FastForwardAuth:
    """``path`` (with one of ``methods``) goes to ``fast``; everything else to ``app``.

    ``fast`` is the short stack for ``/-/auth``. Paths under a ``root_path``
    take the full stack: only it knows how to route them.
    """

    def __init__(self, app: ASGIApp, fast: ASGIApp, *, path: str, methods: Collection[str]):
        self.app = app
        self.fast = fast
        self.path = path
        self.methods = frozenset(methods)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == self.path
            and scope["method"] in self.methods
            and not scope.get("root_path")
        ):
            await self.fast(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class ForwardAuthAnswer:
    """The end of the short stack: ``ForwardAuth``'s answer with the security headers.

    The signed-in 200 and the plain 401 are written here; every other answer
    is ``slow``'s: the server's ``ForwardAuth`` inside ``SecurityHeadersMiddleware``.
    """

    def __init__(self, doorman: Doorman, slow: ASGIApp) -> None:
        self.doorman = doorman
        self.slow = slow

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        actor = scope.get("actor")
        if actor is None:
            if scope.get("query_string") or _asks_for_html(scope):
                await self.slow(scope, receive, send)  # a redirect to the login page
                return
            await send(
                {"type": "http.response.start", "status": 401, "headers": _SIGNED_OUT_HEADERS[:]}
            )
            await send({"type": "http.response.body", "body": _SIGN_IN_FIRST})
        elif not await self.doorman.allowed(actor, "view"):
            await self.slow(scope, receive, send)  # the 403
        else:
            headers = [*_OK_HEADERS, *identity_headers(actor), *SECURITY_HEADERS]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": _OK})


def _asks_for_html(scope: Scope) -> bool:
    """As ``ForwardAuth`` reads it: the first ``Accept`` header names ``text/html``."""
    for name, value in scope["headers"]:
        if name == b"accept":
            return b"text/html" in value
    return False
