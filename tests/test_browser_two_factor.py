"""Two-factor sign-in in Chromium, through a real ``doorman serve``.

Alice turns on an authenticator app from her account page (the test reads the
key from the page, as a person would type it, and pyotp plays the app), keeps
her recovery codes, signs out, and signs in again with her password and a
code; then with a recovery code. No CSP violation on any page: the QR code is
inline SVG, and the only scripts are doorman's own files.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator

import pyotp
import pytest

from .helpers import free_port
from .servers import PASSWORD, Server, add_users, running, start_server
from .test_browser_signin import PageFactory
from .test_browser_signin import browser as browser
from .test_browser_signin import open_page as open_page

with contextlib.suppress(ImportError):  # the `test` extra installs it; `browser` skips
    from playwright.sync_api import Page, expect

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("browser-two-factor")
    port = free_port()
    db = str(directory / "doorman.db")
    found = start_server(directory, port=port, db=db, public_url=f"http://127.0.0.1:{port}")
    with running(found):
        add_users(db, "alice")
        yield found


def sign_in_with_password(page: Page, url: str) -> None:
    page.goto(url + "/-/login")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/-/login\?done=signed-out$"))


def test_enrol_then_sign_in_with_a_code_and_with_a_recovery_code(
    server: Server, open_page: PageFactory
) -> None:
    page, violations = open_page()
    sign_in_with_password(page, server.url)
    expect(page).to_have_url(re.compile(r"/-/account$"))
    page.get_by_role("link", name="Authenticator app, recovery codes and passkeys").click()
    page.get_by_role("button", name="Set up an authenticator app").click()
    expect(page.locator("figure.qr svg")).to_be_visible()
    page.get_by_text("Cannot scan? Type the key instead").click()
    key = page.locator("#totp-secret").inner_text().replace(" ", "")
    app = pyotp.TOTP(key)
    assert page.locator("#totp-uri").inner_text().startswith("otpauth://totp/")
    page.get_by_label("Code from the app").fill(app.now())
    page.get_by_role("button", name="Turn on").click()
    expect(page.get_by_role("status")).to_contain_text("The authenticator app is on")
    codes = page.locator("#recovery-codes").inner_text().split()
    assert len(codes) == 10
    expect(page).to_have_url(re.compile(r"/-/account/two-factor$"))  # shown-once.js
    sign_out(page)

    sign_in_with_password(page, server.url)
    expect(page).to_have_url(re.compile(r"/-/login/two-factor$"))
    page.get_by_label("Code from your authenticator app, or a recovery code").fill(
        app.at(time.time() + 30)  # the code that turned it on took this step's
    )
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/-/account$"))
    expect(page.locator("body")).to_contain_text("alice")
    sign_out(page)

    sign_in_with_password(page, server.url)
    page.get_by_label("Code from your authenticator app, or a recovery code").fill("000000")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("That code is not right")
    page.get_by_label("Code from your authenticator app, or a recovery code").fill(codes[0])
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/-/account$"))
    assert violations == []
