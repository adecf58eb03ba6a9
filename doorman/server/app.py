"""``create_app``: the sign-in server as a Starlette app. Wiring only; views do the work."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from .._extras import needs_extra

with needs_extra("server", "the sign-in server"):
    import jinja2  # noqa: F401 - the pages' templates
    import python_multipart  # noqa: F401 - Starlette reads forms with it, on the first POST
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import FileResponse, RedirectResponse, Response
    from starlette.routing import BaseRoute, Mount, Route
    from starlette.staticfiles import StaticFiles

from .._types import ASGIApp, Receive, Scope, Send
from ..assembly import assemble, warn_about_secret
from ..auth.csrf import CSRF, CSRFCookieMiddleware
from ..auth.guards import requires
from ..auth.middleware import AuthMiddleware
from ..auth.websockets import WebSocketOriginMiddleware
from ..core import Doorman
from ..exceptions import ConfigError
from ..integrations.sentry import with_sentry
from ..integrations.starlette import exception_handlers
from ..mail import Outbox
from ..origins import AllowedOrigins
from ..sessions.middleware import SessionMiddleware
from ..settings import Settings
from ..signing import Signer
from ..stores.base import SessionStore
from .access_log import AccessLogMiddleware
from .background import Background
from .body_limit import BodyLimitMiddleware
from .cors import CORSMiddleware
from .fast_auth import fast_paths
from .hang_up import HangUpMiddleware
from .headers import SecurityHeadersMiddleware
from .plugin import ServerPlugin
from .protect import ProtectedApp
from .redirects import NextSigner, login_landing
from .state import ServerState
from .templates import Templates
from .views import (
    account,
    account_two_factor,
    admin,
    api,
    email_sign_in,
    errors,
    invitations,
    passkeys,
    recovery,
    signin,
    step_up,
    two_factor,
    verification,
)
from .views.passkeys_manage import passkeys_of

__all__ = ["create_app"]

_STATIC = Path(__file__).parent / "static"
log = logging.getLogger("doorman.server")


def create_app(
    settings: Settings,
    *,
    doorman: Doorman | None = None,
    store: SessionStore | None = None,
    protected: ASGIApp | None = None,
) -> ASGIApp:
    """The sign-in server for ``settings``; its secret must be resolved already.

    With ``protected``, the server also serves that app behind sign-in: doorman's
    routes stay under the prefix, and every other path goes to the app (see
    ``ProtectedApp``; this is ``doorman protect``).
    """
    secrets = _secrets_of(settings)
    _warn_about_other_hosts(settings)
    prefix = "/" + settings.route_prefix.strip("/")
    landing = login_landing(settings, prefix=prefix, protect=protected is not None)
    if doorman is None or store is None:
        doorman, store = assemble(settings, secrets)
    server = _server_state(settings, secrets, doorman, store, login_redirect=landing)
    app = Starlette(
        routes=_routes(server),
        # Inside Starlette's error handling, so that its 413 is not turned into a 500 first.
        middleware=[
            Middleware(BodyLimitMiddleware, max_size=settings.max_body_size),
            Middleware(HangUpMiddleware),
            Middleware(CSRFCookieMiddleware, csrf=server.csrf),
        ],
        exception_handlers={**exception_handlers, **errors.error_handlers},
        lifespan=_lifespan(server, secrets),
    )
    # Starlette would answer /-/login/ with a redirect built from the Host header: 404 instead.
    app.router.redirect_slashes = False
    app.state.server = server
    forward_auth = _Shortcut(app, f"{prefix}/auth", api.ForwardAuth(server), _FORWARD_AUTH)
    inner: ASGIApp = SecurityHeadersMiddleware(forward_auth)
    if protected is not None:
        inner = ProtectedApp(inner, protected, prefix=prefix, public_paths=settings.public_paths)
    return _around(inner, server, secrets)


def _server_state(
    settings: Settings,
    secrets: list[str],
    doorman: Doorman,
    store: SessionStore,
    *,
    login_redirect: str,
) -> ServerState:
    """What every view needs; the server's own plugin (pages for ``forbidden``) registered."""
    prefix = "/" + settings.route_prefix.strip("/")
    csrf = CSRF(secrets, max_age=settings.session_max_age, https_only=settings.cookie_secure)
    templates = Templates(
        doorman,
        template_dir=settings.template_dir,
        site_name=settings.site_name,
        prefix=prefix,
        csrf=csrf,
    )
    templates.env.globals["passkeys_of"] = passkeys_of  # _passkeys_manage.html lists them
    if doorman.plugins.get_plugin("doorman.server") is None:
        doorman.plugins.register(ServerPlugin(prefix, templates), name="doorman.server")
    return ServerState(
        settings=settings,
        doorman=doorman,
        store=store,
        templates=templates,
        next_signer=NextSigner(secrets),
        origins=AllowedOrigins.from_settings(settings),
        prefix=prefix,
        login_redirect=login_redirect,
        csrf=csrf,
        outbox=Outbox.from_settings(settings),
        background=Background(),
        challenge_signer=Signer(secrets, salt="doorman.passkey-challenge", digest_size=16),
    )


def _around(inner: ASGIApp, server: ServerState, secrets: list[str]) -> ASGIApp:
    """``inner`` inside the middleware every request passes, outermost last."""
    settings, doorman = server.settings, server.doorman
    sessions = functools.partial(_sessions, settings=settings, secrets=secrets, store=server.store)
    wrapped: ASGIApp = AuthMiddleware(
        inner,
        doorman,
        basic_auth=settings.basic_auth,
        require_two_factor=settings.require_two_factor,
    )
    wrappers = [w for w in doorman.plugins.hook.asgi_wrapper(doorman=doorman) if w is not None]
    for wrapper in wrappers:
        wrapped = wrapper(wrapped)
    wrapped = sessions(wrapped)
    # Before the session is read: a page of another origin never opens a websocket as the user.
    wrapped = WebSocketOriginMiddleware(
        wrapped, allowed_origins=server.origins, on_refused=functools.partial(doorman.fire, None)
    )
    if settings.cors_origins:
        wrapped = CORSMiddleware(wrapped, origins=settings.cors_origins, prefix=server.prefix)
    if not wrappers and not settings.sentry:  # a plugin's wrapper, or Sentry, sees every request
        # The access log too: inside, so that the fast answers need not wrap `send`.
        return fast_paths(wrapped, server, sessions=sessions, forward_auth_methods=_FORWARD_AUTH)
    wrapped = with_sentry(wrapped, settings.sentry)
    return AccessLogMiddleware(wrapped) if settings.access_log else wrapped


def _sessions(
    app: ASGIApp, *, settings: Settings, secrets: list[str], store: SessionStore
) -> ASGIApp:
    return SessionMiddleware(
        app,
        secret=secrets,
        store=store,
        max_age=settings.session_max_age,
        idle_timeout=settings.idle_timeout,
        absolute_timeout=settings.absolute_timeout,
        https_only=settings.cookie_secure,
        domain=settings.cookie_domain,
    )


def _warn_about_other_hosts(settings: Settings) -> None:
    if not settings.cookie_domain:
        return
    if not settings.public_url:
        log.warning(
            "cookie_domain is set but public_url is not: forward-auth redirects to the login "
            "page will be relative and break on other hosts; set public_url to this server's "
            "address, such as https://auth.example.com"
        )
    if not settings.allowed_origins:
        log.warning(
            "cookie_domain is set but allowed_origins is not: a sign-in returns to no other "
            "host, and no other host's pages may open websockets here; list the apps' origins "
            "in allowed_origins, such as https://app.example.com"
        )


def _routes(server: ServerState) -> list[BaseRoute]:
    p = server.prefix
    routes: list[BaseRoute] = [
        # The routes asked most often come first: Starlette tries them in order.
        Route(f"{p}/auth", api.ForwardAuth(server), methods=list(_FORWARD_AUTH)),
        Route(f"{p}/whoami", api.whoami),
        Route(f"{p}/health", api.health),
        Route(f"{p}/login", signin.login_page, methods=["GET", "POST"]),
        *two_factor.routes(p),
        Route(f"{p}/logout", signin.logout_view, methods=["POST"]),
        Route(f"{p}/register", signin.register_page, methods=["GET", "POST"]),
        Route(f"{p}/setup", signin.setup_page, methods=["GET", "POST"]),
        *recovery.routes(p),
        *verification.routes(p),
        *invitations.routes(p),
        *email_sign_in.routes(p),
        *step_up.routes(p),
        *account.routes(p),
        *account_two_factor.routes(p),
        *passkeys.routes(p),
        *admin.routes(p),
        Mount(f"{p}/static", StaticFiles(directory=_STATIC), name="static"),
        Route("/", _home),
        # Browsers ask every site for it. Under `doorman protect` only the prefix reaches
        # these routes: there /favicon.ico stays the protected app's.
        Route("/favicon.ico", _favicon, methods=["GET", "HEAD"]),
    ]
    for path, endpoint in _plugin_routes(server):
        routes.append(Route(path, endpoint))
    return routes


_FORWARD_AUTH = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE"})


class _Shortcut:
    """One path straight to its endpoint, ahead of Starlette's error middleware and routing.

    For ``/-/auth``: a proxy asks it once for every request it lets through, so
    it skips what no other route needs skipped. Other methods on that path still
    reach the router (405).
    """

    def __init__(self, app: ASGIApp, path: str, endpoint: ASGIApp, methods: frozenset[str]):
        self.app, self.path, self.endpoint, self.methods = app, path, endpoint, methods

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in self.methods:
            path, root = scope["path"], scope.get("root_path", "")
            if (path[len(root) :] if root and path.startswith(root) else path) == self.path:
                await self.endpoint(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _plugin_routes(server: ServerState) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    for answer in server.doorman.plugins.hook.register_routes(doorman=server.doorman):
        found.extend(answer or ())
    return found


@requires("account")
async def _home(request: Any) -> Response:
    return RedirectResponse(request.app.state.server.url("account"), 302)


async def _favicon(request: Any) -> Response:
    return FileResponse(_STATIC / "favicon.ico", headers={"cache-control": "public, max-age=86400"})


def _lifespan(server: ServerState, secrets: list[str]) -> Any:
    doorman, store = server.doorman, server.store

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # AuthMiddleware has run doorman.startup() (migrations, startup hooks) on the way in.
        await warn_about_secret(store, doorman.engine, secrets)
        yield
        await server.background.drain()  # messages under way
        await store.close()
        await doorman.close()
        await doorman.engine.dispose()

    return lifespan


def _secrets_of(settings: Settings) -> list[str]:
    secret = settings.secret
    if not secret:
        raise ConfigError(
            "secret: not resolved; build the app with `doorman serve`, or set DOORMAN_SECRET"
        )
    return [secret] if isinstance(secret, str) else list(secret)
