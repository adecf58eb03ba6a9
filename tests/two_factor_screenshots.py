"""Screenshots of two-factor sign-in for docs/two-factor.md, from a real ``doorman serve``.

``python -m tests.two_factor_screenshots`` (from the checkout, with Chromium and the
test extra) writes docs/images/two-factor-enrol.png (setting up an authenticator app
on /-/account/two-factor) and docs/images/two-factor-sign-in.png (the second step
of sign-in). Not a test: it asserts nothing but that the pages are there.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pyotp
from playwright.sync_api import sync_playwright

from .helpers import free_port
from .servers import PASSWORD, add_users, running, start_server
from .test_browser import CHROMIUM
from .test_browser_signin import CHROMIUM_ARGS

IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"
VIEWPORT = {"width": 900, "height": 1000}


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        directory, port = Path(scratch), free_port()
        db = str(directory / "doorman.db")
        server = start_server(
            directory, port=port, db=db, public_url=f"http://127.0.0.1:{port}", site_name="Example"
        )
        with running(server), sync_playwright() as playwright:
            add_users(db, "alice")
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport=VIEWPORT, color_scheme="light")
            page.goto(server.url + "/-/login")
            page.get_by_label("Username").fill("alice")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.goto(server.url + "/-/account/two-factor")
            page.get_by_role("button", name="Set up an authenticator app").click()
            page.get_by_text("Cannot scan? Type the key instead").click()
            page.screenshot(path=str(IMAGES / "two-factor-enrol.png"), full_page=True)
            key = page.locator("#totp-secret").inner_text().replace(" ", "")
            page.get_by_label("Code from the app").fill(pyotp.TOTP(key).now())
            page.get_by_role("button", name="Turn on").click()
            page.get_by_role("button", name="Sign out").click()
            page.get_by_label("Username").fill("alice")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url("**/-/login/two-factor")
            page.set_viewport_size({"width": 900, "height": 480})
            page.screenshot(path=str(IMAGES / "two-factor-sign-in.png"), full_page=True)
            browser.close()
    print(f"wrote {IMAGES / 'two-factor-enrol.png'} and {IMAGES / 'two-factor-sign-in.png'}")


if __name__ == "__main__":
    main()
