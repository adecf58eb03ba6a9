"""Configuration, as one import: the settings table (``doorman.settings``) and the
start-up that builds a ``Doorman`` from it (``doorman.assembly``).

``from doorman.config import load_settings, open_doorman, close_doorman`` is
what docs/configuration.md shows; doorman's own modules import the two
halves directly.
"""

from __future__ import annotations

from .assembly import (
    COOKIE_SIGNED_WITH_STORED_KEY,
    SECRET_ROW,
    assemble,
    close_doorman,
    open_doorman,
    resolve_secrets,
    secret_in_database,
    warn_about_secret,
)
from .settings import (
    DEFAULT_CONFIG_FILE,
    SERVE_SETTINGS_ENV,
    SETTINGS,
    Setting,
    Settings,
    load_settings,
    parse_duration,
)

__all__ = [
    "COOKIE_SIGNED_WITH_STORED_KEY",
    "DEFAULT_CONFIG_FILE",
    "SECRET_ROW",
    "SERVE_SETTINGS_ENV",
    "SETTINGS",
    "Setting",
    "Settings",
    "assemble",
    "close_doorman",
    "load_settings",
    "open_doorman",
    "parse_duration",
    "resolve_secrets",
    "secret_in_database",
    "warn_about_secret",
]
