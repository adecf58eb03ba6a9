"""Verified addresses: the registration's link, require_verified_email, a new address.

Through a real SMTP relay (aiosmtpd); the links are read from the delivered
messages and followed with httpx.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from .helpers import free_port
from .mail_server import MailServer
from .mail_server import relay as relay
from .test_password_reset import FROM, PASSWORD, Site, csrf_of, site, whoami

pytestmark = pytest.mark.anyio

VERIFY = re.compile(r"http://auth\.example\.com(/-/verify-email/[A-Za-z0-9_-]+)")


def verify_link(found: Site, count: int) -> str:
    assert found.relay is not None
    match = VERIFY.search(found.relay.messages[count - 1].body("plain"))
    assert match, found.relay.messages[count - 1].body("plain")
    return match[1]


async def click_verify(browser: httpx.AsyncClient, link: str) -> httpx.Response:
    """The link as a person follows it: to a token-less page, then its "Verify" button."""
    moved = await browser.get(link)
    if moved.status_code != 303:
        return moved
    assert moved.headers["location"] == "/-/verify-email/new"
    assert moved.headers["referrer-policy"] == "no-referrer"
    page = await browser.get("/-/verify-email/new")
    assert page.status_code == 200 and page.headers["referrer-policy"] == "no-referrer"
    assert ">Verify</button>" in page.text and link.rsplit("/", 1)[1] not in page.text
    return await browser.post("/-/verify-email/new", data={"csrftoken": await csrf_of(browser)})


async def register(browser: httpx.AsyncClient, name: str, email: str) -> httpx.Response:
    form = {
        "username": name,
        "email": email,
        "password": PASSWORD,
        "password2": PASSWORD,
        "csrftoken": await csrf_of(browser),
    }
    return await browser.post("/-/register", data=form)


async def sign_in(browser: httpx.AsyncClient, name: str) -> httpx.Response:
    form = {"username": name, "password": PASSWORD, "csrftoken": await csrf_of(browser)}
    return await browser.post("/-/login", data=form)


async def test_registration_sends_a_link_that_verifies_once(
    tmp_path: Path, relay: MailServer
) -> None:
    async with site(tmp_path, relay, allow_registration=True) as found:
        browser = found.browser()
        assert (await register(browser, "carol", "carol@example.com")).status_code == 303
        delivered = await found.message()
        assert delivered.recipients == ["carol@example.com"]
        link = verify_link(found, 1)
        followed = await click_verify(browser, link)
        assert followed.status_code == 303 and followed.headers["referrer-policy"] == "no-referrer"
        assert followed.headers["location"] == "/-/account?done=email-verified"
        carol = await found.doorman.users.require("carol")
        assert carol.email_verified
        again = await found.browser().get(link)
        assert again.status_code == 400 and "does not work" in again.text


async def test_required_verification_keeps_the_unverified_out(
    tmp_path: Path, relay: MailServer
) -> None:
    async with site(tmp_path, relay, allow_registration=True, require_verified_email=True) as found:
        browser = found.browser()
        registered = await register(browser, "dave", "dave@example.com")
        assert registered.status_code == 403 and "not verified" in registered.text
        assert await whoami(browser) is None
        await found.message()
        refused = await sign_in(found.browser(), "dave")
        assert refused.status_code == 403 and "Send the link again" in refused.text
        token = re.search(r'name="token" value="([^"]+)"', refused.text)
        assert token is not None
        other = found.browser()
        form = {"token": token[1], "csrftoken": await csrf_of(other)}
        resent = await other.post("/-/verify-email", data=form)
        assert resent.status_code == 200 and "dave@example.com" in resent.text
        await found.message(2)
        verified = await click_verify(found.browser(), verify_link(found, 2))
        assert verified.headers["location"] == "/-/login?done=email-verified"
        assert (await click_verify(found.browser(), verify_link(found, 1))).status_code == 400
        assert (await sign_in(found.browser(), "dave")).status_code == 302
        api = await found.browser().post(
            "/-/login", json={"username": "alice", "password": PASSWORD}
        )
        assert api.status_code == 403  # alice's address was never verified


async def test_a_new_address_waits_for_its_link_and_the_old_one_is_told(
    tmp_path: Path, relay: MailServer
) -> None:
    async with site(tmp_path, relay) as found:
        browser = found.browser()
        assert (await sign_in(browser, "alice")).status_code == 302
        form = {
            "email": "alice@new.example",
            "current_password": PASSWORD,
            "csrftoken": await csrf_of(browser),
        }
        changed = await browser.post("/-/account/email", data=form)
        assert changed.headers["location"] == "/-/account?done=email-pending"
        alice = await found.doorman.users.require("alice")
        assert (alice.email, alice.pending_email) == ("alice@example.com", "alice@new.example")
        await found.message(2)
        by_recipient = {m.recipients[0]: m for m in found.relay.messages}  # type: ignore[union-attr]
        assert "alice@new.example" in by_recipient["alice@example.com"].body("plain")
        link = VERIFY.search(by_recipient["alice@new.example"].body("plain"))
        assert link is not None
        assert (await click_verify(browser, link[1])).status_code == 303
        alice = await found.doorman.users.require("alice")
        assert (alice.email, alice.pending_email, alice.email_verified) == (
            "alice@new.example",
            None,
            True,
        )
        kinds = [e.kind for e in await found.doorman.events.list()]
        assert "email-changed" in kinds and "email-verified" in kinds


async def test_a_new_address_with_the_mail_server_down_changes_nothing(tmp_path: Path) -> None:
    down = f"smtp://127.0.0.1:{free_port()}"
    async with site(tmp_path, None, smtp_url=down, email_from=FROM) as found:
        browser = found.browser()
        assert (await sign_in(browser, "alice")).status_code == 302
        form = {
            "email": "alice@new.example",
            "current_password": PASSWORD,
            "csrftoken": await csrf_of(browser),
        }
        refused = await browser.post("/-/account/email", data=form)
        assert refused.status_code == 400 and "could not be sent" in refused.text
        alice = await found.doorman.users.require("alice")
        assert (alice.email, alice.pending_email) == ("alice@example.com", None)


async def test_the_account_page_sends_the_link_again(tmp_path: Path, relay: MailServer) -> None:
    async with site(tmp_path, relay) as found:
        browser = found.browser()
        assert (await sign_in(browser, "alice")).status_code == 302
        page = await browser.get("/-/account")
        assert "Not verified yet" in page.text and "Send the verification link again" in page.text
        sent = await browser.post("/-/verify-email", data={"csrftoken": await csrf_of(browser)})
        assert sent.status_code == 200 and "alice@example.com" in sent.text
        await found.message()
        followed = await click_verify(browser, verify_link(found, 1))
        assert followed.headers["location"] == "/-/account?done=email-verified"
        assert "Verified." in (await browser.get("/-/account")).text
        nothing = await browser.post("/-/verify-email", data={"csrftoken": await csrf_of(browser)})
        assert nothing.status_code == 400  # verified already
