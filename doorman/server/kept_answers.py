"""Forward-auth answers kept while what they rest on stands: signed-in sessions, API tokens.

A proxy asks ``/-/auth`` for every request of a page, with the same session
each time. The answer for a signed-in session rests on four things:

- the session's sign-in keys (``_auth_user_id``, ``_auth_hash``, ``_auth_signin``),
  read afresh from the session on every request;
- the user and sign-in rows, as the accounts cache holds them: the same entry
  (``doorman.accounts.users.signed_in_cache``), under the same change epoch, is the same rows, and
  any change that could end or change a session moves the epoch
  (``doorman.db.epochs``; on PostgreSQL, the read that answers this request);
- the sign-in's ``last_seen``, which a request notes once a minute: past that,
  the full path runs and notes it;
- the permission rules, fixed at start-up. Permission plugins may answer
  differently each time: with one installed, nothing is kept;
- the session's ``amr`` values (``X-Doorman-Auth-Methods``), read afresh from
  the session too: a kept answer is one session's, never another's, and a
  ``?require=`` is checked against the methods the session holds now.

``KeptAnswers.remember`` keeps the headers of a 200 the full path just made,
once it has checked them against the cache entry itself; ``answer_for`` hands
them to ``ForwardAuthEntrance`` (``doorman.server.fast_auth``) while all four
stand, and None otherwise, when the full path answers. So a kept answer is the
answer the full path would give.
``KeptTokenAnswers`` and ``TokenShortcut`` do the same for ``/-/whoami`` with an
API token, whose answer rests on the token cache's entry, the token's expiry
and its ``last_used_at``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from .._types import ASGIApp, Receive, Scope, Send
from ..accounts.signins import LAST_SEEN_RESOLUTION, signin_id
from ..accounts.tokens import LAST_USED_RESOLUTION, parse_token, token_cache
from ..accounts.users import signed_in_cache
from ..auth.auth_methods import meets, requirements, session_auth_methods
from ..auth.middleware import (
    SESSION_AUTH_HASH,
    SESSION_SIGNIN,
    SESSION_USER_ID,
    bearer_token,
    token_actor,
)
from ..auth.signed_in import SESSION_AUTH_METHODS
from ..core import Doorman
from ..db.epochs import epoch_of
from ..sessions import Session

__all__ = ["KeptAnswers", "KeptTokenAnswers", "TokenShortcut"]

#: Most answers kept: one per signed-in session a proxy asked about lately.
MAX_KEPT = 10_000
_permissions_log = logging.getLogger("doorman.permissions")


@dataclass(frozen=True, slots=True)
class _Kept:
    user_id: int
    auth_hash: str
    signin: str  # the sign-in's id, the accounts cache's key
    rows: object  # the cache's entry itself: the user and the sign-in's last_seen
    last_seen: float
    methods: list[str]
    stored_methods: object  # the session's value as it was: compared as is, a cheap check
    headers: list[tuple[bytes, bytes]]


class KeptAnswers:
    """The 200 headers of signed-in sessions, by sign-in key, and what they rest on."""

    def __init__(self, doorman: Doorman) -> None:
        self.doorman = doorman
        self._epoch = epoch_of(doorman.engine)
        self._rows = signed_in_cache(doorman.engine)
        self._kept: dict[str, _Kept] = {}

    def usable(self) -> bool:
        """False while a permission plugin is installed, or permission decisions are logged."""
        hook = self.doorman.plugins.hook.permission_allowed
        return not hook.get_hookimpls() and not _permissions_log.isEnabledFor(logging.DEBUG)

    async def remember(
        self,
        session: Any,
        actor: dict[str, Any],
        methods: list[str],
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        """Keep ``headers``, the 200 just made for ``actor``, if they rest on a kept entry."""
        if not isinstance(session, Session) or actor.get("via") != "session":
            return
        key, user_id = session.get(SESSION_SIGNIN), session.get(SESSION_USER_ID)
        auth_hash = session.get(SESSION_AUTH_HASH)
        if type(key) is not str or type(user_id) is not int or type(auth_hash) is not str:
            return
        epoch = await self._current_epoch()
        if epoch is None or not self.usable():
            return
        signin = signin_id(key)
        rows = self._rows.get(epoch, signin)
        if rows is None:
            return
        user, last_seen = rows
        if (
            last_seen is None
            or user is None
            or user.id != user_id
            or not user.is_active
            or not self.doorman.session_auth_hash_matches(user, auth_hash)
            or user.actor("session") != actor
            or session_auth_methods(session) != methods
        ):
            return  # the entry changed since the answer was made: keep nothing
        kept = self._kept
        kept.pop(key, None)
        stored = session.get(SESSION_AUTH_METHODS)
        stored = list(stored) if isinstance(stored, list) else stored
        kept[key] = _Kept(user_id, auth_hash, signin, rows, last_seen, methods, stored, headers)
        while len(kept) > MAX_KEPT:
            del kept[next(iter(kept))]  # the oldest

    async def _current_epoch(self) -> bytes | None:
        """The accounts epoch: from memory (SQLite), or PostgreSQL's read for this request."""
        epoch = self._epoch.current()
        return epoch if epoch is not None else await self._epoch.read()

    async def answer_for(
        self, session: Session, query_string: bytes = b""
    ) -> list[tuple[bytes, bytes]] | None:
        """The kept 200 headers for ``session``, if everything they rest on stands and the
        session meets what ``query_string``'s ``?require=`` asks (else the full path answers)."""
        key = session.get(SESSION_SIGNIN)
        kept = self._kept.get(key) if type(key) is str else None
        if kept is None:
            return None
        user_id = session.get(SESSION_USER_ID)
        if type(user_id) is not int or user_id != kept.user_id:
            return None
        if session.get(SESSION_AUTH_HASH) != kept.auth_hash:
            return None
        if session.get(SESSION_AUTH_METHODS) != kept.stored_methods:
            return None
        if query_string:
            required = requirements(query_string)
            if required is None or not meets(kept.methods, required):
                return None
        epoch = await self._current_epoch()
        if epoch is None or self._rows.get(epoch, kept.signin) is not kept.rows:
            _forget(self._kept, key, kept)  # the rows changed, or were dropped: never again
            return None
        if time.time() - kept.last_seen >= LAST_SEEN_RESOLUTION or not self.usable():
            return None  # the full path notes the sign-in as seen, or asks the plugins
        return kept.headers


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def _forget(answers: dict[Any, Any], key: object, kept: object) -> None:
    """Drop ``kept``, unless a request running meanwhile dropped or replaced it already."""
    if answers.get(key) is kept:
        del answers[key]


# -- API tokens: /-/whoami's answer for a token ---------------------------------------


@dataclass(frozen=True, slots=True)
class _KeptToken:
    token_id: str
    rows: object  # the token cache's entry itself: the token's hash, the token, its user
    expires_at: float | None
    last_used_at: float
    headers: list[tuple[bytes, bytes]]
    body: bytes


class KeptTokenAnswers:
    """``/-/whoami``'s answers for API tokens, by token, while what they rest on stands.

    A token's answer rests on the token and user rows as the accounts cache holds
    them (the same entry under the same epoch: the token is neither revoked nor
    changed, its user neither disabled nor changed), the token's expiry, and its
    ``last_used_at``, which a request notes once a minute. The answer is kept
    only for the very text that the full path accepted, by its SHA-256 (the hash
    the database keeps too): a token is a password, and is not kept here.
    """

    def __init__(self, doorman: Doorman) -> None:
        self._epoch = epoch_of(doorman.engine)
        self._rows = token_cache(doorman.engine)
        self._kept: dict[bytes, _KeptToken] = {}

    async def _current_epoch(self) -> bytes | None:
        epoch = self._epoch.current()
        return epoch if epoch is not None else await self._epoch.read()

    async def remember(
        self, text: str, actor: dict[str, Any], headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        """Keep the answer just made for ``text``, if it rests on the cache's current entry."""
        token_id = parse_token(text)
        epoch = await self._current_epoch()
        if token_id is None or epoch is None:
            return
        rows = self._rows.get(epoch, token_id)
        if rows is None:
            return
        _, token, user = rows
        now = time.time()
        if (
            not token.is_live(now)
            or token.last_used_at is None
            or not user.is_active
            or token_actor(token, user) != actor
        ):
            return  # the entry changed since the answer was made: keep nothing
        kept, digest = self._kept, _digest(text)
        kept.pop(digest, None)
        kept[digest] = _KeptToken(
            token_id, rows, token.expires_at, token.last_used_at, headers, body
        )
        while len(kept) > MAX_KEPT:
            del kept[next(iter(kept))]  # the oldest

    async def answer_for(self, text: str) -> _KeptToken | None:
        digest = _digest(text)
        kept = self._kept.get(digest)
        if kept is None:
            return None
        epoch = await self._current_epoch()
        if epoch is None or self._rows.get(epoch, kept.token_id) is not kept.rows:
            _forget(self._kept, digest, kept)
            return None
        now = time.time()
        if kept.expires_at is not None and now >= kept.expires_at:
            _forget(self._kept, digest, kept)
            return None
        if now - kept.last_used_at >= LAST_USED_RESOLUTION:
            return None  # the full path notes the token as used
        return kept


class TokenShortcut:
    """Before ``SessionMiddleware`` on ``/-/whoami``: a kept token answer at once.

    Only for a request that names no session cookie (a session's actor comes
    first) and whose ``Authorization`` is a token with a kept answer; every
    other request goes down ``app``.
    """

    def __init__(self, app: ASGIApp, kept: KeptTokenAnswers, *, cookie: bytes) -> None:
        self.app = app
        self.kept = kept
        self._named = cookie + b"="

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        text = bearer_token(scope)
        if text is not None and not self._names_a_session(scope):
            kept = await self.kept.answer_for(text)
            if kept is not None:
                start = {"type": "http.response.start", "status": 200, "headers": kept.headers[:]}
                await send(start)
                await send({"type": "http.response.body", "body": kept.body})
                return
        await self.app(scope, receive, send)

    def _names_a_session(self, scope: Scope) -> bool:
        return any(name == b"cookie" and self._named in value for name, value in scope["headers"])
