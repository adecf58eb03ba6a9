"""Where to send the user after sign-in, without ever opening a redirect.

``next`` is accepted as a path on this site only, whatever its encoding
(``//evil``, ``/\\evil``, ``%2F%2Fevil``, tabs and newlines are refused). A URL
on another host (an app behind forward-auth on a sibling subdomain) is
accepted only when the sign-in server itself signed it, and only for a host
the settings allow: ``public_url``'s host and hosts under ``cookie_domain``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit

from ..exceptions import BadSignature
from ..signing import Signer

__all__ = ["NextSigner", "host_allowed", "safe_path"]

_UNSAFE = re.compile(r"[\x00-\x20\x7f\\]")


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


class NextSigner:
    """Signs absolute return URLs that cross hosts (from forward-auth to the login page)."""

    def __init__(self, secrets: str | Sequence[str]) -> None:
        self._signer = Signer(secrets, salt="doorman.next")

    def sign(self, url: str) -> str:
        return self._signer.sign(url).rpartition(".")[2]

    def verify(self, url: str, signature: object) -> bool:
        if not isinstance(signature, str) or not signature:
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
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return None
        if not host_allowed(parts.hostname, public_host=public_host, cookie_domain=cookie_domain):
            return None
        return url if self.verify(url, signature) else None
