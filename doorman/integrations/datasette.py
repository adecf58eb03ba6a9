"""A Datasette plugin: doorman's signed-in users are Datasette's actors.

Installed with the package (entry point ``doorman`` in Datasette's
``datasette`` group) and idle until ``plugins: doorman:`` is configured. Two
modes, see docs/datasette.md:

- same database (``db``): the ``doorman_session`` cookie is run through
  doorman's own ``SessionMiddleware`` and ``AuthMiddleware``, so the checks
  are the sign-in server's: signature, store, user row, password/session
  version and sign-in record;
- through the gate (``api_url``): the cookie is forwarded to a sign-in
  server's ``/-/whoami`` (``_datasette_gate.py``, imported only then: it needs httpx,
  and an installed but unconfigured plugin must never break Datasette).

Either way the actor is doorman's: ``{"id": username, "username": ...,
"admin": bool, "groups": [...], "via": "session"}``. Anything that goes wrong
(a store or server that does not answer, a forged cookie) leaves the request
anonymous and logs a line, without the cookie.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

from datasette import hookimpl as _hookimpl  # type: ignore[import-untyped]

from .._types import ASGIApp, Message, Receive, Scope, Send
from ..assembly import assemble, resolve_secrets
from ..auth.auth_methods import auth_methods
from ..auth.middleware import AuthMiddleware
from ..core import Doorman
from ..db.engine import create_engine
from ..exceptions import ConfigError, StoreError
from ..sessions.middleware import SessionMiddleware
from ..settings import Settings
from ..stores.base import SessionStore

if TYPE_CHECKING:
    from ._datasette_gate import WhoamiActors  # needs httpx: imported only when api_url is given

__all__ = ["PLUGIN_NAME", "close", "resolve_actor"]

log = logging.getLogger("doorman.datasette")

#: The key under ``plugins:`` in Datasette's metadata or datasette.yaml.
PLUGIN_NAME = "doorman"
_SESSION_KEYS = ("db", "sessions", "secret", "session_max_age", "idle_timeout", "absolute_timeout")
_GATE_KEYS = ("api_url", "cookies", "timeout", "ttl")
_LINK_KEYS = ("login_url", "account_url")
_KNOWN = (*_SESSION_KEYS, *_GATE_KEYS, *_LINK_KEYS)
_COOKIE = "doorman_session"

_F = TypeVar("_F", bound=Callable[..., Any])
hookimpl: Callable[[_F], _F] = _hookimpl


def _config_error(message: str) -> ConfigError:
    return ConfigError(f"plugins.{PLUGIN_NAME}.{message} (see docs/datasette.md)")


# -- same database: doorman's own middleware, called with the cookie -----------------


class SessionActors:
    """Actors from doorman's session store and database, checked as the sign-in server does."""

    def __init__(self, settings: Settings, secrets: list[str]) -> None:
        self.doorman: Doorman
        self.store: SessionStore
        self.doorman, self.store = assemble(settings, secrets)
        self._started = False
        self._app = SessionMiddleware(
            AuthMiddleware(_no_content, self.doorman),
            secret=secrets,
            store=self.store,
            max_age=settings.session_max_age,
            idle_timeout=settings.idle_timeout,
            absolute_timeout=settings.absolute_timeout,
        )

    async def actor_of(self, request: Any) -> dict[str, Any] | None:
        """The actor of a Datasette request, from its doorman session cookie."""
        return await self.actor(request.scope)

    async def actor(self, scope: Scope) -> dict[str, Any] | None:
        cookies = [(name, value) for name, value in scope["headers"] if name == b"cookie"]
        if not any(_COOKIE.encode() in value for _, value in cookies):
            return None  # no doorman cookie: nothing to look up
        if not self._started:
            # Here, not in Datasette's startup hook: `datasette serve` runs that on another loop.
            try:
                await self.doorman.startup()
            except StoreError as error:
                log.warning(
                    "doorman database unavailable (%s): this Datasette request is anonymous", error
                )
                return None
            self._started = True
        inner: Scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": scope.get("scheme", "http"),
            "path": "/",
            "raw_path": b"/",
            "root_path": "",
            "query_string": b"",
            "headers": cookies,  # only cookies: Datasette's own tokens are its business
            "client": scope.get("client"),
            "server": scope.get("server"),
        }
        await self._app(inner, _empty_body, _discard)
        # AuthMiddleware sets "actor" only when both stores answered; else it and
        # SessionMiddleware answered 503 and logged why.
        if "actor" not in inner:
            log.warning("doorman stores unavailable: this Datasette request is anonymous")
            return None
        actor: dict[str, Any] | None = inner["actor"]
        if actor is None:
            return None
        return {**actor, "auth_methods": auth_methods(inner)}  # as the gate mode's, from whoami

    async def close(self) -> None:
        try:
            await self.store.close()
            await self.doorman.close()
        finally:
            await self.doorman.engine.dispose()


async def _no_content(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def _empty_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _discard(message: Message) -> None:
    """The cookie a session update would set cannot reach the browser from here."""


# -- configuration ---------------------------------------------------------------------


@dataclass(frozen=True)
class Links:
    login_url: str | None
    account_url: str | None


@dataclass
class _Plugin:
    actors: SessionActors | WhoamiActors
    links: Links


_plugins: weakref.WeakKeyDictionary[Any, _Plugin] = weakref.WeakKeyDictionary()


async def _configure(config: dict[str, Any]) -> _Plugin:
    unknown = sorted(set(config) - set(_KNOWN))
    if unknown:
        raise _config_error(f"{unknown[0]}: unknown option; the options are {', '.join(_KNOWN)}")
    links = Links(
        login_url=_optional_text(config, "login_url"),
        account_url=_optional_text(config, "account_url"),
    )
    if ("db" in config) == ("api_url" in config):
        raise _config_error("db or api_url: give exactly one (same database, or the gate)")
    if "api_url" in config:
        return _Plugin(_gate(config), links)
    settings = _session_settings(config)
    # For start-up only: `datasette serve` uses another loop.
    engine = create_engine(settings.db, connections=settings.db_pool_size)
    try:
        found = await resolve_secrets(settings, engine)
    finally:
        await engine.dispose()
    return _Plugin(SessionActors(settings, found), links)


def _gate(config: dict[str, Any]) -> WhoamiActors:
    misplaced = [key for key in _SESSION_KEYS if key in config]
    if misplaced:
        raise _config_error(f"{misplaced[0]}: only with db, not with api_url")
    from ._datasette_gate import WhoamiActors, is_http_url

    api_url = _optional_text(config, "api_url") or ""
    if not is_http_url(api_url):
        raise _config_error(f"api_url = {api_url!r}: give the sign-in server's /-/whoami URL")
    cookies = config.get("cookies", [_COOKIE])
    if not isinstance(cookies, list) or not cookies or not all(isinstance(c, str) for c in cookies):
        raise _config_error("cookies: give a list of cookie names to forward")
    return WhoamiActors(
        api_url,
        cookies=cookies,
        timeout=_seconds(config, "timeout", 5.0, least=0.1),
        ttl=_seconds(config, "ttl", 0.0),
    )


def _session_settings(config: dict[str, Any]) -> Settings:
    misplaced = [key for key in _GATE_KEYS if key in config]
    if misplaced:
        raise _config_error(f"{misplaced[0]}: only with api_url, not with db")
    if "secret" in config and not config["secret"]:
        raise _config_error("secret: empty; is the variable its $env names set?")
    settings = Settings.from_mapping(
        {key: config[key] for key in _SESSION_KEYS if key in config},
        source=f"plugins.{PLUGIN_NAME}",
    )
    if settings.sessions == "memory":
        raise _config_error(
            "sessions = 'memory': those live inside the sign-in server's process; "
            "use db, cookie or a redis:// URL, or api_url"
        )
    if "://" not in settings.db and not Path(settings.db).is_file():
        raise _config_error(f"db = {settings.db!r}: no such file; give the sign-in server's")
    return settings


def _optional_text(config: dict[str, Any], key: str) -> str | None:
    value = config.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise _config_error(f"{key}: give a string")
    return value


def _seconds(config: dict[str, Any], key: str, default: float, *, least: float = 0) -> float:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not least <= value <= 3600:
        raise _config_error(f"{key} = {value!r}: give seconds, from {least:g} to 3600")
    return float(value)


# -- the public helpers ------------------------------------------------------------------


async def resolve_actor(datasette: Any, request: Any) -> dict[str, Any] | None:
    """The doorman actor of a Datasette request, or None; what ``actor_from_request`` gives."""
    plugin = _plugins.get(datasette)
    if plugin is None:
        return None
    return await plugin.actors.actor_of(request)


async def close(datasette: Any) -> None:
    """Close the plugin's connections for ``datasette`` (done at ASGI lifespan shutdown)."""
    plugin = _plugins.pop(datasette, None)
    if plugin is not None:
        await plugin.actors.close()


# -- Datasette's hooks -------------------------------------------------------------------


@hookimpl
def startup(datasette: Any) -> Any:
    config = datasette.plugin_config(PLUGIN_NAME)
    if config is None:
        return None
    if not isinstance(config, dict):
        raise ConfigError(
            f"plugins.{PLUGIN_NAME}: give a mapping of options, see docs/datasette.md"
        )

    async def configure() -> None:
        _plugins[datasette] = await _configure(config)

    return configure


@hookimpl
def actor_from_request(datasette: Any, request: Any) -> Any:
    if datasette not in _plugins:
        return None  # not configured: cost nothing
    return resolve_actor(datasette, request)


@hookimpl
def asgi_wrapper(datasette: Any) -> Any:
    """Closes the plugin's connections when the server shuts down (Datasette has no hook)."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def closing_app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "lifespan":
                await app(scope, receive, send)
                return

            async def receive_and_close() -> Message:
                message = await receive()
                if message["type"] == "lifespan.shutdown":
                    await close(datasette)
                return message

            await app(scope, receive_and_close, send)

        return closing_app

    return wrap


@hookimpl
def menu_links(datasette: Any, actor: Any, request: Any) -> Any:
    plugin = _plugins.get(datasette)
    if plugin is None:
        return None
    links = plugin.links
    if actor is None and links.login_url:
        href = links.login_url
        if href.startswith("/") and request is not None:
            # A path on this site only: doorman's login refuses a `next` on another host.
            here = request.path + (f"?{request.query_string}" if request.query_string else "")
            href += ("&" if "?" in href else "?") + urlencode({"next": here})
        return [{"href": href, "label": "Sign in"}]
    if actor is not None and links.account_url:
        return [{"href": links.account_url, "label": "Account and sign out"}]
    return None
