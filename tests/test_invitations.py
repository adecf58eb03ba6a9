"""Invitations: the admin page and the CLI send a link; the invitee makes their account.

A real SMTP relay (aiosmtpd) delivers the link; httpx follows it. The link works
once, even for two requests at the same moment; ``registration`` decides whether
invitations (and /-/register) work at all.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest

from .conftest import SECRET
from .mail_server import MailServer
from .mail_server import relay as relay
from .test_cli import Invoke, fails, ok
from .test_cli import clean_environment as clean_environment
from .test_cli import db as db
from .test_cli import doorman_cli as doorman_cli
from .test_password_reset import BASE, FROM, PASSWORD, Site, csrf_of, site, whoami

INVITE = re.compile(r"http://auth\.example\.com(/-/invite/[A-Za-z0-9_-]+)")


async def admin_browser(found: Site) -> httpx.AsyncClient:
    await found.doorman.create_user("root", PASSWORD, admin=True)
    browser = found.browser()
    form = {"username": "root", "password": PASSWORD, "csrftoken": await csrf_of(browser)}
    assert (await browser.post("/-/login", data=form)).status_code == 302
    return browser


async def invite(browser: httpx.AsyncClient, email: str, **extra: str) -> httpx.Response:
    form = {"email": email, "csrftoken": await csrf_of(browser), **extra}
    return await browser.post("/-/admin/invitations", data=form)


async def accept(browser: httpx.AsyncClient, path: str, username: str) -> httpx.Response:
    moved = await browser.get(path)
    assert moved.status_code == 303 and moved.headers["location"] == "/-/invite/new", moved.text
    assert moved.headers["referrer-policy"] == "no-referrer"
    form = {
        "username": username,
        "password": PASSWORD,
        "password2": PASSWORD,
        "csrftoken": await csrf_of(browser),
    }
    return await browser.post("/-/invite/new", data=form)


@pytest.mark.anyio
async def test_an_invitation_by_email_makes_an_account_once(
    tmp_path: Path, relay: MailServer
) -> None:
    async with site(tmp_path, relay, registration="invite") as found:
        admin = await admin_browser(found)
        sent = await invite(admin, "erin@example.com", admin="on", groups="ops, dev")
        assert sent.status_code == 200 and "was sent to erin@example.com" in sent.text
        delivered = await found.message()
        assert delivered.recipients == ["erin@example.com"]
        path = INVITE.search(delivered.body("plain"))
        assert path is not None and path[0] not in sent.text
        browser = found.browser()
        made = await accept(browser, path[1], "erin")
        assert made.status_code == 303, made.text
        assert await whoami(browser) == "erin"
        erin = await found.doorman.users.require("erin")
        assert (erin.email, erin.email_verified, erin.is_admin) == ("erin@example.com", True, True)
        assert sorted(erin.groups) == ["dev", "ops"]
        again = await found.browser().get(path[1])
        assert again.status_code == 400 and "does not work" in again.text
        kinds = [e.kind for e in await found.doorman.events.list()]
        assert "invitation-sent" in kinds and "invitation-accepted" in kinds
        assert (await found.browser().get("/-/register")).status_code == 404  # invite only


@pytest.mark.anyio
async def test_two_requests_at_once_make_one_account(tmp_path: Path) -> None:
    async with site(tmp_path, None, registration="invite") as found:
        _, token = await found.doorman.invitations.create("fay@example.com")

        async def take(name: str) -> int:
            browser = found.browser()
            form = {"username": name, "password": PASSWORD}
            headers = {"x-csrftoken": await csrf_of(browser)}
            answer = await browser.post(f"/-/invite/{token}", json=form, headers=headers)
            return answer.status_code

        answers = await asyncio.gather(take("fay"), take("fay2"))
        assert sorted(answers) == [200, 400]
        made = [
            u.username for u in await found.doorman.users.list() if u.username.startswith("fay")
        ]
        assert len(made) == 1


@pytest.mark.anyio
async def test_a_taken_username_keeps_the_invitation(tmp_path: Path) -> None:
    async with site(tmp_path, None, registration="invite") as found:
        _, token = await found.doorman.invitations.create("gus@example.com")
        browser = found.browser()
        taken = await accept(browser, f"/-/invite/{token}", "alice")
        assert taken.status_code == 400 and "taken" in taken.text
        form = {"username": "gus", "password": PASSWORD, "password2": PASSWORD}
        form["csrftoken"] = await csrf_of(browser)
        assert (await browser.post("/-/invite/new", data=form)).status_code == 303


@pytest.mark.anyio
async def test_without_mail_the_admin_page_shows_the_link(tmp_path: Path) -> None:
    async with site(tmp_path, None, registration="invite") as found:
        admin = await admin_browser(found)
        shown = await invite(admin, "hal@example.com")
        path = INVITE.search(shown.text)
        assert shown.status_code == 200 and path is not None
        assert (await accept(found.browser(), path[1], "hal")).status_code == 303


@pytest.mark.anyio
async def test_closed_registration_takes_no_invitations(tmp_path: Path) -> None:
    async with site(tmp_path, None) as found:  # registration unset, allow_registration false
        _, token = await found.doorman.invitations.create("ivy@example.com")
        assert (await found.browser().get(f"/-/invite/{token}")).status_code == 400
        admin = await admin_browser(found)
        assert (await invite(admin, "ivy@example.com")).status_code == 400
    (tmp_path / "open").mkdir()
    async with site(tmp_path / "open", None, allow_registration=True) as found:
        assert (await found.browser().get("/-/register")).status_code == 200  # the alias


def test_the_cli_invites(doorman_cli: Invoke, tmp_path: Path, relay: MailServer) -> None:
    async def make_users() -> None:
        async with site(tmp_path, None):
            pass

    asyncio.run(make_users())
    env = {"DOORMAN_SECRET": SECRET, "DOORMAN_PUBLIC_URL": BASE, "DOORMAN_REGISTRATION": "invite"}
    printed = ok(doorman_cli("users", "invite", "jo@example.com", "--groups", "ops", env=env))
    assert INVITE.fullmatch(printed.stdout.strip()), printed.stdout
    mailed = {**env, "DOORMAN_SMTP_URL": relay.url, "DOORMAN_EMAIL_FROM": FROM}
    sent = ok(doorman_cli("users", "invite", "kim@example.com", "--admin", env=mailed))
    assert sent.stdout.strip() == "sent an invitation to kim@example.com"
    assert relay.messages[0].recipients == ["kim@example.com"]
    closed = {"DOORMAN_SECRET": SECRET, "DOORMAN_PUBLIC_URL": BASE}
    fails(doorman_cli("users", "invite", "lee@example.com", env=closed), "registration")

    async def use() -> None:
        async with site(tmp_path, None, create=False, registration="invite") as found:
            path = INVITE.fullmatch(printed.stdout.strip())
            assert path is not None
            assert (await accept(found.browser(), path[1], "jo")).status_code == 303
            jo = await found.doorman.users.require("jo")
            assert jo.groups == ("ops",) and not jo.is_admin

    asyncio.run(use())
