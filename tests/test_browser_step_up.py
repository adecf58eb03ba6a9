# ruff: noqa: F811  (the browser fixtures come from test_browser_signin)
"""Step-up in Debian's Chromium: a stale session making a token is sent to confirm, and back.

The server runs in this process (uvicorn in a thread), so that the clock of
``doorman.auth.step_up`` alone can be moved past ``step_up_after``; the pages,
their CSP and the redirects are the browser's.
"""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path

import pytest

import doorman.auth.step_up as step_up_module
from doorman.config import load_settings

from .servers import PASSWORD, SECRET
from .test_browser_signin import (  # noqa: F401  (fixtures)
    PageFactory,
    browser,
    open_page,
)
from .test_deploy import doorman_on_loopback

pytestmark = pytest.mark.e2e

with contextlib.suppress(ImportError):  # the `test` extra installs it; `browser` skips
    from playwright.sync_api import expect


class Later:
    """``step_up``'s clock, ``ahead`` seconds in the future."""

    ahead = 0.0

    def time(self) -> float:
        return time.time() + self.ahead


def test_a_stale_session_confirms_its_password_then_makes_the_token(
    tmp_path: Path, open_page: PageFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Later()
    monkeypatch.setattr(step_up_module, "time", clock)
    settings = load_settings(
        environ={}, overrides={"db": str(tmp_path / "doorman.db"), "secret": SECRET}
    )
    with doorman_on_loopback(settings) as port:
        base = f"http://127.0.0.1:{port}"
        page, violations = open_page()
        page.goto(f"{base}/-/login")
        page.get_by_label("Username").fill("alice")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(f"{base}/-/account")

        clock.ahead = 400  # the sign-in is now older than step_up_after (300 s)
        page.get_by_label("Name").fill("laptop")
        page.get_by_role("button", name="Create token").click()
        expect(page).to_have_url(re.compile(re.escape(f"{base}/-/account/confirm?next=")))
        expect(page.get_by_role("heading", name="Confirm it is you")).to_be_visible()

        page.get_by_label("Your password").fill("not my password")
        page.get_by_role("button", name="Confirm").click()
        expect(page.get_by_text("That is not your password.")).to_be_visible()
        page.get_by_label("Your password").fill(PASSWORD)
        page.get_by_role("button", name="Confirm").click()
        expect(page).to_have_url(f"{base}/-/account")

        page.get_by_label("Name").fill("laptop")
        page.get_by_role("button", name="Create token").click()
        expect(page.locator("#new-token")).to_have_text(re.compile(r"\S{20,}"))
        assert violations == [], violations
