"""Accounts on SQLite and PostgreSQL: users and groups, sign-in, passwords, API tokens."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import logging
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import argon2
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

import doorman.accounts.tokens as tokens_module
from doorman.accounts.passwords import PasswordHasher
from doorman.accounts.signins import signin_id
from doorman.accounts.throttle import LoginThrottle
from doorman.accounts.tokens import LAST_USED_RESOLUTION, PREFIX, Token, Tokens, parse_token
from doorman.accounts.users import User
from doorman.core import BAD_CREDENTIALS, Doorman
from doorman.db import connect, create_engine
from doorman.db.migrations import migrate
from doorman.db.schema import (
    groups_table,
    metadata,
    tokens_table,
    user_groups_table,
)
from doorman.events import LoginFailedEvent
from doorman.exceptions import (
    AccountError,
    AddressTaken,
    AuthenticationFailed,
    PasswordRejected,
    StoreError,
    Throttled,
    UsernameTaken,
    UserNotFound,
)
from doorman.hookspecs import hookimpl
from doorman.stores import MemoryCounter, SQLCounter

from .conftest import SECRET, Clock
from .helpers import empty_accounts, sqlite_threads_settled

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "violet kestrel over moorland"
WRONG_PASSWORD = "not the right password at all"
# Made by Django 5.2 itself (PBKDF2PasswordHasher, 1000 iterations) for PASSWORD.
DJANGO_PBKDF2_LITERAL = (
    "pbkdf2_sha256$1000$MiQmvbQGGYYvTTeFSYnmYP$682wCMPOp+3ZDNdrzmNPXpl4X3qnDgoRCXFmWnAPtNU="
)
OLD_SECRET = "old-secret-" + "o" * 32
NEW_SECRET = "new-secret-" + "n" * 32
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
DOWN = {
    "sqlite": "/nonexistent-doorman-dir/doorman.db",
    "postgres": "postgresql://postgres@127.0.0.1:1/test",
}
# Full-width forms, which NFKC folds to ASCII (escaped, as ruff asks).
FULLWIDTH_ALICE = "\uff21lice"
ALL_FULLWIDTH_ALICE = "\uff41\uff4c\uff49\uff43\uff45"
URLSAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def fast_hasher(memory_cost: int = 1024) -> PasswordHasher:
    return PasswordHasher(time_cost=1, memory_cost=memory_cost)


def django_pbkdf2(password: str, salt: str, iterations: int = 1000) -> str:
    """Django's PBKDF2PasswordHasher.encode, written out."""
    key = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations)
    return f"pbkdf2_sha256${iterations}${salt}${base64.b64encode(key).decode('ascii')}"


def django_argon2(password: str) -> str:
    """Django's Argon2PasswordHasher format: "argon2" before an argon2-cffi hash."""
    hasher = argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    return "argon2" + hasher.hash(password)


def backend_of(request: pytest.FixtureRequest) -> str:
    return str(request.node.callspec.params["db_url"])


# -- fixtures --------------------------------------------------------------------------------


def _run_apart(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run on a loop of its own: session fixtures may be set up inside a test's loop."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coroutine).result()


async def _migrate(db: str) -> None:
    engine = create_engine(db)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file to copy: migrating each test's file from scratch is slow."""
    path = tmp_path_factory.mktemp("template") / "doorman.db"
    _run_apart(_migrate(str(path)))
    return path


@pytest.fixture(scope="session")
def migrated_postgres_url(postgres_url: str) -> str:
    _run_apart(_migrate(postgres_url))
    return postgres_url


@pytest.fixture(scope="module", params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The module's database of each kind: a migrated SQLite file, the shared PostgreSQL one.

    Every test that uses it runs on both, unless marked ``sqlite_only``. ``doorman`` (which
    ``make_doorman`` and ``engine`` wait for) empties it before each test.
    """
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("accounts") / "accounts.db"
        shutil.copyfile(request.getfixturevalue("migrated_sqlite"), path)
        return str(path)
    url: str = request.getfixturevalue("migrated_postgres_url")
    return url


#: For checks that are done before any query, or where the backend makes no difference.
sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

MakeDoorman = Callable[..., Awaitable[Doorman]]


@pytest.fixture(scope="module")
async def shared_doorman(db_url: str) -> AsyncIterator[Doorman]:
    """One Doorman per module and database (its engine warm, its statements compiled once)."""
    found = Doorman(db_url, secret=SECRET, hasher=fast_hasher(), entry_points=False)
    await found.startup()
    yield found
    await found.close()


@pytest.fixture
async def doorman(shared_doorman: Doorman) -> Doorman:
    """The module's Doorman, its database emptied as a new one's would be."""
    await empty_accounts(shared_doorman)
    return shared_doorman


@pytest.fixture
async def make_doorman(db_url: str, doorman: Doorman) -> AsyncIterator[MakeDoorman]:
    """Build (and start) a Doorman on this test's (emptied) database; each is closed afterwards."""
    made: list[Doorman] = []

    async def make(**options: Any) -> Doorman:
        options.setdefault("secret", SECRET)
        options.setdefault("hasher", fast_hasher())
        options.setdefault("entry_points", False)
        found = Doorman(db_url, **options)
        made.append(found)
        await found.startup()
        return found

    yield make
    for found in reversed(made):
        await found.close()


@pytest.fixture
async def engine(db_url: str, doorman: Doorman) -> AsyncIterator[AsyncEngine]:
    """An engine of the test's own on its (emptied) database, for a Doorman given ``engine=``."""
    made = create_engine(db_url)
    yield made
    await made.dispose()


async def rows(doorman: Doorman, table: sa.Table) -> list[dict[str, Any]]:
    async with connect(doorman.engine) as connection:
        return [dict(row) for row in (await connection.execute(sa.select(table))).mappings()]


class FailureRecorder:
    """A plugin that keeps every ``on_login_failed`` event."""

    def __init__(self) -> None:
        self.events: list[LoginFailedEvent] = []

    @hookimpl
    def on_login_failed(self, doorman: Any, event: LoginFailedEvent) -> None:
        self.events.append(event)


def count_hashing(monkeypatch: pytest.MonkeyPatch, hasher: PasswordHasher) -> dict[str, int]:
    """Count the calls to ``hasher.burn`` and ``hasher.verify`` (each still runs)."""
    calls = {"burn": 0, "verify": 0}
    for name in calls:
        original = getattr(hasher, name)

        async def counted(*args: Any, _name: str = name, _original: Any = original) -> Any:
            calls[_name] += 1
            return await _original(*args)

        monkeypatch.setattr(hasher, name, counted)
    return calls


# -- users -----------------------------------------------------------------------------------


LOOKUPS = ["Alice", "alice", "ALICE", "aLiCe", FULLWIDTH_ALICE, ALL_FULLWIDTH_ALICE]


async def test_a_user_is_found_by_id_and_by_any_form_of_the_username(doorman: Doorman) -> None:
    created = await doorman.users.create("Alice", password=PASSWORD, email="alice@example.com")
    assert created.username == "Alice"
    assert created.email == "alice@example.com"
    assert (created.is_admin, created.is_active, created.session_version) == (False, True, 0)
    assert await doorman.users.get(created.id) == created
    for lookup in LOOKUPS:
        assert await doorman.users.by_username(lookup) == created, lookup
    assert await doorman.users.require(FULLWIDTH_ALICE) == created
    assert await doorman.users.by_username("alicia") is None
    assert await doorman.users.by_username("alice" * 200) is None
    assert await doorman.users.get(created.id + 1) is None
    with pytest.raises(UserNotFound):
        await doorman.users.require("alicia")


async def test_a_username_that_differs_only_in_case_or_width_is_taken(doorman: Doorman) -> None:
    await doorman.users.create("alice")
    for taken in LOOKUPS:
        with pytest.raises(UsernameTaken):
            await doorman.users.create(taken)
    assert await doorman.users.count() == 1


@sqlite_only
@pytest.mark.parametrize(
    "username",
    [
        "",
        "a b",
        "x" * 151,
        "semi;colon",
        "\x00",
        "alice\x00",
        "tab\there",
        "slash/",
        "<script>",
        42,
    ],
)
async def test_a_bad_username_is_refused(doorman: Doorman, username: Any) -> None:
    with pytest.raises(AccountError):
        await doorman.users.create(username)
    assert await doorman.users.count() == 0


async def test_the_longest_username_is_accepted(doorman: Doorman) -> None:
    user = await doorman.users.create("x" * 150)
    assert await doorman.users.by_username("X" * 150) == user


async def test_a_username_whose_case_folding_grows_is_not_a_store_error(
    doorman: Doorman, request: pytest.FixtureRequest
) -> None:
    # "ß" is one valid character that casefolds to "ss": 76 of them make a 152-character key.
    name = "ß" * 76
    try:
        user = await doorman.users.create(name)
    except AccountError:
        return  # refusing it as a bad username would be fine too; a 503 is not
    assert await doorman.users.by_username("SS" * 76) == user


@sqlite_only
@pytest.mark.parametrize(
    "email",
    [
        "no-at-sign",
        "two@@example.com",
        "a@b@example.com",
        "@example.com",
        "alice@",
        "al ice@example.com",
        "alice@example.com\n",
        "alice\x00@example.com",
        "x" * 250 + "@e.co",
        42,
        # Taken once, then refused by the mail server (a traceback in the log):
        "vv@example.com.",
        '"vv"@example.com',
        "vv@[127.0.0.1]",
        ".vv@example.com",
        "v..v@example.com",
        "vv@example..com",
        "vv@-example.com",
        "vv@exa_mple.com",
        "v\x7fv@example.com",  # DEL: the mail library refuses it (a 500 on the account page)
        "v\u202ev@example.com",  # a bidi override
        "v\u200bv@example.com",  # a zero-width space
        "\ufeffvv@example.com",  # a byte-order mark
        "vv@" + "x" * 64 + ".com",  # a label past DNS's 63
    ],
)
async def test_a_bad_email_is_refused(doorman: Doorman, email: Any) -> None:
    with pytest.raises(AccountError):
        await doorman.users.create("alice", email=email)
    alice = await doorman.users.create("alice", email="alice@example.com")
    with pytest.raises(AccountError):
        await doorman.users.set_email(alice, email)
    assert (await doorman.users.require("alice")).email == "alice@example.com"


async def test_groups_come_back_sorted_and_set_groups_replaces_them(doorman: Doorman) -> None:
    alice = await doorman.users.create("alice", groups=["staff", "admins", "editors", "staff"])
    assert alice.groups == ("admins", "editors", "staff")
    bob = await doorman.users.create("bob", groups=["staff"])

    alice = await doorman.users.set_groups(alice, ["writers", " staff "])
    assert alice.groups == ("staff", "writers")
    assert (await doorman.users.get(alice.id)).groups == ("staff", "writers")
    assert sorted(row["name"] for row in await rows(doorman, groups_table)) == [
        "admins",
        "editors",
        "staff",
        "writers",
    ]
    assert (await doorman.users.get(bob.id)).groups == ("staff",)

    alice = await doorman.users.set_groups(alice, [])
    assert alice.groups == ()


@sqlite_only
@pytest.mark.parametrize("group", ["", "  ", "a;b", "x" * 151, "tab\there"])
async def test_a_bad_group_name_is_refused(doorman: Doorman, group: str) -> None:
    with pytest.raises(AccountError):
        await doorman.users.create("alice", groups=[group])
    assert await doorman.users.count() == 0


async def test_list_is_ordered_by_username_and_pages(doorman: Doorman) -> None:
    for name in ["carol", "Alice", "dave", "bob"]:
        # Groups make several joined rows per user: paging must count users, not rows.
        await doorman.users.create(name, groups=["one", "two", "three"])

    def names(users: list[User]) -> list[str]:
        return [user.username for user in users]

    assert names(await doorman.users.list()) == ["Alice", "bob", "carol", "dave"]
    assert names(await doorman.users.list(limit=2)) == ["Alice", "bob"]
    assert names(await doorman.users.list(limit=2, offset=1)) == ["bob", "carol"]
    assert names(await doorman.users.list(limit=2, offset=3)) == ["dave"]
    assert await doorman.users.list(offset=4) == []
    assert all(user.groups == ("one", "three", "two") for user in await doorman.users.list())


# (search, usernames found) among a_b, axb, percent (100%off@example.org), other (X@Example.org)
SEARCHES = [
    ("a_b", ["a_b"]),
    ("_", ["a_b"]),
    ("%", ["percent"]),
    ("0%o", ["percent"]),
    ("EXAMPLE.org", ["other", "percent"]),
    ("AXB", ["axb"]),
    ("xb", ["axb"]),
    ("\\", []),
    ("zzz", []),
]


async def test_search_matches_part_of_username_or_email_with_wildcards_taken_literally(
    doorman: Doorman,
) -> None:
    await doorman.users.create("a_b")
    await doorman.users.create("axb")
    await doorman.users.create("percent", email="100%off@example.org")
    await doorman.users.create("other", email="X@Example.org")
    for search, expected in SEARCHES:
        found = [user.username for user in await doorman.users.list(search=search)]
        assert (search, found) == (search, expected)
        assert (search, await doorman.users.count(search=search)) == (search, len(expected))
    assert await doorman.users.count() == await doorman.users.count(search="") == 4


@sqlite_only
async def test_search_normalises_like_the_username_lookup(doorman: Doorman) -> None:
    alice = await doorman.users.create("alice")
    assert await doorman.users.by_username(FULLWIDTH_ALICE) == alice
    assert await doorman.users.list(search=FULLWIDTH_ALICE[:3]) == [alice]


async def test_set_active_admin_and_email_are_stored(doorman: Doorman) -> None:
    alice = await doorman.users.create("alice")
    changes: list[tuple[Callable[[User], Awaitable[User]], str, Any]] = [
        (lambda user: doorman.users.set_active(user, False), "is_active", False),
        (lambda user: doorman.users.set_admin(user, True), "is_admin", True),
        (lambda user: doorman.users.set_email(user, "a@example.com"), "email", "a@example.com"),
        (lambda user: doorman.users.set_email(user, ""), "email", None),
        (lambda user: doorman.users.set_active(user, True), "is_active", True),
    ]
    for change, field, value in changes:
        alice = await change(alice)
        assert getattr(alice, field) == value
        assert await doorman.users.get(alice.id) == alice


async def test_edit_changes_what_is_given_all_or_nothing(doorman: Doorman) -> None:
    alice = await doorman.users.create("alice", email="alice@example.com", groups=["staff"])
    alice = await doorman.users.edit(alice, admin=True)
    assert (alice.email, alice.is_admin, alice.groups) == ("alice@example.com", True, ("staff",))
    alice = await doorman.users.edit(alice, email="", groups=["ops", " dev "], admin=False)
    assert (alice.email, alice.is_admin, alice.groups) == (None, False, ("dev", "ops"))
    assert await doorman.users.get(alice.id) == alice
    for bad in ({"email": "nope", "admin": True}, {"groups": ["ok", "a;b"], "email": "a@b.c"}):
        with pytest.raises(AccountError):
            await doorman.users.edit(alice, **bad)
    assert await doorman.users.get(alice.id) == alice, "nothing written"


async def test_delete_removes_the_user_their_tokens_and_memberships(doorman: Doorman) -> None:
    alice = await doorman.users.create("alice", groups=["staff"])
    bob = await doorman.users.create("bob", groups=["staff"])
    _, alice_text = await doorman.tokens.create(alice)
    _, bob_text = await doorman.tokens.create(bob)

    await doorman.users.delete(alice)

    assert await doorman.users.get(alice.id) is None
    assert await doorman.users.by_username("alice") is None
    assert await doorman.tokens.verify(alice_text) is None
    assert [row["user_id"] for row in await rows(doorman, tokens_table)] == [bob.id]
    assert [row["user_id"] for row in await rows(doorman, user_groups_table)] == [bob.id]
    assert [row["name"] for row in await rows(doorman, groups_table)] == ["staff"]
    assert (await doorman.tokens.verify(bob_text)) is not None
    with pytest.raises(UserNotFound):
        await doorman.users.set_admin(alice, True)


@sqlite_only
@pytest.mark.parametrize(
    "change",
    [
        lambda doorman, user: doorman.users.set_groups(user, ["staff"]),
        lambda doorman, user: doorman.users.edit(user, groups=["staff"]),
        lambda doorman, user: doorman.users.edit(user, email="a@example.com"),
        lambda doorman, user: doorman.tokens.create(user),
    ],
    ids=["set_groups", "edit-groups", "edit-email", "tokens.create"],
)
async def test_changing_a_deleted_user_raises_user_not_found(
    doorman: Doorman, change: Callable[[Doorman, User], Awaitable[Any]]
) -> None:
    alice = await doorman.users.create("alice")
    await doorman.users.delete(alice)
    with pytest.raises(UserNotFound):
        await change(doorman, alice)


@sqlite_only
async def test_the_repr_of_a_user_never_shows_the_password_hash(doorman: Doorman) -> None:
    alice = await doorman.users.create("alice", password=PASSWORD)
    assert alice.password_hash is not None and alice.password_hash.startswith("$argon2id$")
    for text in (repr(alice), str(alice), f"{alice}", repr([alice])):
        assert alice.password_hash not in text
        assert "argon2" not in text
        assert "alice" in text


@sqlite_only
async def test_a_user_without_a_password_cannot_sign_in(
    doorman: Doorman, monkeypatch: pytest.MonkeyPatch
) -> None:
    nopass = await doorman.users.create("nopass")
    assert nopass.password_hash is None
    assert not nopass.has_usable_password
    calls = count_hashing(monkeypatch, doorman.hasher)
    for attempt in ["", PASSWORD, "None"]:
        with pytest.raises(AuthenticationFailed) as raised:
            await doorman.authenticate("nopass", attempt, client=None)
        assert str(raised.value) == BAD_CREDENTIALS
    assert calls == {"burn": 3, "verify": 0}


# -- Doorman.authenticate --------------------------------------------------------------------


async def test_the_right_password_signs_in(doorman: Doorman) -> None:
    alice = await doorman.create_user("alice", PASSWORD)
    assert await doorman.authenticate("alice", PASSWORD, client="203.0.113.5") == alice
    assert await doorman.authenticate("ALICE", PASSWORD, client=None) == alice


# (name, username tried, password tried, reason, burns, verifies): every failure costs one
# argon2 computation, so that the time taken does not tell which one it was.
FAILURES = [
    ("unknown user", "nobody", PASSWORD, "bad-credentials", 1, 0),
    ("wrong password", "alice", WRONG_PASSWORD, "bad-credentials", 0, 1),
    ("no usable password", "nopass", PASSWORD, "bad-credentials", 1, 0),
    ("disabled, right password", "disabled", PASSWORD, "disabled", 0, 1),
    ("disabled, wrong password", "disabled", WRONG_PASSWORD, "bad-credentials", 0, 1),
]


@sqlite_only
@pytest.mark.parametrize(
    ("username", "password", "reason", "burns", "verifies"),
    [case[1:] for case in FAILURES],
    ids=[case[0] for case in FAILURES],
)
async def test_every_failed_sign_in_looks_the_same(
    make_doorman: MakeDoorman,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    username: str,
    password: str,
    reason: str,
    burns: int,
    verifies: int,
) -> None:
    recorder = FailureRecorder()
    doorman = await make_doorman(plugins=[recorder])
    await doorman.users.create("alice", password=PASSWORD)
    await doorman.users.create("nopass")
    await doorman.users.create("disabled", password=PASSWORD, is_active=False)
    calls = count_hashing(monkeypatch, doorman.hasher)

    with (
        caplog.at_level(logging.DEBUG, logger="doorman"),
        pytest.raises(AuthenticationFailed) as raised,
    ):
        await doorman.authenticate(username, password, client="203.0.113.5")

    assert type(raised.value) is AuthenticationFailed
    assert str(raised.value) == BAD_CREDENTIALS
    assert calls == {"burn": burns, "verify": verifies}
    [event] = recorder.events
    assert (event.username, event.client, event.reason) == (username, "203.0.113.5", reason)
    assert "password" not in {field.name for field in dataclasses.fields(event)}
    assert all(password not in str(value) for value in dataclasses.astuple(event))
    assert password not in repr(event)
    assert password not in caplog.text


DJANGO_HASHES = [
    ("pbkdf2 made by Django", lambda: DJANGO_PBKDF2_LITERAL),
    ("pbkdf2 computed", lambda: django_pbkdf2(PASSWORD, "pepperpot", 1200)),
    ("argon2 in Django's format", lambda: django_argon2(PASSWORD)),
]


@sqlite_only
@pytest.mark.parametrize(
    "make_hash", [case[1] for case in DJANGO_HASHES], ids=[case[0] for case in DJANGO_HASHES]
)
async def test_a_user_imported_from_django_signs_in_and_is_rehashed(
    doorman: Doorman, make_hash: Callable[[], str]
) -> None:
    imported = make_hash()
    await doorman.users.create("dj", password_hash=imported)
    with pytest.raises(AuthenticationFailed):
        await doorman.authenticate("dj", WRONG_PASSWORD, client=None)
    assert (await doorman.users.require("dj")).password_hash == imported  # no rehash on failure

    await doorman.authenticate("dj", PASSWORD, client=None)

    stored = (await doorman.users.require("dj")).password_hash
    assert stored is not None and stored.startswith("$argon2id$")
    assert not doorman.hasher.needs_rehash(stored)
    assert (await doorman.authenticate("dj", PASSWORD, client=None)).password_hash == stored
    with pytest.raises(AuthenticationFailed):
        await doorman.authenticate("dj", WRONG_PASSWORD, client=None)


async def test_a_hash_with_old_parameters_is_replaced_on_sign_in(
    doorman: Doorman, make_doorman: MakeDoorman
) -> None:
    alice = await doorman.create_user("alice", PASSWORD)
    assert argon2.extract_parameters(alice.password_hash or "").memory_cost == 1024

    # The same parameters: the hash stays as it is.
    await doorman.authenticate("alice", PASSWORD, client=None)
    assert (await doorman.users.require("alice")).password_hash == alice.password_hash

    stronger = await make_doorman(hasher=fast_hasher(memory_cost=2048))
    await stronger.authenticate("alice", PASSWORD, client=None)
    stored = (await doorman.users.require("alice")).password_hash or ""
    assert argon2.extract_parameters(stored).memory_cost == 2048
    assert await stronger.authenticate("alice", PASSWORD, client=None)


async def test_a_rehash_never_undoes_a_password_change_made_meanwhile(
    doorman: Doorman, make_doorman: MakeDoorman, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The re-hash at sign-in replaces the hash it verified, never one written since."""
    await doorman.create_user("alice", PASSWORD)
    stronger = await make_doorman(hasher=fast_hasher(memory_cost=2048))  # alice's hash is stale
    verify = stronger.hasher.verify

    async def verify_while_the_password_changes(password: str, encoded: str | None) -> Any:
        verdict = await verify(password, encoded)
        await doorman.set_password(await doorman.users.require("alice"), NEW_PASSWORD)
        return verdict

    monkeypatch.setattr(stronger.hasher, "verify", verify_while_the_password_changes)
    await stronger.authenticate("alice", PASSWORD, client=None)
    monkeypatch.undo()

    with pytest.raises(AuthenticationFailed):
        await stronger.authenticate("alice", PASSWORD, client=None)
    assert (await stronger.authenticate("alice", NEW_PASSWORD, client=None)).username == "alice"


# -- throttling ------------------------------------------------------------------------------


async def test_an_account_is_throttled_after_too_many_failures(
    make_doorman: MakeDoorman, engine: AsyncEngine
) -> None:
    recorder = FailureRecorder()
    throttle = LoginThrottle(SQLCounter(engine), per_account=3, per_address=100, window=60)
    doorman = await make_doorman(engine=engine, throttle=throttle, plugins=[recorder])
    await doorman.users.create("alice", password=PASSWORD)
    bob = await doorman.users.create("bob", password=PASSWORD)

    for _ in range(3):
        with pytest.raises(AuthenticationFailed) as raised:
            await doorman.authenticate("alice", WRONG_PASSWORD, client="203.0.113.5")
        assert type(raised.value) is AuthenticationFailed
    with pytest.raises(Throttled) as throttled:
        await doorman.authenticate("Alice", PASSWORD, client="198.51.100.7")

    assert 1 <= throttled.value.retry_after <= 60
    assert [event.reason for event in recorder.events] == ["bad-credentials"] * 3 + ["throttled"]
    assert await doorman.authenticate("bob", PASSWORD, client="203.0.113.5") == bob


async def test_an_unknown_account_is_throttled_like_a_real_one(
    make_doorman: MakeDoorman, engine: AsyncEngine
) -> None:
    throttle = LoginThrottle(SQLCounter(engine), per_account=3, per_address=100, window=60)
    doorman = await make_doorman(engine=engine, throttle=throttle)
    for _ in range(3):
        with pytest.raises(AuthenticationFailed):
            await doorman.authenticate("nobody", WRONG_PASSWORD, client=None)
    with pytest.raises(Throttled):
        await doorman.authenticate("nobody", WRONG_PASSWORD, client=None)


async def test_a_sign_in_from_an_untrusted_client_gives_a_guesser_no_more_checks(
    make_doorman: MakeDoorman, engine: AsyncEngine
) -> None:
    """The account's failures stay after a success: else each success of the real user,
    from a new browser or a script, would give a guesser ``per_account`` more checks."""
    throttle = LoginThrottle(SQLCounter(engine), per_account=3, per_address=100, window=60)
    doorman = await make_doorman(engine=engine, throttle=throttle)
    alice = await doorman.users.create("alice", password=PASSWORD)
    for _ in range(2):
        with pytest.raises(AuthenticationFailed):
            await doorman.authenticate("alice", WRONG_PASSWORD, client=None)
    assert await doorman.authenticate("alice", PASSWORD, client=None) == alice
    with pytest.raises(AuthenticationFailed):
        await doorman.authenticate("alice", WRONG_PASSWORD, client=None)
    with pytest.raises(Throttled):
        await doorman.authenticate("alice", PASSWORD, client=None)


async def test_a_parallel_burst_gets_no_more_password_checks_than_the_limit(
    make_doorman: MakeDoorman, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attempts are counted before the password is checked, not after a failure."""
    throttle = LoginThrottle(SQLCounter(engine), per_account=3, per_address=100, window=60)
    doorman = await make_doorman(engine=engine, throttle=throttle)
    await doorman.users.create("alice", password=PASSWORD)
    calls = count_hashing(monkeypatch, doorman.hasher)

    results = await asyncio.gather(
        *(doorman.authenticate("alice", WRONG_PASSWORD, client="203.0.113.5") for _ in range(12)),
        return_exceptions=True,
    )

    assert (
        sorted(type(result).__name__ for result in results)
        == ["AuthenticationFailed"] * 3 + ["Throttled"] * 9
    )
    assert calls == {"burn": 0, "verify": 3}


# -- passwords: validation and changes -------------------------------------------------------

REJECTED = [
    ("short", "is shorter than 10 characters"),
    ("1234567890123", "is entirely numeric"),
    ("password123", "is one of the 20,000 most common passwords"),
    ("alice2024", "is too similar to the username"),  # and shorter than 10 characters
]


@sqlite_only
@pytest.mark.parametrize(("password", "problem"), REJECTED)
async def test_create_user_refuses_a_weak_password(
    doorman: Doorman, password: str, problem: str
) -> None:
    with pytest.raises(PasswordRejected) as raised:
        await doorman.create_user("alice", password)
    assert problem in raised.value.problems
    assert await doorman.users.by_username("alice") is None

    alice = await doorman.create_user("alice", password, validate=False)
    assert await doorman.authenticate("alice", password, client=None) == alice


@sqlite_only
async def test_create_user_checks_similarity_to_the_email(doorman: Doorman) -> None:
    with pytest.raises(PasswordRejected) as raised:
        await doorman.create_user("bob", "margaret.hamilton", email="margaret.hamilton@example.com")
    assert raised.value.problems == ["is too similar to the email address"]


class BannedWord:
    """A ``validate_password`` plugin answering in one of the three forms."""

    def __init__(self, form: str) -> None:
        self.form = form

    @hookimpl
    def validate_password(self, doorman: Any, password: str, username: str) -> Any:
        if "doorman" not in password:
            return None
        if self.form == "string":
            return "mentions doorman"
        if self.form == "list":
            return ["mentions doorman", "is about us"]

        async def later() -> str:
            return "mentions doorman"

        return later()


HOOK_FORMS = [
    ("string", ["mentions doorman"]),
    ("list", ["mentions doorman", "is about us"]),
    ("coroutine", ["mentions doorman"]),
]


@sqlite_only
@pytest.mark.parametrize(("form", "problems"), HOOK_FORMS)
async def test_validate_password_hooks_add_problems_in_every_form(
    make_doorman: MakeDoorman, form: str, problems: list[str]
) -> None:
    doorman = await make_doorman(plugins=[BannedWord(form)])
    assert await doorman.password_problems("doorman rules the night sky") == problems
    assert await doorman.password_problems("doorman!") == [
        "is shorter than 10 characters",
        *problems,
    ]
    with pytest.raises(PasswordRejected) as raised:
        await doorman.create_user("alice", "doorman rules the night sky")
    assert raised.value.problems == problems

    alice = await doorman.create_user("alice", PASSWORD)  # the hook has no objection
    with pytest.raises(PasswordRejected) as raised:
        await doorman.set_password(alice, "doorman rules the night sky")
    assert raised.value.problems == problems


async def test_set_password_validates_and_ends_other_sessions(doorman: Doorman) -> None:
    alice = await doorman.create_user("alice", PASSWORD)
    before = doorman.session_auth_hash(alice)
    with pytest.raises(PasswordRejected):
        await doorman.set_password(alice, "password123")
    assert (await doorman.users.require("alice")).password_hash == alice.password_hash

    changed = await doorman.set_password(alice, NEW_PASSWORD)

    assert doorman.session_auth_hash(changed) != before
    assert not doorman.session_auth_hash_matches(changed, before)
    assert await doorman.authenticate("alice", NEW_PASSWORD, client=None) == changed
    with pytest.raises(AuthenticationFailed):
        await doorman.authenticate("alice", PASSWORD, client=None)


# -- the session auth hash -------------------------------------------------------------------


async def test_the_session_auth_hash_follows_the_user_state(doorman: Doorman) -> None:
    alice = await doorman.create_user("alice", PASSWORD)
    bob = await doorman.create_user("bob", PASSWORD)
    first = doorman.session_auth_hash(alice)

    assert doorman.session_auth_hash(alice) == first
    assert doorman.session_auth_hash(await doorman.users.require("alice")) == first
    assert doorman.session_auth_hash(await doorman.users.set_admin(alice, True)) == first
    assert doorman.session_auth_hash(bob) != first
    assert doorman.session_auth_hash_matches(alice, first)
    assert not doorman.session_auth_hash_matches(bob, first)

    ended = await doorman.users.end_sessions(alice)
    assert ended.session_version == alice.session_version + 1
    assert doorman.session_auth_hash(ended) != first
    assert not doorman.session_auth_hash_matches(ended, first)
    assert doorman.session_auth_hash_matches(ended, doorman.session_auth_hash(ended))


def tampered(value: str) -> list[Any]:
    flipped = "A" if value[-1] != "A" else "B"
    return [
        value[:-1] + flipped,
        ("x" if value[0] != "x" else "y") + value[1:],
        value[:-1],
        value + "A",
        value.upper() if value.upper() != value else value.lower(),
        "." + value,
        value + ".",
        "",
        "é" + value[1:],
        value.encode(),
        None,
        0,
        [value],
    ]


@sqlite_only
async def test_the_session_auth_hash_refuses_tampered_and_wrong_types(doorman: Doorman) -> None:
    alice = await doorman.create_user("alice", PASSWORD)
    good = doorman.session_auth_hash(alice)
    assert isinstance(good, str) and good
    for value in tampered(good):
        assert not doorman.session_auth_hash_matches(alice, value), value


@sqlite_only
async def test_the_session_auth_hash_survives_secret_rotation(
    doorman: Doorman, tmp_path: Path
) -> None:
    alice = await doorman.create_user("alice", PASSWORD)

    def on_secrets(secret: Any) -> Doorman:
        # No database is reached: the hash depends on the secret and the user alone.
        return Doorman(str(tmp_path / "unused.db"), secret=secret, entry_points=False)

    old = on_secrets(OLD_SECRET)
    rotated = on_secrets([NEW_SECRET, OLD_SECRET])
    new_only = on_secrets(NEW_SECRET)
    try:
        made_under_old = old.session_auth_hash(alice)
        assert rotated.session_auth_hash_matches(alice, made_under_old)
        assert not new_only.session_auth_hash_matches(alice, made_under_old)
        assert rotated.session_auth_hash(alice) == new_only.session_auth_hash(alice)
        assert rotated.session_auth_hash(alice) != made_under_old
        assert not doorman.session_auth_hash_matches(alice, made_under_old)
    finally:
        for made in (old, rotated, new_only):
            await made.close()


# -- API tokens ------------------------------------------------------------------------------


@pytest.fixture
async def alice(doorman: Doorman) -> User:
    return await doorman.users.create("alice", password=PASSWORD)


@pytest.fixture
async def bob(doorman: Doorman) -> User:
    return await doorman.users.create("bob", password=PASSWORD)


async def test_a_token_is_created_shown_once_and_verified(doorman: Doorman, alice: User) -> None:
    token, text = await doorman.tokens.create(alice, name="ci", scopes=["read"])
    assert text.startswith(PREFIX) and text.startswith("dmt_")
    assert parse_token(text) == token.id
    assert len(token.id) == 16
    assert (token.user_id, token.name, token.scopes, token.username) == (
        alice.id,
        "ci",
        ("read",),
        "alice",
    )
    assert token.revoked_at is None and token.expires_at is None

    verified = await doorman.tokens.verify(text)
    assert verified is not None
    assert (verified.id, verified.user_id, verified.name, verified.scopes) == (
        token.id,
        alice.id,
        "ci",
        ("read",),
    )
    assert verified.created_at == pytest.approx(token.created_at)

    _, second = await doorman.tokens.create(alice)
    assert second != text and parse_token(second) != token.id


@sqlite_only
async def test_a_verified_token_names_its_user(doorman: Doorman, alice: User) -> None:
    _, text = await doorman.tokens.create(alice)
    verified = await doorman.tokens.verify(text)
    assert verified is not None
    assert verified.username == "alice"


async def test_the_token_text_is_stored_nowhere(doorman: Doorman, alice: User) -> None:
    token, text = await doorman.tokens.create(alice, name="deploy", scopes=["read", "write"])
    await doorman.tokens.verify(text)
    secret = text[len(PREFIX) + 17 :]
    assert len(secret) == 43
    stored = [
        str(value)
        for table in metadata.sorted_tables
        for row in await rows(doorman, table)
        for value in row.values()
    ]
    assert token.id in stored  # the public part is, so the search does see the table
    for value in stored:
        assert text not in value
        assert secret not in value
        assert secret[:16] not in value


async def test_a_wrong_secret_revoked_or_expired_token_is_refused(
    doorman: Doorman, alice: User, clock: Clock
) -> None:
    token, text = await doorman.tokens.create(alice)
    flipped = "A" if text[-1] != "A" else "B"
    assert parse_token(text[:-1] + flipped) == token.id
    assert await doorman.tokens.verify(text[:-1] + flipped) is None
    assert await doorman.tokens.verify(text) is not None

    assert await doorman.tokens.revoke(token.id)
    assert await doorman.tokens.verify(text) is None

    short_token, short_lived = await doorman.tokens.create(alice, expires_in=2)
    assert await doorman.tokens.verify(short_lived) is not None
    assert short_token.expires_at is not None
    clock.advance(max(0.0, short_token.expires_at - time.time()) + 0.05)
    assert await doorman.tokens.verify(short_lived) is None


@sqlite_only
@pytest.mark.parametrize("expires_in", [0, -1, -0.5, 0.0])
async def test_a_token_lifetime_must_be_positive(
    doorman: Doorman, alice: User, expires_in: float
) -> None:
    with pytest.raises(AccountError):
        await doorman.tokens.create(alice, expires_in=expires_in)
    assert await doorman.tokens.list(include_dead=True) == []


NEAR_MISSES: list[tuple[str, Callable[[str], str]]] = [
    ("empty", lambda text: ""),
    ("prefix only", lambda text: PREFIX),
    ("one short", lambda text: text[:-1]),
    ("one long", lambda text: text + "A"),
    ("upper case", lambda text: text.upper()),
    ("wrong prefix", lambda text: "dmx_" + text[4:]),
    ("no prefix", lambda text: text[4:]),
    ("dash separator", lambda text: text[:20] + "-" + text[21:]),
    ("dot separator", lambda text: text[:20] + "." + text[21:]),
    ("non-hex id", lambda text: text[:4] + "g" * 16 + text[20:]),
    ("upper-case hex id", lambda text: text[:4] + "ABCDEF0123456789" + text[20:]),
    ("full-width digits in id", lambda text: text[:4] + "\uff11" * 16 + text[20:]),
    ("id one short", lambda text: text[:19] + text[20:] + "A"),
    ("base64 padding", lambda text: text[:-1] + "="),
    ("standard base64", lambda text: text[:-2] + "+/"),
    ("space in secret", lambda text: text[:-1] + " "),
    ("leading space", lambda text: " " + text[:-1]),
    ("trailing newline", lambda text: text[:-1] + "\n"),
    ("non-ASCII secret", lambda text: text[:-1] + "é"),
    ("NUL", lambda text: text[:-1] + "\x00"),
    ("with the scheme", lambda text: "Bearer " + text),
]


@pytest.mark.parametrize(
    "mangle", [case[1] for case in NEAR_MISSES], ids=[case[0] for case in NEAR_MISSES]
)
async def test_a_malformed_token_is_refused_before_the_database(
    mangle: Callable[[str], str],
) -> None:
    # The database is down: had verify() sent the text there, it would raise StoreError.
    text = f"{PREFIX}{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}"
    assert parse_token(text) is not None
    bad = mangle(text)
    assert bad != text
    assert parse_token(bad) is None
    engine = create_engine(DOWN["sqlite"])
    try:
        assert await Tokens(engine).verify(bad) is None
    finally:
        await engine.dispose()


WELL_FORMED = st.builds(
    lambda token_id, secret: f"{PREFIX}{token_id}_{secret}",
    st.text("0123456789abcdef", min_size=16, max_size=16),
    st.text(URLSAFE, min_size=43, max_size=43),
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=st.text() | WELL_FORMED, secret=st.text(URLSAFE, min_size=43, max_size=43))
async def test_arbitrary_token_texts_are_refused_without_error(
    doorman: Doorman, alice: User, text: str, secret: str
) -> None:
    # One token exists: a guess at its secret with its real id is refused too.
    tokens = await doorman.tokens.list(alice)
    if not tokens:
        tokens = [(await doorman.tokens.create(alice))[0]]
    assert await doorman.tokens.verify(text) is None
    assert await doorman.tokens.verify(f"{PREFIX}{tokens[0].id}_{secret}") is None


@given(text=st.text(max_size=100) | WELL_FORMED | st.binary().map(lambda b: b.decode("latin-1")))
def test_parse_token_never_raises(text: str) -> None:
    token_id = parse_token(text)
    if token_id is not None:
        assert text == f"{PREFIX}{token_id}_{text[21:]}"
        assert len(token_id) == 16


def advance_token_clock(monkeypatch: pytest.MonkeyPatch, seconds: float) -> float:
    """Move the clock of the tokens module on, to expire tokens without sleeping; return it."""
    real = time.time
    monkeypatch.setattr(tokens_module, "time", SimpleNamespace(time=lambda: real() + seconds))
    return real() + seconds


async def _last_used(doorman: Doorman, token: Token) -> float | None:
    async with connect(doorman.engine) as connection:
        query = sa.select(tokens_table.c.last_used_at).where(tokens_table.c.id == token.id)
        return (await connection.execute(query)).scalar_one()


async def _set_last_used(doorman: Doorman, token: Token, at: float) -> None:
    async with connect(doorman.engine, write=True) as connection:
        await connection.execute(
            tokens_table.update().where(tokens_table.c.id == token.id).values(last_used_at=at)
        )


async def test_last_used_is_written_at_most_once_per_resolution(
    doorman: Doorman, alice: User
) -> None:
    token, text = await doorman.tokens.create(alice)
    assert await _last_used(doorman, token) is None

    before = time.time()
    await doorman.tokens.verify(text)
    first = await _last_used(doorman, token)
    assert first is not None and before <= first <= time.time()

    await doorman.tokens.verify(text)
    assert await _last_used(doorman, token) == first

    recently = time.time() - (LAST_USED_RESOLUTION - 10)
    await _set_last_used(doorman, token, recently)
    await doorman.tokens.verify(text)
    assert await _last_used(doorman, token) == recently

    long_ago = time.time() - (LAST_USED_RESOLUTION + 10)
    await _set_last_used(doorman, token, long_ago)
    before = time.time()
    await doorman.tokens.verify(text)
    assert (await _last_used(doorman, token) or 0) >= before


async def test_list_shows_live_tokens_unless_asked_for_dead_ones(
    doorman: Doorman, alice: User, bob: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = await doorman.tokens.create(alice, name="first")
    revoked, _ = await doorman.tokens.create(alice, name="revoked")
    expired, _ = await doorman.tokens.create(alice, name="expired", expires_in=60)
    last, _ = await doorman.tokens.create(alice, name="last")
    bobs, _ = await doorman.tokens.create(bob, name="bob's")
    await doorman.tokens.revoke(revoked.id)
    later = advance_token_clock(monkeypatch, 120)

    def names(tokens: list[Token]) -> list[str]:
        return [token.name for token in tokens]

    assert names(await doorman.tokens.list(alice)) == ["last", "first"]
    assert names(await doorman.tokens.list(alice, include_dead=True)) == [
        "last",
        "expired",
        "revoked",
        "first",
    ]
    assert names(await doorman.tokens.list(bob)) == ["bob's"]
    everyone = await doorman.tokens.list()
    assert {(token.name, token.username) for token in everyone} == {
        ("first", "alice"),
        ("last", "alice"),
        ("bob's", "bob"),
    }
    dead = {t.name: t for t in await doorman.tokens.list(alice, include_dead=True)}
    assert dead["revoked"].revoked_at is not None
    assert not dead["expired"].is_live(later)
    assert dead["last"].id == last.id and dead["first"].id == first.id
    assert bobs.username == "bob"
    assert expired.expires_at is not None


async def test_revoke_only_revokes_the_given_users_token(
    doorman: Doorman, alice: User, bob: User
) -> None:
    token, text = await doorman.tokens.create(alice)

    assert await doorman.tokens.revoke(token.id, user=bob) is False
    assert await doorman.tokens.verify(text) is not None
    assert await doorman.tokens.revoke("0123456789abcdef") is False

    assert await doorman.tokens.revoke(token.id, user=alice) is True
    assert await doorman.tokens.verify(text) is None
    assert await doorman.tokens.revoke(token.id) is False  # already revoked


async def test_revoking_a_sign_in_for_a_user_only_revokes_their_own(
    doorman: Doorman, alice: User, bob: User
) -> None:
    key = await doorman.signins.record(alice, user_agent="phone", address="203.0.113.5")
    signin = signin_id(key)

    assert await doorman.signins.revoke(signin, user=bob) is False
    assert [found.id for found in await doorman.signins.list(alice)] == [signin]

    assert await doorman.signins.revoke(signin, user=alice) is True
    assert await doorman.signins.list(alice) == []


async def test_revoke_all_revokes_every_live_token_of_one_user(
    doorman: Doorman, alice: User, bob: User
) -> None:
    texts = [(await doorman.tokens.create(alice))[1] for _ in range(3)]
    already, _ = await doorman.tokens.create(alice)
    await doorman.tokens.revoke(already.id)
    _, bobs = await doorman.tokens.create(bob)

    assert await doorman.tokens.revoke_all(alice) == 3
    assert all([await doorman.tokens.verify(text) is None for text in texts])
    assert await doorman.tokens.list(alice) == []
    assert await doorman.tokens.verify(bobs) is not None
    assert await doorman.tokens.revoke_all(alice) == 0


@sqlite_only
async def test_revoke_all_counts_only_live_tokens(
    doorman: Doorman, alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    await doorman.tokens.create(alice)
    await doorman.tokens.create(alice, expires_in=60)
    advance_token_clock(monkeypatch, 120)
    assert len(await doorman.tokens.list(alice)) == 1
    assert await doorman.tokens.revoke_all(alice) == 1


SCOPES = [
    (None, None),
    ([], ()),
    (["write", "read", "read"], ("read", "write")),
    (("admin:users", "read", "admin:users"), ("admin:users", "read")),
    ({"write", "read"}, ("read", "write")),
]


@sqlite_only
@pytest.mark.parametrize(("scopes", "expected"), SCOPES)
async def test_scopes_round_trip_sorted_and_deduplicated(
    doorman: Doorman, alice: User, scopes: Any, expected: tuple[str, ...] | None
) -> None:
    token, text = await doorman.tokens.create(alice, scopes=scopes)
    verified = await doorman.tokens.verify(text)
    [listed] = await doorman.tokens.list(alice)
    assert token.scopes == expected
    assert verified is not None and verified.scopes == expected
    assert listed.scopes == expected


@sqlite_only
@pytest.mark.parametrize(
    "scopes",
    [
        [""],
        [1],
        ["read", None],
    ],
)
async def test_bad_scopes_are_refused(doorman: Doorman, alice: User, scopes: Any) -> None:
    with pytest.raises(AccountError):
        await doorman.tokens.create(alice, scopes=scopes)
    assert await doorman.tokens.list(include_dead=True) == []


@sqlite_only
async def test_a_single_string_is_not_split_into_scopes(doorman: Doorman, alice: User) -> None:
    try:
        token, _ = await doorman.tokens.create(alice, scopes="read")
    except AccountError:
        return  # refusing it is fine too
    assert token.scopes == ("read",)


# -- races -----------------------------------------------------------------------------------


WAITING_ON_A_LOCK = """
    SELECT count(*) FROM pg_stat_activity
    WHERE datname = current_database() AND wait_event_type = 'Lock'
"""


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_a_new_group_created_meanwhile_does_not_fail_the_user(
    doorman: Doorman, db_url: str
) -> None:
    import asyncpg

    other = await asyncpg.connect(db_url, timeout=5)
    watcher = await asyncpg.connect(db_url, timeout=5)
    try:
        # Another worker is adding a user to the new group "staff", not yet committed.
        transaction = other.transaction()
        await transaction.start()
        await other.execute("INSERT INTO doorman_groups (name) VALUES ('staff')")
        creating = asyncio.ensure_future(doorman.users.create("bob", groups=["staff"]))
        for _ in range(500):  # until bob's insert of "staff" waits on the other's row
            if await watcher.fetchval(WAITING_ON_A_LOCK):
                break
            await asyncio.sleep(0.01)
        await transaction.commit()
        bob = await creating
    finally:
        await other.close()
        await watcher.close()
    assert bob.groups == ("staff",)


# -- failing closed --------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
@pytest.mark.parametrize("counter", ["sql", "memory"])
async def test_a_store_that_is_down_fails_sign_in_closed(backend: str, counter: str) -> None:
    throttle = LoginThrottle(MemoryCounter()) if counter == "memory" else None
    doorman = Doorman(
        DOWN[backend], secret=SECRET, hasher=fast_hasher(), throttle=throttle, entry_points=False
    )
    text = f"{PREFIX}{'0' * 16}_{'A' * 43}"  # well formed, so it would reach the database
    try:
        with sqlite_threads_settled():
            with pytest.raises(StoreError):
                await doorman.authenticate("alice", PASSWORD, client="203.0.113.5")
            with pytest.raises(StoreError):
                await doorman.tokens.verify(text)
            with pytest.raises(StoreError):
                await doorman.users.by_username("alice")
    finally:
        with sqlite_threads_settled():
            await doorman.close()


async def test_one_address_verified_by_two_accounts_at_once_goes_to_one(
    doorman: Doorman,
) -> None:
    """The UPDATE that verifies checked that no other account held the address verified:
    on PostgreSQL two accounts verifying one address at the same instant each saw the
    other unverified, and both won. A unique index on the verified addresses refuses one."""
    for attempt in range(8):
        email = f"shared{attempt}@example.com"
        first = await doorman.users.create(f"first{attempt}", email=email)
        second = await doorman.users.create(f"second{attempt}", email=email.upper())
        outcomes = await asyncio.gather(
            doorman.users.verify_email(first),
            doorman.users.verify_email(second),
            return_exceptions=True,
        )
        assert sorted(type(outcome).__name__ for outcome in outcomes) == ["AddressTaken", "User"]
        third = await doorman.users.create(f"third{attempt}", email=email)
        with pytest.raises(AddressTaken):  # created verified: refused by the index as well
            await doorman.users.create(f"fourth{attempt}", email=email, email_verified=True)
        assert not (await doorman.users.require(third.username)).email_verified


#: Addresses that differ beyond ASCII case: SQLite's lower() folds A-Z only, PostgreSQL's
#: follows its locale ("İ" -> "i"), Python's lower() gives "i̇" for "İ".
PAST_ASCII = [("Éve@example.com", "éve@example.com"), ("İx@example.com", "ix@example.com")]


@pytest.mark.parametrize(("one", "other"), PAST_ASCII)
async def test_addresses_are_one_when_they_differ_in_ascii_case_only(
    doorman: Doorman, one: str, other: str
) -> None:
    """The look before a write and the database's index compared addresses with different
    lower()s: an invitation to an address held verified past ASCII case was refused as
    "username taken", on every name, and SQLite let "Éve@" and "éve@" both be verified
    while PostgreSQL took "İx@" and "ix@" for one. Python and both databases now fold
    A-Z alone: "Éve@" and "ÉVE@" are one address, "Éve@" and "éve@" two."""
    holder = await doorman.users.verify_email(await doorman.users.create("holder", email=one))
    assert await doorman.users.verified_elsewhere(one.upper())
    assert not await doorman.users.verified_elsewhere(other)
    with pytest.raises(AddressTaken):
        await doorman.users.create("same", email=one.upper(), email_verified=True)
    made = await doorman.users.create("different", email=other, email_verified=True)
    assert made.email_verified and holder.email_verified
    assert [u.username for u in await doorman.users.by_email(one.upper())] == ["holder"]


async def test_a_dump_that_would_verify_one_address_twice_loads_nothing(doorman: Doorman) -> None:
    from doorman.exceptions import DumpError
    from doorman.transfer import dump, load

    await doorman.users.verify_email(await doorman.users.create("ann", email="Éve@example.com"))
    await doorman.users.verify_email(await doorman.users.create("ivy", email="İx@example.com"))
    data = await dump(doorman.engine)
    await empty_accounts(doorman)
    await doorman.users.verify_email(await doorman.users.create("kim", email="ÉVE@EXAMPLE.COM"))
    with pytest.raises(DumpError, match="other accounts here hold verified: ann"):
        await load(doorman.engine, data)
    assert [u.username for u in await doorman.users.list()] == ["kim"]
    data["users"] = [u for u in data["users"] if u["username"] == "ivy"]
    data["users"].append({**data["users"][0], "username": "ix", "email": "ix@example.com"})
    assert (await load(doorman.engine, data)).users == 2  # "İx@" and "ix@": two addresses


@pytest.mark.parametrize(
    "email",
    ["jane.doe+tag@example.com", "o'neil@example.co.uk", "élise@exämple.com", "root@localhost",
     "x_y-z@sub-domain.example.org", "Δ@例え.jp"],
)  # fmt: skip
def test_a_mailable_email_is_taken_as_it_is(email: str) -> None:
    from doorman.accounts.names import check_email

    assert check_email(email) == email


@given(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20))
def test_an_address_an_account_takes_is_one_the_mailer_takes(local: str, domain: str) -> None:
    """An account's address once passed that check and failed the mailer's, so the link
    to it was never sent (a traceback in the log instead)."""
    from doorman.accounts.names import check_email
    from doorman.mail.addresses import check_address

    try:
        taken = check_email(f"{local}@{domain}")
    except AccountError:
        return
    assert taken is not None and check_address(taken) == taken
