"""The account and admin pages in a real browser: copying a token, narrow screens, layout.

One ``doorman serve`` of its own, and the browser, fixtures and steps of
test_browser.py (see there for how Chromium is found). Screenshots of the
token card go to the test's temporary directory, to look at by hand.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .test_browser import (
    PLAYWRIGHT_MISSING,
    RECORD_CSP,
    PageFactory,
    Server,
    create_user,
    sign_in,
    start,
    stop,
    wait_until_healthy,
)
from .test_browser import admin_session as admin_session  # fixtures, used by name
from .test_browser import browser as browser
from .test_browser import new_page as new_page

pytestmark = pytest.mark.e2e

if PLAYWRIGHT_MISSING is None:
    from playwright.sync_api import Browser, Locator, Page, expect
else:  # pragma: no cover - the `browser` fixture skips (or fails) first
    Browser = Locator = Page = Any

NARROW = {"width": 375, "height": 800}
WIDE = {"width": 1280, "height": 900}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, browser: Browser) -> Iterator[Server]:
    running = start(tmp_path_factory.mktemp("pages"))
    try:
        wait_until_healthy(running)
        yield running
    finally:
        running.process.terminate()
        problem = stop(running)
    assert not problem, problem


def new_token(page: Page, name: str) -> str:
    """Make a token on the account page; the text the page shows once.

    The answer to the POST shows it (nothing is kept to show it later), and its
    script gives the history entry the account page's own URL.
    """
    page.goto("/-/account")
    page.get_by_label("Name").fill(name)
    page.get_by_role("button", name="Create token").click()
    expect(page.locator("#new-token")).to_have_text(re.compile("^dmt_"))
    expect(page).to_have_url(re.compile(r"/-/account$"))
    return page.locator("#new-token").inner_text()


def box(locator: Locator) -> dict[str, float]:
    found = locator.bounding_box()
    assert found is not None, locator
    return found


def in_view(page: Page, button: Locator, width: int) -> None:
    """The button is inside the viewport's width, and on top where it is drawn (not covered)."""
    # Scrolled to vertically only: a table that scrolls sideways must not be scrolled for it.
    button.evaluate("b => window.scrollBy(0, b.getBoundingClientRect().top - innerHeight / 2)")
    where = box(button)
    assert where["x"] >= 0 and where["x"] + where["width"] <= width, where
    x, y = where["x"] + where["width"] / 2, where["y"] + where["height"] / 2
    assert button.evaluate(
        "(button, [x, y]) => button.contains(document.elementFromPoint(x, y))", [x, y]
    ), "covered or clipped"


# -- the one-time token ----------------------------------------------------------------


def test_the_copy_button_copies_the_token_within_the_csp(
    server: Server, admin_session: dict[str, Any], new_page: PageFactory
) -> None:
    clipboard = ["clipboard-read", "clipboard-write"]
    page = new_page(server, storage_state=admin_session, permissions=clipboard)
    page.add_init_script(RECORD_CSP)
    problems: list[str] = []
    page.on("console", lambda message: problems.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: problems.append(str(error)))
    text = new_token(page, "copied")
    assert re.fullmatch(r"dmt_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", text)
    copy = page.get_by_role("button", name="Copy")
    copy.click()
    expect(page.locator("#new-token-label + button")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == text
    assert page.evaluate("window.__cspViolations") == []
    assert not [p for p in problems if p.startswith(("error", "warning"))], problems


def test_without_the_clipboard_api_the_token_is_selected(
    server: Server, admin_session: dict[str, Any], new_page: PageFactory
) -> None:
    page = new_page(server, storage_state=admin_session)
    page.add_init_script("Object.defineProperty(navigator, 'clipboard', {value: undefined})")
    text = new_token(page, "selected")
    page.get_by_role("button", name="Copy").click()
    expect(page.locator("#new-token-label + button")).to_have_text(re.compile("Copied|Selected"))
    assert page.evaluate("window.getSelection().toString().trim()") == text


def test_a_reload_after_a_new_token_sends_nothing_again(
    server: Server, admin_session: dict[str, Any], new_page: PageFactory
) -> None:
    page = new_page(server, storage_state=admin_session)
    page.add_init_script(RECORD_CSP)
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    text = new_token(page, "reloaded")
    assert len(posts) == 1
    page.reload()
    expect(page.get_by_role("heading", level=1)).to_have_text("root")
    assert posts == posts[:1], "the reload sent the form again"
    assert page.locator("#new-token").count() == 0 and text not in page.content()
    tokens = page.get_by_role("table").filter(has_text="Scopes")
    expect(tokens.get_by_role("row").filter(has_text="reloaded")).to_have_count(1)
    assert page.evaluate("window.__cspViolations") == []


@pytest.mark.parametrize("viewport", [WIDE, NARROW], ids=["wide", "narrow"])
def test_the_token_card_keeps_the_page_header_together(
    server: Server,
    admin_session: dict[str, Any],
    new_page: PageFactory,
    viewport: dict[str, int],
    tmp_path: Path,
) -> None:
    page = new_page(server, storage_state=admin_session, viewport=viewport, color_scheme="light")
    page.goto("/-/account")
    banner_before = box(page.get_by_role("banner"))
    new_token(page, f"layout-{viewport['width']}")
    page.screenshot(path=tmp_path / f"token-card-{viewport['width']}.png", full_page=True)

    assert box(page.get_by_role("banner")) == banner_before, "the site header moved"
    heading = box(page.get_by_role("heading", level=1))
    details = box(page.locator("main > p.aside").first)
    notice = box(page.get_by_role("status"))
    card = box(page.get_by_role("group", name="Your new API token"))
    assert heading["y"] + heading["height"] <= details["y"] < notice["y"] < card["y"]
    label, copy = (
        box(page.locator("#new-token-label")),
        box(page.get_by_role("button", name="Copy")),
    )
    assert abs((label["y"] + label["height"] / 2) - (copy["y"] + copy["height"] / 2)) < 8
    assert copy["x"] + copy["width"] <= card["x"] + card["width"], "the button is in the card"
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert box(page.get_by_role("status"))["height"] <= (60 if viewport is WIDE else 90)


# -- narrow screens: every row's button in reach ---------------------------------------


def test_sign_out_and_revoke_stay_in_view_at_375_px(
    server: Server, admin_session: dict[str, Any], new_page: PageFactory
) -> None:
    admin = new_page(server, storage_state=admin_session)
    create_user(admin, "nina")
    other = new_page(server)
    sign_in(other, "nina")
    page = new_page(server, viewport=NARROW)
    sign_in(page, "nina")
    new_token(page, "phone")

    page.goto("/-/account")
    sessions = page.get_by_role("table").filter(has_text="Device")
    in_view(page, sessions.get_by_role("button", name=re.compile("^Sign out")).first, 375)
    tokens = page.get_by_role("table").filter(has_text="Scopes")
    in_view(page, tokens.get_by_role("button", name=re.compile("^Revoke")).first, 375)

    narrow_admin = new_page(server, storage_state=admin_session, viewport=NARROW)
    narrow_admin.goto("/-/admin/users/nina")
    for name in ("^Sign out .* from", "^Revoke token"):
        in_view(narrow_admin, narrow_admin.get_by_role("button", name=re.compile(name)).first, 375)
    narrow_admin.goto("/-/admin/sessions")
    in_view(
        narrow_admin,
        narrow_admin.get_by_role("button", name=re.compile("^Sign out the")).first,
        375,
    )


# -- pages that are not there ----------------------------------------------------------


def test_a_mistyped_address_gets_a_page_of_the_site(server: Server, new_page: PageFactory) -> None:
    page = new_page(server)
    answer = page.goto("/-/acount")
    assert answer is not None and answer.status == 404
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background != "rgba(0, 0, 0, 0)", "the stylesheet applied"
    icon = page.request.get("/favicon.ico")
    assert icon.status == 200 and icon.body()[:4] == b"\x00\x00\x01\x00"
    page.get_by_role("banner").get_by_role("link", name="doorman").click()
    expect(page).to_have_url(re.compile(r"/-/login$"))
