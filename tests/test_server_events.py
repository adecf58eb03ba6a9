"""The security event log through the sign-in server, in process: what the pages log,
``/-/admin/events`` (admins only, filters, pages, JSON, no 500 on any query), and each
person's "Recent security activity" on ``/-/account`` (their own events only).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from doorman.accounts.event_log import EventFilter
from doorman.db import connect
from doorman.db.schema import events_table
from doorman.events import EventKind
from doorman.server import setup

from . import test_server
from .helpers import client
from .test_server_admin import (
    HTML,
    JSON,
    NEW_PASSWORD,
    PASSWORD,
    Server,
    assert_inputs_labelled,
    post,
    signed_in,
    token_of,
    user,
)
from .test_server_admin import server as server  # fixtures, used by name
from .test_server_admin import shared_admin_server as shared_admin_server  # one for the module

pytestmark = pytest.mark.anyio


async def events_json(browser: httpx.AsyncClient, **params: str) -> list[dict[str, Any]]:
    answer = await browser.get("/-/admin/events", params=params, headers=JSON)
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["events"]
    return found


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str | None, str | None]]:
    """(kind, account, actor) of each event, oldest first."""
    return [(e["kind"], e["username"], e["actor"]) for e in reversed(events)]


async def raw_log(server: Server) -> str:
    async with connect(server.doorman.engine) as connection:
        rows = (await connection.execute(sa.select(events_table))).mappings().all()
    return json.dumps([dict(row) for row in rows])


# -- who may see it ----------------------------------------------------------------------


async def test_only_admins_see_the_event_log(server: Server) -> None:
    async with client(server.app) as anonymous:
        browser = await anonymous.get("/-/admin/events", headers=HTML)
        assert browser.status_code == 302
        assert browser.headers["location"].startswith("/-/login?next=")
        assert (await anonymous.get("/-/admin/events", headers=JSON)).status_code == 401
    async with signed_in(server, "alice") as alice:
        assert (await alice.get("/-/admin/events", headers=HTML)).status_code == 403
        assert (await alice.get("/-/admin/events?user=bob", headers=JSON)).status_code == 403
    async with signed_in(server) as admin:
        page = await admin.get("/-/admin/events", headers=HTML)
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert "<script" not in page.text and "style=" not in page.text
    assert 'aria-current="page">Events</a>' in page.text
    assert_inputs_labelled(page.text, "/-/admin/events")
    assert '<label for="events-kind">' in page.text
    assert '<th scope="col">When</th>' in page.text


async def test_a_refused_member_is_logged_as_denied(server: Server) -> None:
    async with signed_in(server, "alice") as alice:
        await alice.get("/-/admin/events", headers=HTML)
    [denied] = await server.doorman.events.list(EventFilter(kinds=("permission-denied",)))
    assert (denied.username, denied.actor, denied.detail["action"]) == ("alice", "alice", "admin")


# -- what the pages log --------------------------------------------------------------------


async def test_sign_in_failure_and_sign_out_are_logged_with_the_address(server: Server) -> None:
    async with client(server.app) as browser:
        wrong = {"username": "alice", "password": "wrong", "csrftoken": await token_of(browser)}
        assert (await browser.post("/-/login", data=wrong)).status_code == 401
        right = {**wrong, "password": PASSWORD, "csrftoken": await token_of(browser)}
        assert (await browser.post("/-/login", data=right)).status_code == 302
        assert (await post(browser, "/-/logout")).status_code == 303
    async with signed_in(server) as admin:
        found = await events_json(admin, user="alice")
    assert summary(found) == [
        ("sign-in-failed", "alice", None),
        ("signed-in", "alice", "alice"),
        ("signed-out", "alice", "alice"),
    ]
    assert {e["address"] for e in found} == {"127.0.0.1"}
    assert found[2]["detail"] == {"reason": "bad-credentials"}
    assert found[1]["detail"] == {"via": "password"}
    assert found[0]["label"] == "Signed out"


async def test_admin_actions_say_who_did_what_to_whom(server: Server) -> None:
    bob = await user(server, "bob")
    token, _ = await server.doorman.tokens.create(bob, name="ci")
    async with signed_in(server, "bob"), signed_in(server) as admin:
        signin = (await server.doorman.signins.list(bob))[0].id
        await post(
            admin,
            "/-/admin/users/bob/details",
            {"email": "b@example.com", "admin": "off", "groups": "ops"},
        )
        await post(
            admin,
            "/-/admin/users/bob/details",
            {"email": "b@example.com", "admin": "off", "groups": "ops"},
        )  # no change
        await post(admin, "/-/admin/users/bob/make-admin")
        await post(admin, f"/-/admin/sessions/{signin}/revoke")
        await post(admin, f"/-/admin/tokens/{token.id}/revoke")
        await post(admin, "/-/admin/users/bob/disable")
        await post(admin, "/-/admin/users/bob/enable")
        await post(admin, "/-/admin/users/bob/unlock")
        form = {"password": NEW_PASSWORD, "password2": NEW_PASSWORD}
        await post(admin, "/-/admin/users/bob/password", form)
        created = {"username": "carol", "password": PASSWORD, "password2": PASSWORD}
        await post(admin, "/-/admin/users", created)
        await post(admin, "/-/admin/users/bob/delete", {"confirm": "bob"})
        bobs = await events_json(admin, user="bob")
        carols = await events_json(admin, user="carol")
    done = [(kind, name, actor) for kind, name, actor in summary(bobs) if actor == "root"]
    assert done == [
        ("user-edited", "bob", "root"),
        ("user-edited", "bob", "root"),
        ("session-revoked", "bob", "root"),
        ("token-revoked", "bob", "root"),
        ("user-disabled", "bob", "root"),
        ("user-enabled", "bob", "root"),
        ("user-unlocked", "bob", "root"),
        ("password-changed", "bob", "root"),
        ("user-deleted", "bob", "root"),
    ]
    details = [e["detail"] for e in reversed(bobs) if e["actor"] == "root"]
    assert details[0] == {"changed": ["email", "groups"]}
    assert details[1] == {"changed": ["admin"], "admin": True}
    assert details[2] == {"signin_id": signin} and details[3] == {"token_id": token.id}
    assert summary(carols) == [("user-created", "carol", "root")]
    assert NEW_PASSWORD not in await raw_log(server)


async def test_the_account_page_logs_its_changes(server: Server) -> None:
    async with signed_in(server, "alice") as alice:
        made = await alice.post(
            "/-/account/tokens",
            json={"name": "laptop", "expires": "30"},
            headers={"x-csrftoken": await token_of(alice)},
        )
        assert made.status_code == 201
        token_text, token_id = made.json()["token"], made.json()["created"]["id"]
        await post(alice, f"/-/account/tokens/{token_id}/revoke")
        change = {"current_password": PASSWORD, "password": NEW_PASSWORD, "password2": NEW_PASSWORD}
        assert (await post(alice, "/-/account/password", change)).status_code == 303
        email = {"email": "new@example.com", "current_password": NEW_PASSWORD}
        assert (await post(alice, "/-/account/email", email)).status_code == 303
        cookies = dict(alice.cookies)
    async with signed_in(server) as admin:
        found = await events_json(admin, user="alice")
    assert [kind for kind, _, actor in summary(found) if actor == "alice"] == [
        "signed-in",
        "token-created",
        "token-revoked",
        "password-changed",
        "email-changed",
    ]
    created = next(e for e in found if e["kind"] == "token-created")
    assert created["detail"] == {"token_id": token_id, "name": "laptop", "scopes": None}
    log = await raw_log(server)
    for secret in (token_text, NEW_PASSWORD, PASSWORD, *cookies.values()):
        assert secret not in log


@pytest.mark.parametrize("way", ["registration", "setup"])
async def test_a_new_account_is_logged_as_made_by_its_own_user(tmp_path: Path, way: str) -> None:
    async with test_server.running(tmp_path, allow_registration=True) as found:
        form = {"username": "eve", "password": PASSWORD, "password2": PASSWORD}
        path = "/-/register"
        if way == "setup":
            form["token"] = str(await setup.issue_setup_token(found.doorman.engine))
            path = "/-/setup"
        async with test_server.browse(found) as browser:
            token = await test_server.csrf_token(browser)
            assert (await browser.post(path, data={**form, "csrftoken": token})).status_code == 303
        made = await found.doorman.events.list()
    assert [(e.kind, e.username, e.actor, e.detail) for e in reversed(made)] == [
        ("user-created", "eve", "eve", {"via": way, "admin": way == "setup"}),
        ("signed-in", "eve", "eve", {"via": "password"}),
    ]


# -- the account page: own events only -------------------------------------------------------


async def test_each_person_sees_only_their_own_recent_activity(server: Server) -> None:
    async with client(server.app) as stranger:
        wrong = {"username": "bob", "password": "guess", "csrftoken": await token_of(stranger)}
        await stranger.post("/-/login", data=wrong)
    async with signed_in(server) as admin:
        await post(admin, "/-/admin/users/alice/unlock")
    async with signed_in(server, "alice") as alice:
        page = await alice.get("/-/account", headers=HTML)
        own = (await alice.get("/-/account", headers=JSON)).json()["events"]
    assert [(e["kind"], e["by"]) for e in own] == [
        ("signed-in", "self"),
        ("user-unlocked", "other"),
    ]
    assert "root" not in json.dumps(own)  # the admin is "an administrator", not a name
    assert "Recent security activity" in page.text
    assert "an administrator" in page.text and "Sign-in unlocked" in page.text
    assert "Sign-in failed" not in page.text  # bob's
    async with signed_in(server, "bob") as bob:
        bobs = (await bob.get("/-/account", headers=JSON)).json()["events"]
    assert [(e["kind"], e["by"]) for e in bobs] == [
        ("signed-in", "self"),
        ("sign-in-failed", "nobody"),
    ]


async def test_the_account_page_shows_the_last_ten(server: Server) -> None:
    alice = await user(server, "alice")
    for n in range(15):
        await server.doorman.events.record(EventKind.TOKEN_CREATED, user=alice, detail={"n": n})
    async with signed_in(server, "alice") as browser:
        own = (await browser.get("/-/account", headers=JSON)).json()["events"]
    assert len(own) == 10 and own[0]["kind"] == "signed-in"


# -- filters and pages -------------------------------------------------------------------------


async def test_filters_by_user_kind_and_time(server: Server) -> None:
    log = server.doorman.events
    alice, bob = await user(server, "alice"), await user(server, "bob")
    await log.record(EventKind.SIGNED_IN, user=alice, actor="alice", at=1_000_000.0)
    await log.record(EventKind.USER_DISABLED, user=bob, actor="alice")
    async with signed_in(server) as admin:
        assert summary(await events_json(admin, user="ALICE", kind="user-disabled")) == [
            ("user-disabled", "bob", "alice")
        ]
        assert summary(await events_json(admin, user="alice", until="2000-01-01")) == [
            ("signed-in", "alice", "alice")
        ]
        recent = await events_json(admin, user="alice", since="1h")
        assert [e["kind"] for e in recent] == ["user-disabled"]
        page = await admin.get("/-/admin/events?user=bob&kind=user-disabled", headers=HTML)
        assert '<option value="user-disabled" selected>Account disabled</option>' in page.text
        assert 'value="bob"' in page.text and "Show every event" in page.text
        nothing = await admin.get("/-/admin/events?user=nobody", headers=HTML)
        assert "No event matches these filters." in nothing.text


async def test_pages_of_fifty_link_older_and_newer(server: Server) -> None:
    bob = await user(server, "bob")
    for n in range(120):
        await server.doorman.events.record(EventKind.TOKEN_CREATED, user=bob, detail={"n": n})
    async with signed_in(server) as admin:
        first = await admin.get("/-/admin/events?user=bob", headers=HTML)
        assert first.text.count("API token created") == 50 + 1  # the rows, and the kind list
        older = _link(first.text, "Older events")
        assert "Newer events" not in first.text
        second = await admin.get(older, headers=HTML)
        assert "n: 69" in second.text and "n: 20" in second.text and "n: 70" not in second.text
        third = await admin.get(_link(second.text, "Older events"), headers=HTML)
        assert "n: 19" in third.text and "n: 0" in third.text
        assert "Older events" not in third.text
        back = await admin.get(_link(third.text, "Newer events"), headers=HTML)
        assert "n: 69" in back.text and "n: 20" in back.text
        assert parse_qs(urlsplit(older).query)["user"] == ["bob"]
        body = (await admin.get(older, headers=JSON)).json()
        assert len(body["events"]) == 50 and body["older"] and body["newer"]


def _link(page: str, label: str) -> str:
    found = re.search(rf'<a href="([^"]+)"[^>]*>{label}</a>', page)
    assert found, label
    return found[1].replace("&amp;", "&")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("since=banana", "Since: 'banana' is not a time"),
        ("until=2026-13-45", "Until: '2026-13-45' is not a time"),
        ("kind=Not+A+Kind", "Kind: choose one from the list."),
        ("before=-1", "That page of events does not exist"),
        ("after=1e9", "That page of events does not exist"),
    ],
)
async def test_a_bad_filter_is_a_400_that_says_why(
    server: Server, query: str, message: str
) -> None:
    async with signed_in(server) as admin:
        page = await admin.get(f"/-/admin/events?{query}", headers=HTML)
        api = await admin.get(f"/-/admin/events?{query}", headers=JSON)
    assert page.status_code == 400 and api.status_code == 400
    assert message in page.text.replace("&#39;", "'")
    assert any(message in error for error in api.json()["errors"])


async def test_what_clients_sent_is_shown_escaped(server: Server) -> None:
    await server.doorman.events.record(
        EventKind.WEBSOCKET_REFUSED,
        address="198.51.100.7",
        detail={"origin": "<script>alert(1)</script>", "path": '/live"><b>'},
    )
    async with signed_in(server) as admin:
        page = await admin.get("/-/admin/events?user=%3Cscript%3E", headers=HTML)
        every = await admin.get("/-/admin/events", headers=HTML)
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text
    assert "<script>" not in every.text and "&lt;script&gt;alert(1)" in every.text
    assert "<b>" not in every.text


QUERY_VALUES = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["7d", "0", "-1", "9" * 60, "2026-12-01", "banana", "\x00", "user-edited"]),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    params=st.dictionaries(
        st.sampled_from(["user", "kind", "since", "until", "before", "after", "x"]),
        QUERY_VALUES,
        max_size=5,
    ),
    as_json=st.booleans(),
)
async def test_no_query_string_gets_a_500(
    server: Server, params: dict[str, str], as_json: bool
) -> None:
    async with signed_in(server) as admin:
        answer = await admin.get(
            "/-/admin/events", params=params, headers=JSON if as_json else HTML
        )
    assert answer.status_code in (200, 400), (params, answer.status_code)
