"""Password reset by email: a real SMTP server (aiosmtpd), the links followed with httpx.

Each test asks for a link on the page, reads the message the relay received,
and follows the link as a browser would: the link, the token-less form, the new
password. Replays (used, expired, superseded, another user's, another
purpose's) are refused; enumeration gets the same answer for known and unknown
addresses; a mail server that is down gets no 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from doorman import PasswordHasher
from doorman.config import Settings, assemble, load_settings
from doorman.core import Doorman
from doorman.server.access_log import AccessLogMiddleware
from doorman.server.app import create_app
from doorman.server.state import ServerState

from .conftest import SECRET
from .helpers import client, empty_accounts, free_port, migrated_sqlite
from .mail_server import Delivered, MailServer
from .mail_server import relay as relay

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "a brand new passphrase 42"
BASE = "http://auth.example.com"
FROM = "Example <noreply@example.com>"
LINK = re.compile(r"http://auth\.example\.com/-/password-reset/[A-Za-z0-9_-]+")


@dataclass
class Site:
    app: Any
    doorman: Doorman
    settings: Settings
    relay: MailServer | None

    def browser(self) -> httpx.AsyncClient:
        return client(self.app, base_url=BASE)

    async def message(self, count: int = 1) -> Delivered:
        """The ``count``-th message delivered, waiting for the background send (5 s at most)."""
        assert self.relay is not None
        deadline = time.monotonic() + 5
        while len(self.relay.messages) < count:  # filled by the relay's own thread
            assert time.monotonic() < deadline, f"{count} messages expected"
            await asyncio.sleep(0.01)
        return self.relay.messages[count - 1]


def server_state(app: Any) -> ServerState:
    """The sign-in server's state, under the middleware ``create_app`` wraps it in."""
    while not hasattr(app, "state"):
        app = app.app
    state: ServerState = app.state.server
    return state


@contextlib.asynccontextmanager
async def site(
    tmp_path: Path, relay: MailServer | None, *, create: bool = True, **overrides: Any
) -> AsyncIterator[Site]:
    """The sign-in server on SQLite in ``tmp_path``, with alice and bob unless not ``create``."""
    options: dict[str, Any] = {
        "db": migrated_sqlite(tmp_path / "doorman.db"),
        "secret": SECRET,
        "public_url": BASE,
        **overrides,
    }
    if relay is not None:
        options.setdefault("smtp_url", relay.url)
        options.setdefault("email_from", FROM)
    found = load_settings(environ={}, overrides=options)
    doorman, store = assemble(found, [SECRET])
    doorman.hasher = doorman.users.hasher = PasswordHasher(time_cost=1, memory_cost=1024)
    await doorman.startup()
    if create:
        await doorman.create_user("alice", PASSWORD, email="alice@example.com")
        await doorman.create_user("bob", PASSWORD, email="bob@example.com")
    app = create_app(found, doorman=doorman, store=store)
    try:
        yield Site(app, doorman, found, relay)
    finally:
        await server_state(app).background.drain()
        await store.close()
        await doorman.close()
        await doorman.engine.dispose()


async def emptied(found: Site, *, create: bool = True) -> Site:
    """``found``, shared by a module's tests, as ``site`` makes it: mail sent, tables emptied.

    Its sessions (the SQL store, in the same database), throttle counts, events and
    accounts go with the tables; what the app keeps in the process rests on their epochs.
    """
    await server_state(found.app).background.drain()
    if found.relay is not None:
        found.relay.messages.clear()
    await empty_accounts(found.doorman)
    if create:
        await found.doorman.create_user("alice", PASSWORD, email="alice@example.com")
        await found.doorman.create_user("bob", PASSWORD, email="bob@example.com")
    return found


@pytest.fixture
async def mailing(tmp_path: Path, relay: MailServer) -> AsyncIterator[Site]:
    async with site(tmp_path, relay) as found:
        yield found


async def csrf_of(browser: httpx.AsyncClient) -> str:
    token = (await browser.get("/-/whoami?csrf=1")).json()["csrftoken"]
    assert isinstance(token, str)
    return token


async def ask(browser: httpx.AsyncClient, email: str, **headers: str) -> httpx.Response:
    return await browser.post(
        "/-/password-reset",
        data={"email": email, "csrftoken": await csrf_of(browser)},
        headers=headers,
    )


async def sign_in(browser: httpx.AsyncClient, password: str = PASSWORD) -> httpx.Response:
    form = {"username": "alice", "password": password, "csrftoken": await csrf_of(browser)}
    return await browser.post("/-/login", data=form)


async def whoami(browser: httpx.AsyncClient) -> str | None:
    actor = (await browser.get("/-/whoami")).json()["actor"]
    return None if actor is None else str(actor["username"])


def link_in(delivered: Delivered) -> str:
    found = LINK.findall(delivered.body("plain"))
    assert found and found == LINK.findall(delivered.body("html")), delivered.body("plain")
    return found[0]


async def follow(browser: httpx.AsyncClient, link: str) -> httpx.Response:
    """The link as a browser follows it: to the token-less form, with the token in a cookie."""
    moved = await browser.get(link)
    assert moved.status_code == 303, moved.text
    assert moved.headers["location"] == "/-/password-reset/new"
    assert moved.headers["referrer-policy"] == "no-referrer"
    form = await browser.get(moved.headers["location"])
    assert form.headers["referrer-policy"] == "no-referrer"
    return form


async def choose(
    browser: httpx.AsyncClient, password: str = NEW_PASSWORD, **extra: str
) -> httpx.Response:
    form = {
        "password": password,
        "password2": password,
        "csrftoken": await csrf_of(browser),
        **extra,
    }
    return await browser.post("/-/password-reset/new", data=form)


async def test_forgot_password_to_a_new_password_and_signed_in(mailing: Site) -> None:
    elsewhere = mailing.browser()
    assert (await sign_in(elsewhere)).status_code == 302  # a session the reset must end
    browser = mailing.browser()
    login = await browser.get("/-/login")
    assert 'href="/-/password-reset"' in login.text and "Forgot password?" in login.text
    asked = await ask(browser, "ALICE@example.com")  # the address, whatever its case
    assert asked.status_code == 200 and "If an account has that address" in asked.text
    delivered = await mailing.message()
    assert delivered.recipients == ["alice@example.com"]
    assert "Reset your password" in delivered.message["Subject"]
    assert "alice" in delivered.body("plain")
    form = await follow(browser, link_in(delivered))
    assert form.status_code == 200 and "Choose a new password" in form.text
    assert link_in(delivered).rsplit("/", 1)[1] not in form.text  # the token left the page
    done = await choose(browser)
    assert done.status_code == 303 and done.headers["location"] == "/-/account?done=password-reset"
    assert await whoami(browser) == "alice"
    assert await whoami(elsewhere) is None  # every other session ended
    assert (await sign_in(mailing.browser(), NEW_PASSWORD)).status_code == 302
    notice = await mailing.message(2)
    assert notice.recipients == ["alice@example.com"] and "was changed" in notice.message["Subject"]
    # The link, once used, is refused with a way to a new one.
    again = await mailing.browser().get(link_in(delivered))
    assert again.status_code == 400 and 'href="/-/password-reset"' in again.text
    kinds = [e.kind for e in await mailing.doorman.events.list()]
    assert "password-reset-requested" in kinds and "password-reset" in kinds


async def test_same_answer_for_known_and_unknown_addresses(mailing: Site) -> None:
    browser = mailing.browser()
    known = await ask(browser, "bob@example.com")
    unknown = await ask(browser, "nobody@example.com")
    assert (known.status_code, known.text) == (unknown.status_code, unknown.text)
    api = {"accept": "application/json"}
    known_json = await ask(browser, "alice@example.com", **api)
    unknown_json = await ask(browser, "nobody-else@example.com", **api)
    assert known_json.status_code == unknown_json.status_code == 200
    assert known_json.json() == unknown_json.json() and known_json.json()["sent"] is True
    await mailing.message(2)
    await asyncio.sleep(0.2)
    assert sorted(m.recipients[0] for m in mailing.relay.messages) == [  # type: ignore[union-attr]
        "alice@example.com",
        "bob@example.com",
    ]


async def test_asking_is_throttled_per_address_asked_for(mailing: Site) -> None:
    for email in ("alice@example.com", "nobody@example.com"):
        answers = [(await ask(mailing.browser(), email)).status_code for _ in range(4)]
        assert answers == [200, 200, 200, 429]  # known or not, the same


async def test_replays_are_refused(mailing: Site) -> None:
    doorman = mailing.doorman
    alice = await doorman.users.require("alice")
    bob = await doorman.users.require("bob")
    expired = doorman.links.make("password-reset", alice, now=time.time() - 3601)
    other_purpose = doorman.links.make("sign-in", alice)
    fresh = doorman.links.make("password-reset", alice)
    uid, made, mac = fresh.split("-", 2)
    assert bob.id < 36  # one base-36 digit
    bobs_id = f"{'0123456789abcdefghijklmnopqrstuvwxyz'[bob.id]}-{made}-{mac}"
    tampered = f"{uid}-{made}-{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}"
    for token in (expired, other_purpose, bobs_id, tampered, "nonsense", "1-2-" + "x" * 43):
        answer = await mailing.browser().get(f"/-/password-reset/{token}")
        assert answer.status_code == 400, token
        assert "does not work" in answer.text and answer.headers["referrer-policy"] == "no-referrer"
    await doorman.set_password(alice, "another password 12345")
    answer = await mailing.browser().get(f"/-/password-reset/{fresh}")
    assert answer.status_code == 400  # superseded by the new password


async def test_a_sign_in_since_supersedes_the_link(mailing: Site) -> None:
    alice = await mailing.doorman.users.require("alice")
    token = mailing.doorman.links.make("password-reset", alice)
    assert (await sign_in(mailing.browser())).status_code == 302
    assert (await mailing.browser().get(f"/-/password-reset/{token}")).status_code == 400


async def test_a_weak_password_keeps_the_link(mailing: Site) -> None:
    alice = await mailing.doorman.users.require("alice")
    browser = mailing.browser()
    await follow(
        browser, f"{BASE}/-/password-reset/{mailing.doorman.links.make('password-reset', alice)}"
    )
    refused = await choose(browser, "short")
    assert refused.status_code == 400 and "Choose a new password" in refused.text
    assert (await choose(browser)).status_code == 303


async def test_the_json_api_posts_to_the_link(mailing: Site) -> None:
    alice = await mailing.doorman.users.require("alice")
    await mailing.doorman.tokens.create(alice, name="ci")
    token = mailing.doorman.links.make("password-reset", alice)
    browser = mailing.browser()
    headers = {"x-csrftoken": await csrf_of(browser)}
    body = {"password": NEW_PASSWORD, "revoke_tokens": True}
    done = await browser.post(f"/-/password-reset/{token}", json=body, headers=headers)
    assert done.status_code == 200 and done.json()["actor"]["username"] == "alice"
    assert await mailing.doorman.tokens.list(alice) == []  # revoked, as asked
    other = mailing.browser()
    headers = {"x-csrftoken": await csrf_of(other)}
    again = await other.post(f"/-/password-reset/{token}", json=body, headers=headers)
    assert again.status_code == 400 and "does not work" in again.json()["error"]


async def test_a_reset_clears_the_accounts_throttle(mailing: Site) -> None:
    for _ in range(5):
        await sign_in(mailing.browser(), "wrong password")
    assert (await sign_in(mailing.browser(), PASSWORD)).status_code == 429
    alice = await mailing.doorman.users.require("alice")
    browser = mailing.browser()
    await follow(
        browser, f"{BASE}/-/password-reset/{mailing.doorman.links.make('password-reset', alice)}"
    )
    assert (await choose(browser)).status_code == 303
    assert (await sign_in(mailing.browser(), NEW_PASSWORD)).status_code == 302


async def test_the_token_is_not_in_the_access_log(
    mailing: Site, caplog: pytest.LogCaptureFixture
) -> None:
    alice = await mailing.doorman.users.require("alice")
    token = mailing.doorman.links.make("password-reset", alice)
    logged = client(AccessLogMiddleware(mailing.app), base_url=BASE)
    with caplog.at_level(logging.INFO, logger="doorman.access"):
        assert (await logged.get(f"/-/password-reset/{token}")).status_code == 303
    assert (
        token not in caplog.text and '"GET /-/password-reset/<token> HTTP/1.1" 303' in caplog.text
    )


async def test_a_mail_server_that_is_down_gets_no_500(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    down = f"smtp://127.0.0.1:{free_port()}"
    async with site(tmp_path, None, smtp_url=down, email_from=FROM) as found:
        with caplog.at_level(logging.WARNING, logger="doorman.mail"):
            answer = await ask(found.browser(), "alice@example.com")
            assert answer.status_code == 200 and "ask again" in answer.text
            await server_state(found.app).background.drain()
    assert "refused the connection" in caplog.text and "password-reset/" not in caplog.text


async def test_without_mail_the_pages_say_to_ask_an_admin(tmp_path: Path) -> None:
    async with site(tmp_path, None) as found:
        browser = found.browser()
        assert "Ask an administrator" in (await browser.get("/-/login")).text
        assert "Ask an administrator" in (await browser.get("/-/password-reset")).text
        refused = await ask(browser, "alice@example.com")
        assert refused.status_code == 503 and "Ask an administrator" in refused.text


async def test_no_link_without_a_trusted_origin(tmp_path: Path, relay: MailServer) -> None:
    async with site(tmp_path, relay, public_url=None) as found:
        browser = client(found.app, base_url="http://evil.example")
        refused = await ask(browser, "alice@example.com")
        assert refused.status_code == 503 and "public_url" in refused.text
        await asyncio.sleep(0.1)
        assert relay.messages == []


@pytest.mark.parametrize("route", ["password-reset", "verify-email", "invite", "sign-in-link"])
async def test_no_link_route_logs_its_token(route: str, caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    logged = client(AccessLogMiddleware(app))
    with caplog.at_level(logging.INFO, logger="doorman.access"):
        await logged.get(f"/-/{route}/3-sx1k2p-SECRETSECRET")
        await logged.get(f"/-/{route}/3-sx1k2p-SECRETSECRET/")
        await logged.get(f"/-/{route}/new")
    assert "SECRET" not in caplog.text
    assert f"/-/{route}/<token> " in caplog.text and f"/-/{route}/new " in caplog.text
