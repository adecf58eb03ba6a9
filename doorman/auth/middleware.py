"""``AuthMiddleware``: who is asking, in ``scope["actor"]``.

The actor comes, in order, from the session, an ``Authorization: Bearer`` API
token, HTTP Basic (off unless ``basic_auth=True``) and the plugins'
``actor_from_request`` hooks. A request without credentials costs no I/O.
``scope["user"]`` and ``scope["auth"]`` mirror the actor in the shapes
Starlette's ``request.user``, ``request.auth`` and ``requires()`` expect.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import logging
import secrets
import time
from collections import OrderedDict
from typing import Any

from .._answers import send_error
from .._scope import client_address, header
from .._types import ASGIApp, Message, Receive, Scope, Send
from ..accounts.second_factors import policy_covers
from ..accounts.tokens import Token
from ..accounts.users import User
from ..core import Doorman
from ..exceptions import AuthenticationFailed, StoreError, Throttled
from ..plugins import first_result
from .actors import AnonymousUser, AuthCredentials, AuthenticatedUser, set_actor
from .guards import use
from .signed_in import SESSION_AUTH_HASH, SESSION_SIGNIN, SESSION_USER_ID, actor_from_session

__all__ = [
    "SESSION_AUTH_HASH",
    "SESSION_SIGNIN",
    "SESSION_USER_ID",
    "AnonymousUser",
    "AuthCredentials",
    "AuthMiddleware",
    "AuthenticatedUser",
    "bearer_token",
    "set_actor",
    "token_actor",
]

log = logging.getLogger("doorman.auth")
security_log = logging.getLogger("doorman.security")


class _StartupFailed(Exception):
    """Ends the lifespan once ``lifespan.startup.failed`` has been sent."""


_BASIC_CACHE_SIZE = 1024
_BASIC_CACHE_SECONDS = 300.0


class AuthMiddleware:
    """Resolves the actor of every http and websocket request; put it inside SessionMiddleware.

    A store that does not answer gives 503, never an anonymous or signed-in
    guess. With ``basic_auth=True`` HTTP Basic credentials are checked (and
    throttled) like a sign-in form; a verified pair is remembered for five
    minutes in this process so that each request does not pay for argon2.
    HTTP Basic is a password alone: it signs in nobody with a second factor,
    nor anyone ``require_two_factor`` (the sign-in server's policy) covers.
    """

    def __init__(
        self,
        app: ASGIApp,
        doorman: Doorman,
        *,
        basic_auth: bool = False,
        require_two_factor: str = "none",
    ) -> None:
        self.app = app
        self.doorman = doorman
        self.basic_auth = basic_auth
        self.require_two_factor = require_two_factor
        self._basic_key = secrets.token_bytes(32)
        self._basic_cache: OrderedDict[bytes, tuple[int, str | None, float]] = OrderedDict()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            with contextlib.suppress(_StartupFailed):  # the server was told why: it stops
                await self.app(scope, self._starting(receive, send), send)
            return
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        scope["doorman"] = self.doorman
        use(self.doorman)
        try:
            actor = await self.resolve(scope)
        except Throttled as error:  # 429; Busy, 503
            await _answer(
                scope,
                send,
                error.status_code,
                str(error),
                [(b"retry-after", b"%d" % error.retry_after)],
            )
            return
        except StoreError as error:
            log.error("accounts store unavailable, answering 503: %s", error)
            await _answer(scope, send, 503, "Service unavailable: try again shortly.")
            return
        set_actor(scope, actor)
        await self.app(scope, receive, send)

    def _starting(self, receive: Receive, send: Send) -> Receive:
        """``receive``, which runs ``doorman.startup()`` when the server starts.

        A failed start-up is reported to the server as ``lifespan.startup.failed``,
        so that it stops: Starlette would let the error escape before its own
        handler, and uvicorn would then take lifespan for unsupported and serve
        with no start-up done.
        """

        async def receive_and_start() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.doorman.startup()
                except Exception as error:
                    reason = f"{type(error).__name__}: {error}"
                    log.error("doorman could not start: %s", reason)
                    await send({"type": "lifespan.startup.failed", "message": reason})
                    raise _StartupFailed from error
            return message

        return receive_and_start

    async def resolve(self, scope: Scope) -> dict[str, Any] | None:
        """The actor for this request, or None."""
        session = scope.get("session")
        if session is not None:
            actor = await actor_from_session(self.doorman, session)
            if actor is not None:
                return actor
        given = _credentials(scope)
        if given is not None:
            scheme, credentials = given
            if scheme == "bearer":
                return await self._from_token(credentials, scope)
            if scheme == "basic" and self.basic_auth:
                return await self._from_basic(credentials, scope)
        hook = self.doorman.plugins.hook.actor_from_request
        if hook.get_hookimpls():
            found = await first_result(hook, doorman=self.doorman, scope=scope)
            if isinstance(found, dict) and "id" in found:
                return found
        return None

    async def _from_token(self, text: str, scope: Scope) -> dict[str, Any] | None:
        found = await self.doorman.tokens.verify_with_user(text)
        if found is None:
            security_log.info(
                "unknown, revoked or expired API token from %s", client_address(scope)
            )
            return None
        token, user = found
        return token_actor(token, user) if user.is_active else None

    async def _from_basic(self, credentials: str, scope: Scope) -> dict[str, Any] | None:
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return None
        username, colon, password = decoded.partition(":")
        if not colon:
            return None
        cache_key = hmac.digest(self._basic_key, decoded.encode(), hashlib.sha256)
        cached = self._basic_cache.get(cache_key)
        if cached is not None and cached[2] > time.monotonic():
            user = await self.doorman.users.get_kept(cached[0])
            if user is not None and user.is_active and user.password_hash == cached[1]:
                return await self._basic_actor(user)
        try:
            user = await self.doorman.authenticate(username, password, client=client_address(scope))
        except Throttled:
            raise
        except AuthenticationFailed:
            return None
        self._remember(cache_key, user)
        return await self._basic_actor(user)

    async def _basic_actor(self, user: User) -> dict[str, Any] | None:
        """``user``'s actor for a right password, unless a password alone must not sign them
        in: asked on every request, so a factor turned on ends the remembered pair's use."""
        covered = policy_covers(self.require_two_factor, user)
        if covered or await self.doorman.factors.needs_second_step(user.id):
            security_log.warning(
                "HTTP Basic refused for %s: the account needs a second factor", user.username
            )
            return None
        return user.actor("basic")

    def _remember(self, cache_key: bytes, user: User) -> None:
        cache = self._basic_cache
        cache[cache_key] = (user.id, user.password_hash, time.monotonic() + _BASIC_CACHE_SECONDS)
        cache.move_to_end(cache_key)
        while len(cache) > _BASIC_CACHE_SIZE:
            cache.popitem(last=False)


def token_actor(token: Token, user: User) -> dict[str, Any]:
    """The actor of a request made with ``token``, a token of ``user``."""
    actor = user.actor("token")
    actor["token"] = token.id
    if token.scopes is not None:
        actor["scopes"] = list(token.scopes)
    return actor


def bearer_token(scope: Scope) -> str | None:
    """The token of the request's ``Authorization: Bearer``, as ``resolve`` reads it."""
    given = _credentials(scope)
    return given[1] if given is not None and given[0] == "bearer" else None


def _credentials(scope: Scope) -> tuple[str, str] | None:
    """The scheme (lower case) and credentials of the first ``Authorization`` header."""
    authorization = header(scope, b"authorization")
    if not authorization:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    return scheme.lower(), credentials.strip()


async def _answer(
    scope: Scope,
    send: Send,
    status: int,
    text: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1013 if status == 503 else 1008})
        return
    await send_error(scope, send, status, text, headers)
