"""Starlette and FastAPI: turn doorman's errors into the right answers.

Starlette answers any exception that escapes a route with a 500, before an
outer middleware can see it. Register these handlers so that a store that is
down gives 503 (fail closed), a throttled sign-in 429 with ``Retry-After``,
and refusals 401/403::

    from doorman.integrations.starlette import exception_handlers

    app = Starlette(routes=..., exception_handlers=exception_handlers)

API clients get JSON, ``{"detail": "..."}`` as FastAPI answers; browsers a
small HTML page (``doorman._answers`` says which is which).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from .._answers import error_body
from .._extras import needs_extra
from ..exceptions import (
    AccountError,
    AuthenticationFailed,
    DoormanError,
    PermissionDenied,
    StoreError,
    Throttled,
)

with needs_extra("server", "doorman.integrations.starlette"):
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["error_response", "exception_handlers", "handle_doorman_error"]

log = logging.getLogger("doorman")

UNAVAILABLE = "Service unavailable: try again shortly."


def error_response(
    request: Request, status: int, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    """``{"detail": message}`` for an API client, a small HTML page for a browser; no-store."""
    body, content_type = error_body(request.headers, status, message)
    answer = Response(body, status, media_type=content_type)
    answer.headers.update(
        {"cache-control": "no-store", "x-content-type-options": "nosniff", **(headers or {})}
    )
    return answer


async def handle_doorman_error(request: Request, error: Exception) -> Response:
    """The error's status and message; a store failure is logged, not shown."""
    assert isinstance(error, DoormanError)
    if isinstance(error, StoreError):
        log.error("store unavailable, answering 503: %s", error)
        return error_response(request, 503, UNAVAILABLE, {"retry-after": "5"})
    headers = {"retry-after": str(error.retry_after)} if isinstance(error, Throttled) else {}
    return error_response(request, error.status_code, str(error), headers)


exception_handlers: dict[type[Exception], Callable[[Request, Exception], Awaitable[Response]]] = {
    StoreError: handle_doorman_error,
    AuthenticationFailed: handle_doorman_error,  # Throttled too
    AccountError: handle_doorman_error,
    PermissionDenied: handle_doorman_error,
}
