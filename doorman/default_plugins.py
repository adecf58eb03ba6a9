"""doorman's own behaviour, a plugin with ``trylast=True``: any plugin can replace it."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from ._answers import error_body, request_headers
from ._types import ASGIApp, Receive, Scope, Send
from .hookspecs import hookimpl

__all__ = ["forbidden"]


@hookimpl(trylast=True)
def forbidden(doorman: Any, scope: Scope, message: str) -> ASGIApp:
    """403 (or 401 when nobody is signed in) as JSON or a small HTML page, as the client accepts."""
    headers = request_headers(scope)
    status = HTTPStatus.UNAUTHORIZED if scope.get("actor") is None else HTTPStatus.FORBIDDEN
    body, content_type = error_body(headers, status, message, key="error")
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
