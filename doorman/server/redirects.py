"""Where a sign-in without ``next`` lands: ``login_redirect``, a path or an absolute URL
on an allowed origin, checked at start-up. ``next`` itself is judged by
``doorman.redirects`` (a path on this site, or a URL the server signed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..exceptions import ConfigError
from ..origins import AllowedOrigins
from ..redirects import NextSigner, origin_of, safe_path

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["NextSigner", "login_landing", "origin_of", "safe_path"]


def login_landing(settings: Settings, *, prefix: str, protect: bool = False) -> str:
    """Where a sign-in without ``next`` lands; ``ConfigError`` for a URL no ``next`` could name.

    Unset, ``login_redirect`` is the account page for ``doorman serve`` and the
    app's ``/`` for ``doorman protect``.
    """
    target = settings.login_redirect
    if target is None:
        return "/" if protect else f"{prefix}/account"
    if target.startswith("/"):
        if safe_path(target, default="") != target:
            raise ConfigError(f"login_redirect = {target!r}: give a path on this site, such as /")
        return target
    if not AllowedOrigins.from_settings(settings).allows_url(target):
        raise ConfigError(
            f"login_redirect = {target!r}: a URL must be on an allowed origin (public_url's, "
            "or one of allowed_origins); add its origin there, or give a path such as /"
        )
    return target
