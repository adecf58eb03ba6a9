"""Sign-in in a real browser when the app is not the sign-in server: the way back.

After a good password the login form is answered with a 302 to where the person
was going. Chromium checks that redirect against the login page's CSP
``form-action``, which an HTTP client ignores; so these tests go through the
real form in Debian's Chromium and fail on any CSP violation:

- an app behind ``ExistingCookiesGate`` on another port than ``doorman serve``;
- the committed nginx example, the app and the sign-in server on two host names
  (``--host-resolver-rules`` sends both to 127.0.0.1);
- ``doorman protect``, where a sign-in without ``next`` lands on the app's ``/``.

Each ends on the app's page, which shows who signed in.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from doorman._types import Receive, Scope, Send
from doorman.gate import ExistingCookiesGate

from .conftest import _missing
from .helpers import COOKIE, free_port
from .servers import PASSWORD, SECRET, Server, add_users, running, start_server
from .test_browser import CHROMIUM, PLAYWRIGHT_MISSING, WAIT_MS
from .test_deploy import doorman_on_loopback, doorman_settings, nginx_example, uvicorn_on_loopback

pytestmark = pytest.mark.e2e

try:
    from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, expect
    from playwright.sync_api import Error as PlaywrightError
except ImportError:  # pragma: no cover - the `test` extra installs it; `browser` skips
    pass

ROOT = Path(__file__).resolve().parent.parent
#: The Debian Chromium flags for tests, and every *.example.com name on loopback.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--host-resolver-rules=MAP *.example.com 127.0.0.1",
]
#: Runs before any script of each page: every CSP violation is reported to the test.
REPORT_CSP = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.reportCspViolation(`${event.violatedDirective} ${event.blockedURI}`);
});
"""

PageFactory = Callable[..., tuple["Page", list[str]]]


# -- the browser, watched --------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if PLAYWRIGHT_MISSING is not None:
        _missing("Playwright (pip install playwright)", PLAYWRIGHT_MISSING)
    if not Path(CHROMIUM).is_file():
        _missing("Chromium", FileNotFoundError(f"no {CHROMIUM}; apt-get install chromium"))
    expect.set_options(timeout=WAIT_MS)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, timeout=10_000
            )
        except PlaywrightError as error:
            _missing(f"Chromium at {CHROMIUM}", error)
        yield launched
        launched.close()


@pytest.fixture
def open_page(browser: Browser) -> Iterator[PageFactory]:
    """A page in a fresh context, and the list of CSP violations it logs (should stay empty)."""
    contexts: list[BrowserContext] = []

    def open_watched(**options: object) -> tuple[Page, list[str]]:
        context = browser.new_context(**options)  # type: ignore[arg-type]
        contexts.append(context)
        context.set_default_timeout(WAIT_MS)
        context.set_default_navigation_timeout(WAIT_MS)
        violations: list[str] = []
        context.expose_function("reportCspViolation", lambda text: violations.append(text))
        context.add_init_script(REPORT_CSP)
        page = context.new_page()

        def on_console(message: ConsoleMessage) -> None:
            if "Content Security Policy" in message.text or "violates" in message.text:
                violations.append(f"console {message.type}: {message.text}")

        page.on("console", on_console)
        return page, violations

    yield open_watched
    for context in contexts:
        context.close()


def sign_in_through_the_form(page: Page, password: str = PASSWORD) -> None:
    expect(page).to_have_url(re.compile(r"/-/login(\?|$)"))
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def expect_to_arrive(page: Page, url: str, violations: list[str]) -> None:
    """On ``url``, the app's page greeting alice, and no CSP violation on the way."""
    try:
        expect(page).to_have_url(url)
    finally:  # a blocked redirect leaves the page where it was: say why
        assert violations == [], violations
    expect(page.get_by_role("heading", name="Hello, alice")).to_be_visible()


# -- the app behind the gate or the proxy ----------------------------------------------


async def hello_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Greets the actor the gate set, or the user nginx named in ``X-Doorman-User``."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    actor = scope.get("actor") or {}
    name = actor.get("username") or dict(scope["headers"]).get(b"x-doorman-user", b"").decode()
    body = f"<!doctype html><title>App</title><h1>Hello, {html.escape(name)}</h1>".encode()
    headers = [(b"content-type", b"text/html; charset=utf-8")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# -- (a) ExistingCookiesGate on another port --------------------------------------------


#: Where the gated app listens: the sign-in server must allow its origin, port included.
GATED_PORT = free_port()


@pytest.fixture(scope="module")
def sign_in_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``doorman serve`` whose public_url is its own address; alice may sign in."""
    directory = tmp_path_factory.mktemp("serve")
    db = str(directory / "doorman.db")
    add_users(db, "alice")
    port = free_port()
    public_url, gated = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{GATED_PORT}"
    server = start_server(directory, port=port, db=db, public_url=public_url, allowed_origins=gated)
    with running(server):
        yield server


def test_a_sign_in_returns_to_a_gated_app_on_another_port(
    sign_in_server: Server, open_page: PageFactory
) -> None:
    url = sign_in_server.url
    gate = ExistingCookiesGate(
        hello_app,
        api_url=f"{url}/-/whoami",
        auth_redirect_url=f"{url}/-/login",
        original_cookies=[COOKIE],
        secret=SECRET,
    )
    with uvicorn_on_loopback(gate, GATED_PORT, lifespan="on") as app_port:
        wanted = f"http://127.0.0.1:{app_port}/reports?x=1"
        page, violations = open_page()
        page.goto(wanted)
        sign_in_through_the_form(page, "a wrong password")  # the page drawn again keeps the way
        expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
        sign_in_through_the_form(page)
        expect_to_arrive(page, wanted, violations)


# -- (b) the nginx example, two host names ---------------------------------------------


def test_a_sign_in_returns_through_the_nginx_example_to_another_host(
    tmp_path: Path, open_page: PageFactory
) -> None:
    port = free_port()
    app, auth = f"https://app.example.com:{port}", f"https://auth.example.com:{port}"
    settings = doorman_settings(tmp_path, auth, secure=True)
    with (
        doorman_on_loopback(settings) as doorman_port,
        uvicorn_on_loopback(hello_app, lifespan="on") as app_port,
        nginx_example(tmp_path, port, doorman_port=doorman_port, app_port=app_port),
    ):
        wanted = f"{app}/reports?x=1"
        page, violations = open_page(ignore_https_errors=True)  # a self-signed certificate
        page.goto(wanted)
        expect(page).to_have_url(re.compile(rf"^{re.escape(auth)}/-/login\?next="))
        sign_in_through_the_form(page)
        expect_to_arrive(page, wanted, violations)


# -- (c) doorman protect ---------------------------------------------------------------


@pytest.fixture(scope="module")
def protect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``doorman protect examples.members:app``; alice may sign in."""
    directory = tmp_path_factory.mktemp("protect")
    db = str(directory / "doorman.db")
    add_users(db, "alice")
    command = ("protect", "examples.members:app", "--app-dir", str(ROOT))
    server = start_server(directory, command=command, db=db)
    with running(server):
        yield server


def test_a_sign_in_returns_to_the_protected_page(
    protect_server: Server, open_page: PageFactory
) -> None:
    page, violations = open_page()
    wanted = f"{protect_server.url}/reports?x=1"
    page.goto(wanted)
    sign_in_through_the_form(page)
    expect_to_arrive(page, wanted, violations)


def test_a_sign_in_without_next_lands_on_the_protected_app(
    protect_server: Server, open_page: PageFactory
) -> None:
    page, violations = open_page()
    page.goto(f"{protect_server.url}/-/login")
    sign_in_through_the_form(page)
    expect_to_arrive(page, f"{protect_server.url}/", violations)


# -- Keep me signed in -----------------------------------------------------------------


@pytest.mark.parametrize("remember", [False, True], ids=["unticked", "ticked"])
def test_keep_me_signed_in(sign_in_server: Server, open_page: PageFactory, remember: bool) -> None:
    page, violations = open_page()
    page.goto(f"{sign_in_server.url}/-/login")
    if remember:
        page.get_by_label("Keep me signed in").check()
    started = time.time()
    sign_in_through_the_form(page)
    expect(page).to_have_url(f"{sign_in_server.url}/-/account")
    [cookie] = [c for c in page.context.cookies() if c["name"] == COOKIE]
    if remember:  # session_max_age: 14 days by default
        assert started + 14 * 86400 - 60 <= cookie["expires"] <= time.time() + 14 * 86400 + 1
    else:
        assert cookie["expires"] == -1, "a cookie that ends with the browser session"
    assert violations == []
