"""The pages a person reads, over HTTP in process: errors, the icon, links, lists, edits.

Browser-level checks (copying, narrow screens, the layout) are in test_browser_pages.py.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from doorman import PasswordHasher
from doorman.config import assemble, load_settings
from doorman.core import Doorman
from doorman.server.app import create_app
from doorman.server.devices import UNKNOWN_DEVICE, device_name

from .conftest import SECRET
from .helpers import client, migrated_sqlite

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery staple"
HTML = {"accept": "text/html,application/xhtml+xml"}
JSON = {"accept": "application/json"}
CHROME_ON_LINUX = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
SAFARI_ON_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)


@dataclass
class Server:
    app: Any
    doorman: Doorman


@contextlib.asynccontextmanager
async def running(tmp_path: Path, protected: Any = None, **overrides: Any) -> AsyncIterator[Any]:
    if "db" not in overrides:
        overrides["db"] = migrated_sqlite(tmp_path / "doorman.db")
    options = {"secret": SECRET, **overrides}
    settings = load_settings(environ={}, overrides=options)
    doorman, store = assemble(settings, [SECRET])
    doorman.hasher = doorman.users.hasher = PasswordHasher(time_cost=1, memory_cost=1024)
    await doorman.startup()
    try:
        app = create_app(settings, doorman=doorman, store=store, protected=protected)
        yield Server(app, doorman)
    finally:
        await store.close()
        await doorman.close()
        await doorman.engine.dispose()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running(tmp_path) as found:
        await found.doorman.create_user("alice", PASSWORD, email="alice@example.com")
        await found.doorman.create_user("bob", PASSWORD)
        await found.doorman.create_user("root", PASSWORD, admin=True)
        yield found


async def token_of(browser: httpx.AsyncClient) -> str:
    token = (await browser.get("/-/whoami?csrf=1")).json()["csrftoken"]
    assert isinstance(token, str)
    return token


@contextlib.asynccontextmanager
async def signed_in(
    server: Server, username: str = "alice", user_agent: str = CHROME_ON_LINUX
) -> AsyncIterator[httpx.AsyncClient]:
    async with client(server.app, headers={"user-agent": user_agent}) as browser:
        data = {"username": username, "password": PASSWORD, "csrftoken": await token_of(browser)}
        assert (await browser.post("/-/login", data=data)).status_code == 302
        yield browser


async def post(browser: httpx.AsyncClient, path: str, data: dict[str, str]) -> httpx.Response:
    return await browser.post(path, data={**data, "csrftoken": await token_of(browser)})


def visible_text(page: str) -> str:
    """The page without its tags (and so without attribute values)."""
    return re.sub(r"<[^>]*>", " ", page)


# -- pages that are not there ----------------------------------------------------------


@pytest.mark.parametrize("path", ["/-/nothing-here", "/-/admin/nope/x", "/nope", "/-/static/x.css"])
async def test_unknown_paths_get_a_page_of_the_site(server: Server, path: str) -> None:
    async with client(server.app) as browser:
        page = await browser.get(path, headers=HTML)
        api = await browser.get(path, headers=JSON)
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "<h1>Page not found</h1>" in page.text
    assert 'href="/-/static/doorman.css"' in page.text
    assert '<a href="/-/login">Sign in</a>' in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert api.status_code == 404
    assert api.json() == {
        "error": "There is no page at this address. Check the link, or start again."
    }


async def test_a_signed_in_person_is_offered_their_account_not_sign_in(server: Server) -> None:
    async with signed_in(server) as browser:
        page = await browser.get("/-/nothing-here", headers=HTML)
    assert page.status_code == 404
    assert '<a href="/-/account">Your account</a>' in page.text
    assert ">Sign in<" not in page.text


async def test_a_wrong_method_gets_405_with_allow(server: Server) -> None:
    async with client(server.app) as browser:
        page = await browser.delete("/-/login", headers=HTML)
        api = await browser.put("/-/whoami", headers=JSON)
    assert page.status_code == 405
    assert "<h1>Not allowed here</h1>" in page.text
    assert set(page.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}
    assert api.status_code == 405
    assert api.json()["error"] == "This address does not take that kind of request."
    assert "GET" in api.headers["allow"]


# -- the icon --------------------------------------------------------------------------


async def test_favicon_is_served(server: Server) -> None:
    async with client(server.app) as browser:
        icon = await browser.get("/favicon.ico")
        svg = await browser.get("/-/static/favicon.svg")
        page = await browser.get("/-/login", headers=HTML)
    assert icon.status_code == 200
    assert icon.content[:4] == b"\x00\x00\x01\x00", "an ICO file"
    assert icon.headers["content-type"] in ("image/vnd.microsoft.icon", "image/x-icon")
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert '<link rel="icon" href="/-/static/favicon.svg" type="image/svg+xml">' in page.text


async def test_under_protect_the_favicon_is_the_apps(tmp_path: Path) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"the app's own icon"})

    public = ["/favicon.ico"]
    async with (
        running(tmp_path, protected=app, public_paths=public) as found,
        client(found.app) as browser,
    ):
        icon = await browser.get("/favicon.ico")
        missing = await browser.get("/-/nothing-here", headers=HTML)
    assert icon.content == b"the app's own icon"
    assert missing.status_code == 404 and "Page not found" in missing.text


# -- links that fit who is reading -----------------------------------------------------


async def test_the_site_name_links_to_sign_in_when_signed_out(server: Server) -> None:
    async with client(server.app) as browser:
        page = await browser.get("/-/login", headers=HTML)
    assert '<a class="brand" href="/-/login">doorman</a>' in page.text
    async with signed_in(server) as browser:
        page = await browser.get("/-/account", headers=HTML)
    assert '<a class="brand" href="/-/account">doorman</a>' in page.text


async def test_closed_registration_offers_sign_in_only_when_signed_out(server: Server) -> None:
    async with client(server.app) as browser:
        page = await browser.get("/-/register", headers=HTML)
    assert page.status_code == 404 and '<a href="/-/login">Sign in</a>' in page.text
    async with signed_in(server) as browser:
        page = await browser.get("/-/register", headers=HTML)
    assert page.status_code == 404 and "Registration is closed" in page.text
    assert ">Sign in<" not in page.text
    assert '<a href="/-/account">Your account</a>' in page.text


# -- sessions in words -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_agent", "name"),
    [
        (CHROME_ON_LINUX, "Chrome on Linux"),
        (SAFARI_ON_IPHONE, "Mobile Safari on iOS"),
        (
            "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
            "Firefox on Linux",
        ),
        ("curl/8.5.0", "curl"),
        ("", UNKNOWN_DEVICE),
        (None, UNKNOWN_DEVICE),
        ("<script>alert(1)</script>", UNKNOWN_DEVICE),
        ("\x00" * 300, UNKNOWN_DEVICE),
    ],
)
def test_device_names(user_agent: str | None, name: str) -> None:
    assert device_name(user_agent) == name


async def test_sessions_read_as_devices_and_times(server: Server) -> None:
    async with (
        signed_in(server, "alice"),
        signed_in(server, "alice", SAFARI_ON_IPHONE),
        signed_in(server, "alice", "") as browser,
        signed_in(server, "root") as admin,
    ):
        pages = [
            await browser.get("/-/account", headers=HTML),
            await admin.get("/-/admin/users/alice", headers=HTML),
            await admin.get("/-/admin/sessions", headers=HTML),
        ]
        listing = (await browser.get("/-/account", headers=JSON)).json()
    for page in pages:
        text = visible_text(page.text)
        assert "Chrome on Linux" in text and "Mobile Safari on iOS" in text, page.url
        assert UNKNOWN_DEVICE in text, page.url
        assert "Mozilla/5.0" not in text, "the raw string only in a title"
        assert f'title="{CHROME_ON_LINUX}"' in page.text
        assert re.search(
            r'<time datetime="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ" title="[^"]+ UTC">just now</time>',
            page.text,
        )
    devices = sorted(s["device"] for s in listing["sessions"])
    assert devices == ["Chrome on Linux", "Mobile Safari on iOS", UNKNOWN_DEVICE]


# -- tokens: their scopes; lists with nothing in them -----------------------------------


async def test_token_scopes_are_shown(server: Server) -> None:
    alice = await server.doorman.users.require("alice")
    await server.doorman.tokens.create(alice, name="deploy", scopes=["view", "deploy"])
    await server.doorman.tokens.create(alice, name="everything")
    async with signed_in(server, "alice") as browser, signed_in(server, "root") as admin:
        pages = [
            await browser.get("/-/account", headers=HTML),
            await admin.get("/-/admin/users/alice", headers=HTML),
            await admin.get("/-/admin/tokens", headers=HTML),
        ]
        listing = (await browser.get("/-/account", headers=JSON)).json()
    for page in pages:
        assert '<th scope="col">Scopes</th>' in page.text, page.url
        assert "<td>deploy, view</td>" in page.text, page.url
        assert "<td>any action</td>" in page.text, page.url
    scopes = {t["name"]: t["scopes"] for t in listing["tokens"]}
    assert scopes == {"deploy": ["deploy", "view"], "everything": None}


async def test_empty_lists_say_so_in_words(server: Server) -> None:
    root = await server.doorman.users.require("root")
    _, text = await server.doorman.tokens.create(root, name="api")
    bearer = {"authorization": f"Bearer {text}", **HTML}
    async with client(server.app) as api:  # signed in by token: no sign-in anywhere yet
        user_page = visible_text((await api.get("/-/admin/users/bob", headers=bearer)).text)
        sessions = visible_text((await api.get("/-/admin/sessions", headers=bearer)).text)
    await server.doorman.tokens.revoke_all(root)
    async with signed_in(server, "alice") as browser, signed_in(server, "root") as admin:
        account = visible_text((await browser.get("/-/account", headers=HTML)).text)
        tokens = visible_text((await admin.get("/-/admin/tokens", headers=HTML)).text)
        search = await admin.get("/-/admin/users", params={"q": "zzz"}, headers=HTML)
    assert "No API tokens yet." in account
    assert "bob is not signed in anywhere." in user_page
    assert "bob has no API tokens." in user_page
    assert "Nobody is signed in." in sessions
    assert "0 signed-in sessions" not in sessions
    assert "Nobody has an API token yet." in tokens
    assert "No one’s username or email has “zzz” in it." in search.text  # noqa: RUF001


# -- the account page: a new email address ---------------------------------------------


async def test_people_change_their_email_with_their_password(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "doorman.security")
    async with signed_in(server, "alice") as browser:
        page = await browser.get("/-/account", headers=HTML)
        assert 'action="/-/account/email"' in page.text
        assert 'value="alice@example.com"' in page.text
        wrong = await post(
            browser, "/-/account/email", {"email": "new@example.com", "current_password": "no"}
        )
        bad = await post(
            browser, "/-/account/email", {"email": "not-an-address", "current_password": PASSWORD}
        )
        assert (await server.doorman.users.require("alice")).email == "alice@example.com"
        done = await post(
            browser,
            "/-/account/email",
            {"email": " new@example.com ", "current_password": PASSWORD},
        )
        shown = await browser.get(done.headers["location"], headers=HTML)
        assert (await server.doorman.users.require("alice")).email == "new@example.com"
        cleared = await post(
            browser, "/-/account/email", {"email": "", "current_password": PASSWORD}
        )
        forged = await browser.post(
            "/-/account/email", data={"email": "x@example.com", "current_password": PASSWORD}
        )
    assert wrong.status_code == 400 and "The current password is wrong." in wrong.text
    assert bad.status_code == 400 and "is not an email address." in bad.text
    assert (done.status_code, done.headers["location"]) == (303, "/-/account?done=email")
    assert '<div class="alert notice" role="status"><p>Email address saved.</p></div>' in shown.text
    assert cleared.status_code == 303
    assert forged.status_code == 403
    assert (await server.doorman.users.require("alice")).email is None
    logged = [r.getMessage() for r in caplog.records if r.name == "doorman.security"]
    assert "user 'alice' changed their email address" in logged
    assert not any("example.com" in line for line in logged), "no addresses in the log"


@pytest.mark.parametrize("form", ["email", "password"])
async def test_guessing_the_current_password_is_limited_like_signing_in(
    server: Server, form: str
) -> None:
    """Both forms that ask for the current password count wrong ones as failed sign-ins.

    A stolen session must not become an unlimited password oracle, and the guesses
    count against the same limit as the login page's.
    """
    new = "a different long passphrase"
    fields = {
        "email": {"email": "new@example.com"},
        "password": {"password": new, "password2": new},
    }
    path = f"/-/account/{form}"
    async with signed_in(server, "alice") as browser:
        for attempt in range(server.doorman.throttle.per_account):
            wrong = await post(
                browser, path, {**fields[form], "current_password": f"guess {attempt}"}
            )
            assert wrong.status_code == 400
        right = await post(browser, path, {**fields[form], "current_password": PASSWORD})
        data = {"username": "alice", "password": PASSWORD, "csrftoken": await token_of(browser)}
        login = await browser.post("/-/login", data=data)
    assert right.status_code == 429 and "Too many failed sign-in attempts" in right.text
    assert int(right.headers["retry-after"]) >= 1
    assert login.status_code == 429, "the login page counts in the same place"
    alice = await server.doorman.users.require("alice")
    assert alice.email == "alice@example.com"
    assert (await server.doorman.hasher.verify(PASSWORD, alice.password_hash)).ok


async def test_a_token_shown_once_is_not_shown_by_a_done_link(server: Server) -> None:
    async with signed_in(server, "alice") as browser:
        page = await browser.get("/-/account?done=token", headers=HTML)
        email = await browser.get("/-/account?done=email", headers=HTML)
        made_up = await browser.get("/-/account?done=<b>hi</b>", headers=HTML)
    assert "Copy this token now" not in page.text
    assert "Email address saved." in email.text
    assert 'role="status"' not in made_up.text and "hi</b>" not in made_up.text


# -- the admin's user page: email, admin flag, groups ----------------------------------


async def test_admins_edit_email_admin_flag_and_groups(server: Server) -> None:
    async with signed_in(server, "root") as admin:
        page = await admin.get("/-/admin/users/bob", headers=HTML)
        assert 'action="/-/admin/users/bob/details"' in page.text
        done = await post(
            admin,
            "/-/admin/users/bob/details",
            {"email": "bob@example.com", "groups": "ops, staff", "admin": "on"},
        )
        assert (done.status_code, done.headers["location"]) == (
            303,
            "/-/admin/users/bob?done=details",
        )
        bob = await server.doorman.users.require("bob")
        assert (bob.email, bob.is_admin, bob.groups) == ("bob@example.com", True, ("ops", "staff"))
        shown = await admin.get(done.headers["location"], headers=HTML)
        assert "Details saved." in shown.text
        # The form sends a hidden "off" before the checkbox: unticked, only "off" arrives.
        await post(admin, "/-/admin/users/bob/details", {"email": "", "groups": "", "admin": "off"})
        bob = await server.doorman.users.require("bob")
        assert (bob.email, bob.is_admin, bob.groups) == (None, False, ())


async def test_admin_edits_are_checked_first_and_all_or_nothing(server: Server) -> None:
    async with signed_in(server, "root") as admin:
        for data, error in [
            ({"email": "bad", "groups": "new", "admin": "on"}, "is not an email address."),
            ({"email": "b@example.com", "groups": "ok, <bad>", "admin": "on"}, "group name"),
            ({"email": "b@example.com", "admin": "maybe"}, "Administrator: give on or off."),
        ]:
            refused = await post(admin, "/-/admin/users/bob/details", data)
            assert refused.status_code == 400 and error in refused.text, data
        json_refused = await admin.post(
            "/-/admin/users/bob/details",
            json={"email": "bad"},
            headers={"x-csrftoken": await token_of(admin)},
        )
    assert json_refused.status_code == 400
    assert json_refused.json() == {
        "errors": ["'bad' is not an email address."],
        "field_errors": {"email": ["'bad' is not an email address."]},
    }
    bob = await server.doorman.users.require("bob")
    assert (bob.email, bob.is_admin, bob.groups) == (None, False, ())


async def test_an_api_edit_changes_only_what_it_gives(server: Server) -> None:
    await server.doorman.users.edit(
        await server.doorman.users.require("bob"), groups=["ops"], admin=True
    )
    async with signed_in(server, "root") as admin:
        answer = await admin.post(
            "/-/admin/users/bob/details",
            json={"email": "bob@example.com"},
            headers={"x-csrftoken": await token_of(admin), **JSON},
        )
    assert answer.status_code == 200 and answer.json() == {"ok": True, "notice": "Details saved."}
    bob = await server.doorman.users.require("bob")
    assert (bob.email, bob.is_admin, bob.groups) == ("bob@example.com", True, ("ops",))


async def test_admins_cannot_take_away_their_own_admin_flag(server: Server) -> None:
    async with signed_in(server, "root") as admin:
        page = await admin.get("/-/admin/users/root", headers=HTML)
        refused = await post(admin, "/-/admin/users/root/details", {"admin": "off"})
        kept = await post(
            admin, "/-/admin/users/root/details", {"email": "root@example.com", "groups": "ops"}
        )
    form = page.text[page.text.index('action="/-/admin/users/root/details"') :]
    form = form[: form.index("</form>")]
    assert 'name="admin"' not in form, "no admin field to send for oneself"
    assert "disabled" in form and "You cannot remove your own administrator rights" in form
    assert refused.status_code == 400
    assert "You cannot remove administrator rights from your own account" in refused.text
    assert kept.status_code == 303
    root = await server.doorman.users.require("root")
    assert (root.is_admin, root.email, root.groups) == (True, "root@example.com", ("ops",))
