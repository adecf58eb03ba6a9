"""Reset links an admin hands over: ``doorman users reset-link`` and the admin user page."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest

from .conftest import SECRET
from .helpers import client, free_port
from .mail_server import MailServer
from .mail_server import relay as relay
from .test_cli import Invoke, fails, ok
from .test_cli import clean_environment as clean_environment
from .test_cli import db as db
from .test_cli import doorman_cli as doorman_cli
from .test_password_reset import BASE, FROM, NEW_PASSWORD, PASSWORD, Site, choose, csrf_of, site

LINK = re.compile(r"http://auth\.example\.com/-/password-reset/[A-Za-z0-9_-]+")
CLI_ENV = {"DOORMAN_SECRET": SECRET, "DOORMAN_PUBLIC_URL": BASE}


async def follow_and_choose(found: Site, link: str) -> httpx.Response:
    browser = found.browser()
    moved = await browser.get(link)
    assert moved.status_code == 303, moved.text
    return await choose(browser)


def test_the_cli_prints_a_link_that_works_once(doorman_cli: Invoke, tmp_path: Path) -> None:
    async def make_users() -> None:
        async with site(tmp_path, None):
            pass

    asyncio.run(make_users())
    printed = ok(doorman_cli("users", "reset-link", "alice", env=CLI_ENV)).stdout.strip()
    assert LINK.fullmatch(printed), printed

    async def use() -> None:
        async with site(tmp_path, None, create=False) as found:
            assert (await follow_and_choose(found, printed)).status_code == 303
            assert (await found.browser().get(printed)).status_code == 400
            kinds = [e.kind for e in await found.doorman.events.list()]
            assert "password-reset-requested" in kinds and "password-reset" in kinds

    asyncio.run(use())
    fails(doorman_cli("users", "reset-link", "nobody", env=CLI_ENV), "nobody")
    no_url = {"DOORMAN_SECRET": SECRET}
    fails(doorman_cli("users", "reset-link", "alice", env=no_url), "public_url")


async def admin_browser(found: Site) -> httpx.AsyncClient:
    await found.doorman.create_user("root", PASSWORD, admin=True)
    browser = found.browser()
    form = {"username": "root", "password": PASSWORD, "csrftoken": await csrf_of(browser)}
    assert (await browser.post("/-/login", data=form)).status_code == 302
    return browser


async def press(browser: httpx.AsyncClient, username: str, **headers: str) -> httpx.Response:
    form = {"csrftoken": await csrf_of(browser)}
    return await browser.post(f"/-/admin/users/{username}/reset-link", data=form, headers=headers)


@pytest.mark.anyio
async def test_the_admin_page_sends_a_link(tmp_path: Path, relay: MailServer) -> None:
    async with site(tmp_path, relay) as found:
        browser = await admin_browser(found)
        page = await browser.get("/-/admin/users/alice")
        assert "Send reset link" in page.text
        sent = await press(browser, "alice")
        assert sent.status_code == 200 and "was sent to alice@example.com" in sent.text
        link = LINK.search((await found.message()).body("plain"))
        assert link is not None and link[0] not in sent.text
        assert (await follow_and_choose(found, link[0])).status_code == 303
        answer = await press(browser, "alice", accept="application/json")
        assert answer.json() == {"sent_to": "alice@example.com"}
        outsider = found.browser()
        form = {"username": "bob", "password": PASSWORD, "csrftoken": await csrf_of(outsider)}
        await outsider.post("/-/login", data=form)
        assert (await press(outsider, "alice")).status_code == 403


@pytest.mark.anyio
async def test_without_mail_the_admin_page_shows_the_link(tmp_path: Path) -> None:
    async with site(tmp_path, None) as found:
        browser = await admin_browser(found)
        assert "Make a reset link" in (await browser.get("/-/admin/users/alice")).text
        shown = await press(browser, "alice")
        assert shown.status_code == 200 and shown.headers["referrer-policy"] == "no-referrer"
        link = LINK.search(shown.text)
        assert link is not None
        assert (await follow_and_choose(found, link[0])).status_code == 303
        signed_in = client(found.app, base_url=BASE)
        form = {"username": "alice", "password": NEW_PASSWORD}
        form["csrftoken"] = await csrf_of(signed_in)
        assert (await signed_in.post("/-/login", data=form)).status_code == 302


@pytest.mark.anyio
async def test_a_mail_server_that_is_down_is_a_clear_page(tmp_path: Path) -> None:
    down = f"smtp://127.0.0.1:{free_port()}"
    async with site(tmp_path, None, smtp_url=down, email_from=FROM) as found:
        browser = await admin_browser(found)
        refused = await press(browser, "alice")
        assert refused.status_code == 503 and "refused the connection" in refused.text
        assert "/-/password-reset/" not in refused.text
