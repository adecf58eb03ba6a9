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
from .test_password_reset import site

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
