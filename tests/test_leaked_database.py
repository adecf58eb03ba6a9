"""What someone with a copy of the database can do: not sign in, not as an admin above all.

The attack of issue 12: `doorman serve` on SQLite with no ``DOORMAN_SECRET``
keeps its secret in the database, and with the signed-cookie store that secret
is all a session cookie needs. From a read-only copy of the database, and
nothing else, a script forges sessions for every admin and every sign-in the
copy names, and tries them on the live server. Sign-ins are kept as hashes of
their keys, so none of them gets in. Also here: the database files are private
to their owner, and the server warns at start-up when the cookie store signs
with the secret kept in the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from doorman import CookieStore, SessionMiddleware, Signer, get_session
from doorman._types import Receive, Scope, Send
from doorman.config import Settings, resolve_secrets, warn_about_secret
from doorman.db import connect, create_engine
from doorman.db.migrations import migrate
from doorman.db.schema import users_table
from doorman.stores.sql import SQLStore

from .helpers import COOKIE, client
from .servers import (
    REQUEST_S,
    Server,
    add_users,
    running,
    sign_in,
    start_server,
    username_of,
    with_cookie,
)

ROOT = "root"


# -- the attack ------------------------------------------------------------------------------


def read_only_copy(db: Path, copy: Path) -> None:
    """Copy a live SQLite database as a backup would, opening it read-only."""
    source = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    target = sqlite3.connect(copy)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()


def stolen(copy: Path) -> dict[str, Any]:
    """Everything an attacker reads from the copy: the secret, the admins, ids of all kinds."""
    with contextlib.closing(sqlite3.connect(f"file:{copy}?mode=ro", uri=True)) as db:
        secret = db.execute("SELECT value FROM doorman_settings WHERE name = 'secret'").fetchone()
        admins = db.execute(
            "SELECT id, session_version, password_hash FROM doorman_users WHERE is_admin"
        ).fetchall()
        signins = [row[0] for row in db.execute("SELECT id FROM doorman_signins")]
        sessions = [row[0] for row in db.execute("SELECT id FROM doorman_sessions")]
    assert secret is not None, "the server was meant to keep its secret in the database"
    return {"secret": secret[0], "admins": admins, "signins": signins, "sessions": sessions}


def session_app(secret: str, data: dict[str, Any] | None) -> Any:
    """The cookie store under ``secret``: plants ``data`` in a session, or shows the session."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        session = get_session(scope)
        if data is not None:
            session.update(data)
        body = json.dumps(dict(session)).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return SessionMiddleware(app, secret=secret, store=CookieStore())


async def cookie_holding(secret: str, data: dict[str, Any]) -> str:
    async with client(session_app(secret, data)) as browser:
        await browser.get("/")
        return str(browser.cookies[COOKIE])


async def session_data(secret: str, cookie: str) -> dict[str, Any]:
    async with client(session_app(secret, None), cookies={COOKIE: cookie}) as browser:
        found: dict[str, Any] = (await browser.get("/")).json()
        return found


def auth_hash(secret: str, user_id: int, version: int, password_hash: str) -> str:
    """The MAC a signed-in session carries (doorman.core), made with the stolen secret."""
    signer = Signer(secret, salt="doorman.auth-hash")
    return signer.sign(f"{user_id}:{version}:{password_hash}").rpartition(".")[2]


async def admin_cookie(loot: dict[str, Any], admin: Any, signin: str | None) -> str:
    """A cookie-store session that says ``admin`` signed in, as sign-in ``signin``."""
    data = {"_auth_user_id": admin[0], "_auth_hash": auth_hash(loot["secret"], *admin)}
    if signin is not None:
        data["_auth_signin"] = signin
    return await cookie_holding(loot["secret"], data)


async def forged_cookies(loot: dict[str, Any]) -> list[str]:
    """Every cookie the loot can make: a cookie-store session per admin and sign-in id, and
    each id the copy holds signed as a server-side session key."""
    cookies = [
        await admin_cookie(loot, admin, signin)
        for admin in loot["admins"]
        for signin in [*loot["signins"], None]
    ]
    session_signer = Signer(loot["secret"], salt="doorman.session")
    return cookies + [session_signer.sign(key) for key in loot["sessions"] + loot["signins"]]


def admin_pages_answer(server: Server, cookie: str) -> int:
    answer = httpx.get(
        server.url + "/-/admin/users",
        headers=with_cookie(cookie, accept="application/json"),
        timeout=REQUEST_S,
    )
    return answer.status_code


@pytest.mark.e2e
@pytest.mark.parametrize("sessions", ["cookie", "db"])
def test_a_copy_of_the_database_does_not_make_an_admin(tmp_path: Path, sessions: str) -> None:
    db = tmp_path / "server" / "doorman.db"
    server = start_server(tmp_path / "server", db=str(db), sessions=sessions, secret=None)
    with running(server):
        add_users(str(db), ROOT, "bob", admins=(ROOT,))
        signed_in = sign_in(server.url, ROOT)
        bobs = sign_in(server.url, "bob")
        assert admin_pages_answer(server, signed_in) == 200
        read_only_copy(db, tmp_path / "copy.db")
        loot = stolen(tmp_path / "copy.db")
        assert len(loot["signins"]) == 2 and loot["admins"]

        forged = asyncio.run(forged_cookies(loot))
        for cookie in forged:
            assert username_of(server.url, cookie) is None
            assert admin_pages_answer(server, cookie) in (401, 403)

        if sessions == "cookie":  # the same forgery gets in with the key only the session has
            key = asyncio.run(session_data(loot["secret"], signed_in))["_auth_signin"]
            assert key not in loot["signins"]
            real = asyncio.run(admin_cookie(loot, loot["admins"][0], key))
            assert username_of(server.url, real) == ROOT
            # An account of one's own lends its sign-in key, but that sign-in is bob's.
            own = asyncio.run(session_data(loot["secret"], bobs))["_auth_signin"]
            borrowed = asyncio.run(admin_cookie(loot, loot["admins"][0], own))
            assert username_of(server.url, borrowed) is None
            assert username_of(server.url, bobs) == "bob"

        files = {path.name: mode_of(path) for path in db.parent.glob("doorman.db*")}
        assert {"doorman.db", "doorman.db-wal", "doorman.db-shm", "doorman.db-epoch"} <= set(files)
        assert set(files.values()) == {0o600}, files

    warned = [line for line in server.log().splitlines() if "DOORMAN_SECRET" in line]
    if sessions == "cookie":
        assert warned and warned[0].startswith("WARNING"), server.log()
    else:
        assert warned == []


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- the files ------------------------------------------------------------------------------


async def _write_everything(db: Path) -> None:
    """A migration, an account write and a session write: every file SQLite and doorman make."""
    engine = create_engine(str(db))
    try:
        store = SQLStore(engine=engine)
        await store.save(None, "{}", 2e9)
        async with connect(engine, write=True) as connection:
            await connection.execute(users_table.delete())
    finally:
        await engine.dispose()


def test_a_new_database_and_its_side_files_are_its_owners_alone(tmp_path: Path) -> None:
    before = os.umask(0o022)  # the usual umask: files 0644 unless doorman says otherwise
    try:
        asyncio.run(_write_everything(tmp_path / "doorman.db"))
    finally:
        os.umask(before)
    files = {path.name: mode_of(path) for path in tmp_path.iterdir()}
    assert set(files) >= {"doorman.db", "doorman.db-epoch", "doorman.db-sessions-epoch"}
    assert set(files.values()) == {0o600}, files


def test_files_open_to_others_are_made_private_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "doorman.db"
    asyncio.run(_write_everything(db))
    # An older doorman's files, and a WAL left open. closing(): sqlite3's `with` only commits.
    with contextlib.closing(sqlite3.connect(db)) as held, held:
        held.execute("PRAGMA journal_mode=WAL")
        held.execute("CREATE TABLE kept_open (x)")
        for path in tmp_path.iterdir():
            path.chmod(0o644)
        with caplog.at_level(logging.WARNING, logger="doorman.security"):
            asyncio.run(_write_everything(db))
        files = {path.name: mode_of(path) for path in tmp_path.iterdir()}
    assert "doorman.db-wal" in files and set(files.values()) == {0o600}, files
    told = {
        r.getMessage().split()[0] for r in caplog.records if "open to other users" in r.getMessage()
    }
    assert {str(db), f"{db}-wal", f"{db}-epoch", f"{db}-sessions-epoch"} <= told


def _another_process(db: Path, sql: str) -> str:
    """Run ``sql`` in a process of its own (a CLI command, another worker) and close it."""
    script = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
        "print(c.execute(sys.argv[2]).fetchall()); c.close()"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(db), sql],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.strip()


async def _writes_beside_another_process(db: Path) -> str:
    """A server's engine with two connections open, a CLI run beside it, then a write."""
    engine = create_engine(str(db))
    try:
        async with connect(engine, write=True) as connection:
            await connection.execute(sa.text("CREATE TABLE kept (x)"))
        async with engine.connect() as first, engine.connect() as second:  # a busy moment
            await first.execute(sa.text("SELECT count(*) FROM kept"))
            await second.execute(sa.text("SELECT count(*) FROM kept"))
        _another_process(db, "SELECT count(*) FROM kept")  # `doorman users list`, say
        async with connect(engine, write=True) as connection:
            await connection.execute(sa.text("INSERT INTO kept VALUES (1)"))
        return _another_process(db, "SELECT count(*) FROM kept")
    finally:
        await engine.dispose()


@pytest.mark.e2e  # other processes beside the engine: real ones, as the CLI would be
def test_keeping_the_files_private_keeps_sqlites_locks(tmp_path: Path) -> None:
    """Making the files private must not close a descriptor of the open database.

    Closing any descriptor of a file drops every POSIX lock the process holds on
    it: a process that closed its connection beside the server then thought
    itself the last one, checkpointed and deleted the WAL the server still wrote
    to, and what the server wrote next was seen by no one else, and lost.
    """
    db = tmp_path / "doorman.db"
    assert asyncio.run(_writes_beside_another_process(db)) == "[(1,)]"


# -- the warning, and the upgrade -----------------------------------------------------------


@pytest.mark.anyio
async def test_the_warning_is_for_the_cookie_store_signing_with_the_kept_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings.from_mapping({"db": str(tmp_path / "a.db"), "sessions": "cookie"})
    engine = create_engine(settings.db)
    try:
        kept = await resolve_secrets(settings, engine)
        own = "an own secret, set in DOORMAN_SECRET, " + "x" * 10
        with caplog.at_level(logging.WARNING, logger="doorman.security"):
            await warn_about_secret(SQLStore(engine=engine), engine, kept)
            await warn_about_secret(CookieStore(), engine, [own])
            assert caplog.records == []
            await warn_about_secret(CookieStore(), engine, [own, *kept])  # rotating away
    finally:
        await engine.dispose()
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and "Set DOORMAN_SECRET" in record.getMessage()


@pytest.mark.anyio
async def test_upgrading_ends_the_sign_ins_kept_in_plain_text(tmp_path: Path) -> None:
    engine = create_engine(str(tmp_path / "old.db"))
    try:
        await migrate(engine, "0002")
        async with connect(engine, write=True) as connection:
            await connection.execute(
                sa.text(
                    "INSERT INTO doorman_users (id, username, username_key, created_at) "
                    "VALUES (1, 'root', 'root', 0)"
                )
            )
            await connection.execute(
                sa.text(
                    "INSERT INTO doorman_signins (id, user_id, created_at, last_seen) "
                    "VALUES ('a-key-any-old-copy-holds', 1, 0, 0)"
                )
            )
        await migrate(engine)
        async with connect(engine) as connection:
            left = await connection.execute(sa.text("SELECT count(*) FROM doorman_signins"))
            assert left.scalar_one() == 0
    finally:
        await engine.dispose()
