"""The sign-in server in a real browser: what a person does, through ``doorman serve``.

Each server is ``python -m doorman serve`` in a subprocess on a free loopback
port, with its own SQLite file; pages are driven by Playwright in the system
Chromium (never a downloaded one), with a fresh browser context, so fresh
cookies, per test. Locators go by role and label, so the labels are checked too.
The HTTP-level behaviour is in test_server.py and test_server_admin.py.

Chromium comes from the system (``apt-get install chromium``; another binary with
DOORMAN_TEST_CHROMIUM). Without it, or without the playwright package, these
tests skip, or fail when DOORMAN_REQUIRE_SERVICES=1 (as in CI, where .ci/run
installs Chromium). DOORMAN_UPDATE_SCREENSHOTS=1 rewrites docs/images/login.png.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .conftest import _missing
from .helpers import free_port

pytestmark = pytest.mark.e2e

try:
    from playwright.sync_api import (
        Browser,
        BrowserContext,
        ConsoleMessage,
        Locator,
        Page,
        Request,
        Response,
        expect,
        sync_playwright,
    )
    from playwright.sync_api import Error as PlaywrightError
except ImportError as error:  # pragma: no cover - the `test` extra installs it
    PLAYWRIGHT_MISSING: ImportError | None = error
else:
    PLAYWRIGHT_MISSING = None

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "docs" / "images" / "login.png"
CHROMIUM = (
    os.environ.get("DOORMAN_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
)
UPDATE_SCREENSHOTS = os.environ.get("DOORMAN_UPDATE_SCREENSHOTS") == "1"

SECRET = "browser-test-secret-" + "b" * 20  # 40 characters: sessions stay valid across pages
PASSWORD = "correct horse battery staple"
WAIT_MS = 5_000  # every action, navigation and expectation gives up after this
START_S = 10.0  # a server must answer /-/health within this
SETUP_LINE = re.compile(r"Create the first admin at (\S+)")

PageFactory = Callable[..., "Page"]


# -- servers: `doorman serve` in a subprocess ------------------------------------------


@dataclass
class Server:
    """One ``doorman serve`` process on a free loopback port, its database in ``directory``."""

    url: str
    directory: Path
    process: subprocess.Popen[bytes]
    ready: bool = False  # answered /-/health

    @property
    def setup_url(self) -> str | None:
        """The link ``doorman serve`` printed, when the database had no users."""
        found = SETUP_LINE.search((self.directory / "stdout.txt").read_text())
        return found[1] if found else None

    def log(self) -> str:
        return (self.directory / "stderr.txt").read_text(errors="replace")


def start(directory: Path, **settings: str) -> Server:
    """Start ``python -m doorman serve``; ``settings`` become ``DOORMAN_<NAME>`` variables.

    No other DOORMAN_* variable of the test run reaches the server, and it runs in
    ``directory``, so no doorman.toml of the checkout is read either.
    """
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOORMAN_")}
    env.update({f"DOORMAN_{name.upper()}": value for name, value in settings.items()})
    env.update(
        DOORMAN_SECRET=SECRET,
        PYTHONUNBUFFERED="1",  # the set-up line must reach the file before uvicorn starts
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    command = [sys.executable, "-m", "doorman", "serve", "--db", str(directory / "doorman.db")]
    command += ["--port", str(port), "--host", "127.0.0.1"]
    with (directory / "stdout.txt").open("wb") as out, (directory / "stderr.txt").open("wb") as err:
        process = subprocess.Popen(command, cwd=directory, env=env, stdout=out, stderr=err)
    return Server(f"http://127.0.0.1:{port}", directory, process)


def wait_until_healthy(server: Server) -> None:
    deadline = time.monotonic() + START_S
    while True:
        try:
            with urllib.request.urlopen(server.url + "/-/health", timeout=1) as answer:
                if answer.status == 200:
                    server.ready = True
                    return
        except (urllib.error.URLError, OSError):
            pass
        if server.process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(
                f"doorman serve did not answer /-/health within {START_S:.0f} s "
                f"(exit status {server.process.poll()}):\n{server.log()}"
            )
        time.sleep(0.05)


def stop(server: Server) -> str:
    """Wait for a terminated server to exit; what is wrong with how it went, or ""."""
    try:
        status = server.process.wait(START_S)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(START_S)
        return f"did not stop within {START_S:.0f} s of SIGTERM"
    log = server.log()
    if not server.ready:  # stopped while starting (a test skipped); or it failed, and said so
        return ""
    # uvicorn shuts down gracefully, then re-raises SIGTERM: -15 is a clean exit too.
    if status not in (0, -signal.SIGTERM) or "Application shutdown complete." not in log:
        return f"exited with status {status}:\n{log}"
    if "Traceback" in log or re.search(r'" 5\d\d ', log):
        return f"logged an error or answered 5xx:\n{log}"
    return ""


#: The servers of this module, started side by side: name -> DOORMAN_* settings.
SERVERS: dict[str, dict[str, str]] = {
    "main": {},  # most tests: registration off, first admin made by ``admin_session``
    "first_run": {},  # the set-up test alone
    "open": {"allow_registration": "1"},  # the registration test alone
}


@pytest.fixture(scope="module")
def booting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    """Every server in ``SERVERS``, started, not yet answering; each must stop cleanly."""
    started: dict[str, Server] = {}
    try:
        for name, settings in SERVERS.items():
            started[name] = start(tmp_path_factory.mktemp(name), **settings)
        yield started
    finally:
        for running in started.values():
            running.process.terminate()
        problems = {name: stop(running) for name, running in started.items()}
    failed = {name: problem for name, problem in problems.items() if problem}
    assert not failed, failed


@pytest.fixture(scope="module")
def servers(booting: dict[str, Server], browser: Browser) -> dict[str, Server]:
    """The servers, answering; Chromium starts meanwhile (``browser``), to save time."""
    for running in booting.values():
        wait_until_healthy(running)
    return booting


@pytest.fixture(scope="module")
def server(servers: dict[str, Server]) -> Server:
    return servers["main"]


# -- the browser -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if PLAYWRIGHT_MISSING is not None:
        _missing("Playwright (pip install playwright)", PLAYWRIGHT_MISSING)
    if not Path(CHROMIUM).is_file():
        missing = FileNotFoundError(f"no {CHROMIUM}; apt-get install chromium")
        _missing("Chromium", missing)
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox"], headless=True, timeout=10_000
            )
        except PlaywrightError as error:
            _missing(f"Chromium at {CHROMIUM}", error)
        yield launched
        launched.close()


@pytest.fixture
def new_page(browser: Browser) -> Iterator[PageFactory]:
    """Open a page in a fresh context (own cookies) on a server; all closed after the test."""
    contexts: list[BrowserContext] = []

    def open_page(on: Server, **options: Any) -> Page:
        context = browser.new_context(base_url=on.url, **options)
        context.set_default_timeout(WAIT_MS)
        context.set_default_navigation_timeout(WAIT_MS)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


# -- what a person does ----------------------------------------------------------------


def fill_new_account(page: Page, username: str, password: str, again: str | None = None) -> None:
    """The registration form (and its set-up twin)."""
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Password again").fill(password if again is None else again)


def sign_in(page: Page, username: str, password: str = PASSWORD) -> None:
    page.goto("/-/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/-/account$"))


def create_user(admin_page: Page, username: str) -> None:
    """Through the "New user" form of /-/admin/users; lands on the user's page."""
    admin_page.goto("/-/admin/users")
    form = admin_page.get_by_role("form", name="New user")
    form.get_by_label("Username").fill(username)
    form.get_by_label("Password", exact=True).fill(PASSWORD)
    form.get_by_label("Password again").fill(PASSWORD)
    form.get_by_role("button", name="Create user").click()
    expect(admin_page).to_have_url(re.compile(rf"/-/admin/users/{username}\?done=created$"))
    expect(admin_page.get_by_role("status")).to_have_text("User created.")


def header(page: Page) -> Locator:
    return page.get_by_role("banner")


def expect_login_page(page: Page) -> None:
    expect(page).to_have_url(re.compile(r"/-/login(\?|$)"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


@pytest.fixture(scope="module")
def admin_session(server: Server, browser: Browser) -> dict[str, Any]:
    """The first admin of ``server``, "root", made through the printed set-up link.

    Set-up signs the admin in; the cookies are kept (a Playwright storage state)
    so that tests which only need an admin start signed in, each in its own context
    but all in this one session: no test may sign it out.
    """
    assert server.setup_url, "doorman serve printed no set-up link"
    context = browser.new_context(base_url=server.url)
    try:
        context.set_default_timeout(WAIT_MS)
        page = context.new_page()
        page.goto(server.setup_url)
        fill_new_account(page, "root", PASSWORD)
        page.get_by_role("button", name="Create the admin account").click()
        expect(page).to_have_url(re.compile(r"/-/admin/users$"))
        create_user(page, "alice")  # for ``member``
        state: dict[str, Any] = dict(context.storage_state())
    finally:
        context.close()
    return state


@pytest.fixture(scope="module")
def admin(admin_session: dict[str, Any]) -> str:
    return "root"


@pytest.fixture(scope="module")
def member(admin_session: dict[str, Any]) -> str:
    """An ordinary user, made by the admin through the admin form."""
    return "alice"


@pytest.fixture
def admin_page(server: Server, admin_session: dict[str, Any], new_page: PageFactory) -> Page:
    """A fresh context with the admin's cookie."""
    return new_page(server, storage_state=admin_session)


# -- colours ---------------------------------------------------------------------------


def luminance(css_color: str) -> float:
    """WCAG relative luminance of an ``rgb()``/``rgba()`` computed colour."""
    red, green, blue = (float(c) / 255 for c in re.findall(r"[\d.]+", css_color)[:3])

    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * linear(red) + 0.7152 * linear(green) + 0.0722 * linear(blue)


def contrast(one: str, other: str) -> float:
    high, low = sorted((luminance(one), luminance(other)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def colors(page: Page, selector: str) -> tuple[str, str]:
    """(background, text) colours computed for the first element matching ``selector``."""
    found = page.locator(selector).first.evaluate(
        "e => [getComputedStyle(e).backgroundColor, getComputedStyle(e).color]"
    )
    return found[0], found[1]


# -- 1. set-up -------------------------------------------------------------------------


def test_setup_link_creates_the_first_admin_once(
    servers: dict[str, Server], new_page: PageFactory
) -> None:
    fresh = servers["first_run"]
    assert fresh.setup_url and fresh.setup_url.startswith(f"{fresh.url}/-/setup?token=")
    page = new_page(fresh)
    page.goto(fresh.setup_url)
    expect(page).to_have_title(re.compile(r"^Set up doorman"))

    fill_new_account(page, "root", "password")
    page.get_by_role("button", name="Create the admin account").click()
    password = page.get_by_label("Password", exact=True)  # the message is beside the field
    expect(password).to_be_focused()
    expect(password).to_have_accessible_description(
        re.compile(
            r"^This password is shorter than 10 characters\. .*"
            r"This password is one of the 20,000 most common passwords\."
        )
    )
    expect(page.get_by_label("Username")).to_have_value("root")
    expect(password).to_have_value("")

    fill_new_account(page, "root", PASSWORD)
    page.get_by_role("button", name="Create the admin account").click()
    expect(page).to_have_url(re.compile(r"/-/admin/users$"))
    expect(page.get_by_role("heading", name="Users", exact=True)).to_be_visible()
    expect(header(page).get_by_role("link", name="root")).to_be_visible()
    expect(page.get_by_role("cell", name="root", exact=True)).to_be_visible()

    again = page.goto(fresh.setup_url)
    assert again is not None and again.status == 404
    expect(page.get_by_text("This set-up link is not valid")).to_be_visible()


# -- 2. sign in, sign out --------------------------------------------------------------


def test_sign_in_and_out(server: Server, admin: str, new_page: PageFactory) -> None:
    page = new_page(server)
    page.goto("/-/admin/users")  # signed out: sent to sign in, and back afterwards
    expect_login_page(page)
    page.get_by_label("Username").fill(admin)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/-/admin/users$"))
    expect(header(page).get_by_role("link", name="Admin")).to_be_visible()
    expect(header(page).get_by_role("link", name=admin)).to_be_visible()

    header(page).get_by_role("button", name="Sign out").click()
    expect_login_page(page)
    expect(page.get_by_role("status")).to_have_text("You have signed out.")
    expect(header(page).get_by_role("button", name="Sign out")).to_have_count(0)
    page.go_back()  # the admin page is not kept: the browser asks again, and is sent to sign in
    expect_login_page(page)
    expect(page.get_by_role("heading", name="Users")).to_have_count(0)
    page.goto("/-/account")
    expect_login_page(page)


# -- 3. a wrong password ---------------------------------------------------------------


def test_wrong_password_keeps_the_username_and_not_the_password(
    server: Server, member: str, new_page: PageFactory
) -> None:
    wrong = "Wrong-Guess-4711"
    page = new_page(server)
    page.goto("/-/login")
    page.get_by_label("Username").fill(member)
    page.get_by_label("Password").fill(wrong)
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    expect_login_page(page)
    expect(page.get_by_label("Username")).to_have_value(member)
    expect(page.get_by_label("Password")).to_have_value("")
    assert wrong not in page.content() and wrong not in page.url
    # The username field has the focus and points at the message; Tab, type, Enter.
    expect(page.get_by_label("Username")).to_be_focused()
    expect(page.get_by_label("Username")).to_have_attribute("aria-describedby", "form-errors")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/-/account$"))


# -- 4. registration -------------------------------------------------------------------


def test_registration_is_off_by_default(server: Server, new_page: PageFactory) -> None:
    page = new_page(server)
    answer = page.goto("/-/register")
    assert answer is not None and answer.status == 404
    expect(page.get_by_role("heading", name="Not available")).to_be_visible()
    expect(page.get_by_text("Registration is closed on this site.")).to_be_visible()
    page.get_by_role("link", name="Sign in").click()
    expect_login_page(page)
    expect(page.get_by_role("link", name="Create one")).to_have_count(0)


def test_registration_when_allowed(servers: dict[str, Server], new_page: PageFactory) -> None:
    open_server = servers["open"]
    page = new_page(open_server)
    page.goto("/-/login")
    page.get_by_role("link", name="Create one").click()
    expect(page).to_have_url(re.compile(r"/-/register$"))
    expect(page.get_by_role("heading", name="Create an account")).to_be_visible()
    fill_new_account(page, "erin", PASSWORD)
    page.get_by_label("Email").fill("erin@example.com")
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/-/account\?done=created$"))
    expect(page.get_by_role("status")).to_have_text(
        "Your account was created, and you are signed in."
    )
    expect(page.get_by_role("heading", name="erin")).to_be_visible()
    expect(header(page).get_by_role("link", name="Admin")).to_have_count(0)


def test_new_user_errors_sit_beside_their_fields(admin_page: Page) -> None:
    """The New user form is at the bottom of the list: the page opens on its first error."""
    admin_page.set_viewport_size({"width": 1024, "height": 500})
    admin_page.goto("/-/admin/users")
    form = admin_page.get_by_role("form", name="New user")
    form.get_by_label("Username").fill("bad name")
    form.get_by_label("Password", exact=True).fill("short")
    form.get_by_label("Password again").fill("different")
    form.get_by_role("button", name="Create user").click()

    form = admin_page.get_by_role("form", name="New user")
    username = form.get_by_label("Username")
    expect(username).to_be_focused()
    expect(username).to_be_in_viewport()
    expect(username).to_have_accessible_description(re.compile(r"^A username is 1 to 150"))
    expect(form.get_by_label("Password", exact=True)).to_have_accessible_description(
        re.compile(r"^This password is shorter than 10 characters\..* Between 10 and 1,024")
    )
    expect(form.get_by_label("Password again")).to_have_accessible_description(
        "The two passwords differ."
    )
    expect(form.get_by_label("Groups")).to_have_accessible_description("")
    expect(admin_page.get_by_role("alert")).to_have_count(0)
    expect(username).to_have_value("bad name")


# -- 5. a password change ends the other sessions --------------------------------------


def test_password_change_signs_out_the_other_session(
    server: Server, admin_page: Page, new_page: PageFactory
) -> None:
    create_user(admin_page, "dave")
    here, elsewhere = new_page(server), new_page(server)
    sign_in(here, "dave")
    sign_in(elsewhere, "dave")

    form = here.get_by_role("form", name="Change password")
    form.get_by_label("Current password").fill(PASSWORD)
    form.get_by_label("New password", exact=True).fill(PASSWORD + " two")
    form.get_by_label("New password again").fill(PASSWORD + " two")
    form.get_by_role("button", name="Change password").click()
    expect(here.get_by_role("status")).to_have_text(
        "Password changed. Every other session of yours was signed out."
    )

    elsewhere.reload()
    expect_login_page(elsewhere)
    here.goto("/-/account")  # not reload(): that would post the form again
    expect(here).to_have_url(re.compile(r"/-/account$"))
    expect(here.get_by_role("heading", name="dave")).to_be_visible()


# -- 6. an admin disables a user -------------------------------------------------------


def test_disabled_user_is_signed_out(
    server: Server, admin_page: Page, new_page: PageFactory
) -> None:
    create_user(admin_page, "bob")
    bob = new_page(server)
    sign_in(bob, "bob")

    admin_page.get_by_role("button", name="Disable").click()
    expect(admin_page.get_by_role("status")).to_have_text(
        "User disabled and signed out everywhere."
    )
    expect(admin_page.get_by_role("row", name="Status")).to_contain_text("disabled")

    bob.goto("/-/account")
    expect_login_page(bob)
    bob.get_by_label("Username").fill("bob")
    bob.get_by_label("Password").fill(PASSWORD)
    bob.get_by_role("button", name="Sign in").click()
    expect(bob.get_by_role("alert")).to_have_text("Wrong username or password.")
    expect_login_page(bob)


# -- 7. the keyboard alone -------------------------------------------------------------


def test_keyboard_only_sign_in(server: Server, member: str, new_page: PageFactory) -> None:
    page = new_page(server)
    page.goto("/-/login")
    username = page.get_by_label("Username")
    expect(username).to_be_focused()  # autofocus
    # Backwards from the field: the site name, then the skip link, shown when focused.
    page.keyboard.press("Shift+Tab")
    expect(header(page).get_by_role("link", name="doorman")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    # Forwards again, through the fields to the button; Enter submits.
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(username).to_be_focused()
    page.keyboard.type(member)
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Tab")
    expect(page.get_by_label("Keep me signed in")).to_be_focused()
    page.keyboard.press("Space")
    expect(page.get_by_label("Keep me signed in")).to_be_checked()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Sign in")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/-/account$"))
    expect(page.get_by_role("heading", name=member)).to_be_visible()


# -- 8. dark mode ----------------------------------------------------------------------


def test_dark_mode_is_readable(server: Server, new_page: PageFactory) -> None:
    page = new_page(server)
    page.emulate_media(color_scheme="dark")
    page.goto("/-/login")
    page.get_by_label("Username").fill("nobody-here")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()  # so that the error shows too
    expect(page.get_by_role("alert")).to_be_visible()

    background, text = colors(page, "body")
    assert luminance(background) < 0.05, background
    assert luminance(text) > 0.7, text
    assert contrast(background, text) >= 7, (background, text)
    field_background, field_text = colors(page, "#username")
    assert luminance(field_background) < 0.05 and contrast(field_background, field_text) >= 7
    button_background, button_text = colors(page, "button[type=submit]")
    assert contrast(button_background, button_text) >= 4.5, (button_background, button_text)
    card_background, _ = colors(page, "form.card")
    _, error_text = colors(page, "[role=alert]")
    assert contrast(background, error_text) >= 4.5, (background, error_text)
    assert contrast(card_background, text) >= 7, (card_background, text)

    page.emulate_media(color_scheme="light")
    light_background, light_text = colors(page, "body")
    assert luminance(light_background) > 0.8 and contrast(light_background, light_text) >= 7


# -- 9. a narrow screen ----------------------------------------------------------------


NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth"


def test_login_fits_a_narrow_screen(server: Server, new_page: PageFactory) -> None:
    page = new_page(server, viewport={"width": 375, "height": 700})
    page.goto("/-/login")
    assert page.evaluate(NO_SIDEWAYS_SCROLL)
    for control in (
        page.get_by_label("Username"),
        page.get_by_label("Password"),
        page.get_by_role("button", name="Sign in"),
    ):
        box = control.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375, box


def test_signed_in_pages_fit_a_narrow_screen(
    server: Server, admin_session: dict[str, Any], new_page: PageFactory
) -> None:
    page = new_page(server, viewport={"width": 375, "height": 700}, storage_state=admin_session)
    for path in (
        "/-/account",
        "/-/admin/users",
        "/-/admin/users/root",
        "/-/admin/sessions",
        "/-/admin/events",
    ):
        page.goto(path)
        widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert page.evaluate(NO_SIDEWAYS_SCROLL), (path, widths)


# -- 10. no console errors, no CSP violations ------------------------------------------


#: Runs before the page's own scripts (there are none) and records CSP violations.
RECORD_CSP = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


def test_pages_log_no_errors_and_break_no_csp(
    server: Server, admin: str, new_page: PageFactory
) -> None:
    page = new_page(server)
    page.add_init_script(RECORD_CSP)
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):  # CSP violations are logged as errors
            problems.append(f"console {message.type}: {message.text}")

    def on_response(answer: Response) -> None:
        if answer.status >= 400:
            problems.append(f"{answer.status}: {answer.url}")

    page.on("console", on_console)
    page.on("response", on_response)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))

    def on_failed(request: Request) -> None:
        # Chromium fetches the favicon on its own time; the next page.goto can cancel
        # that fetch (net::ERR_ABORTED), which says nothing about the page.
        if request.failure == "net::ERR_ABORTED" and request.url.endswith("/favicon.svg"):
            return
        problems.append(f"failed: {request.url} ({request.failure})")

    page.on("requestfailed", on_failed)

    def visit(path: str) -> None:
        page.goto(path)
        background, _ = colors(page, "body")
        assert background != "rgba(0, 0, 0, 0)", f"{path}: the stylesheet did not apply"
        violations = page.evaluate("window.__cspViolations")
        assert violations == [], f"{path}: {violations}"

    visit("/-/login")
    sign_in(page, admin)
    for path in (
        "/-/account",
        "/-/admin/users",
        "/-/admin/users/root",
        "/-/admin/sessions",
        "/-/admin/tokens",
        "/-/admin/events",
        "/-/admin/events?kind=signed-in&since=7d",
    ):
        visit(path)
    assert problems == []


def test_the_event_log_shows_sign_ins_and_filters_by_label(
    server: Server, admin: str, admin_page: Page
) -> None:
    """The admin's own sign-in is in the log; the filter form works by its labels."""
    admin_page.add_init_script(RECORD_CSP)
    admin_page.goto("/-/admin/users")
    admin_page.get_by_role("navigation", name="Administration").get_by_role(
        "link", name="Events"
    ).click()
    expect(admin_page.get_by_role("heading", name="Security events")).to_be_visible()
    admin_page.get_by_label("User (account or actor)").fill(admin)
    admin_page.get_by_label("Kind").select_option(label="Signed in")
    admin_page.get_by_label("Since").fill("1d")
    admin_page.get_by_role("button", name="Filter").click()
    expect(admin_page).to_have_url(
        re.compile(r"/-/admin/events\?user=root&kind=signed-in&since=1d")
    )
    rows = admin_page.get_by_role("row").filter(
        has=admin_page.get_by_role("cell", name="Signed in")
    )
    expect(rows.first).to_be_visible()
    expect(rows.first.get_by_role("cell", name=admin, exact=True)).to_be_visible()
    admin_page.get_by_label("Since").fill("banana")
    admin_page.get_by_role("button", name="Filter").click()
    expect(admin_page.get_by_role("alert")).to_contain_text("'banana' is not a time")
    assert admin_page.evaluate("window.__cspViolations") == []


# -- 11. the screenshot in the docs ----------------------------------------------------


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_login_page_screenshot(server: Server, new_page: PageFactory) -> None:
    page = new_page(server, viewport={"width": 1000, "height": 700}, color_scheme="light")
    page.goto("/-/login")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    background, _ = colors(page, "body")
    assert luminance(background) > 0.8, "the light stylesheet did not apply"
    picture = page.screenshot()
    assert png_size(picture) == (1000, 700)
    if UPDATE_SCREENSHOTS:
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        SCREENSHOT.write_bytes(picture)
    assert SCREENSHOT.is_file(), f"{SCREENSHOT} is missing: run with DOORMAN_UPDATE_SCREENSHOTS=1"
    assert png_size(SCREENSHOT.read_bytes()) == (1000, 700)


# -- tabs and sessions that ended elsewhere: what a person runs into -------------------


def two_tabs(server: Server, username: str, new_page: PageFactory) -> tuple[Page, Page]:
    """Two tabs of one browser, signed in; the first signs out, the second is left open."""
    first = new_page(server)
    sign_in(first, username)
    second = first.context.new_page()
    second.goto("/-/account")
    header(first).get_by_role("button", name="Sign out").click()
    expect_login_page(first)
    return first, second


def offers_sign_in(page: Page) -> None:
    """The login form, or at least a link to it."""
    way = page.get_by_role("heading", name="Sign in").or_(
        page.get_by_role("link", name=re.compile(r"sign in", re.IGNORECASE))
    )
    expect(way.first).to_be_visible(timeout=1_000)  # the page has loaded: no need to wait


def test_form_posted_after_signing_out_elsewhere_offers_sign_in(
    server: Server, member: str, new_page: PageFactory
) -> None:
    _, stale = two_tabs(server, member, new_page)
    stale.get_by_label("Name").fill("laptop")
    with stale.expect_navigation():
        stale.get_by_role("button", name="Create token").click()
    offers_sign_in(stale)


def test_sign_out_in_a_stale_tab_lands_on_the_login_page(
    server: Server, member: str, new_page: PageFactory
) -> None:
    _, stale = two_tabs(server, member, new_page)
    with stale.expect_navigation():
        header(stale).get_by_role("button", name="Sign out").click()
    assert re.search(r"/-/login(\?|$)", stale.url), (stale.url, stale.title())


def test_sign_in_from_a_second_login_tab(
    server: Server, member: str, new_page: PageFactory
) -> None:
    first = new_page(server)
    second = first.context.new_page()
    second.goto("/-/login")
    sign_in(first, member)
    second.get_by_label("Username").fill(member)
    second.get_by_label("Password").fill(PASSWORD)
    with second.expect_navigation():
        second.get_by_role("button", name="Sign in").click()
    assert re.search(r"/-/account$", second.url), (second.url, second.title())


def test_member_on_an_admin_page_keeps_the_site_header(
    server: Server, member: str, new_page: PageFactory
) -> None:
    page = new_page(server)
    sign_in(page, member)
    answer = page.goto("/-/admin/users")
    assert answer is not None and answer.status == 403
    expect(header(page).get_by_role("button", name="Sign out")).to_be_visible(timeout=1_000)
