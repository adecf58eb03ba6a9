"""Cross-site WebSocket hijacking: refuse handshakes that pages of other origins start.

A WebSocket handshake is a GET that carries the browser's cookies, and no CSRF
token can ride on it. ``SameSite=Lax`` does not stop it between sibling
subdomains (they are the same site), nor at all with ``SameSite=None``. But
browsers always send ``Origin`` on a handshake, so ``WebSocketOriginMiddleware``
refuses one whose ``Origin`` is neither this server's own (the request's scheme
and ``Host``) nor an allowed origin (``doorman.origins``), before the session
is read and before the app sees the scope: 403 through the ASGI
``websocket.http.response`` extension where the server has it (uvicorn does),
else a close with 1008 before accepting, which servers send as a 403 too.
``Origin: null`` (sandboxed frames, ``file:`` pages) is refused.

A handshake without ``Origin`` comes from a program, not a page: it passes,
and is judged by its credentials alone, as an HTTP request is.

Each refusal is one line on ``doorman.security`` (WARNING) with the origin,
the path and the client address, never a cookie; the record's ``event`` is a
``WebSocketRefusedEvent``, also handed to ``on_refused`` when given (the
sign-in server writes it to the security event log). Standard library only:
the gate uses it too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable

from .._types import ASGIApp, Receive, Scope, Send
from ..events import WebSocketRefusedEvent
from ..origins import AllowedOrigins, Origin, own_origin

__all__ = ["WebSocketOriginMiddleware", "refuse_handshake", "refused_origin"]

security_log = logging.getLogger("doorman.security")
_REFUSAL = b"This page's origin may not open a WebSocket here.\n"
#: Told of each refusal, after it is logged: ``doorman.fire`` in the sign-in server.
OnRefused = Callable[[WebSocketRefusedEvent], Awaitable[None]]


class WebSocketOriginMiddleware:
    """Lets through websocket handshakes from this server's own origin and ``allowed_origins``.

    Entries are origins (``https://app.example.com``, with the port when it is
    not the default) or ``https://*.example.com`` for every host under a domain.
    Put it outside ``SessionMiddleware``; http requests pass untouched.
    ``on_refused`` is awaited with each refusal's event.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_origins: Iterable[str] | AllowedOrigins = (),
        on_refused: OnRefused | None = None,
    ) -> None:
        self.app = app
        self.on_refused = on_refused
        if isinstance(allowed_origins, str):  # a common slip: "https://a" for ["https://a"]
            allowed_origins = [allowed_origins]
        self.allowed_origins = (
            allowed_origins
            if isinstance(allowed_origins, AllowedOrigins)
            else AllowedOrigins(allowed_origins)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            refused = refused_origin(scope, self.allowed_origins, own_origin(scope))
            if refused is not None:
                await refuse_handshake(scope, receive, send, refused, self.on_refused)
                return
        await self.app(scope, receive, send)


def refused_origin(scope: Scope, allowed: AllowedOrigins, own: Origin | None) -> str | None:
    """The ``Origin`` for which this handshake must be refused; None to let it through."""
    given = [value for name, value in scope["headers"] if name == b"origin"]
    if not given:
        return None  # a program, not a page: its credentials decide
    origin = ", ".join(value.decode("latin-1") for value in given)
    if len(given) == 1 and allowed.allows(origin, own=own):
        return None
    return origin


async def refuse_handshake(
    scope: Scope, receive: Receive, send: Send, origin: str, on_refused: OnRefused | None = None
) -> None:
    """Log the refusal (and tell ``on_refused``), then answer with 403 (or close with 1008)."""
    client = scope.get("client")
    event = WebSocketRefusedEvent(
        origin=origin[:200], path=str(scope.get("path", ""))[:500], client=client and client[0]
    )
    security_log.warning(
        "refused a websocket to %r from origin %r (client %s)",
        event.path,
        event.origin,
        event.client or "-",
        extra={"event": event},
    )
    if on_refused is not None:
        await on_refused(event)
    if (await receive())["type"] != "websocket.connect":
        return  # the client has gone already
    if "websocket.http.response" in (scope.get("extensions") or {}):
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(_REFUSAL)).encode()),
            (b"cache-control", b"no-store"),
        ]
        await send({"type": "websocket.http.response.start", "status": 403, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": _REFUSAL})
    else:
        await send({"type": "websocket.close", "code": 1008})  # policy violation
