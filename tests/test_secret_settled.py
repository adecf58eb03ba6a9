"""Servers that start together on one new database settle on one generated secret.

Without ``DOORMAN_SECRET`` the first start makes a secret and keeps it in
``doorman_settings``; every worker and host must then sign with that one, or
a cookie from one would be nobody on the next. The row is written with an
insert that yields to another's (ON CONFLICT DO NOTHING) and read back in the
same transaction, so a start that meets another's uncommitted row waits for
it and takes it: no ``IntegrityError ... doorman_settings_pkey``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from doorman.config import SECRET_ROW, Settings, resolve_secrets
from doorman.db import create_engine
from doorman.db.migrations import ensure_schema
from doorman.db.schema import settings_table

from .servers import (
    add_users,
    fresh_postgres_database,
    running,
    sign_in,
    start_server,
    username_of,
)

pytestmark = pytest.mark.e2e

THE_OTHERS = "the other server's secret, made a moment before " + "x" * 8


@pytest.mark.postgres
def test_a_start_that_meets_another_starts_secret_takes_it() -> None:
    with fresh_postgres_database() as url:
        assert asyncio.run(_resolve_while_another_server_does(url)) == [THE_OTHERS]


async def _resolve_while_another_server_does(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        await ensure_schema(engine)
        async with engine.connect() as other, other.begin():  # the other server, not committed
            row = {"name": SECRET_ROW, "value": THE_OTHERS}
            await other.execute(settings_table.insert().values(row))
            resolving = asyncio.ensure_future(resolve_secrets(Settings.from_mapping({}), engine))
            await _until_a_query_waits_for_a_lock(engine)
        return await resolving
    finally:
        await engine.dispose()


async def _until_a_query_waits_for_a_lock(engine: AsyncEngine) -> None:
    waiting = sa.text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + 10
    while True:
        async with engine.connect() as connection:
            if (await connection.execute(waiting)).scalar_one():
                return
        assert time.monotonic() < deadline, "resolve_secrets never met the other's row"
        await asyncio.sleep(0.05)


@contextlib.contextmanager
def new_database(kind: str, directory: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield str(directory / "doorman.db")
    else:
        with fresh_postgres_database() as url:
            yield url


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_three_servers_started_at_once_share_one_secret(tmp_path: Path, kind: str) -> None:
    with new_database(kind, tmp_path) as db:
        servers = [start_server(tmp_path / name, db=db, secret=None) for name in "abc"]
        with running(*servers):
            add_users(db, "alice")
            for signed_in_on in servers:
                cookie = sign_in(signed_in_on.url, "alice")
                assert [username_of(s.url, cookie) for s in servers] == ["alice"] * 3
