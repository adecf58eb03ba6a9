"""Passkeys in Debian's Chromium, with the DevTools Protocol's virtual authenticator.

A platform authenticator (ctap2, internal transport, resident keys, user
verification) answers every WebAuthn prompt; ``doorman serve`` listens on
127.0.0.1 and the browser goes to ``http://localhost:PORT``, since an IP
address cannot be a relying-party id. Through the pages and
``static/passkeys.js``: add a passkey on the account page, sign in with it
alone from the login page, use it as the second step after the password,
rename and remove it; a removed passkey signs nobody in.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import pytest

from .helpers import free_port
from .servers import PASSWORD, ROOT, Server, add_users, running, start_server
from .test_browser import UPDATE_SCREENSHOTS, png_size
from .test_browser_signin import PageFactory, browser, open_page  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e

with contextlib.suppress(ImportError):  # the `test` extra installs it; `browser` skips
    from playwright.sync_api import Page, expect


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("passkeys")
    db = str(directory / "doorman.db")
    add_users(db, "alice", "bob", "carol", "dave", "erin")
    port = free_port()
    started = start_server(directory, port=port, db=db, public_url=f"http://localhost:{port}")
    with running(started):
        yield started


def localhost(server: Server) -> str:
    return server.url.replace("127.0.0.1", "localhost")


def with_authenticator(page: Page) -> Any:
    """A virtual platform authenticator for this page's browser context; its CDP session."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    options = {
        "protocol": "ctap2",
        "transport": "internal",
        "hasResidentKey": True,
        "hasUserVerification": True,
        "isUserVerified": True,
        "automaticPresenceSimulation": True,
    }
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})
    return cdp


def without_autofill(page: Page) -> None:
    """A browser without conditional mediation: the virtual authenticator answers an
    autofill request at once, which would sign in before the test clicks anything."""
    page.context.add_init_script(
        "PublicKeyCredential.isConditionalMediationAvailable = async () => false;"
    )


def sign_in_with_password(page: Page, username: str) -> None:
    page.goto("/-/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/-/account$"))


def add_passkey(page: Page, label: str) -> None:
    page.goto("/-/account/two-factor")
    page.get_by_label("Passkey label").fill(label)
    page.get_by_role("button", name="Add a passkey").click()
    expect(page.locator(".passkey-list input[name=name]").last).to_have_value(label)


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").first.click()
    expect(page).to_have_url(re.compile(r"/-/login\?done=signed-out$"))


def whoami(page: Page) -> Any:
    return page.evaluate("fetch('/-/whoami').then((r) => r.json())")["actor"]


def test_register_then_the_login_page_signs_in_with_the_passkey_alone(
    server: Server,
    open_page: PageFactory,  # noqa: F811
) -> None:
    """Conditional mediation: the login page asks at once; the virtual authenticator, which
    needs no click, answers, and the person is signed in without a username."""
    page, violations = open_page(base_url=localhost(server))
    with_authenticator(page)
    sign_in_with_password(page, "alice")
    add_passkey(page, "Laptop")
    expect(page.get_by_role("cell", name="this device only")).to_be_visible()  # not synced
    page.get_by_role("button", name="Sign out").first.click()
    expect(page).to_have_url(re.compile(r"/-/account$"))  # by way of the login page
    assert whoami(page)["username"] == "alice"
    assert violations == [], violations


def test_the_passkey_button_signs_in(server: Server, open_page: PageFactory) -> None:  # noqa: F811
    page, violations = open_page(base_url=localhost(server))
    without_autofill(page)
    with_authenticator(page)
    sign_in_with_password(page, "dave")
    add_passkey(page, "Tablet")
    sign_out(page)
    assert whoami(page) is None
    page.get_by_role("button", name="Use a passkey").click()
    expect(page).to_have_url(re.compile(r"/-/account$"))
    assert whoami(page)["username"] == "dave"
    assert violations == [], violations


def test_a_passkey_as_the_second_step(server: Server, open_page: PageFactory) -> None:  # noqa: F811
    page, violations = open_page(base_url=localhost(server))
    without_autofill(page)
    with_authenticator(page)
    sign_in_with_password(page, "bob")
    add_passkey(page, "Phone")
    sign_out(page)
    page.goto("/-/login?next=/-/account/two-factor")
    page.get_by_label("Username").fill("bob")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/-/login/two-factor$"))
    assert whoami(page) is None  # the password alone signs nobody in
    page.get_by_role("button", name="Use a passkey").click()
    expect(page).to_have_url(re.compile(r"/-/account/two-factor$"))
    assert whoami(page)["username"] == "bob"
    assert violations == [], violations


def test_rename_remove_and_a_removed_passkey_signs_nobody_in(
    server: Server,
    open_page: PageFactory,  # noqa: F811
) -> None:
    page, violations = open_page(base_url=localhost(server))
    without_autofill(page)
    with_authenticator(page)
    sign_in_with_password(page, "erin")
    add_passkey(page, "Old name")
    row = page.locator(".passkey-list tbody tr").last
    row.locator("input[name=name]").fill("Work laptop")
    row.get_by_role("button", name="Rename").click()
    expect(page.locator(".passkey-list input[name=name]").last).to_have_value("Work laptop")
    for _ in range(page.locator(".passkey-list tbody tr").count()):
        page.locator(".passkey-list tbody tr").first.get_by_role("button", name="Remove").click()
        expect(page).to_have_url(re.compile(r"done=passkey-removed"))
    expect(page.get_by_text("You have no passkey yet.")).to_be_visible()
    sign_out(page)
    page.get_by_role("button", name="Use a passkey").click()
    # The authenticator still holds it; the server no longer knows it.
    expect(page.locator(".passkey-status")).to_have_text(re.compile("not registered"))
    assert whoami(page) is None
    assert violations == [], violations


def test_the_login_page_offers_passkeys_in_the_username_field(
    server: Server,
    open_page: PageFactory,  # noqa: F811
) -> None:
    page, violations = open_page(base_url=localhost(server))
    page.goto("/-/login")
    expect(page.get_by_label("Username")).to_have_attribute("autocomplete", "username webauthn")
    assert page.evaluate("PublicKeyCredential.isConditionalMediationAvailable()") is True
    expect(page.get_by_role("button", name="Use a passkey")).to_be_visible()
    assert violations == [], violations


# -- the pictures in docs/two-factor.md ----------------------------------------------------

#: DOORMAN_UPDATE_SCREENSHOTS=1 rewrites them (as tests/test_browser.py does login.png).
PICTURES = ROOT / "docs" / "images"


def test_the_pictures_of_the_passkeys_docs(
    server: Server,
    open_page: PageFactory,  # noqa: F811
) -> None:
    """Adding a passkey on the account page, and the login page's passkey button."""
    page, violations = open_page(
        base_url=localhost(server), viewport={"width": 1000, "height": 800}, color_scheme="light"
    )
    without_autofill(page)
    with_authenticator(page)
    sign_in_with_password(page, "carol")
    add_passkey(page, "Work laptop")
    section = page.locator("[data-passkeys-manage]")
    section.scroll_into_view_if_needed()
    pictures = {"passkey-add.png": section.screenshot()}
    sign_out(page)
    expect(page.get_by_role("button", name="Use a passkey")).to_be_visible()
    pictures["passkey-login.png"] = page.screenshot()
    for name, picture in pictures.items():
        assert png_size(picture)[0] > 300
        if UPDATE_SCREENSHOTS:
            (PICTURES / name).write_bytes(picture)
        assert (PICTURES / name).is_file(), f"run with DOORMAN_UPDATE_SCREENSHOTS=1 for {name}"
    assert violations == [], violations
