"""The per-process cache of signed-in users, and the change epoch that keeps it honest.

Two ``Doorman`` instances on one SQLite file stand for two workers: each has
its own engine and connections, and shares only the file (and the epoch file
beside it), as two ``doorman serve`` processes do. One test uses a real second
process: the ``doorman`` CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import os
import sqlite3
import sys
import threading
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import create_async_engine

import doorman.db.epochs as cache_module
from doorman.accounts.passwords import PasswordHasher
from doorman.accounts.signins import signin_id
from doorman.core import Doorman
from doorman.db.epoch_reads import reads_started
from doorman.db.epochs import EpochCache, FileEpoch, LocalEpoch, NoEpoch, PostgresEpoch, epoch_of
from doorman.db.migrations import ensure_schema
from doorman.stores import SQLStore

from .conftest import SECRET
from .helpers import empty_accounts, migrated_sqlite

pytestmark = pytest.mark.anyio
PASSWORD = "correct horse battery staple"


def fast_hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=1, memory_cost=1024)


def new_doorman(db: str) -> Doorman:
    return Doorman(db, secret=SECRET, hasher=fast_hasher(), entry_points=False)


@pytest.fixture
async def workers(tmp_path: Path) -> AsyncIterator[tuple[Doorman, Doorman]]:
    """Two workers on one SQLite file."""
    db = migrated_sqlite(tmp_path / "doorman.db")
    first, second = new_doorman(db), new_doorman(db)
    try:
        # Both have started (a first start migrates, a write that moves the epoch): a change
        # made in a test must move the epoch itself, not ride on the other worker's start.
        await ensure_schema(first.engine)
        await ensure_schema(second.engine)
        yield first, second
    finally:
        await first.close()
        await second.close()


def count_selects(doorman: Doorman | SQLStore) -> list[str]:
    """Every SELECT this instance's engine runs from now on."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append(statement)

    event.listen(doorman.engine.sync_engine, "before_cursor_execute", record)
    return seen


async def signed_in_alice(doorman: Doorman) -> tuple[int, str]:
    await ensure_schema(doorman.engine)  # as its start-up would
    alice = await doorman.create_user("alice", PASSWORD)
    key = await doorman.signins.record(alice, address=None)
    return alice.id, signin_id(key)


async def test_a_signed_in_user_is_read_once_while_nothing_changes(
    workers: tuple[Doorman, Doorman],
) -> None:
    doorman, _ = workers
    user_id, signin = await signed_in_alice(doorman)
    selects = count_selects(doorman)

    for _ in range(5):
        user, last_seen = await doorman.users.get_signed_in(user_id, signin)
        assert user is not None and user.username == "alice" and last_seen is not None

    assert len(selects) == 1


async def test_a_new_sign_in_or_a_failed_password_does_not_empty_the_cache(
    workers: tuple[Doorman, Doorman],
) -> None:
    """Writes that cannot end a session leave the epoch alone: busy sites keep their cache."""
    doorman, other_worker = workers
    user_id, signin = await signed_in_alice(doorman)
    await ensure_schema(other_worker.engine)  # a worker's first start may migrate: a change
    await doorman.users.get_signed_in(user_id, signin)
    epoch = epoch_of(doorman.engine).current()

    bob = await other_worker.create_user("bob", PASSWORD)
    await other_worker.signins.record(bob, address="203.0.113.9")
    await other_worker.users.record_login(bob, time.time())
    await other_worker.tokens.create(bob, name="ci")
    with pytest.raises(Exception, match="Wrong username"):
        await other_worker.authenticate("bob", "not the password", client="203.0.113.9")
    store = SQLStore(engine=other_worker.engine)
    key = await store.save(None, '{"theme": "dark"}', time.time() + 60)
    await store.save(key, '{"theme": "light"}', time.time() + 60)
    await store.delete(key)

    assert epoch_of(doorman.engine).current() == epoch
    selects = count_selects(doorman)
    await doorman.users.get_signed_in(user_id, signin)
    assert selects == []


async def _disable(worker: Doorman, alice: Any, signin: str) -> None:
    await worker.users.set_active(alice, False)


async def _new_password(worker: Doorman, alice: Any, signin: str) -> None:
    await worker.set_password(alice, "another long passphrase 42")


async def _revoke_the_sign_in(worker: Doorman, alice: Any, signin: str) -> None:
    await worker.signins.revoke(signin)


async def _sign_out_everywhere(worker: Doorman, alice: Any, signin: str) -> None:
    await worker.end_sessions(alice)


async def _delete(worker: Doorman, alice: Any, signin: str) -> None:
    await worker.users.delete(alice)


async def _sign_out_every_sign_in(worker: Doorman, alice: Any, signin: str) -> None:
    await worker.signins.revoke_all(alice)


async def _sweep_stale_sign_ins(worker: Doorman, alice: Any, signin: str) -> None:
    await worker.signins.clear_stale(0)


async def _new_groups(worker: Doorman, alice: Any, signin: str) -> None:
    await worker.users.set_groups(alice, ["editors"])


async def _make_admin(worker: Doorman, alice: Any, signin: str) -> None:
    await worker.users.set_admin(alice, True)


CHANGES: dict[str, Callable[[Doorman, Any, str], Awaitable[None]]] = {
    "disabled": _disable,
    "new password": _new_password,
    "sign-in revoked": _revoke_the_sign_in,
    "signed out everywhere": _sign_out_everywhere,
    "deleted": _delete,
    "every sign-in revoked": _sign_out_every_sign_in,
    "stale sign-ins swept": _sweep_stale_sign_ins,
    "new groups": _new_groups,
    "made admin": _make_admin,
}


@pytest.mark.parametrize("change", CHANGES)
async def test_a_change_by_another_worker_is_seen_on_the_next_request(
    workers: tuple[Doorman, Doorman], change: str
) -> None:
    doorman, other_worker = workers
    user_id, signin = await signed_in_alice(doorman)
    before = await doorman.users.get_signed_in(user_id, signin)
    assert before[0] is not None

    alice = await other_worker.users.require("alice")
    await CHANGES[change](other_worker, alice, signin)
    fresh = await other_worker.users.get_signed_in(user_id, signin)

    assert fresh != before, "the change must show in what is read"
    assert await doorman.users.get_signed_in(user_id, signin) == fresh


@pytest.mark.e2e
def test_a_change_from_another_process_is_seen_on_the_next_request(tmp_path: Path) -> None:
    """The real CLI, in its own process, disables the user: the server's cache lets go."""
    import anyio

    db = str(tmp_path / "doorman.db")

    async def sign_in_and_read() -> tuple[Doorman, int, str]:
        doorman = new_doorman(db)
        user_id, signin = await signed_in_alice(doorman)
        user, _ = await doorman.users.get_signed_in(user_id, signin)
        assert user is not None and user.is_active
        return doorman, user_id, signin

    async def check() -> None:
        doorman, user_id, signin = await sign_in_and_read()
        try:
            environment = {**os.environ, "DOORMAN_SECRET": SECRET}
            command = [sys.executable, "-m", "doorman", "users", "disable", "alice", "--db", db]
            done = await anyio.run_process(command, env=environment, check=False)
            assert done.returncode == 0, done.stderr.decode()
            user, _ = await doorman.users.get_signed_in(user_id, signin)
            assert user is not None and not user.is_active
        finally:
            await doorman.close()

    anyio.run(check)


async def test_a_change_behind_doormans_back_is_seen_within_max_age(
    workers: tuple[Doorman, Doorman], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An UPDATE typed into the database moves no epoch: the entry's age bounds the delay."""
    doorman, _ = workers
    user_id, signin = await signed_in_alice(doorman)
    await doorman.users.get_signed_in(user_id, signin)

    # closing(): sqlite3's own `with` commits but never closes (Python 3.13 warns).
    with contextlib.closing(sqlite3.connect(tmp_path / "doorman.db")) as connection, connection:
        connection.execute("UPDATE doorman_users SET is_active = 0")
    kept, _ = await doorman.users.get_signed_in(user_id, signin)
    assert kept is not None and kept.is_active, "within max_age the kept answer stands"

    later = time.monotonic() + cache_module.MAX_AGE + 1
    monkeypatch.setattr(cache_module.time, "monotonic", lambda: later)
    user, _ = await doorman.users.get_signed_in(user_id, signin)
    assert user is not None and not user.is_active


async def test_only_a_live_sign_in_is_kept(workers: tuple[Doorman, Doorman]) -> None:
    doorman, _ = workers
    user_id, _ = await signed_in_alice(doorman)
    assert await doorman.users.get_signed_in(user_id, "no-such-sign-in") == (
        await doorman.users.require("alice"),
        None,
    )
    selects = count_selects(doorman)
    await doorman.users.get_signed_in(user_id, "no-such-sign-in")
    assert len(selects) == 1, "a failed check is asked again, never remembered"


async def test_a_sign_in_id_is_kept_for_its_own_user_only(workers: tuple[Doorman, Doorman]) -> None:
    doorman, _ = workers
    user_id, signin = await signed_in_alice(doorman)
    await doorman.users.get_signed_in(user_id, signin)
    bob = await doorman.create_user("bob", PASSWORD)

    assert await doorman.users.get_signed_in(bob.id, signin) == (bob, None)


def test_the_cache_is_bounded_and_drops_the_oldest_entry() -> None:
    cache: EpochCache[int] = EpochCache(max_entries=3)
    for number in range(5):
        cache.put(b"epoch", f"signin-{number}", number)

    assert len(cache) == 3
    assert cache.get(b"epoch", "signin-0") is None
    assert cache.get(b"epoch", "signin-4") == 4
    assert cache.get(b"another epoch", "signin-4") is None


# -- API tokens -------------------------------------------------------------------------


async def test_a_token_is_read_once_while_nothing_changes(
    workers: tuple[Doorman, Doorman],
) -> None:
    doorman, _ = workers
    alice = await doorman.create_user("alice", PASSWORD)
    _, text = await doorman.tokens.create(alice, name="ci")
    selects = count_selects(doorman)

    for _ in range(5):
        found = await doorman.tokens.verify_with_user(text)
        assert found is not None and found[1].username == "alice"

    assert len(selects) == 1


async def test_a_kept_token_still_needs_its_secret(workers: tuple[Doorman, Doorman]) -> None:
    """The id is public (lists show it): knowing it, and having it kept, is not enough."""
    doorman, _ = workers
    alice = await doorman.create_user("alice", PASSWORD)
    _, text = await doorman.tokens.create(alice, name="ci")
    assert await doorman.tokens.verify_with_user(text) is not None

    forged = text[:-1] + ("A" if text[-1] != "A" else "B")
    assert await doorman.tokens.verify_with_user(forged) is None
    assert await doorman.tokens.verify_with_user(text) is not None


async def test_a_kept_token_expires_on_time(
    workers: tuple[Doorman, Doorman], monkeypatch: pytest.MonkeyPatch
) -> None:
    import doorman.accounts.tokens as tokens_module

    doorman, _ = workers
    alice = await doorman.create_user("alice", PASSWORD)
    _, text = await doorman.tokens.create(alice, name="ci", expires_in=60)
    assert await doorman.tokens.verify_with_user(text) is not None

    later = time.time() + 61
    monkeypatch.setattr(tokens_module.time, "time", lambda: later)
    assert await doorman.tokens.verify_with_user(text) is None


async def _revoke_the_token(worker: Doorman, token_id: str) -> None:
    await worker.tokens.revoke(token_id)


async def _revoke_all_tokens(worker: Doorman, token_id: str) -> None:
    await worker.tokens.revoke_all(await worker.users.require("alice"))


async def _disable_the_owner(worker: Doorman, token_id: str) -> None:
    await worker.users.set_active(await worker.users.require("alice"), False)


async def _delete_the_owner(worker: Doorman, token_id: str) -> None:
    await worker.users.delete(await worker.users.require("alice"))


TOKEN_CHANGES: dict[str, Callable[[Doorman, str], Awaitable[None]]] = {
    "revoked": _revoke_the_token,
    "all revoked": _revoke_all_tokens,
    "owner disabled": _disable_the_owner,
    "owner deleted": _delete_the_owner,
}


@pytest.mark.parametrize("change", TOKEN_CHANGES)
async def test_a_token_change_by_another_worker_is_seen_on_the_next_request(
    workers: tuple[Doorman, Doorman], change: str
) -> None:
    doorman, other_worker = workers
    alice = await doorman.create_user("alice", PASSWORD)
    token, text = await doorman.tokens.create(alice, name="ci")
    assert await doorman.tokens.verify_with_user(text) is not None

    await TOKEN_CHANGES[change](other_worker, token.id)

    found = await doorman.tokens.verify_with_user(text)
    assert found is None or not found[1].is_active


@pytest.fixture
async def postgres_workers(postgres_url: str) -> AsyncIterator[tuple[Doorman, Doorman]]:
    """Two workers on one PostgreSQL database (they could be on two hosts)."""
    first, second = new_doorman(postgres_url), new_doorman(postgres_url)
    await ensure_schema(first.engine)
    await ensure_schema(second.engine)

    # Every row goes: another module's test may have left an "Alice", whose name folds
    # to alice's (seen in a shuffled run: "the username 'alice' is taken").
    await empty_accounts(first)
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


async def test_postgres_keeps_rows_under_an_epoch_read_once_per_request(
    postgres_workers: tuple[Doorman, Doorman],
) -> None:
    """The epoch is a row: each request reads it, not the user and sign-in rows.

    The epoch is read through the driver itself (``doorman.epochs``), past
    SQLAlchemy's events: its reads are counted where they start.
    """
    doorman, _ = postgres_workers
    assert isinstance(epoch_of(doorman.engine), PostgresEpoch)
    user_id, signin = await signed_in_alice(doorman)
    selects = count_selects(doorman)
    epoch_reads = reads_started()

    for _ in range(3):
        user, _ = await doorman.users.get_signed_in(user_id, signin)
        assert user is not None

    users_reads = [s for s in selects if "doorman_users" in s]
    epoch_reads = reads_started() - epoch_reads
    assert (len(users_reads), epoch_reads) == (1, 4), "one miss (read twice), two hits"


@pytest.mark.parametrize("change", CHANGES)
async def test_on_postgres_a_change_by_another_worker_is_seen_on_the_next_request(
    postgres_workers: tuple[Doorman, Doorman], change: str
) -> None:
    doorman, other_worker = postgres_workers
    user_id, signin = await signed_in_alice(doorman)
    before = await doorman.users.get_signed_in(user_id, signin)

    alice = await other_worker.users.require("alice")
    await CHANGES[change](other_worker, alice, signin)
    fresh = await other_worker.users.get_signed_in(user_id, signin)

    assert fresh != before, "the change must show in what is read"
    assert await doorman.users.get_signed_in(user_id, signin) == fresh


async def test_on_postgres_concurrent_requests_share_one_epoch_read(
    postgres_workers: tuple[Doorman, Doorman],
) -> None:
    doorman, _ = postgres_workers
    user_id, signin = await signed_in_alice(doorman)
    await doorman.users.get_signed_in(user_id, signin)
    selects = count_selects(doorman)
    epoch_reads = reads_started()

    found = await asyncio.gather(*(doorman.users.get_signed_in(user_id, signin) for _ in range(20)))

    assert all(user is not None for user, _ in found)
    assert (selects, reads_started() - epoch_reads) == ([], 1), "one epoch read, no other"


async def test_on_postgres_a_database_that_is_down_fails_the_epoch_read() -> None:
    from doorman.exceptions import StoreError

    doorman = new_doorman("postgresql://postgres@127.0.0.1:1/test")
    try:
        with pytest.raises(StoreError):
            await epoch_of(doorman.engine).read()
    finally:
        await doorman.close()


async def test_the_epoch_lives_beside_the_database_file(tmp_path: Path) -> None:
    doorman = new_doorman(str(tmp_path / "doorman.db"))
    try:
        epoch = epoch_of(doorman.engine)
        assert isinstance(epoch, FileEpoch)
        assert epoch.path == str(tmp_path / "doorman.db") + "-epoch"
        before = epoch.current()
        epoch.advance()
        assert epoch.current() != before
        assert (tmp_path / "doorman.db-epoch").read_bytes() == epoch.current()
    finally:
        await doorman.close()


async def test_a_worker_given_a_symlink_moves_the_same_epoch(tmp_path: Path) -> None:
    """`doorman users disable --db link.db` must reach a server started with the file's name.

    SQLite follows the link to the one database; the epoch file has to be found the same way.
    """
    db, link = tmp_path / "doorman.db", tmp_path / "link.db"
    link.symlink_to(db)
    server, cli = new_doorman(str(db)), new_doorman(str(link))
    try:
        await ensure_schema(server.engine)
        await ensure_schema(cli.engine)
        user_id, signin = await signed_in_alice(server)
        await server.users.get_signed_in(user_id, signin)  # kept by the server
        await cli.users.set_active(await cli.users.require("alice"), False)
        user, _ = await server.users.get_signed_in(user_id, signin)
        assert user is not None and not user.is_active
    finally:
        await server.close()
        await cli.close()


async def test_an_in_memory_database_has_an_epoch_of_its_own() -> None:
    engine = create_async_engine("sqlite+aiosqlite://")
    try:
        epoch = epoch_of(engine)
        assert isinstance(epoch, LocalEpoch)
        before = epoch.current()
        epoch.advance()
        assert epoch.current() != before
    finally:
        await engine.dispose()


async def test_an_epoch_file_that_cannot_be_made_means_nothing_is_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "doorman.db-epoch").mkdir()  # in the way
    doorman = new_doorman(str(tmp_path / "doorman.db"))
    try:
        assert isinstance(epoch_of(doorman.engine), NoEpoch)
        assert "every request will read the database" in caplog.text
        user_id, signin = await signed_in_alice(doorman)
        await doorman.users.set_active(await doorman.users.require("alice"), False)
        user, _ = await doorman.users.get_signed_in(user_id, signin)
        assert user is not None and not user.is_active
    finally:
        await doorman.close()


async def test_a_remembered_auth_hash_matches_only_its_own_user_and_version(
    workers: tuple[Doorman, Doorman],
) -> None:
    """Verified session auth hashes are remembered; a change of user or version still fails."""
    doorman, _ = workers
    alice = await doorman.create_user("alice", PASSWORD)
    bob = await doorman.create_user("bob", PASSWORD)
    good = doorman.session_auth_hash(alice)

    assert doorman.session_auth_hash_matches(alice, good)
    assert doorman.session_auth_hash_matches(alice, good), "remembered"
    assert not doorman.session_auth_hash_matches(
        alice, good[:-1] + ("A" if good[-1] != "A" else "B")
    )
    assert not doorman.session_auth_hash_matches(bob, good)
    signed_out = await doorman.users.end_sessions(alice)
    assert not doorman.session_auth_hash_matches(signed_out, good)
    assert doorman.session_auth_hash_matches(signed_out, doorman.session_auth_hash(signed_out))


async def test_concurrent_misses_read_the_database_once(workers: tuple[Doorman, Doorman]) -> None:
    """When an entry expires on a busy sign-in, the requests in flight do not all read."""
    import asyncio

    doorman, _ = workers
    user_id, signin = await signed_in_alice(doorman)
    alice = await doorman.users.require("alice")
    _, text = await doorman.tokens.create(alice, name="ci")
    selects = count_selects(doorman)

    sessions = await asyncio.gather(
        *(doorman.users.get_signed_in(user_id, signin) for _ in range(20))
    )
    tokens = await asyncio.gather(*(doorman.tokens.verify_with_user(text) for _ in range(20)))

    assert all(user is not None and user.username == "alice" for user, _ in sessions)
    assert all(found is not None and found[1].username == "alice" for found in tokens)
    assert len(selects) == 2, "one read for the sign-in, one for the token"


# -- sessions in the SQL store ----------------------------------------------------------


@pytest.fixture
async def two_stores(tmp_path: Path) -> AsyncIterator[tuple[SQLStore, SQLStore]]:
    """Two workers' session stores on one SQLite file."""
    db = migrated_sqlite(tmp_path / "doorman.db")
    first, second = SQLStore(db), SQLStore(db)
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


async def test_a_session_is_read_once_while_no_session_changes(
    two_stores: tuple[SQLStore, SQLStore],
) -> None:
    store, _ = two_stores
    key = await store.save(None, '{"d": 1}', time.time() + 60)
    selects = count_selects(store)

    assert [await store.load(key) for _ in range(5)] == ['{"d": 1}'] * 5
    assert len(selects) == 1


async def test_a_session_changed_or_ended_by_another_worker_is_seen_next(
    two_stores: tuple[SQLStore, SQLStore],
) -> None:
    store, other_worker = two_stores
    key = await store.save(None, '{"d": 1}', time.time() + 60)
    assert await store.load(key) == '{"d": 1}'

    await other_worker.save(key, '{"d": 2}', time.time() + 60)
    assert await store.load(key) == '{"d": 2}'

    await other_worker.delete(key)
    assert await store.load(key) is None


async def test_a_kept_session_still_expires_on_time(
    two_stores: tuple[SQLStore, SQLStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    import doorman.stores.sql as sql_module

    store, _ = two_stores
    key = await store.save(None, '{"d": 1}', time.time() + 60)
    assert await store.load(key) == '{"d": 1}'

    later = time.time() + 61
    monkeypatch.setattr(sql_module.time, "time", lambda: later)
    assert await store.load(key) is None


@pytest.mark.e2e
def test_sessions_flushed_by_the_cli_are_gone_on_the_next_request(tmp_path: Path) -> None:
    import anyio

    db = str(tmp_path / "doorman.db")

    async def check() -> None:
        store = SQLStore(db)
        try:
            key = await store.save(None, '{"d": 1}', time.time() + 60)
            assert await store.load(key) == '{"d": 1}'
            environment = {**os.environ, "DOORMAN_SECRET": SECRET}
            command = [sys.executable, "-m", "doorman", "sessions", "flush", "--yes", "--db", db]
            done = await anyio.run_process(command, env=environment, check=False)
            assert done.returncode == 0, done.stderr.decode()
            assert await store.load(key) is None
        finally:
            await store.close()

    anyio.run(check)


# -- changes that land while a read is under way ------------------------------------------


T = TypeVar("T")


class Elsewhere:
    """A worker on a thread and event loop of its own, like another process.

    A SQLAlchemy event hook runs synchronously in the middle of a statement or
    a commit; from there this worker can act (and finish) before the first
    worker goes on, which is how two processes interleave.
    """

    def __init__(self, db: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.doorman: Doorman = self.run(self._make(db))

    @staticmethod
    async def _make(db: str) -> Doorman:
        return new_doorman(db)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=20)

    def close(self) -> None:
        self.run(self.doorman.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


async def test_a_read_made_while_a_change_commits_is_not_kept_past_it(tmp_path: Path) -> None:
    """The epoch moves *after* the commit: what another worker reads just before is stale."""
    db = migrated_sqlite(tmp_path / "doorman.db")
    writer = new_doorman(db)
    reader = Elsewhere(db)
    try:
        user_id, signin = await signed_in_alice(writer)
        reader.run(reader.doorman.users.get_signed_in(user_id, "warm-up"))  # schema checked
        during: list[Any] = []

        def read_meanwhile(_connection: Any) -> None:  # the revoke is about to commit
            during.append(reader.run(reader.doorman.users.get_signed_in(user_id, signin)))

        event.listen(writer.engine.sync_engine, "commit", read_meanwhile)
        try:
            assert await writer.signins.revoke(signin)
        finally:
            event.remove(writer.engine.sync_engine, "commit", read_meanwhile)

        assert during and during[-1][1] is not None, "the read before the commit saw the sign-in"
        assert reader.run(reader.doorman.users.get_signed_in(user_id, signin))[1] is None
    finally:
        reader.close()
        await writer.close()


async def test_a_change_committed_during_a_read_is_seen_on_the_next_request(
    tmp_path: Path,
) -> None:
    """An entry is tagged with the epoch from *before* its read, never one read after it."""
    db = migrated_sqlite(tmp_path / "doorman.db")
    reader = new_doorman(db)
    writer = Elsewhere(db)
    try:
        user_id, signin = await signed_in_alice(reader)
        writer.run(writer.doorman.users.get_signed_in(user_id, "warm-up"))  # schema checked
        fired: list[bool] = []

        def revoke_meanwhile(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if "signin_seen" in statement and not fired:
                fired.append(True)  # the read has its snapshot: now another worker revokes
                assert writer.run(writer.doorman.signins.revoke(signin))

        event.listen(reader.engine.sync_engine, "after_cursor_execute", revoke_meanwhile)
        try:
            user, last_seen = await reader.users.get_signed_in(user_id, signin)
        finally:
            event.remove(reader.engine.sync_engine, "after_cursor_execute", revoke_meanwhile)

        assert fired and user is not None and last_seen is not None, "read before the revoke"
        assert (await reader.users.get_signed_in(user_id, signin))[1] is None
    finally:
        writer.close()
        await reader.close()


async def test_a_token_read_that_waited_sees_a_change_made_meanwhile(tmp_path: Path) -> None:
    """A request that waited for another's read takes the epoch again before using its answer."""
    db = migrated_sqlite(tmp_path / "doorman.db")
    reader = new_doorman(db)
    writer = Elsewhere(db)
    try:
        await ensure_schema(reader.engine)  # as its start-up would
        alice = await reader.create_user("alice", PASSWORD)
        token, text = await reader.tokens.create(alice, name="ci")
        writer.run(writer.doorman.users.get_signed_in(alice.id, "warm-up"))  # schema checked
        fired: list[bool] = []

        def revoke_meanwhile(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if "token_secret_hash" in statement and not fired:
                fired.append(True)  # the first read has its snapshot; the second one waits
                assert writer.run(writer.doorman.tokens.revoke(token.id))

        event.listen(reader.engine.sync_engine, "after_cursor_execute", revoke_meanwhile)
        try:
            first, second = await asyncio.gather(
                reader.tokens.verify_with_user(text), reader.tokens.verify_with_user(text)
            )
        finally:
            event.remove(reader.engine.sync_engine, "after_cursor_execute", revoke_meanwhile)

        assert fired and first is not None, "the first read began before the revoke"
        assert second is None, "the waiting read began before it too, but used its answer after"
        assert await reader.tokens.verify_with_user(text) is None
    finally:
        writer.close()
        await reader.close()


async def test_signing_every_session_of_a_user_out_is_seen_by_another_worker(
    workers: tuple[Doorman, Doorman],
) -> None:
    """``SignIns.revoke_all`` on its own (the admin's "sign out everywhere" list action)."""
    doorman, other_worker = workers
    await ensure_schema(other_worker.engine)  # its first start moves the epoch: not the test
    user_id, signin = await signed_in_alice(doorman)
    assert (await doorman.users.get_signed_in(user_id, signin))[1] is not None

    assert await other_worker.signins.revoke_all(await other_worker.users.require("alice")) == 1

    assert (await doorman.users.get_signed_in(user_id, signin))[1] is None


async def test_a_stale_sign_in_swept_by_another_worker_is_seen_on_the_next_request(
    workers: tuple[Doorman, Doorman],
) -> None:
    doorman, other_worker = workers
    await ensure_schema(other_worker.engine)  # its first start moves the epoch: not the test
    user_id, signin = await signed_in_alice(doorman)
    assert (await doorman.users.get_signed_in(user_id, signin))[1] is not None

    await asyncio.sleep(0.01)
    assert await other_worker.signins.clear_stale(0) == 1

    assert (await doorman.users.get_signed_in(user_id, signin))[1] is None


async def test_a_forged_auth_hash_is_refused_every_time(workers: tuple[Doorman, Doorman]) -> None:
    """Only verified pairs are remembered: a failure asked again fails again."""
    doorman, _ = workers
    alice = await doorman.create_user("alice", PASSWORD)
    good = doorman.session_auth_hash(alice)
    forged = good[:-1] + ("A" if good[-1] != "A" else "B")

    for _ in range(3):
        assert not doorman.session_auth_hash_matches(alice, forged)
    assert doorman.session_auth_hash_matches(alice, good)


async def test_sessions_swept_by_another_worker_are_gone_on_the_next_request(
    two_stores: tuple[SQLStore, SQLStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweeper's clock is a little ahead of this worker's: its sweep still counts."""
    import doorman.stores.sql as sql_module

    store, other_worker = two_stores
    key = await store.save(None, '{"d": 1}', time.time() + 60)
    assert await store.load(key) == '{"d": 1}'

    real = time.time
    with monkeypatch.context() as patched:
        patched.setattr(sql_module.time, "time", lambda: real() + 61)
        assert await other_worker.clear_expired() == 1

    assert await store.load(key) is None


async def test_noting_activity_does_not_empty_every_worker_s_cache(
    workers: tuple[Doorman, Doorman],
) -> None:
    """``last_seen`` cannot end a session: writing it leaves the accounts epoch alone."""
    doorman, other_worker = workers
    user_id, signin = await signed_in_alice(doorman)
    await doorman.users.get_signed_in(user_id, signin)
    epoch = epoch_of(doorman.engine).current()

    await other_worker.signins.seen(signin, time.time() - 120)

    assert epoch_of(doorman.engine).current() == epoch


@pytest.mark.parametrize("change", CHANGES)
async def test_each_change_itself_moves_the_epoch(
    workers: tuple[Doorman, Doorman], change: str
) -> None:
    """As the test above, but the other worker has started first: its own start
    (a migration check, a write) moves the epoch too, and would hide a change that does not."""
    doorman, other_worker = workers
    await ensure_schema(other_worker.engine)
    user_id, signin = await signed_in_alice(doorman)
    alice = await other_worker.users.require("alice")
    before = await doorman.users.get_signed_in(user_id, signin)
    assert before[0] is not None

    await CHANGES[change](other_worker, alice, signin)
    fresh = await other_worker.users.get_signed_in(user_id, signin)

    assert fresh != before, "the change must show in what is read"
    assert await doorman.users.get_signed_in(user_id, signin) == fresh


@pytest.mark.parametrize("change", TOKEN_CHANGES)
async def test_each_token_change_itself_moves_the_epoch(
    workers: tuple[Doorman, Doorman], change: str
) -> None:
    doorman, other_worker = workers
    await ensure_schema(other_worker.engine)
    alice = await doorman.create_user("alice", PASSWORD)
    token, text = await doorman.tokens.create(alice, name="ci")
    assert await doorman.tokens.verify_with_user(text) is not None

    await TOKEN_CHANGES[change](other_worker, token.id)

    found = await doorman.tokens.verify_with_user(text)
    assert found is None or not found[1].is_active


async def test_a_cancelled_waiter_leaves_the_others_in_single_file(
    workers: tuple[Doorman, Doorman],
) -> None:
    """A request cancelled while it waits for another's read does not open a second read."""
    from .test_cache import count_selects

    doorman, _ = workers
    user_id, signin = await signed_in_alice(doorman)
    selects = count_selects(doorman)

    first = asyncio.ensure_future(doorman.users.get_signed_in(user_id, signin))
    waiter = asyncio.ensure_future(doorman.users.get_signed_in(user_id, signin))
    await asyncio.sleep(0)  # the first is reading, the second waits for it
    waiter.cancel()
    await asyncio.sleep(0)
    third = asyncio.ensure_future(doorman.users.get_signed_in(user_id, signin))
    (user, _), (again, _) = await asyncio.gather(first, third)

    assert waiter.cancelled() and user is not None and again == user
    assert len(selects) == 1


def _left_behind(url: str) -> tuple[weakref.ref[Any], weakref.ref[Any]]:
    """Weak references to the engine and the event loop of a ``Doorman`` that wrote,
    read and was closed on a loop of its own, as each test (a user's too) does."""
    seen: list[weakref.ref[Any]] = []

    async def use() -> None:
        doorman = new_doorman(url)
        # A loop can hold anything: anyio's test runner holds, through the handler it
        # sets, the context of the test and so its app. Here the handler holds the app.
        handler = functools.partial(_exception_in, doorman)
        asyncio.get_running_loop().set_exception_handler(handler)
        try:
            user_id, signin = await signed_in_alice(doorman)  # a write
            user, _ = await doorman.users.get_signed_in(user_id, signin)  # an epoch read
            assert user is not None
        finally:
            await doorman.close()
        seen.extend([weakref.ref(doorman.engine), weakref.ref(asyncio.get_running_loop())])

    asyncio.run(use())
    return seen[0], seen[1]


def _exception_in(app: Doorman, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    loop.default_exception_handler(context)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_closed_doorman_s_engine_and_loop_are_let_go(
    database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """What doorman keeps per engine (write lock, epochs, shared epoch reads) holds
    neither the engine nor a loop: an app made and ended per test must not stay."""
    if database == "sqlite":
        url = migrated_sqlite(tmp_path / "doorman.db")
    else:
        url = request.getfixturevalue("emptied_postgres_url")
    engine, loop = _left_behind(url)
    # aiosqlite's thread for a closed connection ends on its own, a moment later; till
    # then its last future holds the loop.
    for _ in range(200):
        gc.collect()
        if (engine(), loop()) == (None, None):
            break
        time.sleep(0.01)
    assert (engine(), loop()) == (None, None), "kept alive after the Doorman and its loop ended"


# -- whether an account needs a second step: HTTP Basic asks on every request --------------


async def _turn_on_totp(worker: Doorman, alice: Any) -> None:
    import pyotp

    secret = await worker.totp.start(alice)  # an INSERT: not on yet
    assert await worker.totp.confirm(alice, pyotp.TOTP(secret).now())


async def _add_passkey(worker: Doorman, alice: Any) -> None:
    await worker.passkeys.add(
        alice.id,
        credential_id="Y3JlZGVudGlhbA",
        user_handle=await worker.passkeys.user_handle(alice.id),
        public_key="pQECAyYgASFYIA",
        sign_count=0,
        name="laptop",
    )


async def _reset_factors(worker: Doorman, alice: Any) -> None:
    await worker.factors.reset(alice.id)


async def _remove_the_passkey(worker: Doorman, alice: Any) -> None:
    (passkey,) = await worker.passkeys.list(alice.id)
    assert await worker.passkeys.remove(alice.id, passkey.id) is not None


async def _turn_off_totp(worker: Doorman, alice: Any) -> None:
    assert await worker.totp.disable(alice)


#: (what the account had, the change another worker makes, whether a step is needed after)
FACTOR_CHANGES: dict[str, tuple[Callable[..., Awaitable[None]] | None, Any, bool]] = {
    "TOTP turned on": (None, _turn_on_totp, True),
    "a passkey added": (None, _add_passkey, True),
    "TOTP turned off": (_turn_on_totp, _turn_off_totp, False),
    "the passkey removed": (_add_passkey, _remove_the_passkey, False),
    "every factor reset": (_add_passkey, _reset_factors, False),
}


@pytest.mark.parametrize("change", FACTOR_CHANGES)
async def test_a_second_factor_changed_by_another_worker_counts_on_the_next_request(
    workers: tuple[Doorman, Doorman], change: str
) -> None:
    """What HTTP Basic asks on every request is kept, and the accounts epoch keeps it
    honest: a passkey added is an INSERT, which moves the epoch of the factor tables."""
    doorman, other_worker = workers
    await signed_in_alice(doorman)
    alice = await other_worker.users.require("alice")
    before, make_change, needed_after = FACTOR_CHANGES[change]
    if before is not None:
        await before(other_worker, alice)
    assert await doorman.factors.needs_second_step(alice.id) is not needed_after
    selects = count_selects(doorman)
    assert await doorman.factors.needs_second_step(alice.id) is not needed_after
    assert selects == [], "kept while nothing changes"
    await make_change(other_worker, alice)
    assert await doorman.factors.needs_second_step(alice.id) is needed_after


async def test_using_a_second_factor_keeps_what_workers_know(
    workers: tuple[Doorman, Doorman],
) -> None:
    """A TOTP code taken and a passkey's use counted are bookkeeping: no worker keeps them,
    and a sign-in with a second factor must not make every worker read everything again."""
    import pyotp

    doorman, other_worker = workers
    await signed_in_alice(doorman)
    alice = await other_worker.users.require("alice")
    await _add_passkey(other_worker, alice)
    secret = await other_worker.totp.start(alice)
    assert await other_worker.totp.confirm(alice, pyotp.TOTP(secret).at(time.time() - 30))
    assert await doorman.factors.needs_second_step(alice.id)
    epoch = await epoch_of(doorman.engine).read()
    assert await other_worker.totp.verify(alice, pyotp.TOTP(secret).now())
    (passkey,) = await other_worker.passkeys.list(alice.id)
    assert await other_worker.passkeys.record_use(passkey, 1, backed_up=False)
    assert await epoch_of(doorman.engine).read() == epoch


def basic_app(doorman: Doorman) -> Any:
    """An app behind ``AuthMiddleware(basic_auth=True)`` that answers its actor's id."""
    import base64

    from doorman import AuthMiddleware, SessionMiddleware
    from doorman.stores import CookieStore

    async def whoami(scope: Any, receive: Any, send: Any) -> None:
        actor = scope.get("actor")
        body = (actor or {}).get("id", "-").encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    app = SessionMiddleware(
        AuthMiddleware(whoami, doorman, basic_auth=True), secret=SECRET, store=CookieStore()
    )
    pair = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    return app, {"authorization": f"Basic {pair}"}


BASIC_CHANGES: dict[str, Callable[[Doorman, Any], Awaitable[Any]]] = {
    "disabled": lambda worker, alice: worker.users.set_active(alice, False),
    "new password": lambda worker, alice: worker.set_password(alice, "another long one 42"),
    "deleted": lambda worker, alice: worker.users.delete(alice),
    "a passkey added": _add_passkey,
}


@pytest.mark.parametrize("change", BASIC_CHANGES)
async def test_http_basic_reads_nothing_while_nothing_changes_and_sees_other_workers(
    workers: tuple[Doorman, Doorman], change: str
) -> None:
    """A remembered HTTP Basic pair read the user and their second factors from the
    database on every request (nearly all its cost); both are kept now, under the
    accounts epoch, and a change by another worker ends the pair's use at once."""
    from .helpers import client

    doorman, other_worker = workers
    await signed_in_alice(doorman)
    app, credentials = basic_app(doorman)
    async with client(app) as http:
        assert (await http.get("/", headers=credentials)).text == "alice"  # a sign-in
        assert (await http.get("/", headers=credentials)).text == "alice"  # kept from now on
        selects = count_selects(doorman)
        for _ in range(3):
            assert (await http.get("/", headers=credentials)).text == "alice"
        assert selects == []
        await BASIC_CHANGES[change](other_worker, await other_worker.users.require("alice"))
        assert (await http.get("/", headers=credentials)).text == "-"
