"""The sign-in pages over HTTP: the login page's CSP, where a sign-in lands, notices,
and "Keep me signed in". The same in a real browser: test_browser_signin.py.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from doorman._types import Receive, Scope, Send
from doorman.config import load_settings
from doorman.exceptions import ConfigError
from doorman.server.app import create_app
from doorman.server.redirects import NextSigner, origin_of

from .conftest import SECRET
from .helpers import COOKIE, client, parse_set_cookie
from .test_server import HTML, PASSWORD, Server, browse, csrf_token, running, server, sign_in

pytestmark = pytest.mark.anyio
__all__ = ["server"]  # the fixture, shared with test_server.py

SIGNER = NextSigner([SECRET])
APP = "https://app.example.com:8443/reports?x=1"


def form_action(response: httpx.Response) -> list[str]:
    """The sources of the answer's CSP ``form-action``."""
    for directive in response.headers["content-security-policy"].split(";"):
        name, *sources = directive.split()
        if name == "form-action":
            return sources
    raise AssertionError("no form-action in the CSP")


def signed(url: str) -> dict[str, str]:
    return {"next": url, "next_sig": SIGNER.sign(url)}


# -- the CSP: the login form may lead to its one validated destination ------------------


async def test_the_login_page_names_its_signed_destination_in_form_action(server: Server) -> None:
    async with browse(server) as browser:
        plain = await browser.get("/-/login", headers=HTML)
        assert form_action(plain) == ["'self'"]
        page = await browser.get("/-/login", params=signed(APP), headers=HTML)
        assert form_action(page) == ["'self'", "https://app.example.com:8443"]
        assert 'name="next_sig"' in page.text
        # After a wrong password the page is drawn again: the way on stays open.
        data = {"username": "alice", "password": "wrong", "csrftoken": await csrf_token(browser)}
        again = await browser.post("/-/login", data={**data, **signed(APP)}, headers=HTML)
        assert again.status_code == 401
        assert form_action(again) == ["'self'", "https://app.example.com:8443"]
        done = await sign_in(browser, **signed(APP))
        assert done.status_code == 302 and done.headers["location"] == APP
        account = await browser.get("/-/account", headers=HTML)
        assert form_action(account) == ["'self'"], "every other page keeps 'self' alone"


@pytest.mark.parametrize(
    "query",
    [
        {"next": APP},  # not signed
        {"next": APP, "next_sig": "forged"},
        signed("https://evil.example/x"),  # signed, but not an allowed host
        signed("http://a;b.example.com/x"),  # an allowed host, in no form a CSP can name
        signed("http://app.example.com:99999/x"),
        {"next": "/reports"},  # this site: 'self' covers it
    ],
    ids=["unsigned", "forged", "foreign", "not-plain", "bad-port", "path"],
)
async def test_no_other_next_widens_form_action(server: Server, query: dict[str, str]) -> None:
    async with browse(server) as browser:
        page = await browser.get("/-/login", params=query, headers=HTML)
        assert page.status_code == 200
        assert form_action(page) == ["'self'"]
        done = await sign_in(browser, **query)
    location = done.headers["location"]
    assert location == (query["next"] if query["next"] == "/reports" else "/-/account")


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://App.Example.com/x?y#z", "https://app.example.com"),
        ("https://app.example.com:443/", "https://app.example.com"),
        ("http://app.example.com:80/", "http://app.example.com"),
        ("http://127.0.0.1:8001/reports", "http://127.0.0.1:8001"),
        ("https://user@app.example.com:8443/", None),  # credentials: not a plain origin
        ("/reports", None),
        ("javascript:alert(1)", None),
        ("ftp://app.example.com/", None),
        ("http://[::1]:8000/", None),
        ("http://[::1/", None),
        ("http://app.example.com:x/", None),
        ("http://a'b.example.com/", None),
        ("http://a;b.example.com/", None),
        ("http://-app.example.com/", None),
    ],
)
def test_origin_of(url: str, origin: str | None) -> None:
    assert origin_of(url) == origin


# -- where a sign-in without next lands: login_redirect ----------------------------------


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


async def test_protect_lands_on_the_app_and_serve_on_the_account(tmp_path: Path) -> None:
    async with running(tmp_path) as found:
        await found.doorman.create_user("alice", PASSWORD)
        served = create_app(found.settings, doorman=found.doorman, store=found.store)
        async with client(served) as browser:
            assert (await sign_in(browser)).headers["location"] == "/-/account"
        protected = create_app(
            found.settings, doorman=found.doorman, store=found.store, protected=hello
        )
        async with client(protected) as browser:
            assert (await sign_in(browser)).headers["location"] == "/"
            assert (await sign_in(browser, next="/reports")).headers["location"] == "/reports"


@pytest.mark.parametrize("landing", ["/welcome?new=1", "https://app.example.com/home"])
async def test_login_redirect_is_where_a_sign_in_without_next_lands(
    tmp_path: Path, landing: str
) -> None:
    options = {"allowed_origins": ["https://app.example.com"], "login_redirect": landing}
    async with running(tmp_path, **options) as found, browse(found) as browser:
        await found.doorman.create_user("alice", PASSWORD)
        page = await browser.get("/-/login", headers=HTML)
        absolute = landing.startswith("https:")
        assert form_action(page) == ["'self'", "https://app.example.com"][: 1 + absolute]
        assert 'name="next"' not in page.text
        assert (await sign_in(browser)).headers["location"] == landing
        assert (await sign_in(browser, next="/reports")).headers["location"] == "/reports"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"login_redirect": "https://evil.example/"}, "a URL must be on an allowed origin"),
        (  # under cookie_domain is not enough: the origin must be listed
            {"login_redirect": "https://app.example.com/", "cookie_domain": "example.com"},
            "or one of allowed_origins",
        ),
        (  # the host is listed, on another port
            {
                "login_redirect": "https://app.example.com:8443/",
                "allowed_origins": ["https://app.example.com"],
            },
            "or one of allowed_origins",
        ),
        ({"login_redirect": "/%2F%2Fevil.example"}, "give a path on this site"),
    ],
)
def test_login_redirect_elsewhere_is_refused_at_start_up(
    tmp_path: Path, settings: dict[str, Any], message: str
) -> None:
    overrides = {"db": str(tmp_path / "doorman.db"), "secret": SECRET, **settings}
    with pytest.raises(ConfigError, match="login_redirect = ") as refused:
        create_app(load_settings(environ={}, overrides=overrides))
    assert message in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize(
    "value",
    ["//evil.example/", "javascript:alert(1)", "ftp://app.example.com/", "/a#b", "reports", "/a b"],
)
def test_login_redirect_must_be_a_path_or_an_http_url(value: str) -> None:
    with pytest.raises(ConfigError, match=r"login_redirect = .*give a path on this site"):
        load_settings(environ={"DOORMAN_LOGIN_REDIRECT": value})


# -- notices -------------------------------------------------------------------------------


async def test_sign_out_says_so_on_the_login_page(server: Server) -> None:
    async with browse(server) as browser:
        await sign_in(browser)
        out = await browser.post("/-/logout", data={"csrftoken": await csrf_token(browser)})
        assert (out.status_code, out.headers["location"]) == (303, "/-/login?done=signed-out")
        page = await browser.get(out.headers["location"], headers=HTML)
        assert '<div class="alert notice" role="status"><p>You have signed out.</p>' in page.text
        for done in ("", "created", "<script>alert(1)</script>", "signed-out%00"):
            other = await browser.get("/-/login", params={"done": done}, headers=HTML)
            assert 'role="status"' not in other.text and "alert(1)" not in other.text


async def test_registration_says_the_account_was_created(tmp_path: Path) -> None:
    async with running(tmp_path, allow_registration=True) as found, browse(found) as browser:
        token = await csrf_token(browser)
        form = {"username": "eve", "password": PASSWORD, "password2": PASSWORD, "csrftoken": token}
        made = await browser.post("/-/register", data=form)
        assert (made.status_code, made.headers["location"]) == (303, "/-/account?done=created")
        page = await browser.get(made.headers["location"], headers=HTML)
        assert "Your account was created, and you are signed in." in page.text
        plain = await browser.get("/-/account?done=token", headers=HTML)
        assert 'role="status"' not in plain.text, "no token notice without a token"


# -- Keep me signed in ---------------------------------------------------------------------


def expiry_in_store(found: Server) -> float:
    """When the one session ends on the server (the memory store keeps it)."""
    [(_, expires_at)] = found.store._sessions.values()  # type: ignore[attr-defined]
    return float(expires_at)


async def test_keep_me_signed_in_unchecked_ends_with_the_browser(tmp_path: Path) -> None:
    options = {"sessions": "memory", "session_max_age": "1h", "idle_timeout": "10m"}
    async with running(tmp_path, **options) as found, browse(found) as browser:
        await found.doorman.create_user("alice", PASSWORD)
        page = await browser.get("/-/login", headers=HTML)
        assert '<input id="remember" name="remember" type="checkbox" value="on">' in page.text
        started = time.time()
        signed_in = await sign_in(browser)
        _, _, attributes = cookie_set(signed_in)
        assert "max-age" not in attributes and "expires" not in attributes
        assert started + 600 - 5 <= expiry_in_store(found) <= time.time() + 600, "idle_timeout"


async def test_keep_me_signed_in_checked_lasts_max_age(tmp_path: Path) -> None:
    async with running(tmp_path, sessions="memory", session_max_age="1h") as found:
        await found.doorman.create_user("alice", PASSWORD)
        async with browse(found) as browser:
            wrong = {"username": "alice", "password": "wrong", "remember": "on"}
            again = await browser.post(
                "/-/login", data={**wrong, "csrftoken": await csrf_token(browser)}, headers=HTML
            )
            assert 'type="checkbox" value="on" checked>' in again.text, "the box stays ticked"
            started = time.time()
            _, _, attributes = cookie_set(await sign_in(browser, remember="on"))
            assert attributes["max-age"] == "3600"
            assert started + 3600 - 5 <= expiry_in_store(found) <= time.time() + 3600
        await found.store.flush()
        async with browse(found) as browser:  # unchecked, no idle_timeout: max_age still ends it
            started = time.time()
            _, _, attributes = cookie_set(await sign_in(browser))
            assert "max-age" not in attributes
            assert started + 3600 - 5 <= expiry_in_store(found) <= time.time() + 3600


@pytest.mark.parametrize(
    ("extra", "remembered"),
    [
        ({}, True),
        ({"remember": True}, True),
        ({"remember": False}, False),
        ({"remember": "0"}, False),
    ],
    ids=["unsaid", "true", "false", "zero"],
)
async def test_a_json_sign_in_is_remembered_unless_told(
    server: Server, extra: dict[str, Any], remembered: bool
) -> None:
    async with browse(server) as api:
        body = {"username": "alice", "password": PASSWORD, **extra}
        answer = await api.post(
            "/-/login", json=body, headers={"x-csrftoken": await csrf_token(api)}
        )
        assert answer.json()["actor"]["id"] == "alice"
        _, _, attributes = cookie_set(answer)
        assert ("max-age" in attributes) is remembered


def cookie_set(response: httpx.Response) -> tuple[str, str, dict[str, str]]:
    """The session cookie the answer sets (a sign-in sets it and the device cookie only)."""
    cookies = {c[0]: c for c in map(parse_set_cookie, response.headers.get_list("set-cookie"))}
    assert sorted(cookies) == ["doorman_device", COOKIE], cookies
    name, value, attributes = cookies[COOKIE]
    assert value, cookies
    return name, value, attributes


# -- the device cookie ---------------------------------------------------------------------


def device_cookie_set(response: httpx.Response) -> tuple[str, dict[str, str]] | None:
    """The ``doorman_device`` cookie the answer sets: (value, attributes), or None."""
    for header in response.headers.get_list("set-cookie"):
        name, value, attributes = parse_set_cookie(header)
        if name == "doorman_device":
            return value, attributes
    return None


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_a_sign_in_with_the_password_sets_the_device_cookie(
    tmp_path: Path, scheme: str
) -> None:
    options = {"cookie_domain": "example.com", "public_url": f"{scheme}://auth.example.com"}
    async with (
        running(tmp_path, **options) as found,
        client(found.app, base_url=f"{scheme}://auth.example.com") as browser,
    ):
        alice = await found.doorman.create_user("alice", PASSWORD)
        token = await csrf_token(browser)
        wrong = await browser.post(
            "/-/login", data={"username": "alice", "password": "wrong", "csrftoken": token}
        )
        assert wrong.status_code == 401 and device_cookie_set(wrong) is None
        made = device_cookie_set(await sign_in(browser))
        assert made is not None
        value, attributes = made
        assert found.doorman.devices.device_for(value, alice) is not None
    # Only doorman's pages get it, on this host only (no Domain), never scripts.
    expected = {"httponly": "", "max-age": "31536000", "path": "/-/", "samesite": "lax"}
    assert attributes == {**expected, **({"secure": ""} if scheme == "https" else {})}


async def test_a_password_change_gives_this_browser_a_new_mark(server: Server) -> None:
    async with browse(server) as browser:
        old = device_cookie_set(await sign_in(browser))
        assert old is not None
        form = {
            "current_password": PASSWORD,
            "password": "a different horse, stapled",
            "password2": "a different horse, stapled",
            "csrftoken": await csrf_token(browser),
        }
        changed = await browser.post("/-/account/password", data=form)
        assert changed.status_code == 303
        new = device_cookie_set(changed)
    assert new is not None
    alice = await server.doorman.users.require("alice")
    assert server.doorman.devices.device_for(old[0], alice) is None  # every other device
    assert server.doorman.devices.device_for(new[0], alice) is not None
