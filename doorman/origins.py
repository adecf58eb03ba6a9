"""Allowed origins: where a sign-in may send a browser back, and which pages may open websockets.

One notion, built from the settings by ``AllowedOrigins.from_settings``:
``public_url``'s origin, each of ``cors_origins`` and each of
``allowed_origins``. An origin is a scheme, a host and a port, compared whole:
``https://app.example.com`` allows neither ``http://app.example.com`` nor
``https://app.example.com:8443``, and ``https://app.example.com.evil.example``
is just another host. An entry ``https://*.example.com`` allows every host
under ``example.com`` (not ``example.com`` itself) on that scheme and port
only. ``cookie_domain`` adds nothing by itself: a host that receives the
cookie is not trusted with a sign-in's way back, nor with opening websockets
as the user, unless an entry names it.

A websocket may also come from the server's own origin as the browser sees it
(``own_origin``: the request's scheme and ``Host`` header).

Standard library only: ``ExistingCookiesGate`` uses it without Starlette.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple, Protocol
from urllib.parse import urlsplit

from ._types import Scope

__all__ = [
    "AllowedOrigins",
    "Origin",
    "OriginSettings",
    "normalize_origin",
    "origin_of",
    "own_origin",
    "parse_origin",
]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_WEBSOCKET_SCHEMES = {"ws": "http", "wss": "https"}
#: A DNS name or IPv4 address as browsers write it in an origin: lower case, no trailing dot.
_NAME = r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?"
_ORIGIN = re.compile(rf"(https?)://({_NAME}|\[[0-9a-f:.]{{2,45}}\])(?::([0-9]{{1,5}}))?")
_DOMAIN_PATTERN = re.compile(rf"(https?)://\*\.({_NAME})(?::([0-9]{{1,5}}))?")
_PLAIN_HOST = re.compile(_NAME)
#: Never in a URL a browser is sent to: controls, spaces, and "\" (which browsers read as "/").
_UNSAFE = re.compile(r"[\x00-\x20\x7f\\]")


class Origin(NamedTuple):
    """An origin with its port spelt out: ``Origin("https", "app.example.com", 443)``."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        shown = "" if self.port == _DEFAULT_PORTS[self.scheme] else f":{self.port}"
        return f"{self.scheme}://{self.host}{shown}"


def parse_origin(text: object) -> Origin | None:
    """The origin ``text`` names, written as in an ``Origin`` header; None for anything else.

    Case does not matter and a default port may be spelt out; a path, a
    user name, ``null``, a space or a character outside ASCII give None.
    """
    if not isinstance(text, str) or len(text) > 300 or not text.isascii():
        return None
    found = _ORIGIN.fullmatch(text.lower())
    return _origin(found[1], found[2], found[3]) if found else None


def _origin(scheme: str, host: str, port: str | None) -> Origin | None:
    number = int(port) if port else _DEFAULT_PORTS[scheme]
    return Origin(scheme, host, number) if 0 < number < 65536 else None


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an absolute http(s) URL, fit for a CSP; None otherwise.

    Only hosts a CSP source can carry as they are (letters, digits, dots and
    dashes) qualify: the login page names the origin in its ``form-action``.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a broken [IPv6] host; a port that is not a number, or out of range
        return None
    host = parts.hostname or ""
    if parts.scheme not in _DEFAULT_PORTS or not _PLAIN_HOST.fullmatch(host):
        return None
    if "@" in parts.netloc:  # credentials: only ever there to show another host's name first
        return None
    shown_port = "" if port in (None, _DEFAULT_PORTS[parts.scheme]) else f":{port}"
    return f"{parts.scheme}://{host}{shown_port}"


def normalize_origin(origin: str) -> str:
    """``https://App.example.com:443/`` as a browser's Origin header says it.

    Raises ``ValueError`` for anything but an http(s) origin, ``*`` included:
    with credentials, a wildcard would hand every site the user's session.
    """
    if origin.strip() == "*":
        raise ValueError(
            "'*' would let every site read answers made with the user's cookie; list the "
            "origins, such as https://app.example.com"
        )
    parts = urlsplit(origin.strip().rstrip("/").lower())
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path or port == -1:
        raise ValueError(f"{origin!r} is not an origin; give ones like https://app.example.com")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is not None and port != _DEFAULT_PORTS[parts.scheme]:
        host = f"{host}:{port}"
    return f"{parts.scheme}://{host}"


def own_origin(
    scope: Scope, *, scheme: str | None = None, host: str | None = None
) -> Origin | None:
    """This server's origin as the browser names it: the request's scheme and ``Host``.

    ``scheme`` and ``host`` replace the scope's (a gate behind a trusted proxy
    passes the forwarded ones); a websocket's ``wss`` reads as ``https``.
    """
    if scheme is None:
        given = str(scope.get("scheme", "http"))
        scheme = _WEBSOCKET_SCHEMES.get(given, given)
    if host is None:
        host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
    return parse_origin(f"{scheme}://{host}") if host else None


class OriginSettings(Protocol):
    """The settings that name origins (``doorman.settings.Settings`` has them)."""

    @property
    def public_url(self) -> str | None: ...
    @property
    def cors_origins(self) -> Iterable[str]: ...
    @property
    def allowed_origins(self) -> Iterable[str]: ...


class AllowedOrigins:
    """Origins, and ``scheme://*.domain[:port]`` patterns, trusted with the user's session.

    ``ValueError`` for an entry that is neither, saying what to give instead.
    """

    def __init__(self, entries: Iterable[str] = ()) -> None:
        exact: set[Origin] = set()
        domains: set[Origin] = set()  # the host is the domain the pattern's hosts lie under
        for entry in entries:
            text = entry.strip().rstrip("/") if isinstance(entry, str) else ""
            origin = parse_origin(text)
            pattern = _DOMAIN_PATTERN.fullmatch(text.lower()) if text.isascii() else None
            if origin is not None:
                exact.add(origin)
            elif pattern is not None and (found := _origin(*pattern.groups())) is not None:
                domains.add(found)
            else:
                raise ValueError(
                    f"{entry!r} is not an origin; give one such as https://app.example.com "
                    "(with its port when not the default), or https://*.example.com for every "
                    "host under a domain"
                )
        self._exact = frozenset(exact)
        self._domains = frozenset(domains)

    @classmethod
    def from_settings(cls, settings: OriginSettings) -> AllowedOrigins:
        """``public_url``'s origin, ``cors_origins`` and ``allowed_origins``: one notion for all."""
        entries = [*settings.allowed_origins, *settings.cors_origins]
        public = _url_origin(settings.public_url) if settings.public_url else None
        return cls([*entries, str(public)] if public else entries)

    def allows(self, origin: Origin | str | None, *, own: Origin | None = None) -> bool:
        """Whether ``origin`` (an ``Origin`` header's text, say) is ``own`` or one allowed."""
        if isinstance(origin, str):
            origin = parse_origin(origin)
        if origin is None:
            return False
        if origin == own or origin in self._exact:
            return True
        return any(
            origin.scheme == domain.scheme
            and origin.port == domain.port
            and origin.host.endswith("." + domain.host)
            for domain in self._domains
        )

    def allows_url(self, url: object) -> bool:
        """Whether a browser may be sent to ``url``: absolute, plain, on an allowed origin.

        No user name or password before the host, and no character that
        browsers and Python might read differently.
        """
        if not isinstance(url, str) or len(url) > 4000 or _UNSAFE.search(url):
            return False
        plain = origin_of(url)
        return plain is not None and "@" not in urlsplit(url).netloc and self.allows(plain)

    def __bool__(self) -> bool:
        return bool(self._exact or self._domains)


def _url_origin(url: str) -> Origin | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return parse_origin(f"{parts.scheme}://{host}" + (f":{port}" if port else ""))
