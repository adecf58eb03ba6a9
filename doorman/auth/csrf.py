"""CSRF protection: a random token per session, checked on every state-changing request.

Forms carry it in the ``csrftoken`` field, JavaScript in the ``X-CSRFToken``
header. Requests authenticated by an API token (no cookie, no ambient
authority) need none. A browser that says the request is cross-site
(``Sec-Fetch-Site: cross-site``) is refused even with a token.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping, MutableMapping
from typing import Any

__all__ = ["FIELD", "HEADER", "SESSION_KEY", "csrf_token", "is_cross_site", "rotate", "verify"]

FIELD = "csrftoken"
HEADER = b"x-csrftoken"
SESSION_KEY = "_csrf"


def csrf_token(session: MutableMapping[str, Any]) -> str:
    """This session's token, made on first use."""
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
