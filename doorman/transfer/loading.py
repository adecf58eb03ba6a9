"""``load``: a dump's accounts into a database, checked first, then in one transaction."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from .._lookalikes import lookalike_key
from .._text import ascii_lower
from ..accounts.names import check_group, check_username, username_key
from ..db.engine import insert
from ..db.migrations import ensure_schema
from ..db.schema import ascii_lower as ascii_lower_sql
from ..db.schema import (
    groups_table,
    passkeys_table,
    tokens_table,
    user_groups_table,
    users_table,
)
from ..db.transaction import connect
from ..exceptions import DumpError
from .records import CHUNK, FACTORS, check

__all__ = ["Loaded", "load"]

T = TypeVar("T")


@dataclasses.dataclass(frozen=True, slots=True)
class Loaded:
    """What ``load`` did: users, new groups and tokens added, and existing users kept."""

    users: int
    new_groups: int
    tokens: int
    kept: int


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
        await _one_account_per_verified_address(connection, new)
        new_groups, group_ids = await _add_groups(connection, group_names)
        ids = await _add_users(connection, new, group_ids)
        tokens = await _token_rows(connection, data["tokens"], ids, users, skip_existing)
        for chunk in _chunks(tokens):
            await connection.execute(tokens_table.insert(), chunk)
        await _add_factors(connection, data, ids, users, skip_existing)
    return Loaded(users=len(new), new_groups=len(new_groups), tokens=len(tokens), kept=len(taken))


async def _one_account_per_verified_address(
    connection: Any, new: dict[str, dict[str, Any]]
) -> None:
    """A verified address belongs to one account (without ASCII case): among the new users,
    and beside the accounts already here (the database's unique index would refuse it)."""
    holders: dict[str, str] = {}
    for user in new.values():
        if user["email_verified"] and user["email"]:
            address = ascii_lower(user["email"])
            if address in holders:
                raise DumpError(
                    f"users {holders[address]!r} and {user['username']!r} of the dump hold "
                    "one address verified; a verified address belongs to one account"
                )
            holders[address] = user["username"]
    u = users_table.c
    held_here: set[str] = set()
    for chunk in _chunks(sorted(holders)):
        query = sa.select(ascii_lower_sql(u.email)).where(
            u.email_verified == sa.true(), ascii_lower_sql(u.email).in_(chunk)
        )
        held_here.update((await connection.execute(query)).scalars())
    if held_here:
        names = sorted(holders[address] for address in held_here)
        more = f" and {len(names) - 10} more" if len(names) > 10 else ""
        raise DumpError(
            f"users of the dump hold addresses that other accounts here hold verified: "
            f"{', '.join(names[:10])}{more}; a verified address belongs to one account"
        )


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
        rows = [{"name": name} for name in sorted(new_groups)]
        adding = insert(groups_table, connection.dialect.name).on_conflict_do_nothing()
        await connection.execute(adding, rows)
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
    for start in range(0, len(rows), CHUNK):
        yield rows[start : start + CHUNK]


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
    for kind, table, _ in FACTORS:
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
