"""The gate's options, checked when it is made: a slip is a ``ConfigError`` that names the fix."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from urllib.parse import urlsplit

from .._scope import COOKIE_NAME
from ..exceptions import ConfigError
from ..origins import AllowedOrigins


def checked_url(name: str, url: str) -> str:
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{name} = {url!r}: give an absolute http(s) URL, such as "
            "https://auth.example.com/-/whoami for api_url or .../-/login for auth_redirect_url"
        )
    return url


def checked_list(option: str, value: Sequence[str]) -> Sequence[str]:
    if isinstance(value, str):  # a common slip: "doorman_session" for ["doorman_session"]
        raise ConfigError(f"{option} = {value!r}: give a list, such as [{value!r}]")
    return value


def checked_cookie_name(option: str, name: str) -> str:
    if not isinstance(name, str) or not COOKIE_NAME.fullmatch(name):
        raise ConfigError(f"{option}: {name!r} is not a cookie name, such as 'doorman_session'")
    return name


def checked_public_path(path: str) -> str:
    if not isinstance(path, str) or not path.startswith("/"):
        raise ConfigError(f"public_paths: {path!r} must start with '/', such as '/static/'")
    return path


def checked_origins(origins: Sequence[str]) -> AllowedOrigins:
    try:
        return AllowedOrigins(origins)
    except ValueError as error:
        raise ConfigError(f"allowed_origins: {error}") from None


def checked_network(proxy: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(proxy, strict=False)
    except ValueError:
        raise ConfigError(
            f"trusted_proxies: {proxy!r} is not an address or network, such as '10.0.0.0/8'"
        ) from None
