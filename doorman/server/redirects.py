"""Where to send the user after sign-in, without ever opening a redirect.

``next`` is accepted as a path on this site only, whatever its encoding
(``//evil``, ``/\\evil``, ``%2F%2Fevil``, tabs and newlines are refused). A URL
on another host (an app behind forward-auth on a sibling subdomain) is
accepted only when the sign-in server itself signed it, and only for a host
the settings allow: ``public_url``'s host and hosts under ``cookie_domain``.
Such a URL's origin must read plainly (``https://app.example.com:8443``, no
``user@`` before the host): the login page names it in its CSP
``form-action``, which browsers apply to the redirect that answers the form.

A sign-in without ``next`` lands on ``login_redirect``: a path, or an
absolute URL on an allowed host (checked at start-up).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from ..exceptions import BadSignature, ConfigError
from ..signing import Signer

if TYPE_CHECKING:
    from ..config import Settings

__all__ = [
    "NextSigner",
    "host_allowed",
    "login_landing",
    "origin_of",
    "public_host",
    "safe_path",
]

_UNSAFE = re.compile(r"[\x00-\x20\x7f\\]")
#: A host name as a CSP source may carry it: letters, digits, dots and dashes.
_PLAIN_HOST = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def safe_path(value: object, default: str = "/") -> str:
    """``value`` if it is a path on this site, else ``default``."""
    if not isinstance(value, str) or not value.startswith("/") or len(value) > 2000:
        return default
    decoded = value
    for _ in range(3):  # undo double and triple encoding before judging
        decoded = unquote(decoded)
    for candidate in (value, decoded):
        if _UNSAFE.search(candidate) or candidate.startswith("//"):
            return default
        parts = urlsplit(candidate)
        if parts.scheme or parts.netloc:
            return default
    return value


def host_allowed(host: str, *, public_host: str | None, cookie_domain: str | None) -> bool:
    """Whether a signed ``next`` may point at ``host``."""
    host = host.lower().split(":")[0]
    if not host:
        return False
    if public_host and host == public_host.lower():
        return True
    if cookie_domain:
        domain = cookie_domain.lower().lstrip(".")
        return host == domain or host.endswith("." + domain)
    return False


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an absolute http(s) URL, fit for a CSP; None otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a broken [IPv6] host; a port that is not a number, or out of range
        return None
    host = parts.hostname or ""
    if parts.scheme not in _DEFAULT_PORTS or not _PLAIN_HOST.fullmatch(host):
        return None
    if "@" in parts.netloc:  # credentials: only ever there to show another host's name
        return None
    shown_port = "" if port in (None, _DEFAULT_PORTS[parts.scheme]) else f":{port}"
    return f"{parts.scheme}://{host}{shown_port}"


def public_host(settings: Settings) -> str | None:
    """The host of ``public_url``, where a signed ``next`` may point."""
    return urlsplit(settings.public_url).hostname if settings.public_url else None


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
    origin = origin_of(target)
    host = urlsplit(origin).hostname if origin else None
    if host is None or not host_allowed(
        host, public_host=public_host(settings), cookie_domain=settings.cookie_domain
    ):
        raise ConfigError(
            f"login_redirect = {target!r}: a URL must be on public_url's host or under "
            "cookie_domain; set those, or give a path on this site such as /"
        )
    return target


class NextSigner:
    """Signs absolute return URLs that cross hosts (from forward-auth to the login page)."""

    def __init__(self, secrets: str | Sequence[str]) -> None:
        self._signer = Signer(secrets, salt="doorman.next")

    def sign(self, url: str) -> str:
        return self._signer.sign(url).rpartition(".")[2]

    def verify(self, url: str, signature: object) -> bool:
        # A MAC has no ".": with one, "b.<mac of .../a.b>" would vouch for ".../a".
        if not isinstance(signature, str) or not signature or "." in signature:
            return False
        try:
            self._signer.unsign(f"{url}.{signature}")
        except BadSignature:
            return False
        return True

    def absolute_allowed(
        self, url: object, signature: object, *, public_host: str | None, cookie_domain: str | None
    ) -> str | None:
        """``url`` when it is an http(s) URL we signed for an allowed host, else None."""
        if not isinstance(url, str) or len(url) > 4000 or _UNSAFE.search(url):
            return None
        if origin_of(url) is None:
            return None
        host = urlsplit(url).hostname or ""
        if not host_allowed(host, public_host=public_host, cookie_domain=cookie_domain):
            return None
        return url if self.verify(url, signature) else None
