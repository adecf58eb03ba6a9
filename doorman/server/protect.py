"""``doorman protect``: any ASGI app behind sign-in, with doorman's pages beside it.

``create_app(settings, protected=app)`` puts ``ProtectedApp`` inside the
session and auth middleware: paths under the route prefix go to doorman's own
routes; the ``public_paths`` go to the app as they are; every other request
needs an actor allowed to ``view`` (any signed-in user, unless the permission
rules say otherwise). Refusals answer through the ``forbidden`` hook: a browser
asking for a page is sent to the login page and back, an API client gets 401
JSON, a websocket is closed with 1008. The app finds the actor in
``scope["actor"]``, and in the ``X-Doorman-*`` headers, as forward-auth sets
them, ``X-Doorman-Auth-Methods`` included (a client's own copies are removed).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from .._identity import set_identity_headers
from .._paths import unambiguous_path
from .._types import ASGIApp, Receive, Scope, Send
from ..auth.auth_methods import auth_methods, methods_header
from ..auth.guards import guard
from ..exceptions import ConfigError
from .lifespans import Lifespans

__all__ = ["PROTECT_APP_ENV", "AppTarget", "ProtectedApp", "is_public"]

#: ``doorman protect --workers N`` tells its uvicorn workers which app to import in this variable.
PROTECT_APP_ENV = "DOORMAN_PROTECT_APP"


class ProtectedApp:
    """doorman's routes under ``prefix``; everything else goes to ``app`` behind sign-in.

    Put it inside ``SessionMiddleware`` and ``AuthMiddleware``; ``create_app``
    does. Lifespan events reach both ``routes`` and ``app``.
    """

    def __init__(
        self, routes: ASGIApp, app: ASGIApp, *, prefix: str, public_paths: Sequence[str] = ()
    ) -> None:
        if not prefix.strip("/"):
            raise ConfigError(
                f"route_prefix = {prefix!r}: doorman protect needs a path of its own for "
                "doorman's pages; give one such as /-/ or /auth/"
            )
        self.routes = routes
        self.app = app
        self.guarded = guard(app, "view")
        self.prefix = "/" + prefix.strip("/")
        self.public_paths = tuple(public_paths)
        self.lifespans = Lifespans({"doorman": routes, "the protected app": app})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.lifespans(scope, receive, send)
        elif kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
        elif _under(scope["path"], self.prefix):
            await self.routes(scope, receive, send)
        else:
            set_identity_headers(scope)  # the app may trust X-Doorman-* as behind forward-auth
            if scope.get("actor") is not None:
                scope["headers"] = [*scope["headers"], methods_header(auth_methods(scope))]
            if is_public(scope["path"], self.public_paths, scope.get("raw_path")):
                await self.app(scope, receive, send)
            else:
                await self.guarded(scope, receive, send)


def is_public(path: str, public_paths: Sequence[str], raw_path: bytes | None = None) -> bool:
    """Whether ``path`` is one of ``public_paths`` or under one.

    ``/static/`` and ``/static`` both cover ``/static`` and ``/static/app.css``,
    not ``/statics``. A path that an app could read as another path is never
    public (``doorman._paths``): ``.`` or ``..`` segments, ``\\`` or ``;``, in
    it or in ``raw_path``, however deeply percent-encoded.
    """
    if not public_paths or unambiguous_path(path, raw_path) is None:
        return False
    return any(_under(path, public.rstrip("/")) for public in public_paths)


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


# -- finding the app: MODULE:APP, as uvicorn does ---------------------------------------


@dataclasses.dataclass(frozen=True)
class AppTarget:
    """Where the app to protect is: ``MODULE:APP`` (APP may be dotted), imported from ``app_dir``.

    With ``factory``, APP is a function that takes no arguments and returns the app.
    """

    spec: str
    factory: bool = False
    app_dir: str = "."

    def find(self) -> Any:
        """The object ``spec`` names (the factory itself with ``factory``), or ``ConfigError``."""
        module_name, colon, attribute = self.spec.partition(":")
        if not colon or not module_name or not attribute:
            raise ConfigError(
                f"{self.spec!r}: give the app as MODULE:APP, such as myproject.main:app"
            )
        directory = os.path.abspath(self.app_dir)
        if directory not in sys.path:
            sys.path.insert(0, directory)
        module = _import(module_name, directory)
        found: Any = module
        for name in attribute.split("."):
            if not hasattr(found, name):
                raise ConfigError(f"{self.spec}: module {module_name!r} has no {attribute!r}")
            found = getattr(found, name)
        if not callable(found):
            raise ConfigError(f"{self.spec} is a {type(found).__name__}, not an ASGI app")
        return found

    def check(self) -> Any:
        """What ``spec`` names, once it looks right: an app, or with ``factory`` a function."""
        found = self.find()
        if not self.factory and _takes_no_arguments(found):
            raise ConfigError(
                f"{self.spec} takes no arguments: if it returns the app, add --factory"
            )
        return found

    def load(self) -> ASGIApp:
        """The app: the object ``spec`` names, or what the factory returns."""
        found = self.check()
        if not self.factory:
            return found  # type: ignore[no-any-return]
        try:
            app = found()
        except Exception as error:  # the app's own code may raise anything
            raise ConfigError(f"{self.spec}(): {_one_line(error)}") from None
        if not callable(app):
            raise ConfigError(f"{self.spec}() returned a {type(app).__name__}, not an ASGI app")
        return app  # type: ignore[no-any-return]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))


def _import(module_name: str, directory: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise ConfigError(
                f"no module named {missing!r} in {directory} or on the Python path; "
                "run from the directory that holds it, or pass --app-dir"
            ) from None
        raise ConfigError(f"importing {module_name!r} failed: {_one_line(error)}") from None
    except Exception as error:  # the app's own module may raise anything while it loads
        raise ConfigError(f"importing {module_name!r} failed: {_one_line(error)}") from None


def _takes_no_arguments(found: Any) -> bool:
    """A function callable as ``found()``: a factory, not an app (which takes three)."""
    if not inspect.isfunction(found):
        return False
    parameters = inspect.signature(found).parameters.values()
    return all(p.default is not p.empty or p.kind is p.VAR_KEYWORD for p in parameters)


def _one_line(error: BaseException) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())
