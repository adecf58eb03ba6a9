"""CSRF protection: a token on every state-changing request, and nothing stored for visitors.

Forms carry the token in the ``csrftoken`` field, JavaScript in the
``X-CSRFToken`` header. Requests authenticated by an API token (no cookie, no
ambient authority) need none. A browser that says the request is cross-site
(``Sec-Fetch-Site: cross-site``) is refused even with a token.

Where the token comes from (``CSRF``):

- a session that holds data (someone signed in): a random token kept in the
  session, made anew at sign-in (``rotate``); only that token counts then;
- a visitor without one: an HMAC (salt ``doorman.csrf``) of a random value in
  a cookie of its own, ``doorman_csrf`` (``HttpOnly``, ``SameSite=Lax``): the
  double-submit pattern, the token bound to that cookie. The server keeps
  nothing, so anonymous visitors cannot fill the session store; another site
  can neither read the cookie nor make a token for it.

``CSRFCookieMiddleware`` sets that cookie on the answer that first needed it.
Standard library and ``doorman.signing`` only: any ASGI app can use it.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

from .._types import ASGIApp, Message, Receive, Scope, Send
from ..exceptions import BadSignature
from ..signing import Signer

__all__ = [
    "COOKIE",
    "CSRF",
    "FIELD",
    "HEADER",
    "SESSION_KEY",
    "CSRFCookieMiddleware",
    "csrf_token",
    "is_cross_site",
    "rotate",
    "verify",
]

FIELD = "csrftoken"
HEADER = b"x-csrftoken"
SESSION_KEY = "_csrf"
COOKIE = "doorman_csrf"
#: The scope key of a cookie value made during this request, for the middleware to set.
_NEW_COOKIE = "doorman.csrf_cookie"
_COOKIE_VALUE = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)
_MAX_TOKEN = 200
_MAX_CANDIDATES = 3  # same-name cookies tried (another path or domain may add one)


# -- the token kept in a session -------------------------------------------------------


def csrf_token(session: MutableMapping[str, Any]) -> str:
    """This session's token, made on first use (stored in the session)."""
    token = session.get(SESSION_KEY)
    if not isinstance(token, str):
        token = session[SESSION_KEY] = secrets.token_urlsafe(32)
    return token


def rotate(session: MutableMapping[str, Any]) -> None:
    """A new token: call it when the user signs in, so a token seen before is useless."""
    session[SESSION_KEY] = secrets.token_urlsafe(32)


def verify(session: Mapping[str, Any], given: object) -> bool:
    """True when ``given`` is this session's token (constant-time)."""
    expected = session.get(SESSION_KEY)
    if not isinstance(expected, str) or not isinstance(given, str) or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


def is_cross_site(headers: Mapping[str, str]) -> bool:
    """Whether the browser marked the request as coming from another site."""
    return headers.get("sec-fetch-site", "").lower() == "cross-site"


# -- the session's token, or the cookie's -------------------------------------------------


class CSRF:
    """Tokens bound to the session when it holds data, else to the ``doorman_csrf`` cookie.

    ``secret`` (newest first) keys the HMAC; ``max_age`` is the cookie's
    lifetime in seconds; ``https_only`` marks it ``Secure`` on plain http too
    (it is on https anyway).
    """

    def __init__(
        self,
        secret: str | Sequence[str],
        *,
        cookie_name: str = COOKIE,
        max_age: int = 14 * 24 * 3600,
        https_only: bool = False,
    ) -> None:
        self._signer = Signer(secret, salt="doorman.csrf")
        self.cookie_name = cookie_name
        self.max_age = max_age
        self.https_only = https_only
        self._needle = cookie_name.encode() + b"="

    def token(self, scope: Scope) -> str:
        """The token for this request's forms; may make a cookie, never a session."""
        session = _session_with_data(scope)
        if session is not None:
            return csrf_token(session)  # the module's session helper, as below
        value = scope.get(_NEW_COOKIE)
        if value is None:
            found = self._cookie_values(scope)
            value = found[0] if found else None
        if value is None:
            value = scope[_NEW_COOKIE] = secrets.token_urlsafe(32)
        return self._mac(value)

    def verify(self, scope: Scope, given: object) -> bool:
        """True when ``given`` is the token ``token()`` gives this browser (constant-time)."""
        if not isinstance(given, str) or not given or len(given) > _MAX_TOKEN:
            return False
        session = _session_with_data(scope)
        if session is not None:
            return verify(session, given)
        for value in self._cookie_values(scope):
            try:
                self._signer.unsign(f"{value}.{given}")
            except BadSignature:
                continue
            return True
        return False

    def cookie_header(self, scope: Scope) -> bytes | None:
        """The ``Set-Cookie`` value this answer needs: a cookie made during the request."""
        value = scope.get(_NEW_COOKIE)
        if value is None:
            return None
        secure = self.https_only or scope.get("scheme") == "https"
        return (
            f"{self.cookie_name}={value}; Max-Age={self.max_age}; Path=/; HttpOnly; "
            f"SameSite=Lax{'; Secure' if secure else ''}"
        ).encode("latin-1")

    def _mac(self, value: str) -> str:
        return self._signer.sign(value).rpartition(".")[2]

    def _cookie_values(self, scope: Scope) -> list[str]:
        """The well-formed values of our cookie in this request, in header order."""
        found: list[str] = []
        for name, header in scope["headers"]:
            if name != b"cookie" or self._needle not in header:
                continue
            for part in header.split(b";"):
                key, sep, value = part.strip().partition(b"=")
                text = value.strip().decode("latin-1")
                if sep and key + b"=" == self._needle and _COOKIE_VALUE.fullmatch(text):
                    found.append(text)
                    if len(found) == _MAX_CANDIDATES:
                        return found
        return found


def _session_with_data(scope: Scope) -> MutableMapping[str, Any] | None:
    """The session, when it holds anything: it exists in the store then."""
    session = scope.get("session")
    return session if session else None


class CSRFCookieMiddleware:
    """Sets the ``doorman_csrf`` cookie on an answer whose request made one (``CSRF.token``)."""

    def __init__(self, app: ASGIApp, *, csrf: CSRF) -> None:
        self.app = app
        self.csrf = csrf

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                cookie = self.csrf.cookie_header(scope)
                if cookie is not None:
                    message["headers"] = [*message.get("headers", ()), (b"set-cookie", cookie)]
            await send(message)

        await self.app(scope, receive, send_with_cookie)
