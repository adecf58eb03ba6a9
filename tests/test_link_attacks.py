"""What an outsider or a signed-in person tried against the email flows (issue 15's attack).

Each test is a finding from a black-box run of ``doorman serve`` with a real
SMTP relay, kept so it cannot come back: no 500 for a token the server did not
make, no link used twice by requests at once, no inbox flooded through the
account page.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .mail_server import MailServer
from .mail_server import relay as relay
from .test_password_reset import PASSWORD, csrf_of, server_state, sign_in, site

pytestmark = pytest.mark.anyio

#: A well-formed token whose account id (base 36) is past any database's integer.
HUGE_ID = "zzzzzzzzzzzzz-1-" + "A" * 43


@pytest.mark.parametrize(
    ("method", "route"),
    [(m, r) for m in ("GET", "POST") for r in ("password-reset", "sign-in-link")]
    + [("GET", "verify-email")],
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
