"""Permission checks for routes: ``allowed()``, ``requires()`` and ``guard()``.

A refusal answers through the ``forbidden`` hook: 401 when nobody is signed
in, 403 when the actor may not do it (the default plugin), or whatever a
plugin answers instead (a redirect to the login page, say).
"""

from __future__ import annotations

import contextvars
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, TypeVar

from .._scope import client_address
from .._types import ASGIApp, Receive, Scope, Send
from ..core import Doorman
from ..events import PermissionDeniedEvent
from ..plugins import first_result

__all__ = ["allowed", "current_doorman", "forbid", "guard", "requires"]

security_log = logging.getLogger("doorman.security")

_current: contextvars.ContextVar[Doorman] = contextvars.ContextVar("doorman")
Endpoint = TypeVar("Endpoint", bound=Callable[..., Awaitable[Any]])


def current_doorman(scope: Mapping[str, Any] | None = None) -> Doorman:
    """The ``Doorman`` of this request: from the scope, else the one ``AuthMiddleware`` set."""
    found = scope.get("doorman") if scope is not None else None
    if found is None:
        found = _current.get(None)
    if not isinstance(found, Doorman):
        raise LookupError(
            "no Doorman for this request: install doorman.AuthMiddleware around the app, "
            "or pass doorman= explicitly"
        )
    return found


def use(doorman: Doorman) -> None:
    """Make ``doorman`` the one ``allowed()`` uses in this context (AuthMiddleware does this)."""
    _current.set(doorman)


async def allowed(
    actor: Mapping[str, Any] | None,
    action: str,
    resource: str | None = None,
    *,
    doorman: Doorman | None = None,
) -> bool:
    """May ``actor`` do ``action`` (on ``resource``)? See docs/permissions.md for the order."""
    return await (doorman or current_doorman()).allowed(actor, action, resource)


async def forbid(scope: Scope, receive: Receive, send: Send, message: str) -> None:
    """Answer a refusal through the ``forbidden`` hook (401 or 403 by default)."""
    doorman = current_doorman(scope)
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})  # policy violation
        return
    answer = await first_result(
        doorman.plugins.hook.forbidden, doorman=doorman, scope=scope, message=message
    )
    await answer(scope, receive, send)


async def _check(scope: Scope, action: str, resource: str | None) -> bool:
    doorman = current_doorman(scope)
    actor = scope.get("actor")
    if await doorman.allowed(actor, action, resource):
        return True
    event = PermissionDeniedEvent(
        actor=actor, action=action, resource=resource, client=client_address(scope)
    )
    security_log.info(
        "denied %r on %r to %r",
        action,
        resource,
        actor and actor.get("id"),
        extra={"event": event},
    )
    await doorman.fire(None, event)  # the security event log: only for someone signed in
    return False


def guard(app: ASGIApp, action: str, resource: str | None = None) -> ASGIApp:
    """Wrap a bare ASGI app: only actors allowed ``action`` get through."""

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not await _check(scope, action, resource):
            await forbid(scope, receive, send, _message(scope, action))
            return
        await app(scope, receive, send)

    return guarded


def requires(action: str, resource: str | None = None) -> Callable[[Endpoint], Endpoint]:
    """Decorate a Starlette endpoint (function or ``HTTPEndpoint`` method) with a permission.

    A refused request gets the ``forbidden`` hook's answer instead of the
    endpoint's; Starlette sends any ASGI app an endpoint returns.
    """

    def decorate(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def checked(*args: Any, **kwargs: Any) -> Any:
            conn = _connection((*args, *kwargs.values()))
            if conn is None:
                raise TypeError(f"@requires({action!r}) needs a request or websocket argument")
            scope: MutableMapping[str, Any] = conn.scope
            if await _check(scope, action, resource):
                return await endpoint(*args, **kwargs)
            if scope["type"] == "websocket":
                await conn.close(code=1008)
                return None
            return _Refusal(_message(scope, action))

        return checked  # type: ignore[return-value]

    return decorate


def _connection(candidates: tuple[Any, ...]) -> Any:
    """The request or websocket among an endpoint's arguments, or None."""
    return next((c for c in candidates if isinstance(getattr(c, "scope", None), dict)), None)


class _Refusal:
    """An ASGI app that answers through the ``forbidden`` hook when Starlette sends it."""

    def __init__(self, message: str) -> None:
        self.message = message

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await forbid(scope, receive, send, self.message)


def _message(scope: Scope, action: str) -> str:
    if scope.get("actor") is None:
        return "Sign in to continue."
    return f"You may not do this ({action})."
