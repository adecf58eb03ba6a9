"""The security event log on SQLite and PostgreSQL: what is written, what never is, failures.

Fed by ``Doorman.fire`` (the plugin events) and by ``EventLog.record``; read by
``page``/``list``; pruned by age. The pages and the CLI are in
test_server_events.py and test_cli_events.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

import doorman.accounts._event_writes as event_writes_module
import doorman.accounts.event_log as event_log_module
from doorman.accounts.event_details import REDACTED
from doorman.accounts.event_log import EventFilter, LoggedEvent
from doorman.accounts.throttle import LoginThrottle
from doorman.core import Doorman
from doorman.db import connect
from doorman.db.schema import events_table
from doorman.events import EventKind, LoginFailedEvent, PermissionDeniedEvent, kind_label
from doorman.exceptions import AuthenticationFailed, Throttled
from doorman.hookspecs import hookimpl
from doorman.stores import SQLCounter

from .test_accounts import PASSWORD, WRONG_PASSWORD, MakeDoorman
from .test_accounts import db_url as db_url  # fixtures, used by name
from .test_accounts import doorman as doorman
from .test_accounts import engine as engine
from .test_accounts import make_doorman as make_doorman
from .test_accounts import migrated_postgres_url as migrated_postgres_url
from .test_accounts import migrated_sqlite as migrated_sqlite
from .test_accounts import shared_doorman as shared_doorman

pytestmark = pytest.mark.anyio

ADDRESS = "203.0.113.5"


async def raw_rows(doorman: Doorman) -> list[dict[str, Any]]:
    """Every row of the log as the database holds it, oldest first."""
    query = sa.select(events_table).order_by(events_table.c.id)
    async with connect(doorman.engine) as connection:
        return [dict(row) for row in (await connection.execute(query)).mappings()]


async def kinds(doorman: Doorman, **where: Any) -> list[str]:
    return [e.kind for e in await doorman.events.list(EventFilter(**where))]


# -- what is written -------------------------------------------------------------------


async def test_a_recorded_event_reads_back_with_everything_it_said(doorman: Doorman) -> None:
    alice = await doorman.create_user("alice", PASSWORD)
    before = time.time()
    await doorman.events.record(
        EventKind.USER_EDITED,
        user=alice,
        actor={"id": "root", "username": "root", "via": "session"},
        address=ADDRESS,
        detail={"changed": ["email", "groups"], "admin": False},
    )
    [found] = await doorman.events.list()
    assert isinstance(found, LoggedEvent)
    assert (found.kind, found.user_id, found.username, found.actor, found.address) == (
        "user-edited",
        alice.id,
        "alice",
        "root",
        ADDRESS,
    )
    assert found.detail == {"changed": ["email", "groups"], "admin": False}
    assert before <= found.at <= time.time()
    assert found.label == "Account details changed" == kind_label("user-edited")
    assert found.done_by == "other"
    assert set(found.public_fields()) == {
        "id",
        "at",
        "kind",
        "username",
        "actor",
        "address",
        "detail",
    }


async def test_failed_sign_ins_name_the_account_never_what_was_typed(doorman: Doorman) -> None:
    """A failed sign-in on an account is linked to it (its owner sees it); one with a name
    that no account has keeps no name at all: people type passwords into the username box."""
    alice = await doorman.create_user("alice", PASSWORD)
    typed = "my-Secret-passphrase-typed-in-the-wrong-box"
    with pytest.raises(AuthenticationFailed):
        await doorman.authenticate("Alice", WRONG_PASSWORD, client=ADDRESS)
    with pytest.raises(AuthenticationFailed):
        await doorman.authenticate(typed, WRONG_PASSWORD, client=ADDRESS)
    await doorman.users.set_active(alice, False)
    with pytest.raises(AuthenticationFailed):
        await doorman.authenticate("alice", PASSWORD, client=None)

    rows = await raw_rows(doorman)
    assert [(r["kind"], r["user_id"], r["username"], r["actor"]) for r in rows] == [
        ("sign-in-failed", alice.id, "alice", None),
        ("sign-in-failed", None, None, None),
        ("sign-in-failed", alice.id, "alice", None),
    ]
    assert [json.loads(r["detail"]) for r in rows] == [
        {"reason": "bad-credentials"},
        {"reason": "bad-credentials"},
        {"reason": "disabled"},
    ]
    assert rows[0]["address"] == ADDRESS
    every_value = json.dumps(rows)
    assert typed not in every_value and typed.lower() not in every_value
    assert WRONG_PASSWORD not in every_value and PASSWORD not in every_value


async def test_throttled_sign_ins_are_written_once_a_minute_not_once_a_request(
    make_doorman: MakeDoorman, engine: AsyncEngine
) -> None:
    """Throttled attempts cost an attacker nothing: the log must not grow with each."""
    throttle = LoginThrottle(SQLCounter(engine), per_account=2, per_address=100, window=60)
    doorman = await make_doorman(engine=engine, throttle=throttle)
    alice = await doorman.create_user("alice", PASSWORD)
    for _ in range(2):
        with pytest.raises(AuthenticationFailed):
            await doorman.authenticate("alice", WRONG_PASSWORD, client=ADDRESS)
    for _ in range(5):
        with pytest.raises(Throttled):
            await doorman.authenticate("alice", WRONG_PASSWORD, client=ADDRESS)
    with pytest.raises(Throttled):  # from elsewhere: another row
        await doorman.authenticate("alice", WRONG_PASSWORD, client="198.51.100.7")

    found = list(reversed(await doorman.events.list(EventFilter(user_id=alice.id))))
    assert [e.kind for e in found] == ["sign-in-failed"] * 2 + ["sign-in-throttled"] * 2
    assert [e.address for e in found[2:]] == [ADDRESS, "198.51.100.7"]


async def test_the_plugin_hooks_still_fire_and_the_log_gets_the_same_events(
    make_doorman: MakeDoorman,
) -> None:
    heard: list[object] = []

    class Recorder:
        @hookimpl
        def on_login_failed(self, doorman: Any, event: LoginFailedEvent) -> None:
            heard.append(event)

    doorman = await make_doorman(plugins=[Recorder()])
    await doorman.create_user("alice", PASSWORD)
    with pytest.raises(AuthenticationFailed):
        await doorman.authenticate("alice", WRONG_PASSWORD, client=ADDRESS)
    [told] = heard
    assert isinstance(told, LoginFailedEvent) and told.username == "alice"
    [logged] = await doorman.events.list()
    assert (logged.kind, logged.at, logged.address) == ("sign-in-failed", told.at, ADDRESS)


async def test_permission_denied_is_logged_for_someone_signed_in_only(doorman: Doorman) -> None:
    """Anonymous refusals are "sign in first", and anyone can make them: not logged."""
    alice = await doorman.create_user("alice", PASSWORD)
    actor = alice.actor("session")
    await doorman.fire(None, PermissionDeniedEvent(actor=None, action="admin", resource=None))
    denied = PermissionDeniedEvent(actor=actor, action="admin", resource="/x", client=ADDRESS)
    await doorman.fire(None, denied)
    await doorman.fire(None, denied)  # the same again within a minute: one row
    [found] = await doorman.events.list()
    assert (found.kind, found.user_id, found.actor) == ("permission-denied", alice.id, "alice")
    assert found.detail == {"action": "admin", "resource": "/x"}


async def test_refused_passkeys_from_one_place_are_one_row_a_minute(doorman: Doorman) -> None:
    """A passwordless sign-in names nobody, so anyone can send refused passkeys in a loop:
    they must not fill the log (a row per reason, each a fixed word, per minute)."""
    for reason in ["unknown credential"] * 20 + ["bad signature"] * 20:
        detail = {"purpose": "sign-in", "reason": reason}
        await doorman.events.record("passkey-failed", address=ADDRESS, detail=detail)
    await doorman.events.record("passkey-failed", address="192.0.2.99", detail=detail)
    found = await doorman.events.list()
    assert sorted(e.address or "" for e in found) == sorted([ADDRESS, ADDRESS, "192.0.2.99"])


# -- what is never written -------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["password", "new_password", "token", "secret_key", "cookie", "link", "url", "csrftoken"],
)
async def test_a_detail_that_names_a_secret_is_refused(doorman: Doorman, key: str) -> None:
    with pytest.raises(ValueError, match="names a secret"):
        await doorman.events.record(EventKind.PASSWORD_CHANGED, detail={key: "x"})
    assert await raw_rows(doorman) == []


async def test_a_value_that_holds_an_api_token_is_redacted(doorman: Doorman) -> None:
    """Values may come from clients (an Origin header): redacted rather than refused."""
    alice = await doorman.create_user("alice", PASSWORD)
    _, text = await doorman.tokens.create(alice, name="ci")
    await doorman.events.record(
        EventKind.WEBSOCKET_REFUSED, detail={"origin": f"https://x.example/{text}"}
    )
    [found] = await doorman.events.list()
    assert found.detail == {"origin": REDACTED}
    assert text not in json.dumps(await raw_rows(doorman))


@pytest.mark.parametrize("kind", ["Signed In", "sign_in", "", "-x", "x" * 41, "a--b"])
async def test_a_malformed_kind_is_refused(doorman: Doorman, kind: str) -> None:
    with pytest.raises(ValueError, match="kind"):
        await doorman.events.record(kind)


async def test_a_plugin_may_record_a_kind_of_its_own(doorman: Doorman) -> None:
    await doorman.events.record("export-started", detail={"rows": 12, "ratio": float("nan")})
    [found] = await doorman.events.list()
    assert (found.kind, found.label, found.detail) == (
        "export-started",
        "export-started",
        {"rows": 12, "ratio": None},
    )
    assert "export-started" in await doorman.events.kinds()


# -- failures fail open, for the log only ----------------------------------------------


async def test_a_log_that_cannot_be_written_does_not_stop_a_sign_in(
    doorman: Doorman, caplog: pytest.LogCaptureFixture
) -> None:
    alice = await doorman.create_user("alice", PASSWORD)
    async with connect(doorman.engine, write=True) as connection:
        await connection.execute(sa.text("DROP TABLE doorman_events"))
    try:
        with caplog.at_level(logging.ERROR, logger="doorman.security"):
            assert await doorman.authenticate("alice", PASSWORD, client=ADDRESS) == alice
            with pytest.raises(AuthenticationFailed):  # the request's own answer: still no
                await doorman.authenticate("alice", WRONG_PASSWORD, client=ADDRESS)
        failures = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert failures and all("not recorded (sign-in-failed)" in m for m in failures)
        assert not any(PASSWORD in m or WRONG_PASSWORD in m for m in failures)
    finally:  # PostgreSQL's database is shared: put the table back
        async with connect(doorman.engine, write=True) as connection:
            await connection.run_sync(lambda sync: events_table.create(sync))


async def test_a_log_write_that_hangs_holds_the_request_a_bounded_time(
    doorman: Doorman, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The request goes on after ``WAIT``; the write still lands once the database answers."""
    monkeypatch.setattr(event_writes_module, "WAIT", 0.05)
    answer = asyncio.Event()
    real_insert = doorman.events._insert_rows

    async def slow_insert(rows: list[dict[str, Any]]) -> None:
        await answer.wait()
        await real_insert(rows)

    monkeypatch.setattr(doorman.events, "_insert_rows", slow_insert)
    with caplog.at_level(logging.WARNING, logger="doorman.security"):
        await doorman.events.record(EventKind.USER_UNLOCKED)
    assert "still writing user-unlocked" in caplog.text
    assert await raw_rows(doorman) == []
    answer.set()
    await doorman.events.flush()
    assert [r["kind"] for r in await raw_rows(doorman)] == ["user-unlocked"]


async def test_events_of_a_deleted_account_stay_but_never_reach_a_new_one(
    doorman: Doorman,
) -> None:
    """The audit trail outlives the account; SQLite may give its id to the next one."""
    bob = await doorman.create_user("bob", PASSWORD)
    await doorman.events.record(EventKind.PASSWORD_CHANGED, user=bob, actor="bob")
    await doorman.users.delete(bob)
    await doorman.events.record(EventKind.USER_DELETED, user=bob, actor="root")  # after: unlinked
    carol = await doorman.create_user("carol", PASSWORD)

    rows = await raw_rows(doorman)
    assert [(r["kind"], r["user_id"], r["username"]) for r in rows] == [
        ("password-changed", None, "bob"),
        ("user-deleted", None, "bob"),
    ]
    assert await kinds(doorman, user_id=carol.id) == []
    assert await kinds(doorman, name="bob") == ["user-deleted", "password-changed"]


async def test_events_written_together_go_out_in_one_batch(doorman: Doorman) -> None:
    statements: list[str] = []

    def count(*args: Any) -> None:
        if "INSERT INTO doorman_events" in args[2]:
            statements.append(args[2])

    event.listen(doorman.engine.sync_engine, "before_cursor_execute", count)
    try:
        await asyncio.gather(
            *(
                doorman.events.record(EventKind.SIGN_IN_FAILED, address=f"10.0.0.{n}")
                for n in range(100)
            )
        )
    finally:
        event.remove(doorman.engine.sync_engine, "before_cursor_execute", count)
    assert len(await raw_rows(doorman)) == 100
    assert 1 <= len(statements) < 100


# -- reading -----------------------------------------------------------------------------


async def test_pages_go_back_and_forth_newest_first(doorman: Doorman) -> None:
    for n in range(7):
        await doorman.events.record(EventKind.SIGNED_IN, detail={"n": n})
    log = doorman.events
    first = await log.page(limit=3)
    assert [e.detail["n"] for e in first.events] == [6, 5, 4]
    assert first.newer is None and first.older is not None
    second = await log.page(before=first.older, limit=3)
    assert [e.detail["n"] for e in second.events] == [3, 2, 1]
    third = await log.page(before=second.older, limit=3)
    assert [e.detail["n"] for e in third.events] == [0] and third.older is None
    assert third.newer is not None
    back = await log.page(after=third.newer, limit=3)
    assert [e.detail["n"] for e in back.events] == [3, 2, 1]
    assert back.newer is not None
    top = await log.page(after=back.newer, limit=3)
    assert [e.detail["n"] for e in top.events] == [6, 5, 4] and top.newer is None


async def test_filters_narrow_by_account_actor_kind_and_time(doorman: Doorman) -> None:
    alice = await doorman.create_user("alice", PASSWORD)
    bob = await doorman.create_user("bob", PASSWORD)
    now = time.time()
    record = doorman.events.record
    await record(EventKind.SIGNED_IN, user=alice, actor="alice", at=now - 10 * 86400)
    await record(EventKind.USER_DISABLED, user=bob, actor="alice", at=now - 3600)
    await record(EventKind.SIGN_IN_FAILED, user=bob, at=now - 60)

    assert await kinds(doorman, user_id=alice.id) == ["signed-in"]
    assert await kinds(doorman, name="alice") == ["user-disabled", "signed-in"]  # or by her
    assert await kinds(doorman, name="bob") == ["sign-in-failed", "user-disabled"]
    assert await kinds(doorman, kinds=("sign-in-failed", "signed-in")) == [
        "sign-in-failed",
        "signed-in",
    ]
    assert await kinds(doorman, since=now - 7 * 86400) == ["sign-in-failed", "user-disabled"]
    assert await kinds(doorman, until=now - 120) == ["user-disabled", "signed-in"]
    assert await kinds(doorman, name="nobody") == []


async def test_prune_removes_what_is_older_than_the_retention(
    doorman: Doorman, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(event_log_module, "_PRUNE_CHUNK", 2)  # several rounds
    now = time.time()
    for days in (100, 95, 91, 89, 1):
        await doorman.events.record(
            EventKind.SIGNED_IN, detail={"days": days}, at=now - days * 86400
        )
    assert await doorman.events.prune(90 * 86400) == 3
    assert [e.detail["days"] for e in await doorman.events.list()] == [1, 89]
    assert await doorman.events.prune(90 * 86400) == 0
