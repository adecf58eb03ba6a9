"""``doorman events`` and ``doorman events prune``; what the other commands log.

In process through click's runner on a SQLite file; then once end to end: a
real ``doorman serve`` with two workers on PostgreSQL, signed in and refused
over HTTP and a websocket, read back with ``python -m doorman events``.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from doorman.config import Settings, close_doorman, open_doorman
from doorman.events import EventKind

from . import servers
from .servers import PASSWORD, add_users, fresh_postgres_database, post_login, running
from .test_cli import Invoke, create, fails, ok

# test_cli's fixtures, its autouse clean environment among them:
from .test_cli import clean_environment as clean_environment
from .test_cli import db as db
from .test_cli import doorman_cli as doorman_cli

#: The CLI's Doorman hashes with the OWASP parameters: their cost is not the point here.
pytestmark = pytest.mark.usefixtures("cheap_default_hasher")

NEW_PASSWORD = "violet kestrel over moorland"


def listed(invoke: Invoke, *args: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(ok(invoke("events", "--json", *args)).stdout)
    return found


def record_at(db: str, kind: str, at: float) -> None:
    async def write() -> None:
        doorman, store, _ = await open_doorman(Settings.from_mapping({"db": db}))
        try:
            await doorman.events.record(kind, at=at)
        finally:
            await close_doorman(doorman, store)

    asyncio.run(write())


def test_what_the_commands_change_is_logged_as_done_from_the_command_line(
    doorman_cli: Invoke,
) -> None:
    ok(create(doorman_cli, "alice"))
    token_text = ok(doorman_cli("tokens", "create", "alice", "--name", "ci")).stdout.strip()
    token_id = token_text.split("_")[1]
    ok(doorman_cli("tokens", "revoke", token_id))
    ok(doorman_cli("users", "edit", "alice", "--groups", "ops", "--admin"))
    ok(doorman_cli("users", "edit", "alice", "--groups", "ops"))  # nothing changes: nothing logged
    ok(doorman_cli("users", "edit", "alice", "--no-admin"))
    ok(doorman_cli("users", "passwd", "alice", "--password-stdin", input=NEW_PASSWORD + "\n"))
    ok(doorman_cli("users", "disable", "alice"))
    ok(doorman_cli("users", "enable", "alice"))
    ok(doorman_cli("sessions", "revoke", "alice"))
    ok(doorman_cli("users", "delete", "alice", "--yes"))

    found = listed(doorman_cli)
    assert [e["kind"] for e in reversed(found)] == [
        "user-created",
        "token-created",
        "token-revoked",
        "user-edited",
        "user-edited",
        "password-changed",
        "user-disabled",
        "user-enabled",
        "sessions-ended",
        "user-deleted",
    ]
    assert all(e["detail"]["via"] == "cli" and e["actor"] is None for e in found)
    assert {e["username"] for e in found} == {"alice"}
    demoted, edited = [e["detail"] for e in found if e["kind"] == "user-edited"]
    assert edited == {"via": "cli", "changed": ["admin", "groups"], "admin": True}
    assert demoted == {"via": "cli", "changed": ["admin"], "admin": False}
    assert next(e for e in found if e["kind"] == "token-revoked")["detail"]["token_id"] == token_id

    table = ok(doorman_cli("events")).stdout
    assert table.splitlines()[0].split() == ["WHEN", "KIND", "USER", "BY", "ADDRESS", "DETAIL"]
    assert "command line" in table and "changed=admin,groups" in table
    everything = table + json.dumps(found)
    assert token_text not in everything and NEW_PASSWORD not in everything


def test_filters_by_user_kind_and_time(doorman_cli: Invoke, db: str) -> None:
    ok(create(doorman_cli, "alice"))
    ok(create(doorman_cli, "bob"))
    ok(doorman_cli("users", "disable", "bob"))
    record_at(db, EventKind.SIGNED_IN, time.time() - 10 * 86400)

    assert [e["kind"] for e in listed(doorman_cli, "--user", "BOB")] == [
        "user-disabled",
        "user-created",
    ]
    assert [e["username"] for e in listed(doorman_cli, "--kind", "user-created")] == [
        "bob",
        "alice",
    ]
    both = listed(doorman_cli, "--kind", "user-disabled", "--kind", "signed-in")
    assert [e["kind"] for e in both] == ["signed-in", "user-disabled"]  # as written
    assert [e["kind"] for e in listed(doorman_cli, "--since", "7d", "--kind", "signed-in")] == []
    assert [e["kind"] for e in listed(doorman_cli, "--until", "2d")] == ["signed-in"]
    assert len(listed(doorman_cli, "--limit", "2")) == 2
    explicit = ok(doorman_cli("events", "list", "--json", "--user", "alice")).stdout
    assert json.loads(explicit) == listed(doorman_cli, "--user", "alice")
    record_at(db, "export-started", time.time())  # a plugin's own kind, once in the log
    assert [e["kind"] for e in listed(doorman_cli, "--kind", "export-started")] == [
        "export-started"
    ]
    empty = ok(doorman_cli("events", "--user", "nobody"))
    assert empty.stdout == "" and empty.stderr.strip() == "no events"


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("--since", "banana"), ("--since: 'banana' is not a time", "7d")),
        (("--until", "2026-02-30"), ("--until: '2026-02-30' is not a time",)),
        (("--since", "0"), ("--since", "above 0 seconds")),
        (("--kind", "banana"), ("--kind 'banana' is not a kind of event", "signed-in")),
    ],
)
def test_bad_input_is_one_line(
    doorman_cli: Invoke, args: tuple[str, ...], fragments: tuple[str, ...]
) -> None:
    ok(create(doorman_cli, "alice"))
    fails(doorman_cli("events", *args), *fragments)


def test_prune_keeps_what_the_retention_says(doorman_cli: Invoke, db: str) -> None:
    ok(create(doorman_cli, "alice"))
    now = time.time()
    for days in (200, 91, 30):
        record_at(db, EventKind.SIGNED_IN, now - days * 86400)

    assert (
        ok(doorman_cli("events", "prune")).stdout.strip() == "removed 2 events older than 90 days"
    )
    assert len(listed(doorman_cli)) == 2
    shorter = ok(doorman_cli("events", "prune", "--events-retention", "7d"))
    assert shorter.stdout.strip() == "removed 1 event older than 7 days"
    by_env = ok(doorman_cli("events", "prune", env={"DOORMAN_EVENTS_RETENTION": "2h"}))
    assert by_env.stdout.strip() == "removed 0 events older than 2 hours"
    assert [e["kind"] for e in listed(doorman_cli)] == ["user-created"]
    fails(
        doorman_cli("events", "prune", "--events-retention", "banana"),
        "events_retention = 'banana' (from --events-retention)",
        "at least 3600 seconds",
    )


def test_help_names_both_commands(doorman_cli: Invoke) -> None:
    group = ok(doorman_cli("events", "--help")).stdout
    assert "list" in group and "prune" in group
    assert "--since" in ok(doorman_cli("events", "list", "--help")).stdout


# -- end to end: doorman serve on PostgreSQL, two workers ---------------------------------


@pytest.mark.e2e
@pytest.mark.postgres
def test_a_real_server_logs_sign_ins_and_refusals_for_the_cli_to_read(
    tmp_path: Path, postgres_url: str
) -> None:
    with fresh_postgres_database() as db:
        add_users(db, "alice", "root", admins=("root",))
        server = servers.start_server(tmp_path / "serve", workers=2, db=db)
        with running(server):
            for password in ("wrong password", PASSWORD):
                post_login(server.url, "alice", password)
            url = server.url.replace("http", "ws") + "/-/anything"
            with pytest.raises(InvalidStatus) as refused:
                connect(url, origin="https://evil.example", proxy=None, open_timeout=5).close()
            assert refused.value.response.status_code == 403
            assert httpx.get(server.url + "/-/health", timeout=5).status_code == 200
        read = servers.doorman_cli(server, "events", "--json")
    assert read.returncode == 0, read.stderr
    found = [(e["kind"], e["username"], e["address"]) for e in reversed(json.loads(read.stdout))]
    assert found == [
        ("sign-in-failed", "alice", "127.0.0.1"),
        ("signed-in", "alice", "127.0.0.1"),
        ("websocket-refused", None, "127.0.0.1"),
    ]
