"""doorman's own behaviour, a plugin with ``trylast=True``: any plugin can replace it."""

from __future__ import annotations

import html
import json
from http import HTTPStatus
from typing import Any

from ._types import ASGIApp, Receive, Scope, Send
from .hookspecs import hookimpl

__all__ = ["forbidden"]


@hookimpl(trylast=True)
def forbidden(doorman: Any, scope: Scope, message: str) -> ASGIApp:
    """403 (or 401 when nobody is signed in) as JSON or a small HTML page, as the client accepts."""
    headers = _headers(scope)
    status = HTTPStatus.UNAUTHORIZED if scope.get("actor") is None else HTTPStatus.FORBIDDEN
    if _wants_json(headers.get("accept", "")):
        body = json.dumps({"error": message}).encode()
        content_type = "application/json"
    else:
        body = (
            f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{status.phrase}</title>'
            f"</head>\n<body><h1>{status.phrase}</h1><p>{html.escape(message)}</p></body></html>\n"
        ).encode()
        content_type = "text/html; charset=utf-8"
    response_headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
    ]
    scheme = headers.get("authorization", "").strip().partition(" ")[0]
    if status == HTTPStatus.UNAUTHORIZED and scheme.lower() == "bearer":
        response_headers.append((b"www-authenticate", b"Bearer"))

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # closing before accept is a 403 handshake answer
            await send({"type": "websocket.close", "code": 1008})
            return
        await send(
            {"type": "http.response.start", "status": int(status), "headers": response_headers}
        )
        await send({"type": "http.response.body", "body": body})

    return app


def _headers(scope: Scope) -> dict[str, str]:
    """The request headers we read, decoded as latin-1 (the last one of a name wins)."""
    return {
        bytes(name).decode("latin-1").lower(): bytes(value).decode("latin-1")
        for name, value in scope.get("headers", ())
    }


def _wants_json(accept: str) -> bool:
    """True unless Accept lists text/html at least as high as application/json."""
    quality: dict[str, float] = {}
    for item in accept.split(","):
        media_type, *params = (part.strip() for part in item.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if not 0.0 <= q <= 1.0:  # also NaN
            q = 0.0
        quality[media_type.lower()] = max(q, quality.get(media_type.lower(), 0.0))
    html_q = quality.get("text/html", 0.0)
    return html_q == 0.0 or quality.get("application/json", 0.0) > html_q
