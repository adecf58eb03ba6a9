"""CORS for the JSON API: credentials allowed, for a listed set of origins only.

A small pure-ASGI middleware rather than Starlette's ``CORSMiddleware``: it
covers only doorman's own routes (under the prefix), refuses ``*`` when it is
built (with credentials, a wildcard would hand every site the user's session),
and a preflight from an origin not in the list is refused outright.

CORS only decides which pages may *read* doorman's answers. It does not
authorise anything: a POST from a listed origin still needs its ``X-CSRFToken``,
and the session cookie, ``SameSite=Lax``, reaches doorman only from the same
site (``app.example.com`` calling ``auth.example.com``). A page on another site
signs its calls with an API token (``Authorization: Bearer``) instead.
"""

from __future__ import annotations

from collections.abc import Iterable

from .._scope import header
from .._types import ASGIApp, Message, Receive, Scope, Send, send_text
from ..exceptions import ConfigError
from ..origins import normalize_origin

__all__ = ["ALLOWED_HEADERS", "ALLOWED_METHODS", "CORSMiddleware"]

ALLOWED_METHODS = ("GET", "POST")
ALLOWED_HEADERS = ("content-type", "x-csrftoken", "authorization")


class CORSMiddleware:
    """Lets the listed ``origins`` call the routes under ``prefix`` with credentials."""

    def __init__(
        self, app: ASGIApp, *, origins: Iterable[str], prefix: str = "/-/", max_age: int = 600
    ) -> None:
        self.app = app
        self.origins = frozenset(_normalize(origin) for origin in origins)
        self.prefix = "/" + (prefix.strip("/") + "/").lstrip("/")
        self._preflight_headers = [
            (b"access-control-allow-methods", ", ".join(ALLOWED_METHODS).encode()),
            (b"access-control-allow-headers", ", ".join(ALLOWED_HEADERS).encode()),
            (b"access-control-max-age", str(max_age).encode()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        origin = header(scope, b"origin")
        allowed = origin is not None and origin.lower() in self.origins
        if scope["method"] == "OPTIONS" and origin is not None:
            wanted = header(scope, b"access-control-request-method")
            if wanted is not None:
                await self._preflight(scope, send, origin if allowed else None, wanted)
                return
        cors_headers = _allow(origin) if allowed and origin is not None else []

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", ()),
                    (b"vary", b"Origin"),
                    *cors_headers,
                ]
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, scope: Scope, send: Send, origin: str | None, wanted: str) -> None:
        vary = [(b"vary", b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers")]
        if origin is None:
            await send_text(send, 403, "Origin not allowed.\n", vary)
            return
        asked = header(scope, b"access-control-request-headers") or ""
        extra = {h.strip().lower() for h in asked.split(",") if h.strip()} - set(ALLOWED_HEADERS)
        if wanted.upper() not in ALLOWED_METHODS or extra:
            refused = ", ".join(sorted(extra)) or wanted
            await send_text(send, 400, f"Not allowed across origins: {refused[:200]}.\n", vary)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 204,
                "headers": [*vary, *_allow(origin), *self._preflight_headers],
            }
        )
        await send({"type": "http.response.body", "body": b""})


def _allow(origin: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-allow-credentials", b"true"),
    ]


def _normalize(origin: str) -> str:
    try:
        return normalize_origin(origin)
    except ValueError as error:
        raise ConfigError(f"cors_origins: {error}") from None
