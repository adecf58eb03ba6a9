"""pytest fixtures for apps that use doorman: a throwaway database and a ``Doorman`` on it.

Turn them on in a ``conftest.py``::

    pytest_plugins = ["doorman.testing.pytest_plugin"]

or with ``pytest -p doorman.testing.pytest_plugin``. ``doorman`` is an async
fixture: mark the tests that use it with ``pytest.mark.anyio`` (anyio's pytest
plugin comes with httpx).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from ..accounts.passwords import PasswordHasher
from ..core import Doorman
from ..db.engine import create_engine
from ..db.migrations import migrate

__all__ = ["doorman", "doorman_db", "doorman_postgres_db", "doorman_secret", "fast_hasher"]

POSTGRES_ENV = "DOORMAN_TEST_POSTGRES_URL"


def fast_hasher() -> PasswordHasher:
    """argon2id with the least work: for tests only, where a sign-in should take no time."""
    return PasswordHasher(time_cost=1, memory_cost=1024)


def _run(make: Callable[[], Awaitable[None]]) -> None:
    """Run a coroutine to the end on its own loop and thread, even inside a running test loop."""

    async def main() -> None:
        await make()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, main()).result()


def _migrated(url: str) -> str:
    async def run() -> None:
        engine = create_engine(url)
        try:
            await migrate(engine)
        finally:
            await engine.dispose()

    _run(run)
    return url


@pytest.fixture
def doorman_secret() -> str:
    """A fresh secret for this test: give it to ``SessionMiddleware`` and ``Doorman`` alike."""
    return secrets.token_urlsafe(32)


@pytest.fixture
def doorman_db(tmp_path: Path) -> str:
    """The path of a new SQLite database with doorman's tables, gone with ``tmp_path``.

    Override it (``def doorman_db(doorman_postgres_db): return doorman_postgres_db``)
    to run the same tests on PostgreSQL.
    """
    return _migrated(str(tmp_path / "doorman.db"))


@pytest.fixture
def doorman_postgres_db() -> Iterator[str]:
    """The URL of a new PostgreSQL database with doorman's tables, dropped afterwards.

    Made on the server of ``$DOORMAN_TEST_POSTGRES_URL`` (a database there to
    connect to, such as ``postgresql://postgres@127.0.0.1/postgres``); the test
    is skipped when that is not set.
    """
    admin_url = os.environ.get(POSTGRES_ENV)
    if not admin_url:
        pytest.skip(f"{POSTGRES_ENV} is not set")
    name = "doorman_test_" + secrets.token_hex(6)

    def execute(sql: str) -> None:
        async def run() -> None:
            engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
            try:
                async with engine.connect() as connection:
                    await connection.execute(sa.text(sql))
            finally:
                await engine.dispose()

        _run(run)

    execute(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(admin_url).set(database=name)
        yield _migrated(url.render_as_string(hide_password=False))
    finally:
        execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def doorman(doorman_db: str, doorman_secret: str) -> AsyncIterator[Doorman]:
    """A started ``Doorman`` on ``doorman_db``, with a fast password hasher; closed afterwards."""
    found = Doorman(doorman_db, secret=doorman_secret, hasher=fast_hasher())
    try:
        await found.startup()
        yield found
    finally:
        await found.close()
