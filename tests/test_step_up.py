# ruff: noqa: F811  (the server fixture comes from test_server_admin)
"""Step-up ("sudo mode"): a session whose last proof is older than ``step_up_after`` is sent
to ``/-/account/confirm`` before making a token (and the other guarded actions), and comes back.

The clock of ``doorman.auth.step_up`` alone is moved forward: the session itself
stays valid, only its proof grows old.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

import doorman.auth.step_up as step_up_module
from doorman.auth.signed_in import SESSION_AUTHENTICATED_AT
from doorman.auth.step_up import last_proved, mark_proved, proof_is_fresh
from doorman.testing import session_cookie_for

from .helpers import client
from .test_server_admin import (  # noqa: F401  (fixtures)
    HTML,
    JSON,
    PASSWORD,
    Server,
    post,
    server,
    signed_in,
    token_of,
)

pytestmark = pytest.mark.anyio
CONFIRM = "/-/account/confirm"


class Later:
    """``step_up``'s clock, ``ahead`` seconds in the future (past ``step_up_after``: 300)."""

    def __init__(self, ahead: float) -> None:
        self.ahead = ahead

    def time(self) -> float:
        return time.time() + self.ahead


@pytest.fixture
def later(monkeypatch: pytest.MonkeyPatch) -> Iterator[Later]:
    clock = Later(400)
    monkeypatch.setattr(step_up_module, "time", clock)
    yield clock


async def make_token(browser: httpx.AsyncClient, **headers: str) -> httpx.Response:
    return await post(browser, "/-/account/tokens", {"name": "ci", "expires": "30"}, **headers)


async def confirm(browser: httpx.AsyncClient, password: str, next: str = "/-/account") -> Any:
    data = {"password": password, "next": next, "csrftoken": await token_of(browser)}
    return await browser.post(CONFIRM, data=data, headers=HTML)


async def tokens_of(server: Server, name: str) -> int:
    return len(await server.doorman.tokens.list(await server.doorman.users.require(name)))


async def events(server: Server, kind: str) -> list[Any]:
    await server.doorman.events.flush()
    return [e for e in await server.doorman.events.list(limit=200) if e.kind == kind]


async def test_a_fresh_session_goes_straight_through(server: Server) -> None:
    async with signed_in(server, "alice") as alice:
        assert (await make_token(alice)).status_code == 201
    assert await tokens_of(server, "alice") == 1


async def test_a_stale_session_confirms_and_comes_back(server: Server, later: Later) -> None:
    async with signed_in(server, "alice") as alice:
        sent = await make_token(alice)
        assert sent.status_code == 303
        where = urlsplit(sent.headers["location"])
        assert where.path == CONFIRM and parse_qs(where.query) == {"next": ["/-/account"]}
        assert await tokens_of(server, "alice") == 0
        as_json = await alice.post(
            "/-/account/tokens", json={"name": "ci"}, headers={"x-csrftoken": await token_of(alice)}
        )
        assert as_json.status_code == 403
        assert as_json.json()["step_up"] == f"{CONFIRM}?next=%2F-%2Faccount"
        page = await alice.get(sent.headers["location"], headers=HTML)
        assert page.status_code == 200 and 'name="password"' in page.text
        assert 'name="next" value="/-/account"' in page.text

        wrong = await confirm(alice, "not my password at all")
        assert wrong.status_code == 400 and "That is not your password." in wrong.text
        assert (await make_token(alice)).status_code == 303  # still stale
        back = await confirm(alice, PASSWORD)
        assert back.status_code == 303 and back.headers["location"] == "/-/account"
        assert (await make_token(alice)).status_code == 201
    assert await tokens_of(server, "alice") == 1
    [proved] = await events(server, "reauthenticated")
    assert proved.actor == "alice" and proved.detail == {"method": "pwd"}
    assert len(await events(server, "sign-in-failed")) == 1  # logged as a failed sign-in


async def test_wrong_passwords_are_throttled(server: Server, later: Later) -> None:
    async with signed_in(server, "alice") as alice:
        statuses = [(await confirm(alice, f"wrong guess {n}")).status_code for n in range(7)]
        assert statuses[0] == 400 and statuses[-1] == 429
        refused = await confirm(alice, PASSWORD)  # the right one, once locked: still refused
        assert refused.status_code == 429 and "retry-after" in refused.headers
        assert (await make_token(alice)).status_code == 303


@pytest.mark.parametrize(
    "next",
    [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "/%2F%2Fevil.example",
        "javascript:alert(1)",
        "",
        "x" * 5000,
    ],
)
async def test_next_never_leaves_the_site(server: Server, later: Later, next: str) -> None:
    async with signed_in(server, "alice") as alice:
        page = await alice.get(CONFIRM, params={"next": next}, headers=HTML)
        assert page.status_code == 200 and 'name="next" value="/-/account"' in page.text
        back = await confirm(alice, PASSWORD, next=next)
        assert back.status_code == 303 and back.headers["location"] == "/-/account"


async def test_next_on_the_site_is_followed(server: Server, later: Later) -> None:
    async with signed_in(server, "alice") as alice:
        back = await confirm(alice, PASSWORD, next="/-/account/two-factor?x=1")
        assert back.headers["location"] == "/-/account/two-factor?x=1"


async def test_the_current_password_is_a_proof_too(server: Server, later: Later) -> None:
    """The password form asks the current password every time: right, it counts as a step-up."""
    async with signed_in(server, "alice") as alice:
        new = "a different long passphrase"
        form = {"current_password": PASSWORD, "password": new, "password2": new}
        assert (await post(alice, "/-/account/password", form)).status_code == 303
        assert (await make_token(alice)).status_code == 201
        wrong = {"current_password": "not it", "password": new, "password2": new}
        assert (await post(alice, "/-/account/password", wrong)).status_code == 400


async def test_an_account_without_a_password_steps_up(server: Server, later: Later) -> None:
    carol = await server.doorman.create_user("carol", None)
    assert not carol.has_usable_password
    name, value = await session_cookie_for(server.app, carol, doorman=server.doorman)
    async with client(server.app, cookies={name: value}) as browser:
        form = {"email": "carol@example.com"}
        sent = await post(browser, "/-/account/email", form)
        assert sent.status_code == 303 and sent.headers["location"].startswith(CONFIRM)
        page = await browser.get(CONFIRM, headers=HTML)
        assert 'id="no-password"' in page.text and 'name="password"' not in page.text
        assert (await confirm(browser, "")).status_code == 400
        later.ahead = 0  # a fresh proof (a passkey's, once wired) lets them through
        assert (await post(browser, "/-/account/email", form)).status_code == 303
    assert (await server.doorman.users.require("carol")).email == "carol@example.com"


async def test_an_api_token_is_governed_by_its_scopes(server: Server, later: Later) -> None:
    alice = await server.doorman.users.require("alice")
    _, text = await server.doorman.tokens.create(alice, name="ci")
    async with client(server.app, headers={"authorization": f"Bearer {text}"}) as api:
        made = await api.post("/-/account/tokens", json={"name": "child", "expires": "30"})
        assert made.status_code == 201, made.text
        assert (await api.get(CONFIRM, headers=JSON)).status_code == 403


async def test_a_step_up_is_told_to_proxies_at_once(server: Server, later: Later) -> None:
    """A session signed in by a mailed link says "email"; after the password, "email,pwd",
    even where /-/auth kept the earlier answer."""
    name, value = await session_cookie_for(
        server.app, "alice", doorman=server.doorman, methods=["email"]
    )
    async with client(server.app, cookies={name: value}) as browser:
        for _ in range(2):
            assert (await browser.get("/-/auth")).headers["x-doorman-auth-methods"] == "email"
        assert (await browser.get("/-/auth?require=mfa")).status_code == 403
        assert (await confirm(browser, PASSWORD)).status_code == 303
        after = await browser.get("/-/auth")
        assert after.headers["x-doorman-auth-methods"] == "email,pwd"
        assert (await browser.get("/-/whoami")).json()["auth_methods"] == ["email", "pwd"]


def test_the_proof_times_a_session_may_hold() -> None:
    assert last_proved({}) is None and not proof_is_fresh({}, 300)  # from before step-up
    for bad in ("1", True, math.inf, math.nan, None, [1]):
        assert last_proved({SESSION_AUTHENTICATED_AT: bad}) is None
    now = time.time()
    assert proof_is_fresh({SESSION_AUTHENTICATED_AT: now - 10}, 300)
    assert not proof_is_fresh({SESSION_AUTHENTICATED_AT: now - 301}, 300)
    assert not proof_is_fresh({SESSION_AUTHENTICATED_AT: now + 3600}, 300)  # from the future
    session: dict[str, Any] = {"_auth_methods": ["pwd"]}
    mark_proved(session, "otp")
    mark_proved(session, "otp")
    assert session["_auth_methods"] == ["pwd", "otp"] and proof_is_fresh(session, 1)


async def test_a_json_client_follows_the_step_up_url(server: Server, later: Later) -> None:
    async with signed_in(server, "alice") as alice:
        csrf = {"x-csrftoken": await token_of(alice)}
        body = {"name": "ci", "expires": "30"}
        refused = await alice.post("/-/account/tokens", json=body, headers=csrf)
        step_up = refused.json()["step_up"]
        assert refused.status_code == 403 and refused.json()["error"]
        asked = await alice.get(step_up, headers=JSON)
        assert asked.json() == {"step_up": step_up}
        wrong = await alice.post(step_up, json={"password": "nope", "next": "/x"}, headers=csrf)
        assert wrong.status_code == 400 and wrong.json()["field_errors"]["password"]
        proved = await alice.post(CONFIRM, json={"password": PASSWORD}, headers=csrf)
        assert proved.json() == {"ok": True, "next": "/-/account"}
        assert (await alice.post("/-/account/tokens", json=body, headers=csrf)).status_code == 201
        assert (await alice.post(CONFIRM, json={"password": PASSWORD})).status_code == 403  # CSRF
