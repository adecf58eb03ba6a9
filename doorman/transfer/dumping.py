"""``dump``: a database's accounts as one JSON object (the format: ``doorman.transfer``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from .._version import __version__
from ..db.migrations import ensure_schema, schema_revision
from ..db.schema import groups_table, tokens_table, user_groups_table, users_table
from ..db.transaction import connect
from .records import CHUNK, FACTOR_COLUMNS, FACTORS, TOKEN_COLUMNS, USER_COLUMNS

__all__ = ["Progress", "dump"]

#: ``progress(total, label)``: a context manager whose value is called with each batch's size.
Progress = Callable[[int, str], AbstractContextManager[Callable[[int], object]]]


def _no_progress(total: int, label: str) -> AbstractContextManager[Callable[[int], object]]:
    return contextlib.nullcontext(lambda done: None)


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
            for kind, table, _ in FACTORS
        }
    groups_of: dict[int, list[str]] = {}
    for row in member_rows:
        groups_of.setdefault(row["user_id"], []).append(row["name"])
    user_fields = [c.name for c in USER_COLUMNS]
    token_fields = [c.name for c in TOKEN_COLUMNS]
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
    fields = [c.name for c in FACTOR_COLUMNS[kind]]
    records = [{**{f: row[f] for f in fields}, "username": row["username"]} for row in rows]
    return sorted(records, key=lambda r: tuple(str(r[f]) for f in ("username", *fields)))


async def _fetch(connection: Any, query: Any, label: str, progress: Progress) -> list[Any]:
    total = await connection.execute(sa.select(sa.func.count()).select_from(query.subquery()))
    rows: list[Any] = []
    with progress(int(total.scalar_one()), label) as advance:
        result = await connection.stream(query)
        async for part in result.mappings().partitions(CHUNK):
            rows.extend(part)
            advance(len(part))
    return rows
