"""What an outsider or a signed-in person tried against the email flows (issue 15's attack).

Each test is a finding from a black-box run of ``doorman serve`` with a real
SMTP relay, kept so it cannot come back: no 500 for a token the server did not
make, no link used twice by requests at once, no inbox flooded through the
account page.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from doorman.accounts.users import User

from .mail_server import MailServer
from .mail_server import relay as relay
from .test_email_verification import register
from .test_password_reset import (
    NEW_PASSWORD,
    PASSWORD,
    Site,
    csrf_of,
    server_state,
    sign_in,
    site,
)

pytestmark = pytest.mark.anyio

#: A well-formed token whose account id (base 36) is past any database's integer.
HUGE_ID = "zzzzzzzzzzzzz-1-" + "A" * 43


@pytest.mark.parametrize(
    ("method", "route"),
    [(m, r) for m in ("GET", "POST") for r in ("password-reset", "sign-in-link")]
    + [("GET", "verify-email"), ("POST", "verify-email")],
)
async def test_a_token_naming_an_impossible_account_is_refused(
    tmp_path: Path, relay: MailServer, route: str, method: str
) -> None:
    async with site(tmp_path, relay, email_sign_in=True) as found:
        browser = found.browser()
        csrf = (await browser.get("/-/whoami?csrf=1")).json()["csrftoken"]
        answer = await browser.request(
            method, f"/-/{route}/{HUGE_ID}", data={"csrftoken": csrf, "password": "x"}
        )
        assert answer.status_code == 400 and "does not work" in answer.text


async def test_the_account_page_cannot_flood_another_inbox(
    tmp_path: Path, relay: MailServer
) -> None:
    """A signed-in person asks for "a new address" over and over: the links are throttled
    per address asked for, as reset and sign-in links are."""
    async with site(tmp_path, relay) as found:
        browser = found.browser()
        assert (await sign_in(browser)).status_code == 302
        answers = []
        for _ in range(5):
            form = {
                "email": "victim@example.org",
                "current_password": PASSWORD,
                "csrftoken": await csrf_of(browser),
            }
            answers.append((await browser.post("/-/account/email", data=form)).status_code)
        assert answers == [303, 303, 303, 429, 429]
        await found.message(6)  # three links, three notices to alice's own address
        await server_state(found.app).background.drain()
        to_victim = [m for m in relay.messages if m.recipients == ["victim@example.org"]]
        assert len(to_victim) == 3


async def test_the_account_page_tells_which_addresses_are_held_only_within_the_throttle(
    tmp_path: Path, relay: MailServer
) -> None:
    """ "This email address cannot be used" came back at once and for ever: a signed-in
    person listed, unthrottled, which addresses other accounts hold verified, while a
    free address was counted as the link it asks for. A held one is counted alike now."""
    async with site(tmp_path, relay) as found:
        for number in range(12):
            held = await found.doorman.users.create(f"held{number}", email=f"h{number}@example.org")
            await found.doorman.users.verify_email(held)
        browser = found.browser()
        assert (await sign_in(browser)).status_code == 302
        answers = []
        for number in range(12):
            form = {
                "email": f"h{number}@example.org",
                "current_password": PASSWORD,
                "csrftoken": await csrf_of(browser),
            }
            answers.append((await browser.post("/-/account/email", data=form)).status_code)
        assert answers == [400] * 10 + [429] * 2  # 10 asks per client, as for free addresses


async def _at_once(found: Site, path: str, count: int, **form: str) -> list[int]:
    """``count`` browsers POST ``path`` together; their statuses."""
    browsers = [found.browser() for _ in range(count)]
    tokens = [await csrf_of(browser) for browser in browsers]
    answers = await asyncio.gather(
        *(
            browser.post(path, data={"csrftoken": token, **form})
            for browser, token in zip(browsers, tokens, strict=True)
        )
    )
    return sorted(answer.status_code for answer in answers)


def slow_reads(found: Site) -> None:
    """Each read of an account takes 50 ms more, as on a busy database: every request
    checks the link before any has spent it, as they did against ``doorman serve``."""
    users = found.doorman.users
    read = users.get

    async def slow_get(user_id: int) -> User | None:
        user = await read(user_id)
        await asyncio.sleep(0.05)
        return user

    users.get = slow_get  # type: ignore[method-assign]


async def test_one_reset_link_at_once_resets_once(tmp_path: Path, relay: MailServer) -> None:
    async with site(tmp_path, relay) as found:
        alice = await found.doorman.users.require("alice")
        token = found.doorman.links.make("password-reset", alice)
        slow_reads(found)
        form = {"password": NEW_PASSWORD, "password2": NEW_PASSWORD}
        assert await _at_once(found, f"/-/password-reset/{token}", 4, **form) == [
            303,
            400,
            400,
            400,
        ]
        resets = [e for e in await found.doorman.events.list() if e.kind == "password-reset"]
        assert len(resets) == 1


async def test_one_sign_in_link_at_once_signs_in_once(tmp_path: Path, relay: MailServer) -> None:
    async with site(tmp_path, relay, email_sign_in=True) as found:
        alice = await found.doorman.users.require("alice")
        token = found.doorman.links.make("sign-in", alice)
        slow_reads(found)
        assert await _at_once(found, f"/-/sign-in-link/{token}", 4) == [303, 400, 400, 400]
        assert len(await found.doorman.signins.list(alice)) == 1


async def test_a_reset_link_refused_for_a_weak_password_still_works(
    tmp_path: Path, relay: MailServer
) -> None:
    async with site(tmp_path, relay) as found:
        alice = await found.doorman.users.require("alice")
        path = f"/-/password-reset/{found.doorman.links.make('password-reset', alice)}"
        weak = {"password": "short", "password2": "short"}
        assert await _at_once(found, path, 1, **weak) == [400]
        strong = {"password": NEW_PASSWORD, "password2": NEW_PASSWORD}
        assert await _at_once(found, path, 1, **strong) == [303]


async def test_registration_cannot_flood_another_inbox(tmp_path: Path, relay: MailServer) -> None:
    """Open registration, one address typed on account after account: its verification
    links are throttled per address as every other link is; the accounts are made."""
    async with site(tmp_path, relay, registration="open", create=False) as found:
        for number in range(5):
            made = await register(found.browser(), f"signup{number}", "victim@example.org")
            assert made.status_code == 303, made.text
        await server_state(found.app).background.drain()
        assert [m.recipients for m in relay.messages] == [["victim@example.org"]] * 3
        assert len(await found.doorman.users.list()) == 5
