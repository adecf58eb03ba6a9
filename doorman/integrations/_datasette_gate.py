"""The Datasette plugin's gate mode: the actor from a sign-in server's ``/-/whoami``.

A module of its own because it needs httpx, and the plugin is loaded by every
``datasette`` command wherever doorman is installed: Datasette 1.0 depends on
``httpx2``, not httpx, so only a configured gate mode may import it. The
``datasette`` extra brings it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import urlsplit

from .._extras import needs_extra
from .._whoami import WhoamiFailed, ask_whoami

with needs_extra("datasette", "the Datasette plugin's api_url"):
    import httpx

__all__ = ["WhoamiActors", "is_http_url"]

log = logging.getLogger("doorman.datasette")

_COOKIE_VALUE = re.compile(r"[\x21-\x3a\x3c-\x7e]{1,4096}")  # printable ASCII without ";"
_CACHE_SIZE = 1000


class WhoamiActors:
    """Actors from a sign-in server's ``/-/whoami``, given the forwarded cookies."""

    def __init__(self, api_url: str, *, cookies: list[str], timeout: float, ttl: float) -> None:
        self.api_url = api_url
        parts = urlsplit(api_url)  # log lines name the server, never credentials in its URL
        self._shown = parts._replace(netloc=parts.netloc.rpartition("@")[2], query="").geturl()
        self.cookies = cookies
        self.timeout = timeout
        self.ttl = ttl
        self._client: httpx.AsyncClient | None = None
        self._cache_key = secrets.token_bytes(32)
        self._cache: OrderedDict[bytes, tuple[float, dict[str, Any] | None]] = OrderedDict()

    async def actor_of(self, request: Any) -> dict[str, Any] | None:
        """The actor of a Datasette request, from the cookies this mode forwards."""
        return await self.actor(request.cookies)

    async def actor(self, cookies: dict[str, str]) -> dict[str, Any] | None:
        sent = "; ".join(
            f"{name}={cookies[name]}"
            for name in self.cookies
            if name in cookies and _COOKIE_VALUE.fullmatch(cookies[name])
        )
        if not sent:
            return None
        key = hmac.digest(self._cache_key, sent.encode(), hashlib.sha256)
        cached = self._cache.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return dict(cached[1]) if cached[1] is not None else None
        found, ok = await self._ask(sent)
        if ok and self.ttl > 0:
            self._cache[key] = (time.monotonic() + self.ttl, found)
            self._cache.move_to_end(key)
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return found

    async def _ask(self, cookie_header: str) -> tuple[dict[str, Any] | None, bool]:
        """The actor, and whether the answer was a real one (worth caching)."""
        if self._client is None:  # made on the serving loop, on first use
            self._client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
        try:
            actor = await ask_whoami(
                self._client, self.api_url, cookie_header, time_limit=self.timeout
            )
        except WhoamiFailed as error:
            log.warning(
                "sign-in server %s %s: this Datasette request is anonymous", self._shown, error
            )
            return None, False
        if actor is not None and not isinstance(actor["id"], str):  # Datasette's ids are text
            log.warning(
                "sign-in server %s answered an actor without a text id: "
                "this Datasette request is anonymous",
                self._shown,
            )
            return None, False
        return actor, True

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def is_http_url(text: str) -> bool:
    try:
        return text.startswith(("http://", "https://")) and bool(httpx.URL(text).host)
    except httpx.InvalidURL:
        return False
