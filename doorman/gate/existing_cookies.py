"""``ExistingCookiesGate``: sign-in for an app on another host than the sign-in server.

The gate forwards the cookies it is told about (and only those) to the sign-in
server's ``/-/whoami``, and puts the answer in ``scope["actor"]``. The verdict
is cached for ``ttl`` seconds in a cookie of the gate's own, signed and bound
to the forwarded cookies, so a signed-in browser costs at most one upstream
call per ``ttl``, and a new session at the sign-in server is asked about
afresh. A browser that is not signed in goes to the login page with a signed
``next``; an API client gets 401. An upstream that does not answer sensibly
gives 503: the gate fails closed.

Needs httpx (``pip install doorman[gate]``), and neither Starlette nor a database.
"""

from __future__ import annotations

import hmac
import http.cookiejar
import importlib
import ipaddress
import json
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

from .._extras import needs_extra
from .._identity import drop_identity_headers
from .._paths import unambiguous_path
from .._scope import header
from .._types import ASGIApp, Message, Receive, Scope, Send
from .._whoami import WhoamiFailed, ask_whoami, valid_actor
from ..auth.actors import set_actor
from ..auth.websockets import refuse_handshake, refused_origin
from ..exceptions import BadSignature, ConfigError, SignatureExpired
from ..origins import own_origin
from ..redirects import NextSigner
from ..signing import Signer, TimestampSigner, b64decode, b64encode
from .answers import adding_headers, cookies_of, refuse, send_json
from .options import (
    checked_cookie_name,
    checked_list,
    checked_network,
    checked_origins,
    checked_public_path,
    checked_url,
)

if TYPE_CHECKING:
    import httpx

__all__ = ["ExistingCookiesGate"]

log = logging.getLogger("doorman.gate")
security_log = logging.getLogger("doorman.security")

_MAX_COOKIE = 4000  # browsers drop bigger cookies silently
_MAX_NEXT = 4000  # the sign-in server refuses a longer ``next``
_HOST = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


class ExistingCookiesGate:
    """Lets through only requests that the sign-in server at ``api_url`` says are signed in.

    ``original_cookies`` are the names of the cookies to forward (``doorman_session``,
    or Django's ``sessionid``). ``secret`` (newest first) must be the sign-in
    server's, so that its login page trusts the ``next`` the gate signs.
    ``public_paths`` pass without asking anyone: an entry ending in ``/`` is a
    prefix, any other an exact path. ``X-Forwarded-Proto`` and
    ``X-Forwarded-Host`` count only from ``trusted_proxies`` (addresses or networks).
    A websocket handshake from a page whose ``Origin`` is neither the app's own
    nor one of ``allowed_origins`` is refused (``doorman.auth.websockets``).
    ``http_client`` replaces the gate's own pooled ``httpx.AsyncClient`` (its
    owner closes it); ``clock`` replaces ``time.time``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        api_url: str,
        auth_redirect_url: str,
        original_cookies: Sequence[str],
        secret: str | Sequence[str],
        cookie_name: str = "doorman_gate",
        ttl: float = 60,
        require_auth: bool = True,
        public_paths: Sequence[str] = (),
        trusted_proxies: Sequence[str] = (),
        allowed_origins: Sequence[str] = (),
        timeout: float = 5.0,
        http_client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # Here, not at import: `import doorman.gate` works with the core install alone,
        # and an app that builds a gate without httpx still does not start.
        with needs_extra("gate", "ExistingCookiesGate"):
            importlib.import_module("httpx")
        self.app = app
        self.api_url = checked_url("api_url", api_url)
        self.auth_redirect_url = checked_url("auth_redirect_url", auth_redirect_url)
        self.cookie_name = checked_cookie_name("cookie_name", cookie_name)
        names = [
            checked_cookie_name("original_cookies", name)
            for name in checked_list("original_cookies", original_cookies)
        ]
        if not names or cookie_name in names:
            raise ConfigError(
                f"original_cookies = {list(original_cookies)!r}: name the sign-in server's "
                f"session cookie, such as ['doorman_session'], and not {cookie_name!r}"
            )
        self.original_cookies = frozenset(names)
        if not ttl > 0 or not timeout > 0:
            raise ConfigError(f"ttl = {ttl!r}, timeout = {timeout!r}: both must be positive")
        self.ttl, self.timeout = ttl, timeout
        self.require_auth = require_auth
        self.public_paths = tuple(
            checked_public_path(path) for path in checked_list("public_paths", public_paths)
        )
        self.trusted_proxies = tuple(
            checked_network(proxy) for proxy in checked_list("trusted_proxies", trusted_proxies)
        )
        self.allowed_origins = checked_origins(checked_list("allowed_origins", allowed_origins))
        secrets = [secret] if isinstance(secret, str) else list(secret)
        self._verdicts = TimestampSigner(secrets, salt="doorman.gate")
        self._binder = Signer(secrets, salt="doorman.gate.binding")
        self._next_signer = NextSigner(secrets)
        self._given_client = http_client
        self._own_client: httpx.AsyncClient | None = None
        self._clock = clock
        parts = urlsplit(self.api_url)
        self._upstream = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, receive, self._closing_on_shutdown(send))
            return
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        if kind == "websocket" and (refused := self._cross_origin(scope)) is not None:
            await refuse_handshake(scope, receive, send, refused)
            return
        drop_identity_headers(scope)
        cookies = cookies_of(scope)
        forwarded = "; ".join(f"{n}={v}" for n, v in cookies if n in self.original_cookies)
        binding = self._binding(forwarded) if forwarded else ""
        gate_cookies = [value for name, value in cookies if name == self.cookie_name]
        found, actor = self._cached_verdict(gate_cookies, binding)
        if self._is_public(scope):
            set_actor(scope, actor)
            await self.app(scope, receive, send)
            return
        new_cookie = None
        if not found and forwarded:
            try:
                actor = await self._ask_upstream(forwarded)
            except WhoamiFailed as error:
                log.error("the sign-in server at %s %s; answering 503", self._upstream, error)
                await refuse(kind, send, 503, "The sign-in server is unavailable; try again.")
                return
            if actor is not None or not self.require_auth:
                new_cookie = self._verdict_cookie(scope, actor, binding)
        if new_cookie is None and gate_cookies and not found:
            new_cookie = self._cookie_header(scope, "", max_age=0)  # stale: drop it
        if actor is None and self.require_auth:
            await self._turn_away(scope, send, new_cookie)
            return
        set_actor(scope, actor)
        await self.app(scope, receive, adding_headers(send, new_cookie))

    async def aclose(self) -> None:
        """Close the gate's own HTTP client (lifespan shutdown does it too)."""
        client, self._own_client = self._own_client, None
        if client is not None:
            await client.aclose()

    # -- the verdict cookie ----------------------------------------------------------

    def _binding(self, forwarded: str) -> str:
        """A MAC of what was forwarded and where: a verdict holds for these cookies only."""
        return self._binder.sign(f"{self._upstream}\x00{forwarded}").rpartition(".")[2]

    def _cached_verdict(
        self, gate_cookies: list[str], binding: str
    ) -> tuple[bool, dict[str, Any] | None]:
        """``(True, actor)`` from a valid gate cookie bound to ``binding``, or ``(False, None)``."""
        if not binding:
            return False, None
        for value in gate_cookies:
            try:
                payload, _ = self._verdicts.unsign_timestamp(
                    value, max_age=self.ttl, now=self._clock()
                )
                verdict = json.loads(b64decode(payload))
            except SignatureExpired:
                continue
            except (BadSignature, ValueError, RecursionError):
                security_log.info("ignoring a gate cookie with a bad signature or payload")
                continue
            if not isinstance(verdict, dict) or not isinstance(verdict.get("bind"), str):
                continue
            if not hmac.compare_digest(verdict["bind"].encode(), binding.encode()):
                continue  # another session's verdict: sign-out, or a different user since
            actor = verdict.get("actor")
            if actor is None or valid_actor(actor):
                return True, actor
        return False, None

    def _verdict_cookie(self, scope: Scope, actor: dict[str, Any] | None, binding: str) -> bytes:
        text = json.dumps({"actor": actor, "bind": binding}, separators=(",", ":"))
        value = self._verdicts.sign(b64encode(text.encode()), now=self._clock())
        if len(value) > _MAX_COOKIE:
            log.warning("the actor is too large for the gate cookie: one upstream call a request")
            return self._cookie_header(scope, "", max_age=0)
        return self._cookie_header(scope, value, max_age=math.ceil(self.ttl))

    def _cookie_header(self, scope: Scope, value: str, *, max_age: int) -> bytes:
        secure = "; Secure" if self._scheme(scope) == "https" else ""
        return (
            f"{self.cookie_name}={value}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Lax{secure}"
        ).encode("latin-1")

    # -- the sign-in server ----------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        import httpx

        if self._given_client is not None:
            return self._given_client
        if self._own_client is None:
            # The client must never keep a cookie from one answer for the next user.
            no_cookies = http.cookiejar.CookieJar(
                http.cookiejar.DefaultCookiePolicy(allowed_domains=[])
            )
            self._own_client = httpx.AsyncClient(cookies=no_cookies, follow_redirects=False)
        return self._own_client

    async def _ask_upstream(self, forwarded: str) -> dict[str, Any] | None:
        """The actor the sign-in server sees for these cookies; ``WhoamiFailed`` if unsure."""
        return await ask_whoami(self._client(), self.api_url, forwarded, time_limit=self.timeout)

    def _closing_on_shutdown(self, send: Send) -> Send:
        async def send_and_close(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self.aclose()
            await send(message)

        return send_and_close

    # -- the request -----------------------------------------------------------------

    def _is_public(self, scope: Scope) -> bool:
        path = scope["path"]
        if not self.public_paths or unambiguous_path(path, scope.get("raw_path")) is None:
            return False
        return any(
            path.startswith(public) if public.endswith("/") else path == public
            for public in self.public_paths
        )

    def _cross_origin(self, scope: Scope) -> str | None:
        """The ``Origin`` of a page that may not open this websocket; None to let it in."""
        own = own_origin(scope, scheme=self._scheme(scope), host=self._host(scope))
        return refused_origin(scope, self.allowed_origins, own)

    def _trusts_peer(self, scope: Scope) -> bool:
        client = scope.get("client")
        if not self.trusted_proxies or not client:
            return False
        try:
            peer = ipaddress.ip_address(client[0])
        except ValueError:
            return False
        return any(peer in network for network in self.trusted_proxies)

    def _scheme(self, scope: Scope) -> str:
        scheme = str(scope.get("scheme", "http")).replace("ws", "http")
        if self._trusts_peer(scope):
            forwarded = (header(scope, b"x-forwarded-proto") or "").split(",")[0].strip().lower()
            if forwarded in ("http", "https"):
                return forwarded
        return scheme

    def _host(self, scope: Scope) -> str:
        """The host (and port) the browser asked for, as far as it can be told."""
        host = header(scope, b"host") or ""
        if self._trusts_peer(scope):
            host = (header(scope, b"x-forwarded-host") or "").split(",")[0].strip() or host
        return host

    def _original_url(self, scope: Scope) -> str | None:
        """The absolute URL the browser asked for, or None when it cannot be told."""
        host = self._host(scope)
        if not _HOST.fullmatch(host):
            return None
        raw_path = scope.get("raw_path")
        if isinstance(raw_path, bytes) and raw_path.startswith(b"/"):
            path = raw_path.split(b"?")[0].decode("latin-1")
        else:
            path = quote(scope.get("root_path", "") + scope["path"])
        query = scope.get("query_string", b"").decode("latin-1")
        return f"{self._scheme(scope)}://{host}{path}" + (f"?{query}" if query else "")

    async def _turn_away(self, scope: Scope, send: Send, cookie: bytes | None) -> None:
        """A browser to the login page, anything else 401 (a websocket: close 1008)."""
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        extra = [(b"set-cookie", cookie)] if cookie else []
        browser = scope["method"] in ("GET", "HEAD") and "text/html" in (
            header(scope, b"accept") or ""
        )
        if not browser:
            await send_json(send, 401, {"error": "Sign in first."}, extra)
            return
        location = self.auth_redirect_url
        url = self._original_url(scope)
        if url is not None and len(url) <= _MAX_NEXT:
            query = urlencode({"next": url, "next_sig": self._next_signer.sign(url)})
            location += ("&" if "?" in location else "?") + query
        headers = [(b"location", location.encode("latin-1", "replace")), *extra]
        await send_json(send, 302, None, headers)
