"""Where to send the user after sign-in, without ever opening a redirect.

``next`` is accepted as a path on this site only, whatever its encoding
(``//evil``, ``/\\evil``, ``%2F%2Fevil``, tabs and newlines are refused). A URL
on another host (an app behind forward-auth on a sibling subdomain) is
accepted only when the sign-in server itself signed it (``NextSigner``), and
only on an allowed origin (``doorman.origins``: scheme, host and port, from
``public_url``, ``cors_origins`` and ``allowed_origins``). Such a URL's origin
must read plainly (``https://app.example.com:8443``): the login page names it
in its CSP ``form-action``, which browsers apply to the redirect that answers
the form. The sign-in server and the gate both use these.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit

from ._text import storable
from .exceptions import BadSignature
from .origins import AllowedOrigins, origin_of
from .signing import Signer

__all__ = ["NextSigner", "origin_of", "safe_path"]

_UNSAFE = re.compile(r"[\x00-\x20\x7f\\]")


def safe_path(value: object, default: str = "/") -> str:
    """``value`` if it is a path on this site, else ``default``."""
    if not isinstance(value, str) or not value.startswith("/") or len(value) > 2000:
        return default
    if not storable(value):  # a lone surrogate, from a JSON body: no Location header holds it
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
        self, url: object, signature: object, origins: AllowedOrigins
    ) -> str | None:
        """``url`` when it is an http(s) URL we signed, on an allowed origin; else None."""
        if not isinstance(url, str) or not origins.allows_url(url):
            return None
        return url if self.verify(url, signature) else None
