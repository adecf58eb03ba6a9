"""A verified address is proven by a click, and belongs to one account (finding 5).

A mail scanner that opens every link must verify nothing; an address another
account holds verified cannot be asked for, registered or verified again (the
check is made again when the link is used); a reset link, which proved the
mailbox, verifies the address. Through a real SMTP relay and the real app.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from doorman.accounts.links import AccountLinks

from .mail_server import MailServer
from .mail_server import relay as relay
from .test_email_verification import VERIFY, click_verify, register, sign_in, verify_link
from .test_password_reset import (
    NEW_PASSWORD,
    PASSWORD,
    Site,
    ask,
    choose,
    csrf_of,
    follow,
    link_in,
    site,
)
from .test_password_reset import sign_in as sign_in_alice

pytestmark = pytest.mark.anyio

TAKEN = "This email address cannot be used"


def token_owner(link: str) -> int | None:
    return AccountLinks.user_id(link.rsplit("/", 1)[1])


async def verified(found: Site, username: str) -> tuple[str | None, bool, str | None]:
    user = await found.doorman.users.require(username)
    return user.email, user.email_verified, user.pending_email


async def test_opening_the_link_verifies_nothing(tmp_path: Path, relay: MailServer) -> None:
    async with site(tmp_path, relay, allow_registration=True) as found:
        assert (await register(found.browser(), "carol", "carol@example.com")).status_code == 303
        await found.message()
        link = verify_link(found, 1)
        scanner = found.browser()  # opens the link and whatever it redirects to
        moved = await scanner.get(link)
        assert moved.status_code == 303 and moved.headers["location"] == "/-/verify-email/new"
        page = await scanner.get("/-/verify-email/new")
        assert page.status_code == 200 and ">Verify</button>" in page.text
        assert await verified(found, "carol") == ("carol@example.com", False, None)
        forged = await scanner.post("/-/verify-email/new", data={"csrftoken": "wrong"})
        assert forged.status_code == 403
        assert await verified(found, "carol") == ("carol@example.com", False, None)
        clicked = await click_verify(found.browser(), link)
        assert clicked.headers["location"] == "/-/login?done=email-verified"
        assert await verified(found, "carol") == ("carol@example.com", True, None)


async def test_a_script_posts_to_the_link(tmp_path: Path, relay: MailServer) -> None:
    async with site(tmp_path, relay) as found:
        alice = await found.doorman.users.require("alice")
        token = found.doorman.links.make("verify-email", alice)
        browser = found.browser()
        headers = {"x-csrftoken": await csrf_of(browser)}
        done = await browser.post(f"/-/verify-email/{token}", json={}, headers=headers)
        assert done.status_code == 200 and done.json()["verified"] is True
        assert await verified(found, "alice") == ("alice@example.com", True, None)
        again = await browser.post(f"/-/verify-email/{token}", json={}, headers=headers)
        assert again.status_code == 400 and "does not work" in again.json()["error"]


async def test_another_accounts_verified_address_cannot_be_asked_for(
    tmp_path: Path, relay: MailServer
) -> None:
    """The repro: mallory asks for alice's verified address as her new one."""
    async with site(tmp_path, relay, allow_registration=True) as found:
        alice = await found.doorman.users.require("alice")
        await found.doorman.users.verify_email(alice)
        mallory = found.browser()
        assert (await register(mallory, "mallory", "mallory@example.net")).status_code == 303
        await found.message()
        form = {
            "email": "ALICE@example.com",
            "current_password": PASSWORD,
            "csrftoken": await csrf_of(mallory),
        }
        refused = await mallory.post("/-/account/email", data=form)
        assert refused.status_code == 400 and TAKEN in refused.text
        assert await verified(found, "mallory") == ("mallory@example.net", False, None)
        assert len(found.relay.messages) == 1  # type: ignore[union-attr]  # nothing to alice
        again = await register(found.browser(), "mallory2", "alice@example.com")
        assert again.status_code == 400 and TAKEN in again.text
        assert await found.doorman.users.by_username("mallory2") is None
        # An address held but not verified is no one's yet: bob may still ask for it.
        bob = found.browser()
        assert (await sign_in(bob, "bob")).status_code == 302
        form = {
            "email": "carol@example.org",
            "current_password": PASSWORD,
            "csrftoken": await csrf_of(bob),
        }
        assert (await bob.post("/-/account/email", data=form)).status_code == 303


async def test_verified_meanwhile_by_another_account_is_refused(
    tmp_path: Path, relay: MailServer
) -> None:
    async with site(tmp_path, relay) as found:
        bob = found.browser()
        assert (await sign_in(bob, "bob")).status_code == 302
        form = {
            "email": "shared@example.org",
            "current_password": PASSWORD,
            "csrftoken": await csrf_of(bob),
        }
        assert (await bob.post("/-/account/email", data=form)).status_code == 303
        await found.message(2)
        by_recipient = {m.recipients[0]: m for m in found.relay.messages}  # type: ignore[union-attr]
        link = VERIFY.search(by_recipient["shared@example.org"].body("plain"))
        assert link is not None
        # Meanwhile alice takes the address and verifies it first.
        alice = await found.doorman.users.require("alice")
        alice = await found.doorman.users.set_email(alice, "Shared@example.org")
        await found.doorman.users.verify_email(alice)
        clicked = await click_verify(bob, link[1])
        assert clicked.status_code == 409 and TAKEN in clicked.text
        assert await verified(found, "bob") == ("bob@example.com", False, "shared@example.org")
        assert await verified(found, "alice") == ("Shared@example.org", True, None)


async def test_a_reset_link_verifies_the_address(tmp_path: Path, relay: MailServer) -> None:
    async with site(tmp_path, relay) as found:
        assert await verified(found, "alice") == ("alice@example.com", False, None)
        browser = found.browser()
        assert (await ask(browser, "alice@example.com")).status_code == 200
        form = await follow(browser, link_in(await found.message()))
        assert form.status_code == 200
        assert (await choose(browser)).status_code == 303
        assert await verified(found, "alice") == ("alice@example.com", True, None)
        kinds = [e.kind for e in await found.doorman.events.list()]
        assert "email-verified" in kinds
        assert (await sign_in_alice(found.browser(), NEW_PASSWORD)).status_code == 302


async def test_a_reset_link_does_not_verify_an_address_another_account_holds(
    tmp_path: Path, relay: MailServer
) -> None:
    async with site(tmp_path, relay) as found:
        bob = await found.doorman.users.require("bob")
        bob = await found.doorman.users.set_email(bob, "alice@example.com")
        await found.doorman.users.verify_email(bob)
        browser = found.browser()
        assert (await ask(browser, "alice@example.com")).status_code == 200
        delivered = [link_in(await found.message(n)) for n in (1, 2)]
        alice = await found.doorman.users.require("alice")
        (mine,) = [link for link in delivered if token_owner(link) == alice.id]
        await follow(browser, mine)
        assert (await choose(browser)).status_code == 303
        assert await verified(found, "alice") == ("alice@example.com", False, None)


async def ivy_accepts_alices_address_unverified(found: Site, token: str) -> None:
    """Ivy accepts an invitation to the address alice holds verified: her account is made,
    its address unverified; alice's stays verified."""
    browser = found.browser()
    form = {"username": "ivy", "password": PASSWORD}
    headers = {"x-csrftoken": await csrf_of(browser)}
    made = await browser.post(f"/-/invite/{token}", json=form, headers=headers)
    assert made.status_code == 200, made.text
    assert await verified(found, "ivy") == ("alice@example.com", False, None)
    assert await verified(found, "alice") == ("alice@example.com", True, None)


async def test_an_invitation_does_not_verify_an_address_another_account_holds(
    tmp_path: Path,
) -> None:
    async with site(tmp_path, None, registration="invite") as found:
        _, token = await found.doorman.invitations.create("alice@example.com")
        alice = await found.doorman.users.require("alice")
        await found.doorman.users.verify_email(alice)
        await ivy_accepts_alices_address_unverified(found, token)


async def test_an_invitation_accepted_as_the_address_is_verified_elsewhere_still_makes_the_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alice verifies the address between the invitation's look and its write: the
    database's index refuses a second verified holder, and the account is made unverified,
    as when the look had seen it (not a form error for the person invited)."""
    async with site(tmp_path, None, registration="invite") as found:
        _, token = await found.doorman.invitations.create("alice@example.com")
        await found.doorman.users.verify_email(await found.doorman.users.require("alice"))

        looks: list[object] = []
        real_look = found.doorman.users.verified_elsewhere

        async def looked_too_early(email: Any, user: Any = None) -> bool:
            looks.append(email)  # the view's look saw what was there just before alice's
            return False if len(looks) == 1 else await real_look(email, user)

        monkeypatch.setattr(found.doorman.users, "verified_elsewhere", looked_too_early)
        await ivy_accepts_alices_address_unverified(found, token)
