"""Sign-in by email link: asked for, delivered by a real relay, followed, spent.

Off unless ``email_sign_in``; the same answer for known and unknown addresses;
throttled per address asked for; a scanner opening the link signs nobody in
(a button does); the link works once and not after 15 minutes.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from .mail_server import MailServer
from .mail_server import relay as relay
from .test_password_reset import Site, csrf_of, site, whoami

pytestmark = pytest.mark.anyio

LINK = re.compile(r"http://auth\.example\.com(/-/sign-in-link/[A-Za-z0-9_-]+)")


async def ask(browser: httpx.AsyncClient, email: str) -> httpx.Response:
    form = {"email": email, "csrftoken": await csrf_of(browser)}
    return await browser.post("/-/sign-in-link", data=form)


async def use(found: Site, browser: httpx.AsyncClient, path: str) -> httpx.Response:
    moved = await browser.get(path)
    assert moved.status_code == 303 and moved.headers["location"] == "/-/sign-in-link/new"
    page = await browser.get("/-/sign-in-link/new")
    assert page.status_code == 200 and "Sign in as" in page.text
    assert await whoami(browser) is None  # opening the link signed nobody in
    return await browser.post("/-/sign-in-link/new", data={"csrftoken": await csrf_of(browser)})


async def test_a_link_signs_in_once(tmp_path: Path, relay: MailServer) -> None:
    async with site(tmp_path, relay, email_sign_in=True) as found:
        browser = found.browser()
        assert "Email me a sign-in link" in (await browser.get("/-/login")).text
        known, unknown = (
            await ask(browser, "alice@example.com"),
            await ask(browser, "x@example.com"),
        )
        assert (known.status_code, known.text) == (unknown.status_code, unknown.text)
        delivered = await found.message()
        assert delivered.recipients == ["alice@example.com"]
        path = LINK.search(delivered.body("plain"))
        assert path is not None
        done = await use(found, browser, path[1])
        assert done.status_code == 303 and await whoami(browser) == "alice"
        assert (await found.doorman.users.require("alice")).email_verified
        assert (await found.browser().get(path[1])).status_code == 400  # spent
        kinds = [e.kind for e in await found.doorman.events.list()]
        assert "signed-in" in kinds


async def test_expired_and_other_purposes_are_refused(tmp_path: Path, relay: MailServer) -> None:
    async with site(tmp_path, relay, email_sign_in=True) as found:
        alice = await found.doorman.users.require("alice")
        old = found.doorman.links.make("sign-in", alice, now=time.time() - 901)
        reset = found.doorman.links.make("password-reset", alice)
        for token in (old, reset):
            assert (await found.browser().get(f"/-/sign-in-link/{token}")).status_code == 400


async def test_asking_is_throttled_and_off_by_default(tmp_path: Path, relay: MailServer) -> None:
    async with site(tmp_path, relay, email_sign_in=True) as found:
        answers = [(await ask(found.browser(), "bob@example.com")).status_code for _ in range(4)]
        assert answers == [200, 200, 200, 429]
    (tmp_path / "off").mkdir()
    async with site(tmp_path / "off", relay) as found:
        browser = found.browser()
        assert "sign-in link" not in (await browser.get("/-/login")).text
        assert (await ask(browser, "alice@example.com")).status_code == 404
        alice = await found.doorman.users.require("alice")
        token = found.doorman.links.make("sign-in", alice)
        assert (await browser.get(f"/-/sign-in-link/{token}")).status_code == 404
