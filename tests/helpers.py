"""Small ASGI apps and cookie helpers shared by the session tests."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import inspect
import json
import os
import shutil
import socket
import tempfile
import threading
import warnings
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import starlette.exceptions

from doorman import Session, get_session
from doorman._types import ASGIApp, Receive, Scope, Send
from doorman.db.engine import create_engine
from doorman.db.migrations import migrate
from doorman.sessions import SessionSigner

from .conftest import RESTART_SEQUENCES, SECRET

with warnings.catch_warnings():
    # Starlette 1.x asks for the `httpx2` fork for its TestClient; plain httpx still works.
    # (The oldest Starlette allowed, tested by .ci/run, has no such warning.)
    warnings.simplefilter(
        "ignore", getattr(starlette.exceptions, "StarletteDeprecationWarning", DeprecationWarning)
    )
    from starlette.testclient import TestClient  # noqa: F401  (imported from here by tests)

COOKIE = "doorman_session"

Handler = Callable[[Scope, Session], Any | Awaitable[Any]]


def json_app(handler: Handler) -> ASGIApp:
    """A bare ASGI app: ``handler(scope, session)`` returns a body, or ``(status, body)``."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        result = handler(scope, get_session(scope))
        if inspect.isawaitable(result):
            result = await result
        status, body = result if isinstance(result, tuple) else (200, result)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})

    return app


def client(app: ASGIApp, base_url: str = "http://testserver", **options: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=base_url, **options)


def session_signer(secret: str | list[str] = SECRET) -> SessionSigner:
    """The signer the middleware uses for its cookie."""
    return SessionSigner(secret)


def parse_set_cookie(header: str) -> tuple[str, str, dict[str, str]]:
    """``(name, value, {attribute (lower case): value})`` of one Set-Cookie header."""
    first, *rest = header.split(";")
    name, _, value = first.strip().partition("=")
    attributes: dict[str, str] = {}
    for part in rest:
        key, _, attribute_value = part.strip().partition("=")
        assert key.lower() not in attributes, f"attribute {key} twice in {header!r}"
        attributes[key.lower()] = attribute_value
    return name, value, attributes


def only_set_cookie(response: httpx.Response) -> tuple[str, str, dict[str, str]]:
    """The response's one Set-Cookie header, parsed; fails when there is not exactly one."""
    headers = response.headers.get_list("set-cookie")
    assert len(headers) == 1, headers
    return parse_set_cookie(headers[0])


def vary(response: httpx.Response) -> list[str]:
    return [
        value.strip().lower()
        for header in response.headers.get_list("vary")
        for value in header.split(",")
    ]


@contextlib.contextmanager
def sqlite_threads_settled() -> Iterator[None]:
    """Wait for the worker threads of SQLite connections that failed to open.

    aiosqlite stops such a connection on its thread, which then reports to the event
    loop; unwaited, it may find the test's loop closed and fail a later test.
    """
    before = set(threading.enumerate())
    try:
        yield
    finally:
        for thread in set(threading.enumerate()) - before:
            if "_connection_worker_thread" in thread.name:
                thread.join(timeout=5)


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (for a real server in a test)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


_template: list[Path] = []  # this process's migrated SQLite database, made on first use


def migrated_sqlite(path: Path) -> str:
    """A SQLite database at ``path`` with doorman's tables, as ``doorman db migrate`` makes it.

    A database already there is left as it is.

    A copy of one migrated once per process: migrating a new file costs some 40 ms of
    CPU, and hundreds of tests start a sign-in server. The tests of migrations
    themselves start from empty files.
    """
    if not _template:
        directory = Path(tempfile.mkdtemp(prefix="doorman-template-"))
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        _migrate_in_own_loop(str(directory / "doorman.db"))
        _template.append(directory / "doorman.db")
    try:
        # Owner-only, as doorman makes its database files (a wider mode gets a warning).
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return str(path)  # a test's second server on the first one's database: kept
    with os.fdopen(descriptor, "wb") as copy, _template[0].open("rb") as template:
        shutil.copyfileobj(template, copy)
    return str(path)


_migrated_urls: set[str] = set()  # the PostgreSQL databases this process migrated


def migrated_postgres(url: str) -> None:
    """Migrate the PostgreSQL database at ``url``, once per process."""
    if url not in _migrated_urls:
        _migrate_in_own_loop(url)
        _migrated_urls.add(url)


def _migrate_in_own_loop(path: str) -> None:
    async def run() -> None:
        engine = create_engine(path)
        try:
            await migrate(engine)
        finally:
            await engine.dispose()

    # Its own thread and loop: the caller may be inside a running test loop.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result(timeout=60)


async def empty_accounts(doorman: Any, *, keep: tuple[str, ...] = ("doorman_settings",)) -> None:
    """Empty every doorman table of ``doorman``'s database but ``keep``, as a new one would be.

    For a ``Doorman`` shared by the tests of a module (its engine warm, its statements
    compiled once): events still queued are written first; the DELETEs go through
    doorman's own writes, so every epoch moves and nothing kept in the process (signed-in
    users, tokens, SQL sessions) outlives the rows; ids start again at 1. The event log
    also forgets the noisy rows it wrote lately (it writes a repeat once a window), or a
    test's first such row could be taken for a repeat of an earlier test's.
    """
    import sqlalchemy as sa

    from doorman.accounts._event_writes import Repeats
    from doorman.db.schema import metadata
    from doorman.db.transaction import connect

    await doorman.events.flush()
    doorman.events._repeats = Repeats()
    tables = [table for table in reversed(metadata.sorted_tables) if table.name not in keep]
    engine = doorman.engine
    async with connect(engine, write=True) as connection:
        for table in tables:
            await connection.execute(table.delete())
        names = [table.name for table in tables]
        if engine.dialect.name == "postgresql":
            await connection.exec_driver_sql(RESTART_SEQUENCES, (names,))
        elif (
            await connection.execute(
                sa.text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'")
            )
        ).first():
            await connection.execute(
                sa.text("DELETE FROM sqlite_sequence WHERE name IN :names").bindparams(
                    sa.bindparam("names", expanding=True)
                ),
                {"names": names},
            )


async def shared_and_emptied(request: Any, name: str) -> Any:
    """The module's shared server ``name`` (a fixture of module scope, autouse there, with
    a ``doorman``), emptied by ``empty_accounts``; None in a module that has none."""
    if name not in request.fixturenames:
        return None
    # Made already (autouse, module scope): this only looks it up.
    shared = request.getfixturevalue(name)
    await empty_accounts(shared.doorman)
    return shared
