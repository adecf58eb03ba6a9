"""Accounts as JSON: ``dump`` them from a database, ``load`` them into another.

``doorman db dump`` and ``doorman db load`` are these two functions. A dump is
one JSON object::

    {
      "doorman": "0.1.0",     # the doorman that wrote it
      "revision": "0002",     # the schema revision of the database it came from
      "users": [
        {"username": "alice", "email": "alice@example.com",
         "password_hash": "$argon2id$...", "is_admin": true, "is_active": true,
         "session_version": 0, "created_at": 1700000000.0, "last_login": null,
         "groups": ["ops"]}
      ],
      "groups": ["ops"],
      "tokens": [
        {"id": "...", "secret_hash": "...", "name": "deploy", "scopes": null,
         "created_at": 1700000000.0, "expires_at": null, "last_used_at": null,
         "revoked_at": null, "username": "alice"}
      ],
      "totp": [{"secret": "...", "created_at": ..., "confirmed_at": ..., "last_step": ...,
                "username": "alice"}],
      "recovery_codes": [{"code_hash": "...", "created_at": ..., "used_at": null,
                          "username": "alice"}],
      "passkeys": [{"credential_id": "...", "user_handle": "...", "public_key": "...",
                    "sign_count": 0, "name": "laptop", ..., "username": "alice"}]
    }

Users and tokens carry every column of their table but the internal ids (a
dump made before revision 0005 has no ``email_verified`` or ``pending_email``:
they load as false and null), so a
dump loads into a database that has users already: users name their groups,
tokens their user. Values are as the tables hold them: times in Unix seconds,
a token's ``scopes`` as the JSON text of a list (or null). Users are sorted by
username (without case), groups by name and tokens by id, so the same accounts
make the same dump from SQLite or PostgreSQL. Password and token hashes are in
it, never a token itself; sessions, sign-ins, throttle counts and the generated
secret are not. Second factors are (revision 0006): TOTP secrets (in clear, as
the table holds them: a dump is as secret as the database), recovery-code hashes
(salted with the username, so they work in the new database) and passkeys. A
dump made before has no such lists: they load as empty.

``load`` checks the whole dump first, then inserts it in one transaction: all
of it or nothing. Whatever stops it is a ``DumpError`` that says what and where.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from ._lookalikes import lookalike_key
from ._version import __version__
from .accounts.names import check_group, check_username, username_key
from .db.migrations import ensure_schema, schema_revision
from .db.schema import (
    groups_table,
    passkeys_table,
    recovery_codes_table,
    tokens_table,
    totp_table,
    user_groups_table,
    users_table,
)
from .db.transaction import connect
from .exceptions import DumpError

__all__ = ["KINDS", "DumpError", "Loaded", "Progress", "check", "dump", "load"]

T = TypeVar("T")

#: The lists of a dump.
KINDS = ("users", "groups", "tokens", "totp", "recovery_codes", "passkeys")
#: The second factors' lists: each row names its user; absent from dumps made before 0006.
_FACTORS: tuple[tuple[str, sa.Table, tuple[str, ...]], ...] = (
    ("totp", totp_table, ("user_id",)),
    ("recovery_codes", recovery_codes_table, ("id", "user_id")),
    ("passkeys", passkeys_table, ("id", "user_id")),
)
_CHUNK = 500


def _columns(table: sa.Table, *left_out: str) -> list[sa.Column[Any]]:
    return [column for column in table.columns if column.name not in left_out]


_USER_COLUMNS = _columns(users_table, "id", "username_key", "username_skeleton")
_TOKEN_COLUMNS = _columns(tokens_table, "user_id")
_FACTOR_COLUMNS = {kind: _columns(table, *left_out) for kind, table, left_out in _FACTORS}
#: Of each list of records: the columns in a dump, and the field it adds.
_RECORDS = (
    ("users", _USER_COLUMNS, "groups"),
    ("tokens", _TOKEN_COLUMNS, "username"),
    *((kind, _FACTOR_COLUMNS[kind], "username") for kind, _, _ in _FACTORS),
)

#: Columns added since dumps were first made (revision 0005), with the value an older
#: dump's records get.
_ADDED_LATER: dict[str, dict[str, Any]] = {
    "users": {"email_verified": False, "pending_email": None},
}

#: ``progress(total, label)``: a context manager whose value is called with each batch's size.
Progress = Callable[[int, str], AbstractContextManager[Callable[[int], object]]]


def _no_progress(total: int, label: str) -> AbstractContextManager[Callable[[int], object]]:
    return contextlib.nullcontext(lambda done: None)


@dataclasses.dataclass(frozen=True, slots=True)
class Loaded:
    """What ``load`` did: users, new groups and tokens added, and existing users kept."""

    users: int
    new_groups: int
    tokens: int
    kept: int


# -- dump ----------------------------------------------------------------------------


async def dump(engine: AsyncEngine, *, progress: Progress = _no_progress) -> dict[str, Any]:
    """The users (with password hashes and groups), groups and tokens (hashes only).

    ``progress`` hears of each table as it is read, such as to draw a progress bar.
    """
    await ensure_schema(engine)
    u, g, t = users_table.c, groups_table.c, tokens_table.c
    memberships = sa.select(user_groups_table.c.user_id, g.name).join(groups_table)
    token_query = sa.select(tokens_table, u.username).join(users_table, u.id == t.user_id)
    async with connect(engine) as connection:
        users = await _fetch(connection, sa.select(users_table), "dumping users", progress)
        member_rows = await _fetch(connection, memberships, "dumping group memberships", progress)
        groups = (await connection.execute(sa.select(g.name))).scalars().all()
        tokens = await _fetch(connection, token_query, "dumping tokens", progress)
        factors = {
            kind: await _fetch(
                connection,
                sa.select(table, u.username).join(users_table, u.id == table.c.user_id),
                f"dumping {kind.replace('_', ' ')}",
                progress,
            )
            for kind, table, _ in _FACTORS
        }
    groups_of: dict[int, list[str]] = {}
    for row in member_rows:
        groups_of.setdefault(row["user_id"], []).append(row["name"])
    user_fields = [c.name for c in _USER_COLUMNS]
    token_fields = [c.name for c in _TOKEN_COLUMNS]
    return {
        "doorman": __version__,
        "revision": await schema_revision(engine),
        "users": [
            {**{f: row[f] for f in user_fields}, "groups": sorted(groups_of.get(row["id"], []))}
            for row in sorted(users, key=lambda row: row["username_key"])
        ],
        "groups": sorted(groups),
        "tokens": [
            {**{f: row[f] for f in token_fields}, "username": row["username"]}
            for row in sorted(tokens, key=lambda row: str(row["id"]))
        ],
        **{kind: _factor_records(kind, rows) for kind, rows in factors.items()},
    }


def _factor_records(kind: str, rows: list[Any]) -> list[dict[str, Any]]:
    """A list of second factors, each naming its user, in an order either database gives."""
    fields = [c.name for c in _FACTOR_COLUMNS[kind]]
    records = [{**{f: row[f] for f in fields}, "username": row["username"]} for row in rows]
    return sorted(records, key=lambda r: tuple(str(r[f]) for f in ("username", *fields)))


async def _fetch(connection: Any, query: Any, label: str, progress: Progress) -> list[Any]:
    total = await connection.execute(sa.select(sa.func.count()).select_from(query.subquery()))
    rows: list[Any] = []
    with progress(int(total.scalar_one()), label) as advance:
        result = await connection.stream(query)
        async for part in result.mappings().partitions(_CHUNK):
            rows.extend(part)
            advance(len(part))
    return rows


# -- check ---------------------------------------------------------------------------


def check(data: Any, source: str = "dump") -> dict[str, Any]:
    """``data`` if it is a dump as ``dump`` writes it, else a ``DumpError`` naming the first flaw.

    Messages start with ``source``, such as the name of the file the dump was read from.
    """
    if isinstance(data, dict):
        for kind, _, _ in _FACTORS:
            data.setdefault(kind, [])  # a dump made before second factors
    if not isinstance(data, dict) or set(data) != {"doorman", "revision", *KINDS}:
        raise DumpError(f"{source}: not a doorman dump; make one with doorman db dump")
    if not all(isinstance(data[kind], list) for kind in KINDS):
        raise DumpError(f"{source}: {', '.join(KINDS)} must be lists")
    if not all(isinstance(name, str) for name in data["groups"]):
        raise DumpError(f"{source}: groups must be a list of names")
    for kind, columns, added in _RECORDS:
        for position, record in enumerate(data[kind]):
            later = _ADDED_LATER.get(kind, {})
            if isinstance(record, dict) and record and not set(record) & set(later):
                record = data[kind][position] = {**later, **record}  # an older dump
            _check_record(record, f"{source}: {kind}[{position}]", columns, added)
    for position, user in enumerate(data["users"]):
        if not all(isinstance(name, str) for name in user["groups"]):
            raise DumpError(f"{source}: users[{position}].groups: a list of names")
    return data


def _check_record(record: object, where: str, columns: list[sa.Column[Any]], added: str) -> None:
    expected = {column.name for column in columns} | {added}
    if not isinstance(record, dict) or set(record) != expected:
        found = sorted(record) if isinstance(record, dict) else type(record).__name__
        raise DumpError(f"{where}: has {found}; expected {sorted(expected)}")
    for column in columns:
        if not _fits(column, record[column.name]):
            raise DumpError(
                f"{where}.{column.name}: {record[column.name]!r:.60} is not a "
                f"{column.type.python_type.__name__}"
                + ("" if column.nullable else " (it cannot be null)")
            )


def _fits(column: Any, value: object) -> bool:
    if value is None:
        return bool(column.nullable)
    kind = column.type.python_type
    if kind is bool:
        return isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, kind) and not isinstance(value, bool)


# -- load ----------------------------------------------------------------------------


async def load(
    engine: AsyncEngine, data: Any, *, skip_existing: bool = False, source: str = "dump"
) -> Loaded:
    """Insert the dump ``data`` in one transaction, after checking all of it.

    Users that exist already (compared without case) are a ``DumpError`` that names
    them, unless ``skip_existing``: then they and their tokens are left as they are.
    """
    users = _users_by_key(check(data, source)["users"])
    group_names = sorted(
        {check_group(n) for n in data["groups"]}
        | {check_group(n) for u in data["users"] for n in u["groups"]}
    )
    await ensure_schema(engine)
    async with connect(engine, write=True) as connection:
        taken = await _existing(connection, users_table.c.username_key, list(users))
        if taken and not skip_existing:
            names = sorted(users[key]["username"] for key in taken)
            more = f" and {len(names) - 10} more" if len(names) > 10 else ""
            raise DumpError(
                f"users of the dump exist already: {', '.join(names[:10])}{more}; "
                "pass --skip-existing to keep them as they are and load the others"
            )
        new = {key: user for key, user in users.items() if key not in taken}
        new_groups, group_ids = await _add_groups(connection, group_names)
        ids = await _add_users(connection, new, group_ids)
        tokens = await _token_rows(connection, data["tokens"], ids, users, skip_existing)
        for chunk in _chunks(tokens):
            await connection.execute(tokens_table.insert(), chunk)
        await _add_factors(connection, data, ids, users, skip_existing)
    return Loaded(users=len(new), new_groups=len(new_groups), tokens=len(tokens), kept=len(taken))


def _users_by_key(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The dump's users by ``username_key``, their usernames checked."""
    users = {}
    for user in records:
        name = check_username(user["username"])
        users[username_key(name)] = {**user, "username": name}
    if len(users) != len(records):
        raise DumpError("the dump has the same username twice (compared without case)")
    return users


async def _add_groups(connection: Any, names: list[str]) -> tuple[set[str], dict[str, int]]:
    """Create the groups that do not exist yet: (those created, every group's id)."""
    new_groups = set(names) - await _existing(connection, groups_table.c.name, names)
    if new_groups:
        insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
        rows = [{"name": name} for name in sorted(new_groups)]
        await connection.execute(insert(groups_table).on_conflict_do_nothing(), rows)
    query = sa.select(groups_table.c.name, groups_table.c.id)
    return new_groups, dict((await connection.execute(query)).all())


async def _add_users(
    connection: Any, new: dict[str, dict[str, Any]], group_ids: dict[str, int]
) -> dict[str, int]:
    """Insert the users ``new`` (by username key) with their groups; their ids by key."""
    skeletons = await _skeletons(connection, new)
    user_rows = [
        {
            **{k: v for k, v in user.items() if k != "groups"},
            "username_key": key,
            "username_skeleton": skeletons[key],
        }
        for key, user in new.items()
    ]
    for chunk in _chunks(user_rows):
        await connection.execute(users_table.insert(), chunk)
    ids = await _ids(connection, list(new))
    memberships = [
        {"user_id": ids[key], "group_id": group_ids[check_group(name)]}
        for key, user in new.items()
        for name in set(user["groups"])
    ]
    for chunk in _chunks(memberships):
        await connection.execute(user_groups_table.insert(), chunk)
    return ids


async def _skeletons(connection: Any, new: dict[str, dict[str, Any]]) -> dict[str, str | None]:
    """Each new user's look-alike key, by username key.

    None for a user who looks like one created before: kept as they are, as the
    migration that brought look-alike keys keeps them (docs/security.md).
    """
    keys = {key: lookalike_key(user["username"]) for key, user in new.items()}
    taken = await _existing(connection, users_table.c.username_skeleton, list(set(keys.values())))
    found: dict[str, str | None] = {}
    for key in sorted(new, key=lambda key: (new[key]["created_at"], key)):
        found[key] = None if keys[key] in taken else keys[key]
        taken.add(keys[key])
    return found


def _chunks(rows: list[T]) -> Iterator[list[T]]:
    for start in range(0, len(rows), _CHUNK):
        yield rows[start : start + _CHUNK]


async def _existing(connection: Any, column: Any, values: list[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(values):
        found.update(
            (await connection.execute(sa.select(column).where(column.in_(chunk)))).scalars()
        )
    return found


async def _ids(connection: Any, keys: list[str]) -> dict[str, int]:
    u = users_table.c
    ids: dict[str, int] = {}
    for chunk in _chunks(keys):
        query = sa.select(u.username_key, u.id).where(u.username_key.in_(chunk))
        ids.update((key, user_id) for key, user_id in (await connection.execute(query)).all())
    return ids


async def _token_rows(
    connection: Any,
    tokens: list[dict[str, Any]],
    ids: dict[str, int],
    users: dict[str, Any],
    skip_existing: bool,
) -> list[dict[str, Any]]:
    """The rows to insert for the tokens of newly loaded users."""
    for token in tokens:
        if username_key(token["username"]) not in users:
            raise DumpError(
                f"token {token['id']!r} belongs to {token['username']!r}, who is not in the dump"
            )
    wanted = [t for t in tokens if username_key(t["username"]) in ids]
    taken = await _existing(connection, tokens_table.c.id, [t["id"] for t in wanted])
    if taken and not skip_existing:
        shown = ", ".join(sorted(taken)[:10])
        raise DumpError(
            f"tokens of the dump exist already: {shown}; pass --skip-existing to keep them"
        )
    return [
        {
            **{k: v for k, v in t.items() if k != "username"},
            "user_id": ids[username_key(t["username"])],
        }
        for t in wanted
        if t["id"] not in taken
    ]


async def _add_factors(
    connection: Any,
    data: dict[str, Any],
    ids: dict[str, int],
    users: dict[str, Any],
    skip_existing: bool,
) -> None:
    """The second factors of newly loaded users; a passkey known here already is an error
    (its credential id is unique), unless ``skip_existing``."""
    for kind, table, _ in _FACTORS:
        for record in data[kind]:
            if username_key(record["username"]) not in users:
                raise DumpError(
                    f"a {kind} record belongs to {record['username']!r}, not in the dump"
                )
        wanted = [r for r in data[kind] if username_key(r["username"]) in ids]
        if kind == "passkeys":
            ids_given = [r["credential_id"] for r in wanted]
            taken = await _existing(connection, passkeys_table.c.credential_id, ids_given)
            if taken and not skip_existing:
                raise DumpError(
                    f"{len(taken)} passkeys of the dump exist already; pass --skip-existing "
                    "to keep them"
                )
            wanted = [r for r in wanted if r["credential_id"] not in taken]
        rows = [
            {
                **{k: v for k, v in r.items() if k != "username"},
                "user_id": ids[username_key(r["username"])],
            }
            for r in wanted
        ]
        for chunk in _chunks(rows):
            await connection.execute(table.insert(), chunk)
