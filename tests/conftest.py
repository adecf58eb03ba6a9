"""Shared fixtures: the real PostgreSQL and Redis on this machine, and store factories.

Tests that need a service skip with the reason when it does not answer, unless
DOORMAN_REQUIRE_SERVICES=1 (as in CI), which turns that skip into a failure.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.metadata
import os
import platform
import re
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from doorman.stores import CookieStore, MemoryStore, SessionStore

POSTGRES_URL = os.environ.get(
    "DOORMAN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("DOORMAN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRE_SERVICES = os.environ.get("DOORMAN_REQUIRE_SERVICES") == "1"

SECRET = "test-secret-" + "s" * 32
STORE_KINDS = ["memory", "cookie", "sqlite", "postgres", "redis"]


#: The packages whose versions each run reports (CI's log says what it tested).
REPORTED = ("starlette", "fastapi", "datasette", "httpx", "uvicorn", "sqlalchemy")


def pytest_report_header() -> str:
    found = []
    for name in REPORTED:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return f"doorman matrix: Python {platform.python_version()}; " + ", ".join(found)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Leave what collection made (modules, test items, strategies) out of later collections.

    Each full garbage collection walked every object of the process, some half a
    million, most of them imported once and kept for the run: 0.3 s each, 8 s of
    CPU per process. Frozen, they are never collected, which they would not be.
    """
    gc.collect()
    gc.freeze()
    # A young-generation collection every 10,000 new objects instead of 700: the tests
    # make many short-lived ones (requests, rows): 4.4 s of collecting per process, now 2.7 s.
    gc.set_threshold(10_000, 10, 10)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Sentry's tests run last. The SDK patches Starlette and httpx for the rest of the
    process, and cannot undo it: every later test in that process ran 8% slower."""
    items.sort(key=lambda item: item.path.name == "test_sentry.py")


def pytest_itemcollected(item: pytest.Item) -> None:
    """An end-to-end test that shares a fixture with its module runs where the module runs.

    With ``--dist loadgroup`` (``make test``) pytest-xdist hands each group to one
    process whole, in order (the largest groups first): a module's servers and
    browsers of module scope are made once. An end-to-end test that shares nothing
    with its neighbours is spread on its own, so that a module of a few long tests
    (two minutes in test_fast_auth_attacks) does not run in one process at the end.
    """
    if not item.get_closest_marker("e2e") or item.get_closest_marker("xdist_group"):
        return
    if _shares_fixtures(item):
        item.add_marker(pytest.mark.xdist_group(item.path.stem))


def _shares_fixtures(item: pytest.Item) -> bool:
    """Whether ``item`` uses a fixture made once for several tests of its module or class
    (pytest keeps what a test uses in ``_fixtureinfo``; without it, assume it does)."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return True
    return any(
        definitions[-1].scope in ("module", "class", "package")
        for definitions in info.name2fixturedefs.values()
    )


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A pytest-xdist worker hands what it exercised to the process that reports."""
    from .matrix import EXERCISED

    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["doorman_exercised"] = list(EXERCISED)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """pytest-xdist's hook, in the reporting process: a worker finished."""
    from .matrix import EXERCISED

    for line in getattr(node, "workeroutput", {}).get("doorman_exercised", []):
        if line not in EXERCISED:
            EXERCISED.append(line)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from .matrix import EXERCISED  # filled by the tests that built environments of their own

    for line in sorted(EXERCISED):
        terminalreporter.write_line(f"doorman matrix: also exercised {line}")


#: A module whose every test is end to end says so once, at the top.
_E2E_MODULE = re.compile(r"^pytestmark = (\[[^\]]*)?pytest\.mark\.e2e\b", re.MULTILINE)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Under ``-m "not e2e"`` (``make fast``), such a module is not even imported.

    Importing and rewriting its asserts only to deselect every test costs each
    process a second or two. Other mark expressions collect everything as usual.
    """
    if config.option.markexpr.strip() != "not e2e":
        return None
    if not (collection_path.name.startswith("test_") and collection_path.suffix == ".py"):
        return None
    return True if _E2E_MODULE.search(collection_path.read_text()) else None


def _missing(service: str, error: BaseException) -> None:
    reason = f"{service} is not reachable ({type(error).__name__}: {error})"
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason}, and DOORMAN_REQUIRE_SERVICES=1 requires it")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """asyncio, for the whole run: so a module may share a ``Doorman`` (and its event loop)
    between its tests through a fixture of module scope (see ``helpers.empty_accounts``)."""
    return "asyncio"


@pytest.fixture(autouse=True, scope="session")
def templates_compiled_once() -> Iterator[None]:
    """The pages' and mails' templates compile once per process, not once per app."""
    from doorman.mail.messages import MailTemplates
    from doorman.server.templates import Templates

    from .compiled_templates import CompiledTemplates, shared_by

    yield from shared_by([Templates, MailTemplates], CompiledTemplates())


@pytest.fixture
def cheap_default_hasher(monkeypatch: pytest.MonkeyPatch) -> None:
    """``Doorman()``'s default hasher at argon2id's lowest cost, where its cost is not the point.

    The CLI builds its own ``Doorman``, with the OWASP parameters: some 40 ms of CPU
    for each hash and each check. tests/test_passwords.py tests those parameters.
    """
    import functools

    from doorman import core

    cheap = functools.partial(core.PasswordHasher, time_cost=1, memory_cost=1024)
    monkeypatch.setattr(core, "PasswordHasher", cheap)


class Clock:
    """``time.time`` for a test that moves it on instead of waiting: real time plus a lead.

    doorman reads the wall clock through ``time.time()`` for every expiry it decides
    itself (sessions, tokens, counters, links); so does the cookie jar of httpx. Time
    kept by a server (Redis TTLs) does not move with it.
    """

    def __init__(self) -> None:
        self.lead = 0.0
        self._real = time.time

    def __call__(self) -> float:
        return self._real() + self.lead

    def advance(self, seconds: float) -> None:
        self.lead += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """A wall clock this test moves on with ``clock.advance(seconds)``."""
    found = Clock()
    monkeypatch.setattr(time, "time", found)
    return found


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL database for this test run, dropped at the end."""
    import asyncpg

    name = "doorman_test_" + secrets.token_hex(4)
    admin_url = POSTGRES_URL

    async def execute(sql: str) -> None:
        connection = await asyncpg.connect(admin_url, timeout=5)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    def run(sql: str) -> None:
        # Its own thread and loop: this fixture may be set up inside a running test loop.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, execute(sql)).result()

    try:
        run(f'CREATE DATABASE "{name}"')
    except (TimeoutError, OSError, asyncpg.PostgresError) as error:
        _missing("PostgreSQL at " + admin_url, error)
    base, _, _ = admin_url.rpartition("/")
    yield f"{base}/{name}"
    run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def emptying(*names: str) -> tuple[list[str], list[str]]:
    """SQL that empties ``names`` (every doorman table if none), as TRUNCATE CASCADE would.

    ``TRUNCATE ... RESTART IDENTITY CASCADE``: the tables named, those that refer to
    them, their sequences restarted. With DELETE (children first), a few milliseconds
    on a test's few rows; TRUNCATE makes new files, synced at commit: 30 to 200 ms.
    Returns the statements and the names of the tables they empty, the one parameter
    of the last statement.
    """
    from doorman.db.schema import metadata

    tables = metadata.sorted_tables  # parents before children
    chosen = set(names) if names else {table.name for table in tables}
    for table in tables:  # a child comes after its parents: one pass finds them all
        if any(key.column.table.name in chosen for key in table.foreign_keys):
            chosen.add(table.name)
    deletes = [f'DELETE FROM "{table.name}"' for table in reversed(tables) if table.name in chosen]
    return [*deletes, RESTART_SEQUENCES], sorted(chosen)


#: PostgreSQL: restart at 1 the sequences of the tables named in its one parameter.
RESTART_SEQUENCES = (
    "SELECT setval(s.oid::regclass, 1, false) FROM pg_class s"
    " JOIN pg_depend d ON d.objid = s.oid AND d.deptype IN ('a', 'i')"
    " JOIN pg_class t ON t.oid = d.refobjid"
    " WHERE s.relkind = 'S' AND t.relname = ANY($1::text[])"
)


@pytest.fixture
def emptied_postgres_url(postgres_url: str) -> str:
    """The run's PostgreSQL database with doorman's tables and not a row in them.

    As good as a database of the test's own, without the half second of server CPU
    that CREATE DATABASE costs: migrated on first use, every table emptied before
    each test that asks for it (the tests of one process run one after another).
    """
    import asyncpg

    from .helpers import migrated_postgres

    migrated_postgres(postgres_url)
    statements, tables = emptying()

    async def empty() -> None:
        connection = await asyncpg.connect(postgres_url, timeout=5)
        try:
            async with connection.transaction():
                for statement in statements[:-1]:
                    await connection.execute(statement)
                await connection.execute(statements[-1], tables)
        finally:
            await connection.close()

    with ThreadPoolExecutor(1) as pool:  # this fixture may be set up inside a test's loop
        pool.submit(asyncio.run, empty()).result()
    return postgres_url


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except (redis.RedisError, OSError) as error:
        _missing("Redis at " + REDIS_URL, error)
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own, cleaned up afterwards."""
    import redis

    prefix = f"doorman-test:{secrets.token_hex(4)}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        names = list(client.scan_iter(match=prefix + "*"))
        if names:
            client.delete(*names)
    finally:
        client.close()


async def make_store(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, *, empty_file: bool = False
) -> SessionStore:
    """A fresh store of ``kind``, on the real service where there is one.

    SQLite: a copy of a migrated database, unless ``empty_file`` (the store then makes
    its tables on first use, some 50 ms of CPU: the store contract does that).
    """
    if kind == "memory":
        return MemoryStore()
    if kind == "cookie":
        return CookieStore()
    if kind == "sqlite":
        from doorman.stores.sql import SQLStore

        from .helpers import migrated_sqlite

        path = tmp_path / "sessions.db"
        return SQLStore(str(path) if empty_file else migrated_sqlite(path))
    if kind == "postgres":
        from doorman.stores.sql import SQLStore

        store = SQLStore(request.getfixturevalue("postgres_url"))
        await store.flush()
        return store
    if kind == "redis":
        from doorman.stores.redis import RedisStore

        return RedisStore(
            request.getfixturevalue("redis_url"), prefix=request.getfixturevalue("redis_prefix")
        )
    raise ValueError(kind)


@pytest.fixture(params=STORE_KINDS)
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SessionStore]:
    """Each store kind in turn, closed afterwards."""
    store = await make_store(request.param, request, tmp_path)
    yield store
    await store.close()
