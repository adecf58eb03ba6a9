"""Absolute links for messages, built from ``public_url``: never from a ``Host`` header alone.

A reset link built from the request's own ``Host`` would let anyone who asks for
a reset to someone else's address choose where that person's token is sent
(Host-header poisoning). So a link starts with ``public_url``; without it, with
the request's own origin only when ``allowed_origins`` names it; otherwise no
link is built at all (``NoTrustedOrigin``).

Standard library only, like ``doorman.origins`` which it builds on.
"""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING

from ..exceptions import NoTrustedOrigin
from ..origins import AllowedOrigins, own_origin

if TYPE_CHECKING:
    from .._types import Scope
    from ..settings import Settings

__all__ = ["LinkBuilder"]


class LinkBuilder:
    """``url("password-reset", token)``: ``https://auth.example.com/-/password-reset/TOKEN``."""

    def __init__(
        self,
        *,
        public_url: str | None,
        route_prefix: str = "/-/",
        allowed_origins: AllowedOrigins | None = None,
    ) -> None:
        self.public_url = public_url.rstrip("/") if public_url else None
        self.route_prefix = route_prefix
        self.allowed_origins = allowed_origins or AllowedOrigins()

    @classmethod
    def from_settings(cls, settings: Settings) -> LinkBuilder:
        return cls(
            public_url=settings.public_url,
            route_prefix=settings.route_prefix,
            allowed_origins=AllowedOrigins(settings.allowed_origins),
        )

    @property
    def can_build(self) -> bool:
        """Whether any link can be built: ``public_url`` is set, or some origin is allowed."""
        return self.public_url is not None or bool(self.allowed_origins)

    def base(self, scope: Scope | None = None) -> str:
        """``public_url``; else the origin of the request in ``scope`` when it is allowed."""
        if self.public_url is not None:
            return self.public_url
        origin = own_origin(scope) if scope is not None and "headers" in scope else None
        if origin is not None and self.allowed_origins.allows(origin):
            return str(origin)
        raise NoTrustedOrigin(
            "no link is built: public_url is not set"
            + ("" if scope is None else " and this request's host is not an allowed origin")
            + "; set public_url to the sign-in server's external URL, such as "
            "https://auth.example.com (see docs/email.md)"
        )

    def url(self, *segments: str, scope: Scope | None = None) -> str:
        """The link to ``route_prefix`` + ``segments``, each percent-encoded whole."""
        path = "/".join(urllib.parse.quote(segment, safe="") for segment in segments)
        return self.base(scope) + self.route_prefix + path
