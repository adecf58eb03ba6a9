"""``Session``: the dict a request sees in ``scope["session"]``, and its life cycle."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from .._scope import scope_of
from ..exceptions import BadSignature, SessionDataError, SessionInterrupted, SessionNotLoaded
from . import _json
from ._tracked import TrackedDict
from .policy import DEFAULT_SERVER_LIFETIME, DELETE_COOKIE, CookieUpdate, SessionPolicy

__all__ = [
    "DELETE_COOKIE",
    "CookieUpdate",
    "Session",
    "SessionPolicy",
    "clear_session",
    "get_session",
    "load_session",
]

log = logging.getLogger("doorman.sessions")
security_log = logging.getLogger("doorman.security")


class Session(TrackedDict):
    """Session data, a ``dict``, plus the bookkeeping to save it only when needed.

    With in-process stores (cookie, memory) it loads when it is made; with
    network stores the middleware loads it before the app runs, unless it is
    lazy, in which case ``await load_session(request)`` must come first.
    """

    # What every request with a session sets lives in slots (fast to read and write,
    # no instance dict to make); the rest keeps its default on the class until a
    # session changes it.
    __slots__ = (
        "_candidates",
        "_client",
        "_created",
        "_key",
        "_loaded",
        "_policy",
        "_saved_at",
        "_signed",
        "accessed",
        "modified",
    )

    _expiry: int | None = None
    _until: int | None = None
    _sid: str | None = None
    _cycle = _ended = False
    _doomed: tuple[str, ...] = ()
    _carried: dict[str, Any] | None = None  # a Starlette session, read from its cookie
    #: True when this session came from a cookie that Starlette's middleware signed.
    carried_over = False

    def __init__(
        self, policy: SessionPolicy, cookies: list[str] | None = None, client: Any = None
    ) -> None:
        self._policy = policy
        self._candidates = cookies or ()
        self._client = client  # the scope's (host, port), for log lines
        self.accessed = self.modified = False
        self._loaded = not cookies
        self._key: str | None = None
        self._created = self._saved_at = 0
        self._signed: tuple[str, str] | None = None  # a key and its cookie, as signing gives it
        if cookies and policy.load_nowait is not None:
            self._load_with(policy.load_nowait)  # no I/O; and C code must not find it empty

    # -- loading -----------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._loaded

    @property
    def cookie_present(self) -> bool:
        """True when the request carried a session cookie (valid or not)."""
        return bool(self._candidates)

    def _ensure(self) -> None:
        if self._loaded:
            return
        load_nowait = self._policy.load_nowait
        if load_nowait is None:
            raise SessionNotLoaded(
                "this session is loaded lazily: call `await doorman.load_session(request)` "
                "before using it, or build SessionMiddleware with lazy=False"
            )
        self._load_with(load_nowait)

    def _load_with(self, load_nowait: Callable[[str], str | None]) -> None:
        """Load from the first cookie that doorman signed and the store knows."""
        signer = self._policy.signer
        for raw in self._candidates:
            try:
                key, current = signer.unsign_newest(raw)
            except BadSignature:
                self._refuse(raw)
                continue
            if self._adopt(key, load_nowait(key)):
                if current:
                    self._signed = (key, raw)
                break
        else:
            if self._carried is not None:
                self._carry_over(self._carried)
        self._loaded = True

    async def load(self) -> None:
        """Load from the store if not done yet; ``StoreError`` when it is down."""
        if self._loaded:
            return
        signer, store = self._policy.signer, self._policy.store
        for raw in self._candidates:
            try:
                key, current = signer.unsign_newest(raw)
            except BadSignature:
                self._refuse(raw)
                continue
            if self._adopt(key, await store.load(key)):
                if current:
                    self._signed = (key, raw)
                break
        else:
            if self._carried is not None:
                self._carry_over(self._carried)
        self._loaded = True

    def _refuse(self, raw: str) -> None:
        """Log a cookie doorman did not sign; keep a Starlette session it carries, if any."""
        policy = self._policy
        client = self._client[0] if self._client else "-"
        if policy.legacy is None:
            security_log.warning(
                "session cookie with a bad signature from %s (forged, damaged, "
                "or signed by a secret that was since removed)",
                client,
            )
        elif self._carried is None and (data := policy.legacy.loads(raw)) is not None:
            self._carried = data
        else:
            # Switching from Starlette leaves many cookies that no longer count (expired,
            # other secrets); a warning for each, on every request, would bury real ones.
            log.debug("session cookie from %s not signed with this secret, or expired", client)

    def _carry_over(self, data: dict[str, Any]) -> None:
        """Make a Starlette session a doorman one: saved anew, with a cookie in doorman's format."""
        dict.update(self, data)
        self._carried = None
        self.carried_over = self.modified = True
        log.debug("carrying over a Starlette session cookie from %s", self._client or "-")

    def _adopt(self, key: str, payload: str | None) -> bool:
        if payload is None:
            return False
        try:
            record = _json.decode(payload)
            data, created, saved_at = record["d"], record.get("c", 0), record.get("a", 0)
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
            record = data = None  # not JSON, not a record, or nested past the parser's depth
        if type(data) is not dict or type(created) is not int or type(saved_at) is not int:
            log.warning("unreadable session payload in the store; starting a new session")
            return False
        policy = self._policy
        if policy.absolute_timeout or policy.idle_timeout:
            if not (created and saved_at):
                # A cookie saved while no timeout was set carries no times: whether it
                # is within the timeout cannot be known, so it does not count.
                log.info("session saved without its times, before a timeout was set; a new one")
                return False
            now = time.time()
            if (policy.absolute_timeout and created + policy.absolute_timeout <= now) or (
                policy.idle_timeout and saved_at + policy.idle_timeout <= now
            ):
                self._doomed += (key,)
                return False
        self._key = key
        dict.update(self, data)
        self._created, self._saved_at = created, saved_at
        if len(record) > 1 + 2 * policy.records_times:  # optional fields: paid for when used
            expiry, until, sid = record.get("x"), record.get("u"), record.get("i")
            self._expiry = expiry if type(expiry) is int else None
            self._until = until if type(until) is int else None
            self._sid = sid if type(sid) is str else None
        return True

    def __repr__(self) -> str:
        state = dict.__repr__(self) if self._loaded else "<not loaded>"
        return f"<Session {state} modified={self.modified}>"

    # -- life cycle --------------------------------------------------------

    @property
    def key(self) -> str | None:
        """The server-side session key, or None for a new or stateless session."""
        if not self._loaded:
            self._ensure()
        return None if self._policy.stateless else self._key

    def cycle_key(self) -> None:
        """Keep the data under a new key; the old key dies. Call it on login."""
        if not self._loaded:
            self._ensure()
        self.accessed = self.modified = True
        self._cycle = True
        self._created = int(time.time())

    def flush(self) -> None:
        """Drop the data and the key, server-side too. Call it on logout."""
        self._loaded = True  # whatever was stored is going away unread
        self.accessed = self.modified = True
        for raw in self._candidates:
            with contextlib.suppress(BadSignature):
                self._doomed += (self._policy.signer.unsign(raw),)
        if self._key is not None and self._key not in self._doomed:
            self._doomed += (self._key,)
        self._key = None
        dict.clear(self)
        self._cycle = False
        self._ended = True
        self._expiry = self._until = None

    def set_expiry(self, value: int | dt.timedelta | dt.datetime | None) -> None:
        """Override this session's lifetime.

        An int or timedelta: seconds after each save. ``0``: end when the
        browser closes. A datetime: end at that moment. ``None``: back to the
        middleware's ``max_age``.
        """
        if not self._loaded:
            self._ensure()
        self.accessed = self.modified = True
        self._expiry = self._until = None
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                raise ValueError("set_expiry() needs an aware datetime (with a tzinfo)")
            self._until = int(value.timestamp())
        elif isinstance(value, dt.timedelta):
            self._expiry = int(value.total_seconds())
        elif value is not None:
            self._expiry = int(value)

    @property
    def expire_at_browser_close(self) -> bool:
        if self._expiry is not None:
            return self._expiry == 0
        return self._until is None and self._policy.max_age is None

    def expires_at(self, now: float) -> float:
        """When a session saved at ``now`` ends on the server."""
        policy = self._policy
        lifetime = self._expiry if self._expiry is not None else policy.max_age
        if lifetime is None or (lifetime == 0 and self._expiry == 0):
            # A browser-session cookie: the server still ends it, by max_age at most.
            server_max_age = policy.max_age if policy.max_age and policy.max_age > 0 else None
            lifetime = (
                server_max_age
                or policy.idle_timeout
                or policy.absolute_timeout
                or DEFAULT_SERVER_LIFETIME
            )
        ends = now + lifetime
        if policy.idle_timeout:
            ends = min(ends, now + policy.idle_timeout)
        if policy.absolute_timeout:
            ends = min(ends, (self._created or now) + policy.absolute_timeout)
        if self._until is not None:
            ends = min(ends, self._until)
        return ends

    def needs_touch(self, now: float) -> bool:
        """True when an unmodified session must be re-saved to stay alive."""
        policy = self._policy
        return bool(
            policy.idle_timeout
            and self._key is not None
            and dict.__len__(self)
            and now - self._saved_at >= policy.touch_interval
        )

    def needs_commit(self, every_request: bool = False) -> bool:
        """False when ``commit()`` would do nothing: the session was only read."""
        return bool(self.modified or self._doomed or every_request or self._policy.idle_timeout)

    async def commit(
        self, *, save: bool = True, every_request: bool = False
    ) -> CookieUpdate | None:
        """Write pending changes to the store; say what the cookie should become.

        With ``save=False`` (the response is a 5xx) only deletions happen: a
        logout still ends the session, but half-done changes are not kept.
        """
        policy = self._policy
        if not (self.modified or self._doomed or every_request or policy.idle_timeout):
            return None  # a read-only request (needs_commit): the common case, and the fast one
        if every_request and not self._loaded:
            await self.load()  # refreshing a session the app never opened
        store = policy.store
        while self._doomed:
            doomed, self._doomed = self._doomed[0], self._doomed[1:]
            await store.delete(doomed)
        if not save or not dict.__len__(self):
            if self._ended or (save and self.modified):
                if self._key is not None:
                    await store.delete(self._key)
                    self._key = None
                return DELETE_COOKIE if self._candidates else None
            return None
        now = time.time()
        cycle = self._cycle
        if not (self.modified or every_request or cycle or self.needs_touch(now)):
            return None
        old = self._key
        if self._expiry is None and self._until is None and policy.fixed_lifetime is not None:
            expires_at, max_age = now + policy.fixed_lifetime, policy.max_age
        else:
            expires_at = self.expires_at(now)
            max_age = None if self.expire_at_browser_close else max(0, int(expires_at - now))
        try:
            if cycle and policy.stateless:
                # A stateless session has no key of its own; a new id makes a cycled one distinct.
                self._sid = secrets.token_urlsafe(12)
            if policy.save_nowait is not None:  # in-process: no coroutine to await
                key = policy.save_nowait(None if cycle else old, self.dump(now), expires_at)
            else:
                key = await store.save(None if cycle else old, self.dump(now), expires_at)
        except SessionInterrupted:
            log.info("session ended by another request while this one used it; not saved")
            self._key = None
            return DELETE_COOKIE
        if cycle and old is not None and not policy.stateless:
            await store.delete(old)
        self._key, self.modified, self._saved_at = key, False, int(now)
        if cycle:
            self._cycle = False
        signed = self._signed
        if signed is None or signed[0] != key:
            signed = self._signed = (key, policy.signer.sign(key))
        return CookieUpdate(signed[1], max_age)

    def dump(self, now: float) -> str:
        """The payload to store: JSON, never pickle.

        ``{"d": data}``, then ``"c"`` and ``"a"`` (when the session began and was
        saved) where the policy keeps times, and ``"x"``, ``"u"``, ``"i"`` once set.
        Only the data goes through the JSON encoder: the rest are ints and a token.
        """
        data = dict(dict.items(self))  # a plain copy: encoding self would set `accessed`
        try:
            record = '{"d":' + _json.encode(data)
        except (TypeError, ValueError, RecursionError) as exc:  # RecursionError: a cycle
            raise _explain_unserialisable(data) from exc
        if self._policy.records_times:
            record += f',"c":{self._created or int(now)},"a":{int(now)}'
        if self._expiry is not None:
            record += f',"x":{self._expiry}'
        if self._until is not None:
            record += f',"u":{self._until}'
        if self._sid is not None:
            record += ',"i":' + _json.encode(self._sid)
        return record + "}"


def _explain_unserialisable(data: dict[str, Any]) -> SessionDataError:
    for name, value in data.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            return SessionDataError(
                f"session[{name!r}] holds a {type(value).__name__} that JSON cannot store "
                f"({exc}); sessions keep str, int, float, bool, None, and lists and "
                "dicts (with str keys) of these"
            )
    return SessionDataError("session data cannot be stored as JSON")


def get_session(conn: Any) -> Session:
    """The session of a Starlette/FastAPI request, a websocket or a bare ASGI scope."""
    session = scope_of(conn).get("session")
    if not isinstance(session, Session):
        raise LookupError(
            "no doorman session in this scope: is doorman.SessionMiddleware installed "
            "around this app?"
        )
    return session


async def load_session(conn: Any) -> Session:
    """Load the session (needed first with ``lazy=True``) and return it."""
    session = get_session(conn)
    await session.load()
    return session


def clear_session(conn: Any) -> None:
    """End the session: its data and its server-side record go, the cookie is deleted."""
    get_session(conn).flush()
