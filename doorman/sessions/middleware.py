"""``SessionMiddleware``: pure ASGI sessions for any framework, or none."""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Sequence
from typing import Literal, NamedTuple

from .._answers import send_error
from .._scope import COOKIE_NAME as _TOKEN
from .._types import ASGIApp, Message, Receive, Scope, Send
from ..exceptions import ConfigError, SessionTooLarge, StoreError, WeakSecretWarning
from ..signing import MAKE_A_SECRET, MIN_SECRET_LENGTH, normalize_secrets
from ..stores.base import SessionStore
from ..stores.cookie import CookieStore
from .legacy import StarletteCookieReader
from .policy import DELETE_COOKIE, CookieUpdate, SessionPolicy
from .session import Session
from .signer import SessionSigner

__all__ = ["MAX_COOKIE_BYTES", "SessionMiddleware"]

log = logging.getLogger("doorman.sessions")
security_log = logging.getLogger("doorman.security")

#: Browsers keep cookies up to about 4096 bytes; 4093 is the size every one keeps.
MAX_COOKIE_BYTES = 4093
#: Longer cookie values are not even verified: no valid doorman cookie is that long.
_MAX_VALUE_BYTES = 4096
#: At most this many same-name cookies are tried (cookie tossing from a sibling domain).
_MAX_CANDIDATES = 3
_ATTRIBUTE = re.compile(r"[\x21-\x3a\x3c-\x7e]*")  # printable ASCII, no ";"

_UNAVAILABLE_TEXT = "Service unavailable: the session store did not answer."
_VARY_COOKIE = (b"vary", b"Cookie")
Header = tuple[bytes, bytes]


class SessionMiddleware:
    """Puts a ``Session`` in ``scope["session"]``; saves it and sets the cookie on the way out.

    A drop-in for Starlette's ``SessionMiddleware``: its arguments (``secret_key``,
    ``session_cookie``, ``max_age``, ``path``, ``same_site``, ``https_only``, ``partitioned``,
    ``domain``) mean the same here. With ``secret_key`` the cookie keeps Starlette's
    name, ``session``; a short secret is accepted with a ``WeakSecretWarning``; and
    cookies Starlette signed are carried over once, re-issued in doorman's format.
    doorman's own spelling is ``secret=``, whose cookie is ``doorman_session``.

    ``secret`` may be a list, newest first: the newest signs, all verify.
    The cookie gets ``Secure`` on https (and wss) requests even without
    ``https_only``. ``store`` defaults to the signed-cookie store.
    """

    def __init__(
        self,
        app: ASGIApp,
        secret_key: str | Sequence[str] | None = None,
        session_cookie: str | None = None,
        max_age: int | None = 14 * 24 * 60 * 60,
        path: str = "/",
        same_site: Literal["lax", "strict", "none"] = "lax",
        https_only: bool = False,
        domain: str | None = None,
        partitioned: bool = False,
        *,
        secret: str | Sequence[str] | None = None,
        store: SessionStore | None = None,
        idle_timeout: int | None = None,
        absolute_timeout: int | None = None,
        save_every_request: bool = False,
        lazy: bool = False,
    ) -> None:
        if (secret is None) == (secret_key is None):
            raise ConfigError(
                "SessionMiddleware needs exactly one of secret= (doorman) or "
                "secret_key= (Starlette's name)"
            )
        if secret_key is not None and not isinstance(secret_key, str | bytes | Sequence):
            secret_key = str(secret_key)  # Starlette's `Secret` wrapper, read as Starlette does
        if session_cookie is None:
            session_cookie = "session" if secret_key is not None else "doorman_session"
        starlette = secret_key is not None  # Starlette's spelling: its ways where they differ
        if secret_key is not None:
            keys = _starlette_keys(secret_key)
            signer = SessionSigner(keys, min_length=1)
            legacy = StarletteCookieReader(keys, max_age)
        else:
            signer, legacy = SessionSigner(secret), None  # type: ignore[arg-type]
        self.app = app
        self.save_every_request = save_every_request
        self.lazy = lazy
        self.cookie_name = _check_cookie_name(session_cookie)
        self._cookie_bytes = session_cookie.encode() + b"="
        self.policy = SessionPolicy(
            store=store if store is not None else CookieStore(),
            signer=signer,
            # Starlette takes any max_age; 0 or less makes sessions that end at once.
            max_age=_check_seconds("max_age", max_age, allow_none=True, any_int=starlette),
            idle_timeout=_check_seconds("idle_timeout", idle_timeout, allow_none=True),
            absolute_timeout=_check_seconds("absolute_timeout", absolute_timeout, allow_none=True),
            legacy=legacy,
        )
        # In-process stores load as the Session is made; network stores before the app,
        # unless lazy.
        self._loads_before_app = self.policy.load_nowait is None and not lazy
        if isinstance(same_site, str):
            same_site = same_site.lower()  # type: ignore[assignment]  # Starlette takes "Lax" too
        # Browsers ignore SameSite=None and Partitioned cookies that are not Secure.
        self._always_secure = https_only or same_site == "none" or partitioned
        # With Starlette's spelling, its attribute spelling too: the same header, byte for
        # byte where it can be, for code and tests that read it as a string.
        spelling = _STARLETTE_SPELLING if starlette else _SPELLING
        self._attributes = _cookie_attributes(
            path, same_site, domain, partitioned, secure=False, spelling=spelling
        )
        self._secure_attributes = _cookie_attributes(
            path, same_site, domain, partitioned, secure=True, spelling=spelling
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        try:
            session = scope["session"] = await self.session_for(scope)
        except StoreError as exc:
            await _refuse(scope, send, exc)
            return
        started = refused = False
        every_request = self.save_every_request

        async def send_with_cookie(message: Message) -> None:
            nonlocal started, refused
            if started:  # the body: as it comes, unless a 503 replaced the response
                if not refused:
                    await send(message)
                return
            message_type = message["type"]
            if message_type == "http.response.start":
                touched = session.accessed or session.modified or session.cookie_present
                ok = message["status"] < 500
            elif message_type == "websocket.accept":
                touched = ok = True
            else:
                await send(message)
                return
            if touched:
                try:
                    update = None  # only read, or never touched: nothing to save
                    if session.needs_commit(every_request):
                        update = await session.commit(save=ok, every_request=every_request)
                except StoreError as exc:
                    # Saving failed. Raising would reach the app, which (Starlette) answers
                    # 500 "response already started"; answer 503 here instead.
                    started = refused = True
                    await _refuse(scope, send, exc)
                    return
                added = self._headers_for(session, update, scope)
                if added:
                    headers = message.get("headers")
                    if type(headers) is not list:  # in place when we can, as Starlette's own does
                        headers = message["headers"] = list(headers or ())
                    headers.extend(added)
            started = True
            await send(message)

        try:
            await self.app(scope, receive, send_with_cookie)
        except StoreError as exc:
            if refused:
                return
            if started:
                raise
            await _refuse(scope, send, exc)
            return
        if refused:
            return
        if kind == "websocket" and started and session.modified and session.key is not None:
            await session.commit()  # changes after the handshake: the id stays, the data is saved

    async def session_for(self, scope: Scope) -> Session:
        """The request's ``Session``, loaded unless lazy; ``StoreError`` if the store is down.

        One that this middleware made for the request already (``scope["session"]``:
        the forward-auth fast path's, which looked at it first) is the one: a cookie
        is read, and a forged one logged, once per request.
        """
        session = scope.get("session")
        if type(session) is Session and session._policy is self.policy:
            return session
        session = Session(
            self.policy, _read_cookies(scope["headers"], self._cookie_bytes), scope.get("client")
        )
        if self._loads_before_app and not session.loaded:
            await session.load()
        return session

    async def headers_after_read(self, session: Session, scope: Scope) -> list[Header]:
        """What this middleware adds to an answer (below 500) for a session the app only read.

        The session is saved first where it must be (an idle timeout renews the
        cookie); ``StoreError`` if that fails. For answers made beside the app,
        as the forward-auth fast path's are.
        """
        update = None
        if session.needs_commit(self.save_every_request):
            update = await session.commit(save=True, every_request=self.save_every_request)
        return self._headers_for(session, update, scope)

    def _headers_for(
        self, session: Session, update: CookieUpdate | None, scope: Scope
    ) -> list[Header]:
        """``Vary: Cookie`` for a session that was read, ``Set-Cookie`` for a new cookie."""
        added = [_VARY_COOKIE] if session.accessed else []
        if update is not None:
            secure = self._always_secure or scope.get("scheme") in ("https", "wss")
            added.append((b"set-cookie", self._cookie_header(session, update, secure)))
        return added

    async def refuse(self, scope: Scope, send: Send, error: StoreError) -> None:
        """The 503 this middleware answers when its store fails: closed, never signed in."""
        await _refuse(scope, send, error)

    def _cookie_header(self, session: Session, update: CookieUpdate, secure: bool) -> bytes:
        try:
            return self._set_cookie(update, secure)
        except SessionTooLarge:
            if not session.carried_over:
                raise  # the app stored too much: a programming error, said loudly
            # Starlette never limits its cookie; one near 4 KB may not fit doorman's
            # format. The cookie comes from the client: no 500, the session goes.
            log.warning(
                "a session carried over from Starlette is too large for a doorman cookie "
                "and was dropped: its user signs in again (a server-side store, SQLStore "
                "or RedisStore, keeps sessions of any size)"
            )
            return self._set_cookie(DELETE_COOKIE, secure)

    def _set_cookie(self, update: CookieUpdate, secure: bool) -> bytes:
        attributes = self._secure_attributes if secure else self._attributes
        if update is DELETE_COOKIE:
            text = (
                f"{self.cookie_name}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT{attributes}"
            )
        elif update.max_age is None:
            text = f"{self.cookie_name}={update.value}{attributes}"
        else:
            text = f"{self.cookie_name}={update.value}; Max-Age={update.max_age}{attributes}"
        if len(text) > MAX_COOKIE_BYTES:
            raise SessionTooLarge(
                f"the session cookie would be {len(text)} bytes and browsers drop cookies over "
                f"{MAX_COOKIE_BYTES}; keep less in the session, or use a server-side store "
                "(SQLStore, RedisStore) that puts only an id in the cookie"
            )
        return text.encode("latin-1")


def _read_cookies(headers: Sequence[tuple[bytes, bytes]], needle: bytes) -> list[str] | None:
    """Values of every cookie whose ``name=`` is ``needle``, in header order."""
    found: list[str] | None = None
    for header, value in headers:
        if header != b"cookie":
            continue
        start = value.find(needle)
        while start != -1:
            if start:  # a real name follows ";" and blanks: not "xdoorman_session="
                before = start - 1
                while before >= 0 and value[before] in (32, 9):
                    before -= 1
                if before >= 0 and value[before] != 59:  # ";"
                    start = value.find(needle, start + 1)
                    continue
            end = value.find(b";", start)
            begin = start + len(needle)
            cookie = (value[begin:] if end == -1 else value[begin:end]).strip()
            if 0 < len(cookie) <= _MAX_VALUE_BYTES:
                if found is None:
                    found = [cookie.decode("latin-1")]
                else:
                    found.append(cookie.decode("latin-1"))
                    if len(found) == _MAX_CANDIDATES:
                        return found
            if end == -1:
                break
            start = value.find(needle, end)
    return found


async def _refuse(scope: Scope, send: Send, error: StoreError) -> None:
    """Fail closed: a store that cannot be read never yields a signed-in answer."""
    log.error("session store unavailable, answering 503: %s", error)
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1013})  # "try again later"
        return
    await send_error(scope, send, 503, _UNAVAILABLE_TEXT, [(b"retry-after", b"5")])


class _Spelling(NamedTuple):
    path: str
    http_only: str
    same_site: str
    secure: str
    domain: str
    partitioned: str


_SPELLING = _Spelling("Path", "HttpOnly", "SameSite", "Secure", "Domain", "Partitioned")
_STARLETTE_SPELLING = _Spelling("path", "httponly", "samesite", "secure", "domain", "partitioned")


def _cookie_attributes(
    path: str,
    same_site: str,
    domain: str | None,
    partitioned: bool,
    *,
    secure: bool,
    spelling: _Spelling = _SPELLING,
) -> str:
    if not path.startswith("/") or not _ATTRIBUTE.fullmatch(path):
        raise ConfigError(f"path={path!r}: a cookie path starts with / and has no ; or spaces")
    if same_site not in ("lax", "strict", "none"):
        raise ConfigError(f"same_site={same_site!r}: use 'lax', 'strict' or 'none'")
    if spelling is _SPELLING:
        same_site = same_site.capitalize()
    text = f"; {spelling.path}={path}; {spelling.http_only}; {spelling.same_site}={same_site}"
    if secure:
        text += f"; {spelling.secure}"
    if domain is not None:
        if not domain or not _ATTRIBUTE.fullmatch(domain):
            raise ConfigError(f"domain={domain!r}: not a cookie domain")
        text += f"; {spelling.domain}={domain}"
    if partitioned:
        text += f"; {spelling.partitioned}"
    return text


def _check_cookie_name(name: str) -> str:
    if not _TOKEN.fullmatch(name):
        raise ConfigError(
            f"session_cookie={name!r}: a cookie name is letters, digits and !#$%&'*+-.^_`|~"
        )
    return name


def _check_seconds(
    option: str, value: int | None, *, allow_none: bool, any_int: bool = False
) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or (value <= 0 and not any_int):
        raise ConfigError(f"{option}={value!r}: give a whole number of seconds above 0, or None")
    return value


def _starlette_keys(secret_key: str | bytes | Sequence[str | bytes]) -> list[bytes]:
    """Starlette's secret(s), as bytes: short ones too, as Starlette takes them, with a warning."""
    keys = normalize_secrets(secret_key, min_length=1)
    for position, key in enumerate(keys, 1):
        if len(key) < MIN_SECRET_LENGTH:
            which = "the secret" if len(keys) == 1 else f"secret #{position}"
            message = (
                f"SessionMiddleware(secret_key=...): {which} is {len(key)} characters long, "
                f"and anyone who guesses it can forge any session; doorman asks for at least "
                f"{MIN_SECRET_LENGTH} (and refuses shorter ones given as secret=). Make one "
                f"with: {MAKE_A_SECRET}"
            )
            warnings.warn(message, WeakSecretWarning, stacklevel=3)
            security_log.warning("%s", message)
            break
    return keys
