"""Reading an ASGI scope: a header, the client's address, the browser, the scope itself.

Standard library only, so that every layer may use it: the middleware, the
gate, the sign-in server and the integrations all read requests this way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from typing import Any

__all__ = ["COOKIE_NAME", "client_address", "header", "scope_of", "user_agent"]

#: A cookie name: an RFC 6265 token.
COOKIE_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def scope_of(conn: Any) -> MutableMapping[str, Any]:
    """The ASGI scope of a Starlette/FastAPI request or websocket, or of a bare scope."""
    scope = getattr(conn, "scope", conn)
    if not isinstance(scope, MutableMapping):
        raise TypeError(f"expected an ASGI scope or a request, got {type(conn).__name__}")
    return scope


def header(scope: Mapping[str, Any], name: bytes) -> str | None:
    """The first ``name`` header (lower case, as ASGI gives them), or None."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def client_address(scope: Mapping[str, Any]) -> str | None:
    """The client's address as the server saw it (a trusted proxy's forwarded one)."""
    client = scope.get("client")
    return str(client[0]) if client else None


def user_agent(scope: Mapping[str, Any]) -> str:
    """The ``User-Agent`` header, cut to 300 characters ("" without one)."""
    return (header(scope, b"user-agent") or "")[:300]
