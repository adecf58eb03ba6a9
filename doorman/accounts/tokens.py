"""API tokens: shown once, stored as a hash, revocable, with an optional expiry.

A token reads ``dmt_<id>_<secret>``. The id (16 hex digits) is public: lists
show it and ``revoke`` takes it. The secret (256 bits) is never stored; the
table keeps a SHA-256 of the whole token, checked in constant time. A plain
hash is enough for a random 256-bit secret (no password to guess), and it does
not depend on ``DOORMAN_SECRET``, so rotating that secret keeps tokens working.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..db.epochs import CachePerEngine, EpochCache, epoch_of
from ..db.schema import bookkeeping, tokens_table, users_table
from ..db.transaction import connect
from ..exceptions import AccountError, PermissionDenied, UserNotFound
from .user import User, user_rows, users_from_rows

__all__ = ["PREFIX", "Token", "TokenCache", "Tokens", "parse_token", "token_cache"]

PREFIX = "dmt_"
_ID_CHARS = 16
_SECRET_BYTES = 32
_SECRET_CHARS = 43  # token_urlsafe(32)
_TOKEN_LENGTH = len(PREFIX) + _ID_CHARS + 1 + _SECRET_CHARS
_HEX = frozenset("0123456789abcdef")
_URLSAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
#: Live tokens one user may have: a leaked token (or session) making tokens in a loop
#: fills no database. Revoked and expired ones do not count.
MAX_LIVE_TOKENS = 100
#: Tokens one user may make in an hour, revoked ones included: nor does a loop that
#: makes and revokes them (each one a row kept for ``tokens list --all``).
MAX_NEW_TOKENS_AN_HOUR = 2 * MAX_LIVE_TOKENS
#: ``last_used_at`` is written at most this often per token, not on every request.
LAST_USED_RESOLUTION = 60.0
_t = tokens_table.c


@dataclass(frozen=True, slots=True)
class Token:
    """What doorman knows about a token; never the token itself."""

    id: str
    user_id: int
    name: str
    scopes: tuple[str, ...] | None
    created_at: float
    expires_at: float | None
    last_used_at: float | None
    revoked_at: float | None
    username: str = ""

    def is_live(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def covers(self, other: Token) -> bool:
        """Whether ``other`` may do nothing this token may not, and ends no later."""
        narrower = self.scopes is None or (
            other.scopes is not None and set(other.scopes) <= set(self.scopes)
        )
        sooner = self.expires_at is None or (
            other.expires_at is not None and other.expires_at <= self.expires_at
        )
        return narrower and sooner


def parse_token(text: str) -> str | None:
    """The id of a well-formed token, or None: malformed text never reaches the database."""
    if (
        len(text) != _TOKEN_LENGTH
        or not text.startswith(PREFIX)
        or text[len(PREFIX) + _ID_CHARS] != "_"
    ):
        return None
    token_id = text[len(PREFIX) : len(PREFIX) + _ID_CHARS]
    secret = text[len(PREFIX) + _ID_CHARS + 1 :]
    if not _HEX.issuperset(token_id) or not _URLSAFE.issuperset(secret):
        return None
    return token_id


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("ascii")).hexdigest()


#: Per token id: the token's stored hash, the token and its user. ``verify_with_user``
#: runs on every API request; what is kept is current while the epoch stands.
TokenCache = EpochCache[tuple[str, Token, User]]
#: The API tokens kept for an engine's database: ``token_cache(engine)``.
token_cache: CachePerEngine[tuple[str, Token, User]] = CachePerEngine()


class Tokens:
    """Creates, checks, lists and revokes API tokens. Every method may raise ``StoreError``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._epoch = epoch_of(engine)
        self._cache = token_cache(engine)

    async def create(
        self,
        user: User,
        *,
        name: str = "",
        expires_in: float | None = None,
        scopes: Iterable[str] | None = None,
        within: Token | None = None,
    ) -> tuple[Token, str]:
        """A new token for ``user``: its record, and the token text to show once.

        ``within`` is the token a request came with, when a token makes a token:
        the new one gets none of the scopes it lacks (its scopes, when none are
        asked for) and ends no later (at its expiry, when asked for longer or for
        never). ``PermissionDenied`` for a scope it lacks, or when it is revoked
        or expired by the time the new one is written.
        """
        if expires_in is not None and expires_in <= 0:
            raise AccountError("a token's lifetime must be above 0 seconds")
        if len(name) > 200:
            raise AccountError("a token name is at most 200 characters")
        scope_list = None if scopes is None else _check_scopes(scopes)
        now = time.time()
        expires_at = None if expires_in is None else now + expires_in
        if within is not None:
            scope_list, expires_at = _bounded_by(within, user, scope_list, expires_at)
        token_id = secrets.token_hex(_ID_CHARS // 2)
        text = f"{PREFIX}{token_id}_{secrets.token_urlsafe(_SECRET_BYTES)}"
        row = {
            "id": token_id,
            "user_id": user.id,
            "secret_hash": _digest(text),
            "name": name,
            "scopes": None if scope_list is None else json.dumps(scope_list),
            "created_at": now,
            "expires_at": expires_at,
        }
        try:
            async with connect(self.engine, write=True) as connection:
                await _lock_tokens_of(connection, user.id)
                await connection.execute(tokens_table.insert().values(row))
                # Checked after the insert, in its transaction: a revoke that came first is seen.
                if within is not None and not await _is_live(connection, within.id, now):
                    raise PermissionDenied("the token this request came with is no longer valid")
                if await _live_count(connection, user.id, now) > MAX_LIVE_TOKENS:
                    raise AccountError(
                        f"a user may have at most {MAX_LIVE_TOKENS} live API tokens:"
                        " revoke some first"
                    )
                if await _made_since(connection, user.id, now - 3600) > MAX_NEW_TOKENS_AN_HOUR:
                    raise AccountError(
                        f"a user may make at most {MAX_NEW_TOKENS_AN_HOUR} API tokens an hour:"
                        " try again later"
                    )
        except exc.IntegrityError:  # the user row went away meanwhile
            raise UserNotFound(f"no user {user.username!r} (deleted?)") from None
        return _token({**row, "last_used_at": None, "revoked_at": None}, user.username), text

    async def get(self, token_id: str) -> Token | None:
        """The token with this id, live or not; None when there is none."""
        if len(token_id) != _ID_CHARS or not _HEX.issuperset(token_id):
            return None
        kept = await self._cache.fetch(self._epoch, token_id, lambda: self._read(token_id))
        return kept[1] if kept is not None else None

    async def verify(self, text: str) -> Token | None:
        """The live token this text is, or None (unknown, wrong, revoked, expired)."""
        found = await self.verify_with_user(text)
        return found[0] if found is not None else None

    async def verify_with_user(self, text: str) -> tuple[Token, User] | None:
        """The live token and its user, in one round trip: what every API request needs."""
        token_id = parse_token(text)
        if token_id is None:
            return None
        kept = await self._cache.fetch(self._epoch, token_id, lambda: self._read(token_id))
        if kept is None:
            return None
        secret_hash, token, user = kept
        if not hmac.compare_digest(secret_hash, _digest(text)):
            return None
        now = time.time()
        if not token.is_live(now):
            return None
        if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
            # Kept first, so that the requests running meanwhile do not write too.
            self._cache.update(token_id, (secret_hash, replace(token, last_used_at=now), user))
            async with connect(self.engine, write=True) as connection:
                await connection.execute(
                    bookkeeping(tokens_table, _t.id == token.id, last_used_at=now)
                )
        return token, user

    async def _read(self, token_id: str) -> tuple[str, Token, User] | None:
        """The token's stored hash, the token and its user, or None."""
        async with connect(self.engine) as connection:
            query = await connection.execute(_WITH_USER, {"token_id": token_id})
            rows = query.mappings().all()
        if not rows:
            return None
        columns = {column.name: rows[0][f"token_{column.name}"] for column in tokens_table.c}
        return (
            rows[0]["token_secret_hash"],
            _token(columns, rows[0]["username"]),
            users_from_rows(rows)[0],
        )

    async def list(
        self, user: User | None = None, *, include_dead: bool = False
    ) -> builtins.list[Token]:
        """Tokens, newest first: of one user, or of everyone."""
        query = (
            sa.select(tokens_table, users_table.c.username)
            .join(users_table, users_table.c.id == _t.user_id)
            .order_by(_t.created_at.desc())
        )
        if user is not None:
            query = query.where(_t.user_id == user.id)
        if not include_dead:
            query = query.where(_live(time.time()))
        async with connect(self.engine) as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [_token(row, row["username"]) for row in rows]

    async def revoke(self, token_id: str, *, user: User | None = None) -> bool:
        """Revoke one token (only ``user``'s, when given); False when there was none to revoke."""
        query = tokens_table.update().where(_t.id == token_id, _t.revoked_at.is_(None))
        if user is not None:
            query = query.where(_t.user_id == user.id)
        async with connect(self.engine, write=True) as connection:
            result = await connection.execute(query.values(revoked_at=time.time()))
        return result.rowcount > 0

    async def revoke_all(self, user: User) -> int:
        """Revoke every live token of ``user``; return how many."""
        now = time.time()
        query = tokens_table.update().where(_t.user_id == user.id, _live(now))
        async with connect(self.engine, write=True) as connection:
            await _lock_tokens_of(connection, user.id)
            result = await connection.execute(query.values(revoked_at=now))
        return max(result.rowcount, 0)


# A token's columns beside its user's (one row per group of the user), built once.
_WITH_USER = user_rows(
    sa.and_(_t.id == sa.bindparam("token_id"), _t.user_id == users_table.c.id),
    *(column.label(f"token_{column.name}") for column in tokens_table.c),
)


def _bounded_by(
    parent: Token, user: User, scopes: builtins.list[str] | None, expires_at: float | None
) -> tuple[builtins.list[str] | None, float | None]:
    """The scopes and expiry of a token made with ``parent``: never more, never later."""
    if parent.user_id != user.id:
        raise PermissionDenied("a token can make tokens for its own user only")
    if parent.scopes is not None:
        if scopes is None:
            scopes = list(parent.scopes)
        elif set(scopes) - set(parent.scopes):
            allowed = ", ".join(parent.scopes) or "none"
            raise PermissionDenied(
                f"a token can give only the scopes it has itself (this one has: {allowed})"
            )
    if parent.expires_at is not None and (expires_at is None or expires_at > parent.expires_at):
        expires_at = parent.expires_at
    return scopes, expires_at


async def _lock_tokens_of(connection: AsyncConnection, user_id: int) -> None:
    """Make ``create`` and ``revoke_all`` of one user take turns, on PostgreSQL.

    Both lock the user's row first. Otherwise a token could be written while
    ``revoke_all`` runs, unseen by its UPDATE, and keep a way in (a token making
    tokens in a loop did); and the live-token count would let bursts through.
    SQLite has one writer at a time, and ``create`` checks after its insert,
    while it is that writer: no lock needed there.
    """
    if connection.dialect.name == "postgresql":
        lock = sa.select(users_table.c.id).where(users_table.c.id == user_id).with_for_update()
        await connection.execute(lock)


def _live(now: float) -> sa.ColumnElement[bool]:
    return sa.and_(_t.revoked_at.is_(None), sa.or_(_t.expires_at.is_(None), _t.expires_at > now))


async def _is_live(connection: AsyncConnection, token_id: str, now: float) -> bool:
    query = sa.select(_t.id).where(_t.id == token_id, _live(now))
    return (await connection.execute(query)).first() is not None


async def _live_count(connection: AsyncConnection, user_id: int, now: float) -> int:
    query = sa.select(sa.func.count()).where(_t.user_id == user_id, _live(now))
    return int((await connection.execute(query)).scalar_one())


async def _made_since(connection: AsyncConnection, user_id: int, since: float) -> int:
    query = sa.select(sa.func.count()).where(_t.user_id == user_id, _t.created_at > since)
    return int((await connection.execute(query)).scalar_one())


def _check_scopes(scopes: Iterable[str]) -> list[str]:
    if isinstance(scopes, str):
        raise AccountError("token scopes are a list of action names, not one string")
    found = list(scopes)
    if not all(isinstance(scope, str) and scope for scope in found):
        raise AccountError("token scopes are action names")
    return sorted(set(found))


def _token(row: Any, username: str = "") -> Token:
    scopes = row["scopes"]
    return Token(
        id=row["id"],
        user_id=row["user_id"],
        name=row["name"],
        scopes=None if scopes is None else tuple(json.loads(scopes)),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
        username=username,
    )
