"""How doorman answers a request it refuses: JSON for API clients, a small page for browsers.

An API client sends a JSON body, or an ``Accept`` header that does not rank
``text/html`` at least as high as ``application/json`` (none at all, ``*/*``,
``application/json``); a browser asks for ``text/html`` first. The JSON is
``{"detail": message}`` as FastAPI answers (the ``forbidden`` hook keeps its
``{"error": message}``). Standard library only: every layer answers this way.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from http import HTTPStatus

from ._types import Scope, Send

__all__ = ["error_body", "request_headers", "send_error", "wants_json"]


def request_headers(scope: Scope) -> dict[str, str]:
    """The request headers, decoded as latin-1, by lower-case name (the last one wins)."""
    return {
        bytes(name).decode("latin-1").lower(): bytes(value).decode("latin-1")
        for name, value in scope.get("headers", ())
    }


def wants_json(headers: Mapping[str, str]) -> bool:
    """Whether the client is an API client rather than a browser (see the module)."""
    if headers.get("content-type", "").lower().startswith("application/json"):
        return True
    quality: dict[str, float] = {}
    for item in headers.get("accept", "").split(","):
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


def error_body(
    headers: Mapping[str, str], status: int, message: str, *, key: str = "detail"
) -> tuple[bytes, str]:
    """The body and content type that answer with ``message``: JSON or a small HTML page."""
    message = message.strip()
    if wants_json(headers):
        return json.dumps({key: message}).encode(), "application/json"
    phrase = HTTPStatus(status).phrase
    page = (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{phrase}</title>'
        f"</head>\n<body><h1>{phrase}</h1><p>{html.escape(message)}</p></body></html>\n"
    )
    return page.encode(), "text/html; charset=utf-8"


async def send_error(
    scope: Scope,
    send: Send,
    status: int,
    message: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Answer an http request with ``error_body``, never cached; it is about this request."""
    body, content_type = error_body(request_headers(scope), status, message)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                (b"x-content-type-options", b"nosniff"),
                *(headers or ()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
