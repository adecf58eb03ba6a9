"""A test client already signed in: no login page, no password, any app with doorman's middleware.

The session is made the way ``login()`` makes it, in the app's own session
store and signed with its own secret, so the app cannot tell it from a real
sign-in: ``AuthMiddleware`` finds the user, the sign-in shows in the user's
list of sessions, and ending it works as usual.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from ..accounts.users import User
from ..auth.login import login
from ..auth.middleware import AuthMiddleware
from ..core import Doorman
from ..sessions.middleware import SessionMiddleware
from ..sessions.session import Session

__all__ = ["session_cookie_for", "signed_in_client"]


async def session_cookie_for(
    app: Any,
    user: User | str,
    *,
    doorman: Doorman | None = None,
    middleware: SessionMiddleware | None = None,
    methods: Sequence[str] | None = None,
) -> tuple[str, str]:
    """``(name, value)`` of a session cookie that signs ``user`` in to ``app``.

    ``user`` is a ``User`` or a username. ``doorman`` and ``middleware`` are
    found in ``app`` (its ``AuthMiddleware`` and ``SessionMiddleware``, also
    inside a Starlette or FastAPI app); pass them when ``app`` hides them.
    ``methods`` are the ``amr`` values the session keeps (``["pwd", "otp"]``:
    signed in with a password and a TOTP code); none by default.
    """
    middleware = middleware or _find(app, SessionMiddleware)
    if doorman is None:
        doorman = _find(app, AuthMiddleware).doorman
    if isinstance(user, str):
        found = await doorman.users.by_username(user)
        if found is None:
            raise LookupError(f"no user {user!r}: create it first, with doorman.create_user()")
        user = found
    session = Session(middleware.policy)
    scope: dict[str, Any] = {
        "type": "http",
        "session": session,
        "headers": [(b"user-agent", b"doorman.testing")],
        "client": ("127.0.0.1", 0),
    }
    await login(scope, user, doorman=doorman, via="testing", methods=methods)
    update = await session.commit()
    if update is None:  # pragma: no cover - login() always modifies the session
        raise RuntimeError("login() left the session unchanged")
    return middleware.cookie_name, update.value


@contextlib.asynccontextmanager
async def signed_in_client(
    app: Any,
    user: User | str,
    *,
    doorman: Doorman | None = None,
    middleware: SessionMiddleware | None = None,
    methods: Sequence[str] | None = None,
    base_url: str = "http://testserver",
    **options: Any,
) -> AsyncIterator[Any]:
    """An ``httpx.AsyncClient`` over ``app`` (in process), signed in as ``user``::

        async with signed_in_client(app, "alice") as client:
            response = await client.get("/profile")

    ``options`` go to ``httpx.AsyncClient``; a ``transport`` given there
    replaces the plain ``httpx.ASGITransport(app)``, such as one with
    ``raise_app_exceptions=False`` to see 500s. The app's lifespan does not run:
    start ``doorman`` (``await doorman.startup()``) before, as the ``doorman``
    fixture does. ``methods``: as for ``session_cookie_for``.
    """
    import httpx

    name, value = await session_cookie_for(
        app, user, doorman=doorman, middleware=middleware, methods=methods
    )
    transport = options.pop("transport", None) or httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url=base_url, **options) as client:
        client.cookies.set(name, value, domain=_cookie_domain(base_url))
        yield client


def _cookie_domain(base_url: str) -> str:
    """The host the cookie is for; the cookie jar files a dotless one under ``host.local``."""
    host = urlsplit(base_url).hostname or ""
    return host if "." in host else f"{host}.local"


def _find(app: Any, kind: type[Any]) -> Any:
    for layer in _layers(app):
        if isinstance(layer, kind):
            return layer
    raise LookupError(
        f"no {kind.__name__} found in {type(app).__name__}: pass it "
        f"({'middleware=' if kind is SessionMiddleware else 'doorman='}) explicitly"
    )


def _layers(app: Any) -> Iterator[Any]:
    """``app`` and what it wraps: ``.app`` of each middleware, a Starlette app's stack."""
    seen: set[int] = set()
    while app is not None and id(app) not in seen:
        seen.add(id(app))
        yield app
        inner = getattr(app, "app", None)
        if inner is None and callable(getattr(app, "build_middleware_stack", None)):
            # Starlette builds its stack on the first request; build a copy, not that one.
            inner = app.middleware_stack or app.build_middleware_stack()
        app = inner
