"""The CLI's error contract at start-up: one line on stderr, exit status 1, never a traceback.

A mistyped SQLite path is not silently created.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .test_cli import Invoke, create, fails, ok

# test_cli's fixtures, its autouse clean environment among them:
from .test_cli import clean_environment as clean_environment
from .test_cli import db as db
from .test_cli import doorman_cli as doorman_cli

# -- a SQLite path that does not exist -----------------------------------------------------------


READING_COMMANDS = [
    ("users", "list"),
    ("users", "passwd", "alice", "--password-stdin"),
    ("users", "disable", "alice"),
    ("users", "enable", "alice"),
    ("users", "delete", "alice", "--yes"),
    ("sessions", "list"),
    ("sessions", "revoke", "alice"),
    ("sessions", "clear-expired"),
    ("sessions", "flush", "--yes"),
    ("tokens", "create", "alice"),
    ("tokens", "list"),
    ("tokens", "revoke", "dmt_x"),
    ("db", "dump"),
    ("db", "migrate"),
]


@pytest.mark.parametrize("command", READING_COMMANDS, ids=" ".join)
@pytest.mark.parametrize("spelling", ["path", "url"])
def test_a_mistyped_sqlite_path_is_refused_not_created(
    doorman_cli: Invoke, tmp_path: Path, command: tuple[str, ...], spelling: str
) -> None:
    typo = tmp_path / "doorman.bd"
    db = str(typo) if spelling == "path" else f"sqlite:///{typo}"
    result = doorman_cli(*command, "--db", db, input="whatever password\n")
    fails(result, f"no database at {typo} (create it with `doorman db init` or `doorman serve`)")
    assert not typo.exists()


def test_the_commands_that_make_a_database_still_do(doorman_cli: Invoke, tmp_path: Path) -> None:
    made = {name: tmp_path / f"{name}.db" for name in ("init", "create", "load")}
    ok(doorman_cli("db", "init", "--db", str(made["init"])))
    ok(create(doorman_cli, "alice", "--db", str(made["create"])))
    ok(doorman_cli("db", "dump", "dump.json", "--db", str(made["create"])))
    ok(doorman_cli("db", "load", "dump.json", "--db", str(made["load"])))
    assert all(path.exists() for path in made.values())
    ok(doorman_cli("db", "schema", "--db", str(tmp_path / "none.db")))  # prints SQL, opens none
    assert not (tmp_path / "none.db").exists()


def test_a_server_database_is_not_checked_for_a_file(doorman_cli: Invoke) -> None:
    fails(
        doorman_cli("users", "list", "--db", "postgresql://nobody@127.0.0.1:1/x"), "did not answer"
    )
