"""Starlette and FastAPI: turn doorman's errors into the right answers.

Starlette answers any exception that escapes a route with a 500, before an
outer middleware can see it. Register these handlers so that a store that is
down gives 503 (fail closed), a throttled sign-in 429 with ``Retry-After``,
and refusals 401/403::

    from doorman.integrations.starlette import exception_handlers

    app = Starlette(routes=..., exception_handlers=exception_handlers)
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from .._extras import needs_extra
from ..exceptions import AccountError, AuthenticationFailed, DoormanError, StoreError, Throttled

with needs_extra("server", "doorman.integrations.starlette"):
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response

__all__ = ["exception_handlers", "handle_doorman_error"]

log = logging.getLogger("doorman")


async def handle_doorman_error(request: Request, error: Exception) -> Response:
    """A plain-text answer with the error's status; a store failure is logged, not shown."""
    assert isinstance(error, DoormanError)
    headers = {"cache-control": "no-store"}
    if isinstance(error, StoreError):
        log.error("store unavailable, answering 503: %s", error)
        headers["retry-after"] = "5"
        return PlainTextResponse("Service unavailable: try again shortly.\n", 503, headers)
    if isinstance(error, Throttled):
        headers["retry-after"] = str(error.retry_after)
    return PlainTextResponse(f"{error}\n", error.status_code, headers)


exception_handlers: dict[type[Exception], Callable[[Request, Exception], Awaitable[Response]]] = {
    StoreError: handle_doorman_error,
    AuthenticationFailed: handle_doorman_error,  # Throttled too
    AccountError: handle_doorman_error,
}
