"""FastAPI dependencies: who is asking (``current_actor``), and may they (``requires``).

They read ``scope["actor"]``, so ``SessionMiddleware`` and ``AuthMiddleware``
must wrap the app; with ``exception_handlers`` (doorman's Starlette handlers,
typed as FastAPI wants them) a store that is down answers 503, not 500::

    app = FastAPI(exception_handlers=exception_handlers)
    app.add_middleware(AuthMiddleware, doorman=doorman)
    app.add_middleware(SessionMiddleware, secret=SECRET, store=store)  # outermost

    @app.get("/reports")
    async def reports(actor: Annotated[Actor, Depends(requires("view-reports"))]): ...

A refusal raises ``Refusal``, FastAPI's ``HTTPException`` (401 signed out,
403 not allowed; a websocket gets ``WebSocketException`` with 1008) instead of
answering through the ``forbidden`` hook: a dependency cannot send a response,
only raise, and a FastAPI app shapes and documents its errors through its
exception handlers and the ``{"detail": ...}`` body its clients expect.
``exception_handlers`` answer it like doorman's own errors: that JSON for API
clients, a small HTML page for browsers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any, cast

from fastapi import Depends, HTTPException, WebSocketException
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from ..auth.guards import current_doorman
from . import starlette

__all__ = [
    "Actor",
    "CurrentActor",
    "Refusal",
    "SignedInActor",
    "current_actor",
    "exception_handlers",
    "require_actor",
    "requires",
]

security_log = logging.getLogger("doorman.security")


class Refusal(HTTPException):
    """``requires``/``require_actor`` said no: 401 or 403, with ``{"detail": ...}``."""


async def _answer_refusal(request: Request, error: Exception) -> Response:
    assert isinstance(error, Refusal)
    return starlette.error_response(request, error.status_code, error.detail, error.headers)


#: ``FastAPI(exception_handlers=...)``: a store that is down 503, throttled 429, refusals 401/403.
exception_handlers = cast(
    "dict[int | type[Exception], Callable[[Request, Any], Coroutine[Any, Any, Response]]]",
    {**starlette.exception_handlers, Refusal: _answer_refusal},  # in FastAPI's declared type
)

#: An actor: at least ``id``; a user's also has ``username``, ``admin``, ``groups`` and ``via``.
Actor = dict[str, Any]


async def current_actor(connection: HTTPConnection) -> Actor | None:
    """The actor of this request or websocket, or None when nobody is signed in."""
    if "actor" not in connection.scope:
        raise RuntimeError(
            "no actor in the scope: add doorman's AuthMiddleware (inside SessionMiddleware)"
        )
    actor: Actor | None = connection.scope["actor"]
    return actor


#: A parameter of this type gets ``current_actor``: the actor, or None.
CurrentActor = Annotated[Actor | None, Depends(current_actor)]


async def require_actor(connection: HTTPConnection, actor: CurrentActor) -> Actor:
    """The actor; 401 (a websocket: closed with 1008) when nobody is signed in."""
    if actor is None:
        raise _refusal(connection, 401, "Sign in to continue.")
    return actor


#: A parameter of this type gets ``require_actor``: the actor, never None.
SignedInActor = Annotated[Actor, Depends(require_actor)]


def requires(
    action: str, resource: str | None = None
) -> Callable[[HTTPConnection, Actor | None], Awaitable[Actor | None]]:
    """A dependency that lets through actors allowed ``action`` (on ``resource``).

    It gives the actor (None when the rules let anonymous visitors do it).
    Refused: 401 when nobody is signed in, else 403. For a resource that comes
    from the path, call ``doorman.allowed(actor, action, str(id))`` in the route.
    """

    async def allowed_actor(connection: HTTPConnection, actor: CurrentActor) -> Actor | None:
        if await current_doorman(connection.scope).allowed(actor, action, resource):
            return actor
        security_log.info("denied %r on %r to %r", action, resource, actor and actor.get("id"))
        if actor is None:
            raise _refusal(connection, 401, "Sign in to continue.")
        raise _refusal(connection, 403, f"You may not do this ({action}).")

    allowed_actor.__name__ = allowed_actor.__qualname__ = f"requires_{action}"
    return allowed_actor


def _refusal(connection: HTTPConnection, status: int, message: str) -> Exception:
    if connection.scope["type"] == "websocket":
        return WebSocketException(code=1008, reason=message)  # policy violation
    headers = {"cache-control": "no-store"}
    scheme = connection.headers.get("authorization", "").strip().partition(" ")[0]
    if status == 401 and scheme.lower() == "bearer":
        headers["www-authenticate"] = "Bearer"
    return Refusal(status, detail=message, headers=headers)
