"""Email flows in Chromium: a forgotten password, and an invitation, each ending signed in.

A real ``doorman serve`` on SQLite sends through a real SMTP relay (aiosmtpd in
this process); the test reads the message and opens its link in the browser,
which must end on the account page, signed in, with no CSP violation and no
token left in the address bar.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from .helpers import free_port
from .mail_server import MailServer
from .servers import Server, running, start_server
from .test_browser_signin import PageFactory
from .test_browser_signin import browser as browser
from .test_browser_signin import open_page as open_page
from .test_scale_mail import add_user_with_email

with contextlib.suppress(ImportError):  # the `test` extra installs it; `browser` skips
    from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

NEW_PASSWORD = "a brand new passphrase 42"
LINK = re.compile(r"http://127\.0\.0\.1:\d+/-/password-reset/[A-Za-z0-9_-]+")
SIGN_IN_LINK = re.compile(r"http://127\.0\.0\.1:\d+/-/sign-in-link/[A-Za-z0-9_-]+")
INVITE_LINK = re.compile(r"http://127\.0\.0\.1:\d+/-/invite/[A-Za-z0-9_-]+")


@pytest.fixture(scope="module")
def mail_relay() -> Iterator[MailServer]:
    with MailServer() as relay:
        yield relay


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, mail_relay: MailServer) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("browser-mail")
    port = free_port()
    db = str(directory / "doorman.db")
    found = start_server(
        directory,
        port=port,
        db=db,
        smtp_url=mail_relay.url,
        email_from="noreply@example.com",
        public_url=f"http://127.0.0.1:{port}",
        registration="invite",
        email_sign_in=True,
    )
    with running(found):
        add_user_with_email(db, "alice", "alice@example.com")
        add_user_with_email(db, "dave", "dave@example.com")
        yield found


def wait_for_link(relay: MailServer, link: re.Pattern[str] = LINK) -> str:
    deadline = time.monotonic() + 10
    while not (relay.messages and link.search(relay.messages[-1].body("plain"))):
        assert time.monotonic() < deadline, "no message with such a link arrived"
        time.sleep(0.05)
    found = link.search(relay.messages[-1].body("plain"))
    assert found is not None
    return found[0]


def test_forgot_password_email_new_password_signed_in(
    server: Server, mail_relay: MailServer, open_page: PageFactory
) -> None:
    page, violations = open_page()
    page.goto(server.url + "/-/login")
    page.get_by_role("link", name="Forgot password?").click()
    page.get_by_label("The email address of your account").fill("alice@example.com")
    page.get_by_role("button", name="Send me a link").click()
    expect(page.get_by_role("status")).to_contain_text("If an account has that address")

    link = wait_for_link(mail_relay)
    page.goto(link)
    expect(page).to_have_url(server.url + "/-/password-reset/new")  # the token left the URL
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("New password again").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set the new password and sign in").click()

    expect(page).to_have_url(re.compile(r"/-/account\?done=password-reset$"))
    expect(page.get_by_role("status")).to_contain_text("Your new password is set")
    expect(page.locator("body")).to_contain_text("alice")
    assert violations == []
    page.goto(link)  # used: refused, with a way to a new one
    expect(page.get_by_role("link", name="Ask for a new link")).to_be_visible()


def test_invitation_email_choose_account_signed_in(
    server: Server, mail_relay: MailServer, open_page: PageFactory
) -> None:
    invited = subprocess.run(
        [sys.executable, "-m", "doorman", "users", "invite", "carol@example.com"],
        cwd=server.directory,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert invited.returncode == 0, invited.stderr
    link = wait_for_link(mail_relay, INVITE_LINK)

    page, violations = open_page()
    page.goto(link)
    expect(page).to_have_url(server.url + "/-/invite/new")  # the token left the URL
    expect(page.locator("body")).to_contain_text("For carol@example.com")
    page.get_by_label("Username").fill("carol")
    page.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Password again").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Make my account").click()

    expect(page).to_have_url(re.compile(r"/-/account\?done=created$"))
    expect(page.locator("body")).to_contain_text("carol")
    assert violations == []
    page.goto(link)  # used: refused
    expect(page.locator("h1")).to_contain_text("This invitation does not work")


def test_sign_in_by_email_link(
    server: Server, mail_relay: MailServer, open_page: PageFactory
) -> None:
    page, violations = open_page()
    page.goto(server.url + "/-/login")
    page.get_by_role("link", name="Email me a sign-in link").click()
    page.get_by_label("The email address of your account").fill("dave@example.com")
    page.get_by_role("button", name="Email me a sign-in link").click()
    expect(page.get_by_role("status")).to_contain_text("If an account has that address")

    link = wait_for_link(mail_relay, SIGN_IN_LINK)
    page.goto(link)
    expect(page).to_have_url(server.url + "/-/sign-in-link/new")  # the token left the URL
    expect(page.locator("body")).to_contain_text("Sign in as dave?")
    page.get_by_role("button", name="Sign in").click()

    expect(page).to_have_url(re.compile(r"/-/account"))
    expect(page.locator("body")).to_contain_text("dave")
    assert violations == []
    page.goto(link)  # used: refused, with a way to a new one
    expect(page.get_by_role("link", name="Ask for a new link")).to_be_visible()
