"""The ``doorman`` command, through click's CliRunner on a real SQLite file (and PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import click
import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

import doorman.cli
import doorman.cli.db
from doorman.cli import main
from doorman.config import SETTINGS, Settings, close_doorman, open_doorman
from doorman.core import Doorman
from doorman.db import connect, create_engine
from doorman.db.migrations import head_revision
from doorman.db.schema import users_table
from doorman.hookspecs import hookimpl
from doorman.plugins import make_plugin_manager

from .conftest import POSTGRES_URL, _missing
from .helpers import free_port, migrated_sqlite
from .test_docs import command_paths

#: The CLI's Doorman hashes with the OWASP parameters: their cost is not the point here.
pytestmark = pytest.mark.usefixtures("cheap_default_hasher")

T = TypeVar("T")
PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "violet kestrel over moorland"


@pytest.fixture(autouse=True)
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run in tmp_path (no doorman.toml), with no DOORMAN_* variables from outside."""
    monkeypatch.chdir(tmp_path)
    for name in [s.env for s in SETTINGS] + ["DOORMAN_CONFIG", "DOORMAN_SERVE_SETTINGS"]:
        monkeypatch.delenv(name, raising=False)
    yield


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "doorman.db")


@pytest.fixture(autouse=True)
def tables_made(request: pytest.FixtureRequest, db: str) -> None:
    """This module's in-process tests start with doorman's tables made: a copy of a
    migrated database (migrating costs 50 ms of CPU). Modules that borrow ``db``, and
    the e2e tests here, start with no database at all, as they did."""
    if request.node.get_closest_marker("e2e") is None:
        migrated_sqlite(Path(db))


Invoke = Callable[..., Result]


@pytest.fixture
def doorman_cli(db: str) -> Invoke:
    """``doorman_cli("users", "list", input=...)`` against the test's SQLite file."""

    def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        runner = CliRunner()
        env = {"DOORMAN_DB": db, **(env or {})}
        return runner.invoke(main, list(args), input=input, env=env, prog_name="doorman")

    return invoke


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.output, result.exception)
    assert "Traceback" not in result.output
    return result


def fails(result: Result, *fragments: str) -> str:
    """Exit status 1, one line on stderr naming ``fragments``, no traceback."""
    assert result.exit_code == 1, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def with_doorman(db: str, action: Callable[[Doorman], Awaitable[T]]) -> T:
    """Run ``action`` on the library's view of the same database."""

    async def run() -> T:
        found, store, _ = await open_doorman(Settings.from_mapping({"db": db}))
        try:
            return await action(found)
        finally:
            await close_doorman(found, store)

    return asyncio.run(run())


def create(invoke: Invoke, username: str, *options: str, password: str = PASSWORD) -> Result:
    return invoke("users", "create", username, "--password-stdin", *options, input=password + "\n")


# -- help ------------------------------------------------------------------------------


def test_every_command_has_help(doorman_cli: Invoke) -> None:
    paths = command_paths(main)
    assert "doorman users create" in paths and "doorman db load" in paths
    for path in paths:
        words = path.split()[1:]
        command: click.Command = main
        for word in words:
            assert isinstance(command, click.Group)
            command = command.commands[word]
        assert command.help and command.help.strip(), path
        result = ok(doorman_cli(*words, "--help"))
        assert " ".join(command.help.split()[:6]) in " ".join(result.output.split())
        assert result.output.startswith(f"Usage: {path} ")
    for group in ("users", "sessions", "tokens", "db"):
        assert ok(doorman_cli(group, "--help")).output


def test_setting_flags_take_their_help_from_the_table(doorman_cli: Invoke) -> None:
    text = " ".join(ok(doorman_cli("serve", "--help")).output.split())
    for name in ("db", "sessions", "host", "port", "workers", "plugins_dir"):
        setting = next(s for s in SETTINGS if s.name == name)
        assert setting.env in text and " ".join(setting.help.split()[:4]) in text


# -- users -------------------------------------------------------------------------------


def test_users_create_from_a_prompt(doorman_cli: Invoke, db: str) -> None:
    result = ok(
        doorman_cli(
            "users", "create", "alice", "--email", "alice@example.com", "--admin",
            "--group", "ops", "--group", "staff", input=f"{PASSWORD}\n{PASSWORD}\n",
        )
    )  # fmt: skip
    assert "created admin alice" in result.stdout
    assert PASSWORD not in result.output  # the prompt hides it
    user = with_doorman(db, lambda d: d.users.require("alice"))
    assert (user.email, user.is_admin, user.groups) == ("alice@example.com", True, ("ops", "staff"))
    assert with_doorman(db, lambda d: d.authenticate("alice", PASSWORD, client=None)).id == user.id


def test_users_create_from_stdin(doorman_cli: Invoke, db: str) -> None:
    ok(create(doorman_cli, "bob"))
    user = with_doorman(db, lambda d: d.authenticate("bob", PASSWORD, client=None))
    assert user.username == "bob" and not user.is_admin


def test_a_rejected_password_lists_every_problem(doorman_cli: Invoke, db: str) -> None:
    line = fails(create(doorman_cli, "carol", password="password"), "password rejected: ")
    assert "is shorter than 10 characters; is one of the 20,000 most common passwords" in line
    assert with_doorman(db, lambda d: d.users.by_username("carol")) is None


def test_an_empty_stdin_password_is_refused(doorman_cli: Invoke) -> None:
    fails(doorman_cli("users", "create", "dave", "--password-stdin", input=""), "standard input")


def test_a_duplicate_user_is_one_line(doorman_cli: Invoke) -> None:
    ok(create(doorman_cli, "alice"))
    fails(create(doorman_cli, "ALICE"), "the username 'ALICE' is taken")


def test_a_bad_username_or_email_is_one_line(doorman_cli: Invoke) -> None:
    fails(create(doorman_cli, "no spaces"), "a username is")
    fails(create(doorman_cli, "erin", "--email", "not-an-address"), "is not an email address")


def test_users_list(doorman_cli: Invoke) -> None:
    ok(create(doorman_cli, "alice", "--email", "alice@example.com", "--admin", "--group", "ops"))
    ok(create(doorman_cli, "bob"))
    found = json.loads(ok(doorman_cli("users", "list", "--json")).stdout)
    assert [u["username"] for u in found] == ["alice", "bob"]
    assert found[0] == {
        "username": "alice",
        "email": "alice@example.com",
        "admin": True,
        "active": True,
        "groups": ["ops"],
        "email_verified": False,
        "created_at": found[0]["created_at"],
        "last_login": None,
        "two_factor": {"on": False, "totp": False, "passkeys": 0, "recovery_codes": 0},
    }
    assert "password" not in json.dumps(found)
    table = ok(doorman_cli("users", "list")).stdout.splitlines()
    header = ["USERNAME", "EMAIL", "ADMIN", "ACTIVE", "GROUPS", "2FA", "LAST", "LOGIN"]
    assert table[0].split() == header
    assert table[1].split() == ["alice", "alice@example.com", "yes", "yes", "ops", "none", "never"]
    assert table[0].index("EMAIL") == table[1].index("alice@")  # aligned
    searched = json.loads(ok(doorman_cli("users", "list", "--search", "EXAMPLE", "--json")).stdout)
    assert [u["username"] for u in searched] == ["alice"]


def test_users_passwd_ends_every_session(doorman_cli: Invoke, db: str) -> None:
    ok(create(doorman_cli, "alice"))

    async def sign_in(d: Doorman) -> str:
        user = await d.users.require("alice")
        await d.signins.record(user, user_agent="test", address="203.0.113.5")
        return d.session_auth_hash(user)

    old_hash = with_doorman(db, sign_in)
    result = ok(doorman_cli("users", "passwd", "alice", "--password-stdin", input=NEW_PASSWORD))
    assert "sessions have ended" in result.stdout

    async def check(d: Doorman) -> None:
        user = await d.users.require("alice")
        assert await d.signins.list(user) == []
        assert not d.session_auth_hash_matches(user, old_hash)
        assert (await d.authenticate("alice", NEW_PASSWORD, client=None)).id == user.id

    with_doorman(db, check)


def test_users_passwd_checks_the_password(doorman_cli: Invoke) -> None:
    ok(create(doorman_cli, "alice"))
    fails(
        doorman_cli("users", "passwd", "alice", "--password-stdin", input="alice1234\n"),
        "password rejected: ",
        "too similar to the username",
    )
    fails(
        doorman_cli("users", "passwd", "nobody", "--password-stdin", input=NEW_PASSWORD), "nobody"
    )


def test_users_disable_enable_delete(doorman_cli: Invoke, db: str) -> None:
    ok(create(doorman_cli, "bob"))
    ok(doorman_cli("users", "disable", "bob"))
    assert not with_doorman(db, lambda d: d.users.require("bob")).is_active
    ok(doorman_cli("users", "enable", "bob"))
    assert with_doorman(db, lambda d: d.users.require("bob")).is_active
    refused = doorman_cli("users", "delete", "bob", input="n\n")
    assert refused.exit_code == 1 and "Aborted" in refused.output
    assert with_doorman(db, lambda d: d.users.by_username("bob")) is not None
    ok(doorman_cli("users", "delete", "bob", input="y\n"))
    assert with_doorman(db, lambda d: d.users.by_username("bob")) is None
    for command in ("disable", "enable"):
        fails(doorman_cli("users", command, "bob"), "no user 'bob'")
    fails(doorman_cli("users", "delete", "bob", "--yes"), "no user 'bob'")


def live_tokens(db: str, username: str) -> int:
    async def count(d: Doorman) -> int:
        return len(await d.tokens.list(await d.users.require(username)))

    return with_doorman(db, count)


def make_tokens(db: str, username: str, count: int) -> list[str]:
    async def create(d: Doorman) -> list[str]:
        user = await d.users.require(username)
        return [(await d.tokens.create(user))[1] for _ in range(count)]

    return with_doorman(db, create)


def test_users_passwd_revokes_api_tokens_unless_kept(doorman_cli: Invoke, db: str) -> None:
    ok(create(doorman_cli, "alice"))
    make_tokens(db, "alice", 2)
    result = ok(doorman_cli("users", "passwd", "alice", "--password-stdin", input=NEW_PASSWORD))
    assert result.stdout.endswith("; their 2 API tokens were revoked\n")
    assert live_tokens(db, "alice") == 0
    make_tokens(db, "alice", 1)
    kept = ok(
        doorman_cli("users", "passwd", "alice", "--keep-tokens", "--password-stdin", input=PASSWORD)
    )
    assert kept.stdout.endswith("; their 1 API token still works\n")
    assert live_tokens(db, "alice") == 1


def test_users_disable_revokes_api_tokens_so_enable_brings_none_back(
    doorman_cli: Invoke, db: str
) -> None:
    ok(create(doorman_cli, "bob"))
    (text,) = make_tokens(db, "bob", 1)
    assert ok(doorman_cli("users", "disable", "bob")).stdout.endswith("token was revoked\n")
    assert ok(doorman_cli("users", "enable", "bob")).stdout == "enabled bob\n"
    assert with_doorman(db, lambda d: d.tokens.verify(text)) is None
    make_tokens(db, "bob", 2)
    kept = ok(doorman_cli("users", "disable", "bob", "--keep-tokens")).stdout
    assert kept.endswith("; their 2 API tokens stop working until they are enabled\n")
    again = ok(doorman_cli("users", "enable", "bob")).stdout
    assert again == "enabled bob; their 2 API tokens work again\n"


def test_sessions_revoke_keeps_api_tokens_unless_asked(doorman_cli: Invoke, db: str) -> None:
    ok(create(doorman_cli, "alice"))
    make_tokens(db, "alice", 2)
    kept = ok(doorman_cli("sessions", "revoke", "alice")).stdout
    assert kept == "signed alice out everywhere; their 2 API tokens still work\n"
    assert live_tokens(db, "alice") == 2
    gone = ok(doorman_cli("sessions", "revoke", "alice", "--revoke-tokens")).stdout
    assert gone == "signed alice out everywhere; their 2 API tokens were revoked\n"
    assert live_tokens(db, "alice") == 0
    assert ok(doorman_cli("sessions", "revoke", "alice")).stdout == "signed alice out everywhere\n"


def test_users_delete_with_yes_does_not_ask(doorman_cli: Invoke, db: str) -> None:
    ok(create(doorman_cli, "bob"))
    result = ok(doorman_cli("users", "delete", "bob", "--yes"))
    assert "?" not in result.output and "deleted bob" in result.stdout


def test_users_edit(doorman_cli: Invoke, db: str) -> None:
    ok(create(doorman_cli, "bob", "--email", "bob@example.com", "--group", "staff"))
    result = ok(doorman_cli("users", "edit", "Bob", "--admin", "--groups", "ops, dev"))
    assert result.stdout == "bob: an admin; groups dev, ops\n"
    bob = with_doorman(db, lambda d: d.users.require("bob"))
    assert (bob.email, bob.is_admin, bob.groups) == ("bob@example.com", True, ("dev", "ops"))
    result = ok(doorman_cli("users", "edit", "bob", "--email", "b@example.org"))
    assert result.stdout == "bob: email b@example.org\n"
    ok(doorman_cli("users", "edit", "bob", "--email", "", "--no-admin", "--groups", ""))
    bob = with_doorman(db, lambda d: d.users.require("bob"))
    assert (bob.email, bob.is_admin, bob.groups) == (None, False, ())


def test_users_edit_errors_are_one_line_and_change_nothing(doorman_cli: Invoke, db: str) -> None:
    ok(create(doorman_cli, "bob", "--email", "bob@example.com"))
    fails(doorman_cli("users", "edit", "bob"), "nothing to change", "--email")
    fails(doorman_cli("users", "edit", "nobody", "--admin"), "no user 'nobody'")
    fails(doorman_cli("users", "edit", "bob", "--email", "nope", "--admin"), "not an email")
    fails(doorman_cli("users", "edit", "bob", "--groups", "ok,a;b", "--admin"), "group name")
    bob = with_doorman(db, lambda d: d.users.require("bob"))
    assert (bob.email, bob.is_admin, bob.groups) == ("bob@example.com", False, ())


# -- tokens ------------------------------------------------------------------------------


#: The settings name an action of the app's own, so that a token may be limited to it.
DEPLOY_RULE = {"DOORMAN_PERMISSIONS": '{"deploy": {}}'}


def test_tokens_create_list_revoke(doorman_cli: Invoke, db: str) -> None:
    ok(create(doorman_cli, "ci"))
    result = ok(
        doorman_cli("tokens", "create", "ci", "--expires", "90d", "--name", "deploy",
                    "--scope", "view", "--scope", "deploy", env=DEPLOY_RULE)
    )  # fmt: skip
    token = result.stdout.strip()
    assert token.startswith("dmt_") and "\n" not in token
    assert "will not be shown again" in result.stderr and token not in result.stderr
    found = with_doorman(db, lambda d: d.tokens.verify(token))
    assert found is not None and found.scopes == ("deploy", "view")
    assert (
        found.expires_at is not None and 89 * 86400 < found.expires_at - time.time() <= 90 * 86400
    )

    listed = json.loads(ok(doorman_cli("tokens", "list", "--json")).stdout)
    assert [(t["id"], t["username"], t["name"]) for t in listed] == [(found.id, "ci", "deploy")]
    assert token not in json.dumps(listed)
    table = ok(doorman_cli("tokens", "list", "--user", "ci")).stdout
    assert found.id in table and "deploy" in table and token not in table

    ok(doorman_cli("tokens", "revoke", found.id))
    assert with_doorman(db, lambda d: d.tokens.verify(token)) is None
    assert json.loads(ok(doorman_cli("tokens", "list", "--json")).stdout) == []
    assert "revoked" in ok(doorman_cli("tokens", "list", "--all")).stdout
    fails(doorman_cli("tokens", "revoke", found.id), "no live token", found.id)


def test_token_errors(doorman_cli: Invoke) -> None:
    ok(doorman_cli("db", "init"))
    fails(doorman_cli("tokens", "create", "nobody"), "no user 'nobody'")
    bad = doorman_cli("tokens", "create", "nobody", "--expires", "soon")
    assert bad.exit_code == 2 and "--expires" in bad.stderr and "Traceback" not in bad.output
    assert "or never" in bad.stderr
    fails(doorman_cli("tokens", "list", "--user", "nobody"), "nobody")


def test_tokens_list_shows_scopes(doorman_cli: Invoke) -> None:
    ok(create(doorman_cli, "ci"))
    ok(
        doorman_cli(
            "tokens",
            "create",
            "ci",
            "--name",
            "deploy",
            "--scope",
            "view",
            "--scope",
            "deploy",
            env=DEPLOY_RULE,
        )
    )
    ok(doorman_cli("tokens", "create", "ci", "--name", "all"))
    header, *rows = ok(doorman_cli("tokens", "list")).stdout.splitlines()
    assert header.split()[:4] == ["ID", "USER", "NAME", "SCOPES"]
    assert sorted(row.split()[2:4] for row in rows) == [["all", "any"], ["deploy", "deploy,view"]]


#: A token name anyone may choose on /-/account: it rewrites the terminal that shows it raw.
HOSTILE_NAME = "ci\x1b]0;owned\x07\x1b[2K\rfake line \x9b31m \u202egnp.exe"


def test_lists_show_control_characters_escaped(doorman_cli: Invoke, db: str) -> None:
    """An admin's terminal must not run escape sequences a user put in a name or a browser."""
    ok(create(doorman_cli, "ci"))

    async def plant(doorman: Doorman) -> None:
        user = await doorman.users.require("ci")
        await doorman.tokens.create(user, name=HOSTILE_NAME)
        await doorman.signins.record(user, user_agent="Evil\x9b2J\x1b[2J", address=None)

    with_doorman(db, plant)
    for command in (("tokens", "list"), ("sessions", "list")):
        shown = ok(doorman_cli(*command)).stdout
        assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e]", shown), shown
        listed = ok(doorman_cli(*command, "--json")).stdout
        assert not re.search("[\x7f-\x9f\u202a-\u202e]", listed), listed
    assert "\\x1b]0;owned\\x07" in ok(doorman_cli("tokens", "list")).stdout  # shown, harmless
    names = [t["name"] for t in json.loads(ok(doorman_cli("tokens", "list", "--json")).stdout)]
    assert names == [HOSTILE_NAME], "JSON escapes it, and reads back the same"


def test_token_scopes_must_name_actions(doorman_cli: Invoke, db: str) -> None:
    ok(create(doorman_cli, "ci"))
    choices = "choose from account, admin, login, register, view, or name your own"
    fails(
        doorman_cli("tokens", "create", "ci", "--scope", "view", "--scope", "nonexistent"),
        "--scope 'nonexistent' is not an action;",
        choices,
    )
    fails(doorman_cli("tokens", "create", "ci", "--scope", "veiw"), "did you mean 'view'?")
    fails(doorman_cli("tokens", "create", "ci", "--scope", "deploy"), "[permissions]")
    assert with_doorman(db, lambda d: d.tokens.list()) == []
    ok(doorman_cli("tokens", "create", "ci", "--scope", "deploy", env=DEPLOY_RULE))
    ok(doorman_cli("tokens", "create", "ci", "--scope", "admin"))
    scopes = [t.scopes for t in with_doorman(db, lambda d: d.tokens.list())]
    assert sorted(scopes) == [("admin",), ("deploy",)]


def test_tokens_expire_in_90_days_unless_never(doorman_cli: Invoke, db: str) -> None:
    ok(create(doorman_cli, "ci"))
    usual = ok(doorman_cli("tokens", "create", "ci")).stdout.strip()
    endless = ok(doorman_cli("tokens", "create", "ci", "--expires", "never"))
    assert "never expires" in endless.stderr
    found = with_doorman(db, lambda d: d.tokens.verify(usual))
    assert found is not None and found.expires_at is not None
    assert 89 * 86400 < found.expires_at - time.time() <= 90 * 86400
    forever = with_doorman(db, lambda d: d.tokens.verify(endless.stdout.strip()))
    assert forever is not None and forever.expires_at is None
    help_text = " ".join(ok(doorman_cli("tokens", "create", "--help")).stdout.split())
    assert "never for a token that does not expire. [default: 90d]" in help_text


# -- sessions ------------------------------------------------------------------------------


def test_sessions_list_and_revoke(doorman_cli: Invoke, db: str) -> None:
    ok(create(doorman_cli, "alice"))
    ok(create(doorman_cli, "bob"))

    async def sign_in(d: Doorman) -> None:
        for name, address in (("alice", "203.0.113.5"), ("bob", "198.51.100.7")):
            user = await d.users.require(name)
            await d.signins.record(user, user_agent="Mozilla/5.0 Firefox/133.0", address=address)

    with_doorman(db, sign_in)
    everyone = json.loads(ok(doorman_cli("sessions", "list", "--json")).stdout)
    assert sorted(s["username"] for s in everyone) == ["alice", "bob"]
    alice = json.loads(ok(doorman_cli("sessions", "list", "alice", "--json")).stdout)
    assert [(s["username"], s["address"]) for s in alice] == [("alice", "203.0.113.5")]
    table = ok(doorman_cli("sessions", "list")).stdout
    assert table.split()[:5] == ["USER", "ADDRESS", "BROWSER", "CREATED", "LAST"]
    assert "Firefox" in table

    version = with_doorman(db, lambda d: d.users.require("alice")).session_version
    ok(doorman_cli("sessions", "revoke", "alice"))
    assert json.loads(ok(doorman_cli("sessions", "list", "alice", "--json")).stdout) == []
    assert with_doorman(db, lambda d: d.users.require("alice")).session_version == version + 1
    assert len(json.loads(ok(doorman_cli("sessions", "list", "--json")).stdout)) == 1
    fails(doorman_cli("sessions", "revoke", "nobody"), "no user 'nobody'")


def test_sessions_clear_expired_sweeps_sessions_and_stale_signins(
    doorman_cli: Invoke, db: str
) -> None:
    ok(create(doorman_cli, "alice"))

    async def prepare(d: Doorman) -> None:
        from doorman.accounts.signins import signin_id
        from doorman.db.schema import signins_table
        from doorman.stores.sql import SQLStore

        user = await d.users.require("alice")
        stale = await d.signins.record(user, address=None)
        await d.signins.record(user, address=None)
        async with connect(d.engine, write=True) as connection:
            await connection.execute(
                signins_table.update()
                .where(signins_table.c.id == signin_id(stale))
                .values(last_seen=1.0)
            )
        store = SQLStore(engine=d.engine)
        await store.save(None, "{}", time.time() - 10)  # expired
        await store.save(None, "{}", time.time() + 3600)

    with_doorman(db, prepare)
    result = ok(doorman_cli("sessions", "clear-expired"))
    assert "removed 1 expired session, 1 stale sign-in" in result.stdout
    assert len(json.loads(ok(doorman_cli("sessions", "list", "--json")).stdout)) == 1
    cookie = ok(doorman_cli("sessions", "clear-expired", "--sessions", "cookie"))
    assert "live in browsers" in cookie.stderr and "0 stale sign-ins" in cookie.stdout


def test_sessions_flush(doorman_cli: Invoke, db: str) -> None:
    ok(create(doorman_cli, "alice"))

    async def prepare(d: Doorman) -> None:
        from doorman.stores.sql import SQLStore

        await d.signins.record(await d.users.require("alice"), address=None)
        await SQLStore(engine=d.engine).save(None, "{}", time.time() + 3600)

    with_doorman(db, prepare)
    assert doorman_cli("sessions", "flush", input="n\n").exit_code == 1
    assert "deleted 1 session" in ok(doorman_cli("sessions", "flush", "--yes")).stdout
    assert json.loads(ok(doorman_cli("sessions", "list", "--json")).stdout) == []
    fails(doorman_cli("sessions", "flush", "--yes", "--sessions", "cookie"), "rotate the secret")


# -- settings and errors ------------------------------------------------------------------


def test_settings_come_from_the_config_file(doorman_cli: Invoke, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    (tmp_path / "conf.toml").write_text(f'db = "{other}"\n')
    runner = CliRunner()
    ok(runner.invoke(main, ["db", "init", "--config", "conf.toml"], env={"DOORMAN_DB": None}))
    assert other.exists()
    result = runner.invoke(main, ["users", "list"], env={"DOORMAN_CONFIG": "missing.toml"})
    fails(result, "missing.toml", "does not exist")


def test_bad_settings_are_one_line(doorman_cli: Invoke, tmp_path: Path) -> None:
    (tmp_path / "doorman.toml").write_text("pasword_min_length = 12\n")
    fails(doorman_cli("users", "list"), "did you mean 'password_min_length'?")
    (tmp_path / "doorman.toml").unlink()
    fails(doorman_cli("users", "list", "--db", "mysql://x/y"), "db = 'mysql://x/y' (from --db)")
    fails(doorman_cli("sessions", "list", "--sessions", "memcached"), "sessions = 'memcached'")
    fails(
        doorman_cli("users", "list", env={"DOORMAN_SECRET": "hunter2"}),
        "secret = <hidden> (from DOORMAN_SECRET)",
    )


def test_a_database_that_does_not_answer_is_one_line(doorman_cli: Invoke) -> None:
    fails(doorman_cli("db", "init", "--db", "/nonexistent-dir/x.db"), "did not answer")


# -- db -----------------------------------------------------------------------------------


def test_db_init_and_migrate(doorman_cli: Invoke, db: str) -> None:
    Path(db).unlink()  # no database yet: `db init` makes it
    head = head_revision()
    assert f"created doorman's tables in SQLite {db}, at revision {head}" in (
        ok(doorman_cli("db", "init")).stdout
    )
    assert "already" in ok(doorman_cli("db", "init")).stdout
    assert f"already at revision {head}" in ok(doorman_cli("db", "migrate")).stdout
    Path(db).with_name("new.db").touch()  # an empty SQLite database: migrate does not make one
    fresh = ok(doorman_cli("db", "migrate", "--db", str(Path(db).with_name("new.db")))).stdout
    assert f"migrated from revision none (no tables) to {head}" in fresh


def test_a_version_table_with_two_revisions_is_one_line(
    doorman_cli: Invoke, db: str, uvicorn_calls: list[Any]
) -> None:
    """The attack of 2026-12-06: start-up read the version table itself and raised a bare
    RuntimeError on two rows, a traceback from `doorman serve`."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(db)) as connection, connection:
        connection.execute("INSERT INTO doorman_alembic_version VALUES ('0005')")
    for command in (["db", "migrate"], ["serve", "--port", str(free_port())]):
        fails(doorman_cli(*command), "migrations: doorman_alembic_version holds several")
    assert uvicorn_calls == []


def test_a_database_from_a_newer_doorman_is_one_line(doorman_cli: Invoke, db: str) -> None:
    """A revision this doorman does not ship: Alembic's own refusal, as one line (the
    commands load Alembic only to migrate, and know its error only then)."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(db)) as connection, connection:
        connection.execute("UPDATE doorman_alembic_version SET version_num = '0099'")
    fails(doorman_cli("db", "migrate"), "migrations: Can't locate revision", "0099")


def test_tables_not_at_the_recorded_revision_are_named_so(doorman_cli: Invoke, db: str) -> None:
    """The attack of 2026-12-06: with the version table dropped, migrating made tables that
    were there, retried as if another worker raced it, and said the database "did not
    answer"."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(db)) as connection, connection:
        connection.execute("DROP TABLE doorman_alembic_version")
    line = fails(doorman_cli("db", "migrate"), "cannot migrate: its tables are not at the")
    assert "did not answer" not in line and "already exists" in line


def test_db_schema(doorman_cli: Invoke) -> None:
    sqlite_sql = ok(doorman_cli("db", "schema")).stdout
    assert "CREATE TABLE doorman_users" in sqlite_sql
    postgres_sql = ok(doorman_cli("db", "schema", "--dialect", "postgresql")).stdout
    assert "CREATE TABLE doorman_users" in postgres_sql and postgres_sql != sqlite_sql
    assert ok(doorman_cli("db", "schema", "--db", "postgresql://x@y/z")).stdout == postgres_sql


def _fill(invoke: Invoke, db: str) -> str:
    """Two users (groups, an empty group, no-password), a live and a revoked token."""
    ok(create(invoke, "alice", "--email", "alice@example.com", "--admin", "--group", "ops"))
    ok(create(invoke, "bob", "--group", "ops", "--group", "staff"))
    token = ok(invoke("tokens", "create", "alice", "--name", "ci", "--scope", "view")).stdout
    revoked = ok(invoke("tokens", "create", "bob", "--expires", "1h")).stdout.strip()

    async def more(d: Doorman) -> None:
        await d.users.create("nopass")
        await d.users.set_groups(await d.users.require("nopass"), ["empty-later"])
        await d.users.set_groups(await d.users.require("nopass"), [])
        found = await d.tokens.verify(revoked)
        assert found is not None
        await d.tokens.revoke(found.id)

    with_doorman(db, more)
    return token.strip()


def test_db_dump_and_load_round_trip_on_sqlite(
    doorman_cli: Invoke, db: str, tmp_path: Path
) -> None:
    token = _fill(doorman_cli, db)
    dumped = ok(doorman_cli("db", "dump")).stdout
    data = json.loads(dumped)
    assert data["doorman"] == doorman.__version__ and data["revision"] == head_revision()
    assert [u["username"] for u in data["users"]] == ["alice", "bob", "nopass"]
    assert data["users"][0]["password_hash"].startswith("$argon2id$")
    assert data["groups"] == ["empty-later", "ops", "staff"]
    assert len(data["tokens"]) == 2 and token not in dumped
    assert "secret" not in {k for u in data["users"] for k in u}

    result = ok(doorman_cli("db", "dump", "backup.json"))
    assert (tmp_path / "backup.json").read_text() == dumped
    assert (tmp_path / "backup.json").stat().st_mode & 0o777 == 0o600
    assert "wrote 3 users, 3 groups, 2 tokens" in result.stderr

    other = str(tmp_path / "other.db")
    loaded = ok(doorman_cli("db", "load", "backup.json", "--db", other)).stdout
    assert "loaded 3 users, 3 new groups and 2 tokens" in loaded
    assert ok(doorman_cli("db", "dump", "--db", other)).stdout == dumped
    # What was loaded works: passwords and tokens.
    assert with_doorman(other, lambda d: d.authenticate("bob", PASSWORD, client=None))
    assert with_doorman(other, lambda d: d.tokens.verify(token)) is not None


def test_db_load_refuses_existing_users_unless_skipped(
    doorman_cli: Invoke, db: str, tmp_path: Path
) -> None:
    _fill(doorman_cli, db)
    ok(doorman_cli("db", "dump", "backup.json"))
    other = str(tmp_path / "other.db")
    ok(create(doorman_cli, "BOB", "--db", other))
    ok(create(doorman_cli, "nopass", "--db", other))
    fails(
        doorman_cli("db", "load", "backup.json", "--db", other),
        "users of the dump exist already: bob, nopass;",
        "--skip-existing",
    )
    assert [u["username"] for u in _users(doorman_cli, other)] == ["BOB", "nopass"]  # nothing
    loaded = ok(doorman_cli("db", "load", "backup.json", "--db", other, "--skip-existing")).stdout
    assert "loaded 1 user" in loaded and "kept 2 existing users as they were" in loaded
    assert [u["username"] for u in _users(doorman_cli, other)] == ["alice", "BOB", "nopass"]
    again = ok(doorman_cli("db", "load", "backup.json", "--db", other, "--skip-existing")).stdout
    assert "loaded 0 users, 0 new groups and 0 tokens" in again


def test_db_load_keeps_a_verified_address_to_one_account(
    doorman_cli: Invoke, db: str, tmp_path: Path
) -> None:
    """The database refuses a second account holding an address verified (migration 0007):
    load says which users of the dump would, and loads nothing."""
    _fill(doorman_cli, db)
    data = json.loads(ok(doorman_cli("db", "dump")).stdout)
    for user in data["users"]:
        user.update(email="Shared@Example.com", email_verified=True)
    (tmp_path / "twice.json").write_text(json.dumps(data))
    other = str(tmp_path / "other.db")
    fails(doorman_cli("db", "load", "twice.json", "--db", other), "of the dump hold one address")
    assert _users(doorman_cli, other) == []
    data["users"] = data["users"][:1]
    data["tokens"] = [t for t in data["tokens"] if t["username"] == data["users"][0]["username"]]
    (tmp_path / "once.json").write_text(json.dumps(data))
    ok(create(doorman_cli, "carol", "--db", other))
    with_doorman(other, _verify_carol_as_shared)
    fails(
        doorman_cli("db", "load", "once.json", "--db", other),
        f"other accounts here hold verified: {data['users'][0]['username']}",
    )
    assert [u["username"] for u in _users(doorman_cli, other)] == ["carol"]


async def _verify_carol_as_shared(d: Any) -> None:
    carol = await d.users.set_email(await d.users.require("carol"), "shared@example.com")
    await d.users.verify_email(carol)


def _users(invoke: Invoke, db: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(
        ok(invoke("users", "list", "--json", "--db", db)).stdout
    )
    return found


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("not json", "not JSON"),
        ("[]", "not a doorman dump"),
        ('{"doorman": "x", "revision": "0002", "users": [{}], "groups": [], "tokens": []}',
         "users[0]: has []"),
        ('{"doorman": "x", "revision": "0002", "users": [], "groups": [1], "tokens": []}',
         "groups must be a list of names"),
    ],
)  # fmt: skip
def test_db_load_refuses_a_bad_file(
    doorman_cli: Invoke, tmp_path: Path, text: str, fragment: str
) -> None:
    (tmp_path / "bad.json").write_text(text)
    fails(doorman_cli("db", "load", "bad.json"), fragment)


def test_db_load_refuses_a_bad_field_and_loads_nothing(
    doorman_cli: Invoke, db: str, tmp_path: Path
) -> None:
    _fill(doorman_cli, db)
    data = json.loads(ok(doorman_cli("db", "dump")).stdout)
    data["users"][1]["is_admin"] = "yes"
    (tmp_path / "bad.json").write_text(json.dumps(data))
    other = str(tmp_path / "other.db")
    fails(doorman_cli("db", "load", "bad.json", "--db", other), "users[1].is_admin", "bool")
    data["users"][1]["is_admin"] = False
    data["tokens"][0]["username"] = "ghost"
    (tmp_path / "bad.json").write_text(json.dumps(data))
    fails(doorman_cli("db", "load", "bad.json", "--db", other), "'ghost'", "not in the dump")
    assert _users(doorman_cli, other) == []  # one transaction: nothing was loaded
    fails(doorman_cli("db", "load", "missing.json"), "cannot read 'missing.json'")


def test_db_dump_shows_progress_on_stderr_only(
    doorman_cli: Invoke, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok(doorman_cli("db", "init"))

    async def many() -> None:
        engine = create_engine(db)
        rows = [
            {"username": f"user{i:04}", "username_key": f"user{i:04}", "created_at": 1.0 + i}
            for i in range(1200)
        ]
        async with connect(engine, write=True) as connection:
            await connection.execute(users_table.insert(), rows)
        await engine.dispose()

    asyncio.run(many())
    monkeypatch.setattr(doorman.cli.db, "_stderr_is_tty", lambda: True)
    result = ok(doorman_cli("db", "dump"))
    assert "dumping users" in result.stderr
    assert len(json.loads(result.stdout)["users"]) == 1200


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """A PostgreSQL database of this test's own (the shared one holds other tests' users)."""
    import asyncpg

    name = "doorman_cli_" + secrets.token_hex(4)

    async def execute(sql: str) -> None:
        connection = await asyncpg.connect(POSTGRES_URL, timeout=5)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    def run(sql: str) -> None:
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, execute(sql)).result()

    try:
        run(f'CREATE DATABASE "{name}"')
    except (TimeoutError, OSError, asyncpg.PostgresError) as error:
        _missing("PostgreSQL at " + POSTGRES_URL, error)
    yield f"{POSTGRES_URL.rpartition('/')[0]}/{name}"
    run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.postgres
def test_db_dump_and_load_between_sqlite_and_postgres(
    doorman_cli: Invoke, db: str, tmp_path: Path, fresh_postgres_url: str
) -> None:
    token = _fill(doorman_cli, db)
    dumped = ok(doorman_cli("db", "dump", "sqlite.json")) and (tmp_path / "sqlite.json").read_text()
    ok(doorman_cli("db", "load", "sqlite.json", "--db", fresh_postgres_url))
    from_postgres = ok(doorman_cli("db", "dump", "--db", fresh_postgres_url)).stdout
    assert from_postgres == dumped
    back = str(tmp_path / "back.db")
    ok(doorman_cli("db", "load", "-", "--db", back, input=from_postgres))
    assert ok(doorman_cli("db", "dump", "--db", back)).stdout == dumped
    assert with_doorman(fresh_postgres_url, lambda d: d.tokens.verify(token)) is not None
    user = with_doorman(
        fresh_postgres_url, lambda d: d.authenticate("alice", PASSWORD, client=None)
    )
    assert user.is_admin and user.groups == ("ops",)


# -- plugins --------------------------------------------------------------------------------


class HelloPlugin:
    @hookimpl
    def register_commands(self, cli: click.Group) -> None:
        @cli.command()
        def hello() -> None:
            """Say hello."""
            click.echo("hello from a plugin")

    @hookimpl
    def on_login(self, doorman: Any, event: Any) -> None:
        return None


class BrokenPlugin:
    @hookimpl
    def register_commands(self, cli: click.Group) -> None:
        raise RuntimeError("this plugin\nis broken")


@pytest.fixture
def plugin_commands(monkeypatch: pytest.MonkeyPatch) -> Callable[[object], None]:
    """Have the CLI load ``plugin`` as if installed; the added commands go away afterwards."""

    def install(plugin: object) -> None:
        monkeypatch.setattr(main, "commands", dict(main.commands))
        monkeypatch.setattr(main, "plugin_commands_loaded", False)
        monkeypatch.setattr(
            doorman.cli,
            "make_plugin_manager",
            lambda: make_plugin_manager(plugins=[plugin], entry_points=False),
        )

    return install


def test_a_plugin_adds_a_command(doorman_cli: Invoke, plugin_commands: Any) -> None:
    plugin_commands(HelloPlugin())
    assert ok(doorman_cli("hello")).stdout == "hello from a plugin\n"
    assert "hello" in ok(doorman_cli("--help")).stdout


def test_a_broken_plugin_is_one_line_and_the_cli_still_works(
    doorman_cli: Invoke, plugin_commands: Any
) -> None:
    plugin_commands(BrokenPlugin())
    result = ok(doorman_cli("db", "schema"))
    assert result.stderr.startswith("doorman: plugin commands not loaded: RuntimeError: ")
    assert "this plugin is broken" in result.stderr and "Traceback" not in result.output


def test_plugins_list(doorman_cli: Invoke, tmp_path: Path) -> None:
    assert json.loads(ok(doorman_cli("plugins", "--json")).stdout) == []
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "audit.py").write_text(
        "from doorman import hookimpl\n\n\n@hookimpl\ndef on_login(doorman, event):\n    pass\n"
    )
    found = json.loads(ok(doorman_cli("plugins", "--plugins-dir", "plugins", "--json")).stdout)
    assert found == [{"name": "doorman_plugins.audit", "hooks": ["on_login"], "version": None}]
    table = ok(doorman_cli("plugins", "--plugins-dir", "plugins")).stdout
    assert "doorman_plugins.audit" in table and "on_login" in table
    (tmp_path / "plugins" / "broken.py").write_text("raise RuntimeError('boom')\n")
    fails(doorman_cli("plugins", "--plugins-dir", "plugins"), "broken.py", "boom")


# -- serve (up to uvicorn) ------------------------------------------------------------------


@pytest.fixture
def uvicorn_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record uvicorn.run and say "running"; DOORMAN_SERVE_SETTINGS is restored afterwards."""
    import uvicorn

    calls: list[dict[str, Any]] = []

    def run(app: object, **options: Any) -> None:
        calls.append({"app": app, **options})
        say_running(options)

    monkeypatch.setenv("DOORMAN_SERVE_SETTINGS", "")
    monkeypatch.setattr(uvicorn, "run", run)
    return calls


def say_running(options: dict[str, Any]) -> None:
    """Log uvicorn's "running" line as uvicorn does, once it listens (whatever the log level)."""
    log = logging.getLogger("uvicorn.error")
    message = "Uvicorn running on %s://%s:%d (Press CTRL+C to quit)"
    arguments = ("http", options["host"], options["port"])
    log.handle(log.makeRecord(log.name, logging.INFO, __file__, 0, message, arguments, None))


@pytest.mark.parametrize(
    ("args", "env", "fragment"),
    [
        (["--port", "0"], {}, "port = '0' (from --port)"),
        ([], {"DOORMAN_WORKERS": "abc"}, "workers = 'abc' (from DOORMAN_WORKERS)"),
        (["--plugins-dir", "nowhere"], {}, "plugins_dir = 'nowhere'"),
        ([], {"DOORMAN_SESSIONS": "redis://127.0.0.1:1/0"}, "did not answer"),
        ([], {"DOORMAN_LOGIN_REDIRECT": "//evil.example/"}, "login_redirect = '//evil.example/'"),
        (
            [],
            {"DOORMAN_LOGIN_REDIRECT": "https://evil.example/"},
            "login_redirect = 'https://evil.example/': a URL must be on an allowed origin",
        ),
    ],
)
def test_serve_stops_before_uvicorn_on_a_bad_setting(
    doorman_cli: Invoke,
    uvicorn_calls: list[Any],
    args: list[str],
    env: dict[str, str],
    fragment: str,
) -> None:
    fails(doorman_cli("serve", *args, env=env), fragment)
    assert uvicorn_calls == []
    assert os.environ["DOORMAN_SERVE_SETTINGS"] == ""


def test_serve_hands_resolved_settings_to_uvicorn(
    doorman_cli: Invoke, db: str, uvicorn_calls: list[dict[str, Any]]
) -> None:
    pytest.importorskip("doorman.server.setup")
    port = free_port()
    result = ok(doorman_cli("serve", "--host", "0.0.0.0", "--port", str(port), "--workers", "1"))
    [call] = uvicorn_calls
    assert call["app"] == "doorman.server.workers:serve_app" and call["factory"] is True
    assert (call["host"], call["port"], call["workers"]) == ("0.0.0.0", port, 1)
    assert call["proxy_headers"] is True and call["forwarded_allow_ips"] == "127.0.0.1"
    handed = Settings.from_json(os.environ["DOORMAN_SERVE_SETTINGS"])
    assert handed.db == db and handed.port == port
    stored = with_doorman(db, lambda d: _secret_row(d))
    assert handed.secret == (stored,)  # every worker signs with the one kept in the database
    assert f"Create the first admin at http://127.0.0.1:{port}/-/setup?token=" in result.stdout

    ok(create(doorman_cli, "admin", "--admin"))
    uvicorn_calls.clear()
    env = {"DOORMAN_PUBLIC_URL": "https://auth.example.com", "DOORMAN_PORT": str(free_port())}
    result = ok(doorman_cli("serve", env=env))
    assert "setup" not in result.stdout and len(uvicorn_calls) == 1


def test_serve_prints_the_setup_link_with_the_public_url(
    doorman_cli: Invoke, uvicorn_calls: list[Any]
) -> None:
    pytest.importorskip("doorman.server.setup")
    env = {"DOORMAN_PUBLIC_URL": "https://auth.example.com/", "DOORMAN_ROUTE_PREFIX": "/auth/"}
    result = ok(doorman_cli("serve", "--port", str(free_port()), env=env))
    assert "Create the first admin at https://auth.example.com/auth/setup?token=" in result.stdout


def test_serve_warns_when_its_workers_could_open_more_connections_than_postgres_admits(
    doorman_cli: Invoke, emptied_postgres_url: str, uvicorn_calls: list[Any]
) -> None:
    """The attack's finding: four workers with 30 connections each passed PostgreSQL's 100,
    and a burst of sign-ins got 503s. Workers times db_pool_size is now checked at start."""
    pytest.importorskip("doorman.server.setup")
    env = {"DOORMAN_DB": emptied_postgres_url}
    fits = ok(doorman_cli("serve", "--port", str(free_port()), "--workers", "4", env=env))
    assert "warning" not in fits.stderr and len(uvicorn_calls) == 1

    crowded = ok(doorman_cli("serve", "--port", str(free_port()), "--workers", "6", env=env))
    assert len(uvicorn_calls) == 2  # a warning, not a refusal: other servers may differ
    [line] = [line for line in crowded.stderr.splitlines() if "warning" in line]
    assert "6 workers with db_pool_size 20 may open 120 connections" in line
    assert "which admits 97 (max_connections 100, 3 kept for superusers)" in line

    smaller = {**env, "DOORMAN_DB_POOL_SIZE": "16"}
    ok_now = ok(doorman_cli("serve", "--port", str(free_port()), "--workers", "6", env=smaller))
    assert "warning" not in ok_now.stderr
    assert Settings.from_json(os.environ["DOORMAN_SERVE_SETTINGS"]).db_pool_size == 16


@pytest.mark.parametrize(
    ("connections", "kept", "overflow"), [(None, 10, 10), (30, 10, 20), (4, 4, 0), (1, 1, 0)]
)
def test_a_postgres_engine_opens_at_most_db_pool_size_connections(
    connections: int | None, kept: int, overflow: int
) -> None:
    pool = create_engine(POSTGRES_URL, connections=connections).pool  # connects to nothing yet
    # QueuePool has no public reading of its overflow limit.
    assert (pool.size(), pool._max_overflow) == (kept, overflow)  # type: ignore[attr-defined]


async def _secret_row(d: Doorman) -> str:
    from doorman.db.schema import settings_table

    async with connect(d.engine) as connection:
        query = sa.select(settings_table.c.value).where(settings_table.c.name == "secret")
        return str((await connection.execute(query)).scalar_one())


# -- a real process ----------------------------------------------------------------------------


@pytest.mark.e2e
def test_python_dash_m_doorman_in_a_real_process(tmp_path: Path) -> None:
    env = {**os.environ, "DOORMAN_DB": str(tmp_path / "real.db")}
    for name in [s.env for s in SETTINGS if s.name != "db"] + ["DOORMAN_CONFIG"]:
        env.pop(name, None)

    def doorman_process(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "doorman", *args],
            input=input,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=60,
            check=False,
        )

    created = doorman_process("users", "create", "zoe", "--password-stdin", input=PASSWORD + "\n")
    assert created.returncode == 0, created.stderr
    listed = doorman_process("users", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [u["username"] for u in json.loads(listed.stdout)] == ["zoe"]
    taken = doorman_process("users", "create", "zoe", "--password-stdin", input=PASSWORD + "\n")
    assert taken.returncode == 1
    assert taken.stderr == "Error: the username 'zoe' is taken\n"
