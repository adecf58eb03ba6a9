"""The uvicorn workers' entry points: ``doorman serve --workers N`` and
``doorman protect --workers N`` start each worker with one of these factories.

The parent process resolves the settings (and the secret) once and hands them
over in environment variables; each worker reads them back and builds the app.
"""

from __future__ import annotations

import gc
import json
import os

from .._types import ASGIApp
from ..exceptions import ConfigError
from ..settings import SERVE_SETTINGS_ENV, Settings
from .app import create_app
from .protect import PROTECT_APP_ENV, AppTarget

__all__ = ["protect_app", "serve_app", "settings_from_environment", "settled"]


def serve_app() -> ASGIApp:
    """The app for the uvicorn workers that ``doorman serve`` starts."""
    return settled(create_app(settings_from_environment()))


def protect_app() -> ASGIApp:
    """The app for the uvicorn workers that ``doorman protect --workers N`` starts."""
    raw = os.environ.get(PROTECT_APP_ENV)
    if not raw:
        raise ConfigError(f"{PROTECT_APP_ENV} is not set: start the server with `doorman protect`")
    target = AppTarget(**json.loads(raw))
    return settled(create_app(settings_from_environment(), protected=target.load()))


def settled(app: ASGIApp) -> ASGIApp:
    """``app``, after moving everything the worker has built so far out of the GC's way.

    A worker's modules, app and settings live as long as it does; ``gc.freeze``
    keeps the collector from walking them again in every full collection, which
    otherwise shows as pauses in the slowest requests (p99).
    """
    gc.collect()
    gc.freeze()
    return app


def settings_from_environment() -> Settings:
    """The settings ``doorman serve`` (or ``protect``) handed its workers."""
    raw = os.environ.get(SERVE_SETTINGS_ENV)
    if not raw:
        raise ConfigError(f"{SERVE_SETTINGS_ENV} is not set: start the server with `doorman serve`")
    json.loads(raw)  # a clear error for a mangled variable, before Settings reads it
    return Settings.from_json(raw)
