"""Users and groups in SQL: the accounts doorman signs people in as (``Users``)."""

from __future__ import annotations

import builtins
import time
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncEngine

from .._lookalikes import lookalike_key
from .._text import ascii_lower
from ..db.engine import insert
from ..db.epochs import CachePerEngine, EpochCache, epoch_of
from ..db.schema import ascii_lower as ascii_lower_sql
from ..db.schema import (
    bookkeeping,
    groups_table,
    signins_table,
    user_groups_table,
    users_table,
)
from ..db.transaction import connect
from ..exceptions import AddressTaken, UsernameTaken, UsernameTooSimilar, UserNotFound
from .names import (
    check_email,
    check_group,
    check_new_username,
    check_username,
    storable,
    username_key,
)
from .passwords import PasswordHasher
from .user import User, user_rows, users_from_rows

__all__ = [
    "SignedInCache",
    "User",
    "Users",
    "check_email",
    "check_new_username",
    "check_username",
    "signed_in_cache",
    "user_rows",
    "username_key",
    "users_from_rows",
]

_u, _g, _ug = users_table.c, groups_table.c, user_groups_table.c


#: Per sign-in id: the user and the sign-in's ``last_seen`` (both there: only those are kept).
#: ``get_signed_in`` runs on every signed-in request; ``doorman.db.epochs`` says how
#: what is kept here is known to be current.
SignedInCache = EpochCache[tuple[User | None, float | None]]
#: The sign-ins kept for an engine's database: ``signed_in_cache(engine)``.
signed_in_cache: CachePerEngine[tuple[User | None, float | None]] = CachePerEngine()
#: Users by id, as ``get_kept`` reads them (HTTP Basic, on every request).
user_cache: CachePerEngine[User] = CachePerEngine()


class Users:
    """Reads and writes users and groups. Every method may raise ``StoreError``."""

    def __init__(self, engine: AsyncEngine, hasher: PasswordHasher) -> None:
        self.engine = engine
        self.hasher = hasher
        self._epoch = epoch_of(engine)
        self._cache = signed_in_cache(engine)
        self._users = user_cache(engine)

    # -- reading -----------------------------------------------------------

    async def by_username(self, username: str) -> User | None:
        if not isinstance(username, str) or len(username) > 600 or not storable(username):
            return None
        found = await self._select(_u.username_key == username_key(username))
        return found[0] if found else None

    async def by_email(self, email: str) -> builtins.list[User]:
        """The active accounts whose address is ``email``, compared without ASCII case."""
        if not isinstance(email, str) or not email or len(email) > 254 or not storable(email):
            return []
        found = await self._select(ascii_lower_sql(_u.email) == ascii_lower(email))
        return [user for user in found if user.is_active]

    async def require(self, username: str) -> User:
        user = await self.by_username(username)
        if user is None:
            raise UserNotFound(f"no user {username!r}")
        return user

    async def list(
        self, *, search: str | None = None, limit: int = 50, offset: int = 0
    ) -> builtins.list[User]:
        """Users ordered by username; ``search`` matches part of the username or email."""
        ids = sa.select(_u.id).order_by(_u.username_key).limit(limit).offset(offset)
        if search:
            ids = ids.where(_matches(search))
        return await self._select(_u.id.in_(ids.scalar_subquery()))

    async def count(self, *, search: str | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(users_table)
        if search:
            query = query.where(_matches(search))
        async with connect(self.engine) as connection:
            return int((await connection.execute(query)).scalar_one())

    async def get(self, user_id: int) -> User | None:
        """The user with this id, groups included, in one round trip."""
        found = users_from_rows(await self._run(_BY_ID, {"user_id": user_id}))
        return found[0] if found else None

    async def get_kept(self, user_id: int) -> User | None:
        """``get``, kept while the accounts epoch stands (HTTP Basic asks on every request)."""
        return await self._users.fetch(self._epoch, str(user_id), lambda: self.get(user_id))

    async def get_signed_in(self, user_id: int, signin: str) -> tuple[User | None, float | None]:
        """The user and the ``last_seen`` of their sign-in (by id, see ``signin_id``).

        One round trip. ``last_seen`` is None when that sign-in was revoked (or
        never existed). This runs on every signed-in request: its statement is
        built once.
        """
        found = await self._cache.fetch(
            self._epoch,
            signin,
            lambda: self._read_signed_in(user_id, signin),
            usable=lambda kept: kept[0] is not None and kept[0].id == user_id,
            keep=lambda read: read[0] is not None and read[1] is not None,
        )
        return found if found is not None else (None, None)

    async def _read_signed_in(self, user_id: int, signin: str) -> tuple[User | None, float | None]:
        rows = await self._run(_SIGNED_IN, {"user_id": user_id, "signin_id": signin})
        found = users_from_rows(rows)
        return (found[0], rows[0]["signin_seen"]) if found else (None, None)

    async def _select(self, where: sa.ColumnElement[bool]) -> builtins.list[User]:
        return users_from_rows(await self._run(user_rows(where), {}))

    async def _run(self, query: sa.Select[Any], params: dict[str, Any]) -> Sequence[Any]:
        async with connect(self.engine) as connection:
            rows: Sequence[Any] = (await connection.execute(query, params)).mappings().all()
        return rows

    # -- writing -----------------------------------------------------------

    async def create(
        self,
        username: str,
        *,
        password: str | None = None,
        password_hash: str | None = None,
        email: str | None = None,
        email_verified: bool = False,
        is_admin: bool = False,
        is_active: bool = True,
        groups: Iterable[str] = (),
    ) -> User:
        """Add a user. Give ``password`` (hashed here) or an existing ``password_hash``.

        ``UsernameTaken`` when the name is taken (without case) or looks like one
        that is (``doorman._lookalikes``); ``AddressTaken`` when ``email_verified``
        and another account holds the address verified (the database's index says so).
        """
        name = check_new_username(username)
        await self.check_free(name)
        if password is not None:
            password_hash = await self.hasher.hash(password)
        row = {
            "username": name,
            "username_key": username_key(name),
            "username_skeleton": lookalike_key(name),
            "email": check_email(email),
            "email_verified": email_verified and bool(email),
            "password_hash": password_hash,
            "is_admin": is_admin,
            "is_active": is_active,
            "session_version": 0,
            "created_at": time.time(),
        }
        try:
            async with connect(self.engine, write=True) as connection:
                result = await connection.execute(users_table.insert().values(row))
                user_id = result.inserted_primary_key[0]  # type: ignore[index]
                await self._add_groups(connection, user_id, groups)
        except exc.IntegrityError:  # created meanwhile, or the address verified meanwhile
            await self.check_free(name)  # the name's own unique keys
            if row["email_verified"]:  # the one left: a verified address, one account
                raise AddressTaken() from None
            raise UsernameTaken(f"the username {name!r} is taken") from None
        return await self._must_get(user_id)

    async def check_free(self, name: str) -> None:
        """``UsernameTaken`` unless ``name`` is free: not taken, and like no other's.

        ``UsernameTooSimilar`` (a subclass) for a look-alike, which is not named: it
        may be a name the person did not type.
        """
        key = username_key(name)
        query = sa.select(_u.username_key).where(
            sa.or_(_u.username_key == key, _u.username_skeleton == lookalike_key(name))
        )
        async with connect(self.engine) as connection:
            found = (await connection.execute(query.limit(2))).scalars().all()
        if key in found:
            raise UsernameTaken(f"the username {name!r} is taken")
        if found:
            raise UsernameTooSimilar(f"the username {name!r} is too similar to an existing one")

    async def set_password(self, user: User, password: str | None) -> User:
        """A new password (None: no usable password). Every other session of the user ends."""
        encoded = None if password is None else await self.hasher.hash(password)
        return await self._update(user, password_hash=encoded)

    async def replace_hash(self, user: User, encoded: str) -> User:
        """Store a re-hash of the *same* password (new parameters), if nobody changed it since."""
        query = (
            users_table.update()
            .where(_u.id == user.id, _u.password_hash == user.password_hash)
            .values(password_hash=encoded)
        )
        async with connect(self.engine, write=True) as connection:
            await connection.execute(query)
        return await self._must_get(user.id)

    async def set_active(self, user: User, active: bool) -> User:
        """Disable (or enable) a user: a disabled user is never an actor."""
        return await self._update(user, is_active=active)

    async def set_admin(self, user: User, admin: bool) -> User:
        return await self._update(user, is_admin=admin)

    async def set_email(self, user: User, email: str | None) -> User:
        """A new address, unverified until its link is followed; a pending one is dropped."""
        return await self._update(
            user, email=check_email(email), email_verified=False, pending_email=None
        )

    async def set_pending_email(self, user: User, email: str | None) -> User:
        """``email`` waits for its verification link before it replaces the address."""
        return await self._update(user, pending_email=check_email(email))

    async def verified_elsewhere(self, email: str | None, user: User | None = None) -> bool:
        """Whether an account other than ``user`` holds ``email`` verified (without ASCII
        case, as the database's index compares them)."""
        if not email:
            return False
        query = sa.select(sa.exists().where(_verified_by_other(email, user.id if user else None)))
        async with connect(self.engine) as connection:
            return bool((await connection.execute(query)).scalar())

    async def verify_email(self, user: User) -> User:
        """The link was followed: the pending address, if any, becomes the verified one.

        ``AddressTaken`` (nothing changed) when another account holds that address
        verified, checked in the statement that writes: one verified meanwhile wins.
        """
        address = user.pending_email or user.email
        values: dict[str, Any] = {"email_verified": True}
        if user.pending_email:
            values.update(email=user.pending_email, pending_email=None)
        query = (
            users_table.update()
            .where(
                _u.id == user.id, sa.not_(sa.exists().where(_verified_by_other(address, user.id)))
            )
            .values(**values)
        )
        try:
            async with connect(self.engine, write=True) as connection:
                result = await connection.execute(query)
        except exc.IntegrityError:  # verified for another account at the same instant
            raise AddressTaken() from None
        if result.rowcount == 0:
            await self._must_get(user.id)  # UserNotFound if it went
            raise AddressTaken()
        return await self._must_get(user.id)

    async def edit(
        self,
        user: User,
        *,
        email: str | None = None,
        admin: bool | None = None,
        groups: Iterable[str] | None = None,
    ) -> User:
        """Change what is given, all or nothing: email ("" removes it), admin flag, groups.

        Everything is checked before anything is written (``AccountError``).
        """
        values: dict[str, Any] = {}
        if email is not None and check_email(email) != user.email:
            values.update(email=check_email(email), email_verified=False, pending_email=None)
        if admin is not None:
            values["is_admin"] = admin
        names = None if groups is None else [check_group(name) for name in groups]
        try:
            async with connect(self.engine, write=True) as connection:
                if values:
                    query = users_table.update().where(_u.id == user.id).values(**values)
                    if (await connection.execute(query)).rowcount == 0:
                        raise UserNotFound(f"no user {user.username!r} (deleted?)")
                if names is not None:
                    await connection.execute(
                        user_groups_table.delete().where(_ug.user_id == user.id)
                    )
                    await self._add_groups(connection, user.id, names)
        except exc.IntegrityError:  # the user row went away meanwhile
            raise UserNotFound(f"no user {user.username!r} (deleted?)") from None
        return await self._must_get(user.id)

    async def end_sessions(self, user: User) -> User:
        """End every session of the user, in every store, signed cookies included."""
        return await self._update(user, session_version=_u.session_version + 1)

    async def record_login(self, user: User, at: float) -> None:
        async with connect(self.engine, write=True) as connection:
            await connection.execute(bookkeeping(users_table, _u.id == user.id, last_login=at))

    async def delete(self, user: User) -> None:
        """Delete the user, their tokens and group memberships."""
        async with connect(self.engine, write=True) as connection:
            await connection.execute(users_table.delete().where(_u.id == user.id))

    async def set_groups(self, user: User, groups: Iterable[str]) -> User:
        """Make ``groups`` the user's groups, creating any that do not exist yet."""
        try:
            async with connect(self.engine, write=True) as connection:
                await connection.execute(user_groups_table.delete().where(_ug.user_id == user.id))
                await self._add_groups(connection, user.id, groups)
        except exc.IntegrityError:  # the user row went away meanwhile
            raise UserNotFound(f"no user {user.username!r} (deleted?)") from None
        return await self._must_get(user.id)

    async def _add_groups(self, connection: Any, user_id: int, groups: Iterable[str]) -> None:
        names = sorted({check_group(name) for name in groups})
        if not names:
            return
        # ON CONFLICT DO NOTHING: another request may create the same new group meanwhile.
        new_groups = insert(groups_table, connection.dialect.name)
        await connection.execute(
            new_groups.on_conflict_do_nothing(index_elements=["name"]), [{"name": n} for n in names]
        )
        ids = (await connection.execute(sa.select(_g.id).where(_g.name.in_(names)))).scalars()
        await connection.execute(
            user_groups_table.insert(),
            [{"user_id": user_id, "group_id": group_id} for group_id in ids],
        )

    async def _update(self, user: User, **values: Any) -> User:
        async with connect(self.engine, write=True) as connection:
            result = await connection.execute(
                users_table.update().where(_u.id == user.id).values(**values)
            )
        if result.rowcount == 0:
            raise UserNotFound(f"no user {user.username!r} (deleted?)")
        return await self._must_get(user.id)

    async def _must_get(self, user_id: int) -> User:
        user = await self.get(user_id)
        if user is None:
            raise UserNotFound(f"no user with id {user_id}")
        return user


_BY_ID = user_rows(_u.id == sa.bindparam("user_id"))
_SIGNED_IN = user_rows(
    _u.id == sa.bindparam("user_id"),
    sa.select(signins_table.c.last_seen)
    .where(signins_table.c.id == sa.bindparam("signin_id"), signins_table.c.user_id == _u.id)
    .scalar_subquery()
    .label("signin_seen"),
)


def _verified_by_other(email: str | None, user_id: int | None) -> sa.ColumnElement[bool]:
    other = users_table.alias("other")
    found = sa.and_(
        ascii_lower_sql(other.c.email) == ascii_lower(email or ""),
        other.c.email_verified == sa.true(),
    )
    return found if user_id is None else sa.and_(found, other.c.id != user_id)


def _matches(search: str) -> sa.ColumnElement[bool]:
    search = unicodedata.normalize("NFKC", search)
    escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = f"%{escaped.casefold()}%"
    return sa.or_(
        _u.username_key.like(pattern, escape="\\"),
        sa.func.lower(_u.email).like(pattern, escape="\\"),
    )
