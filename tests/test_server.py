"""The sign-in server over HTTP, in process: sign-in, next, CSRF, set-up, account, forward-auth."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from doorman import PasswordHasher
from doorman.config import Settings, assemble, load_settings
from doorman.core import Doorman
from doorman.server import setup
from doorman.server.app import create_app
from doorman.stores.base import SessionStore

from .conftest import SECRET
from .helpers import COOKIE, client, migrated_sqlite, session_signer, shared_and_emptied

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery staple"
HTML = {"accept": "text/html,application/xhtml+xml"}


@dataclass
class Server:
    app: Any
    doorman: Doorman
    store: SessionStore
    settings: Settings


@contextlib.asynccontextmanager
async def running(tmp_path: Path, **overrides: Any) -> AsyncIterator[Server]:
    if "db" not in overrides:
        overrides["db"] = migrated_sqlite(tmp_path / "doorman.db")
    options = {"secret": SECRET, **overrides}
    found = load_settings(environ={}, overrides=options)
    doorman, store = assemble(found, [SECRET])
    doorman.hasher = doorman.users.hasher = PasswordHasher(time_cost=1, memory_cost=1024)
    await doorman.startup()
    try:
        yield Server(create_app(found, doorman=doorman, store=store), doorman, store, found)
    finally:
        await store.close()
        await doorman.close()
        await doorman.engine.dispose()


SERVER_OPTIONS = {
    "cookie_domain": "example.com",
    "public_url": "http://auth.example.com",
    # the apps a sign-in may return to: scheme, host and port, each
    "allowed_origins": ["https://app.example.com", "https://app.example.com:8443"],
}


async def with_people(found: Server) -> Server:
    await found.doorman.create_user("alice", PASSWORD)
    await found.doorman.create_user("root", PASSWORD, admin=True)
    return found


@pytest.fixture(scope="module", autouse=True)
async def shared_signin_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Server]:
    """One ``server`` for the tests of each module that has this fixture (imported by name)."""
    async with running(tmp_path_factory.mktemp("shared"), **SERVER_OPTIONS) as found:
        yield found


@pytest.fixture
async def server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Server]:
    """The sign-in server, with alice and root.

    In a module that has ``shared_signin_server`` (autouse there), that one, emptied by
    ``helpers.empty_accounts``: its SQL sessions and throttle counts are in its database too, and
    what the app keeps in the process rests on the epochs the DELETEs move. In a module
    that imports ``server`` alone, the test's own.
    """
    shared = await shared_and_emptied(request, "shared_signin_server")
    if shared is not None:
        yield await with_people(shared)
        return
    async with running(tmp_path, **SERVER_OPTIONS) as found:
        yield await with_people(found)


def browse(server: Server) -> httpx.AsyncClient:
    """A client on the sign-in server's host, inside the cookie domain example.com."""
    return client(server.app, base_url="http://auth.example.com")


async def csrf_token(browser: httpx.AsyncClient) -> str:
    token = (await browser.get("/-/whoami?csrf=1")).json()["csrftoken"]
    assert isinstance(token, str)
    return token


async def sign_in(
    browser: httpx.AsyncClient, username: str = "alice", **extra: str
) -> httpx.Response:
    data = {"username": username, "password": PASSWORD, "csrftoken": await csrf_token(browser)}
    return await browser.post("/-/login", data={**data, **extra})


async def actor_of(browser: httpx.AsyncClient) -> Any:
    return (await browser.get("/-/whoami")).json()["actor"]


# -- the login page ------------------------------------------------------------


async def test_login_page_is_a_labelled_form_with_security_headers(server: Server) -> None:
    async with browse(server) as browser:
        page = await browser.get("/-/login", headers=HTML)
    assert page.status_code == 200
    assert re.search(r'<label for="username">', page.text)
    assert re.search(r'<label for="password">', page.text)
    assert 'name="csrftoken" value="' in page.text
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "same-origin"


PAGE_POLICY = "default-src 'self'"
STRICTEST_POLICY = "default-src 'none'; frame-ancestors 'none'"


async def test_answers_that_are_not_pages_get_the_strictest_policy(server: Server) -> None:
    """JSON, text and redirects: nothing may load from them or frame them; pages keep theirs."""
    async with browse(server) as browser:
        page = await browser.get("/-/login", headers=HTML)
        whoami = await browser.get("/-/whoami")
        check = await browser.get("/-/auth")
        away = await browser.get("/-/account", headers=HTML)
        style = await browser.get("/-/static/doorman.css")
    assert page.headers["content-security-policy"].startswith(PAGE_POLICY)
    assert (whoami.status_code, check.status_code, away.status_code) == (200, 401, 302)
    for answer in (whoami, check, away, style):
        assert answer.headers["content-security-policy"] == STRICTEST_POLICY, answer.url
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["x-content-type-options"] == "nosniff"


async def test_sign_in_cycles_the_session_and_lands_on_the_account(server: Server) -> None:
    async with browse(server) as browser:
        await csrf_token(browser)
        assert COOKIE not in browser.cookies, "no session before sign-in: nothing to fixate"
        response = await sign_in(browser)
        assert response.status_code == 302
        assert response.headers["location"] == "/-/account"
        before = browser.cookies[COOKIE]
        await sign_in(browser)
        assert browser.cookies[COOKIE] != before, "a sign-in cycles the session it finds"
        assert (await actor_of(browser))["username"] == "alice"
        account = await browser.get("/-/account", headers=HTML)
        assert account.status_code == 200 and "alice" in account.text


async def test_wrong_password_and_unknown_user_read_the_same(server: Server) -> None:
    async with browse(server) as browser:
        token = await csrf_token(browser)
        answers = []
        for username in ("alice", "nobody"):
            data = {"username": username, "password": "wrong", "csrftoken": token}
            answers.append(await browser.post("/-/login", data=data))
    assert [a.status_code for a in answers] == [401, 401]
    assert "Wrong username or password." in answers[0].text
    first, second = (re.sub(r'value="[^"]*"', "", a.text) for a in answers)
    assert first == second


async def test_a_form_without_its_csrf_token_is_refused(server: Server) -> None:
    async with browse(server) as browser:
        await csrf_token(browser)
        bare = {"username": "alice", "password": PASSWORD}
        assert (await browser.post("/-/login", data=bare)).status_code == 403
        forged = await browser.post("/-/login", data={**bare, "csrftoken": "x" * 43})
        assert forged.status_code == 403
        cross = await browser.post(
            "/-/login",
            data={**bare, "csrftoken": await csrf_token(browser)},
            headers={"sec-fetch-site": "cross-site"},
        )
        assert cross.status_code == 403
        assert await actor_of(browser) is None


async def test_throttled_sign_in_answers_429_with_retry_after(server: Server) -> None:
    async with browse(server) as browser:
        token = await csrf_token(browser)
        for _ in range(server.settings.throttle_per_account):
            data = {"username": "alice", "password": "wrong", "csrftoken": token}
            await browser.post("/-/login", data=data)
        response = await sign_in(browser)
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) >= 1


@pytest.mark.parametrize(
    "given",
    [
        "//evil.example/x",
        "/\\evil.example",
        "/%2F%2Fevil.example",
        "%2F%2Fevil.example",
        "/%252F%252Fevil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        "/\t/evil.example",
        "/%09/evil.example",
        "/%0d%0aSet-Cookie:x=1",
        "",
    ],
)
async def test_next_never_leaves_the_site(server: Server, given: str) -> None:
    async with browse(server) as browser:
        response = await sign_in(browser, next=given)
    assert response.status_code == 302
    assert response.headers["location"] == "/-/account"


async def test_next_keeps_a_path_on_this_site(server: Server) -> None:
    async with browse(server) as browser:
        response = await sign_in(browser, next="/reports?year=2026")
    assert response.headers["location"] == "/reports?year=2026"


async def test_an_absolute_next_needs_our_signature_and_an_allowed_host(server: Server) -> None:
    signer = create_signer(server)
    good = "https://app.example.com/dash"
    async with browse(server) as browser:
        unsigned = await sign_in(browser, next=good)
        assert unsigned.headers["location"] == "/-/account"
    async with browse(server) as browser:
        signed = await sign_in(browser, next=good, next_sig=signer.sign(good))
        assert signed.headers["location"] == good
    elsewhere = "https://evil.example/x"
    async with browse(server) as browser:
        foreign = await sign_in(browser, next=elsewhere, next_sig=signer.sign(elsewhere))
        assert foreign.headers["location"] == "/-/account", "signed, but not an allowed host"


async def test_a_signature_holds_for_its_own_url_only(server: Server) -> None:
    """The signature of ".../a.b" must not vouch for ".../a" given "b.<signature>"."""
    signer = create_signer(server)
    signature = signer.sign("https://app.example.com/a.b")
    async with browse(server) as browser:
        cut = await sign_in(browser, next="https://app.example.com/a", next_sig=f"b.{signature}")
        page = await browser.get(
            "/-/login", params={"next": "https://app.example.com/a", "next_sig": f"b.{signature}"}
        )
    assert cut.headers["location"] == "/-/account"
    assert "app.example.com" not in page.headers["content-security-policy"]


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example@app.example.com/",
        "https://evil.example:443@app.example.com/",
        "https://:@app.example.com/",
    ],
)
async def test_a_next_with_credentials_in_it_is_refused(server: Server, url: str) -> None:
    """No browser asks for such a URL: one is only ever made to show another host's name."""
    async with browse(server) as browser:
        bounce = await browser.get("/-/auth", params={"rd": url})
        signed = await sign_in(browser, next=url, next_sig=create_signer(server).sign(url))
    assert "next_sig" not in bounce.headers["location"]
    assert signed.headers["location"] == "/-/account"


def create_signer(server: Server) -> Any:
    from doorman.server.redirects import NextSigner

    return NextSigner([SECRET])


async def test_logout_needs_csrf_and_ends_the_session(server: Server) -> None:
    async with browse(server) as browser:
        await sign_in(browser)
        assert (await browser.post("/-/logout")).status_code == 403
        assert (await actor_of(browser))["id"] == "alice"
        token = await csrf_token(browser)
        response = await browser.post("/-/logout", data={"csrftoken": token})
        assert (response.status_code, response.headers["location"]) == (
            303,
            "/-/login?done=signed-out",
        )
        assert await actor_of(browser) is None


async def test_json_sign_in_and_out_with_the_csrf_header(server: Server) -> None:
    async with browse(server) as api:
        token = await csrf_token(api)
        body = {"username": "alice", "password": PASSWORD}
        refused = await api.post("/-/login", json=body)
        assert refused.status_code == 403
        signed = await api.post("/-/login", json=body, headers={"x-csrftoken": token})
        assert signed.json()["actor"]["id"] == "alice"
        wrong = await api.post(
            "/-/login",
            json={"username": "alice", "password": "x"},
            headers={"x-csrftoken": await csrf_token(api)},
        )
        assert (wrong.status_code, wrong.json()) == (401, {"error": "Wrong username or password."})
        out = await api.post("/-/logout", json={}, headers={"x-csrftoken": await csrf_token(api)})
        assert out.json() == {"actor": None}


#: Names no database can hold: a lone surrogate (JSON carries one), a NUL (PostgreSQL refuses it).
UNSTORABLE_NAMES = ["\ud800", "a\udfffb", "\x00", "al\x00ice"]


async def refusals_of_unstorable_names(server: Server) -> list[tuple[str, int, Any]]:
    found = []
    async with browse(server) as api:
        for name in UNSTORABLE_NAMES:
            headers = {"x-csrftoken": await csrf_token(api), "content-type": "application/json"}
            body = {"username": name, "password": PASSWORD}
            raw = json.dumps(body).encode()  # "\\ud800" escaped, as a client may send it
            answer = await api.post("/-/login", content=raw, headers=headers)
            found.append(("json", answer.status_code, answer.json()))
            if name.isascii():  # a form's text is UTF-8: only the NUL gets there as typed
                form = {**body, "csrftoken": await csrf_token(api)}
                answer = await api.post(
                    "/-/login", data=form, headers={"accept": "application/json"}
                )
                found.append(("form", answer.status_code, answer.json()))
    return found


def assert_all_wrong_username(found: list[tuple[str, int, Any]]) -> None:
    assert len(found) == 6
    for _how, status, body in found:
        assert (status, body) == (401, {"error": "Wrong username or password."})


async def test_a_name_no_database_can_hold_is_a_wrong_username(server: Server) -> None:
    """Not a 500 (SQLite cannot encode the name), nor a 503 that cries "store down"."""
    assert_all_wrong_username(await refusals_of_unstorable_names(server))


@pytest.mark.postgres
async def test_a_name_no_database_can_hold_is_a_wrong_username_on_postgres(
    tmp_path: Path, emptied_postgres_url: str
) -> None:
    async with running(tmp_path, db=emptied_postgres_url, **SERVER_OPTIONS) as found:
        await with_people(found)
        assert_all_wrong_username(await refusals_of_unstorable_names(found))


# -- registration and set-up ---------------------------------------------------


async def test_registration_is_off_by_default(server: Server) -> None:
    async with browse(server) as browser:
        assert (await browser.get("/-/register", headers=HTML)).status_code == 404
        token = await csrf_token(browser)
        data = {"username": "eve", "password": PASSWORD, "password2": PASSWORD, "csrftoken": token}
        assert (await browser.post("/-/register", data=data)).status_code == 404
    assert await server.doorman.users.by_username("eve") is None


async def test_registration_when_on(tmp_path: Path) -> None:
    async with running(tmp_path, allow_registration=True) as found, browse(found) as browser:
        token = await csrf_token(browser)
        weak = {"username": "eve", "password": "password", "password2": "password"}
        refused = await browser.post("/-/register", data={**weak, "csrftoken": token})
        assert refused.status_code == 400
        assert "shorter than 10 characters" in refused.text
        assert "common" in refused.text
        good = {"username": "eve", "password": PASSWORD, "password2": PASSWORD}
        made = await browser.post("/-/register", data={**good, "csrftoken": token})
        assert (made.status_code, made.headers["location"]) == (303, "/-/account?done=created")
        assert (await actor_of(browser))["id"] == "eve"
        again = await browser.post(
            "/-/register", data={**good, "csrftoken": await csrf_token(browser)}
        )
        assert "That username is taken." in again.text


async def test_setup_creates_the_first_admin_once(tmp_path: Path) -> None:
    async with running(tmp_path) as found, browse(found) as browser:
        token = await setup.issue_setup_token(found.doorman.engine)
        assert token is not None
        assert (await browser.get("/-/setup", headers=HTML)).status_code == 404
        assert (await browser.get("/-/setup?token=wrong", headers=HTML)).status_code == 404
        page = await browser.get(f"/-/setup?token={token}", headers=HTML)
        assert page.status_code == 200
        form = {
            "username": "root",
            "password": PASSWORD,
            "password2": PASSWORD,
            "token": token,
            "csrftoken": await csrf_token(browser),
        }
        made = await browser.post("/-/setup", data=form)
        assert (made.status_code, made.headers["location"]) == (303, "/-/admin/users")
        assert (await actor_of(browser))["admin"] is True
        form["username"] = "mallory"
        form["csrftoken"] = await csrf_token(browser)
        assert (await browser.post("/-/setup", data=form)).status_code == 400
        assert await setup.issue_setup_token(found.doorman.engine) is None
        # Inside: after `running` ends, a query would reopen a connection of the disposed engine.
        assert await found.doorman.users.by_username("mallory") is None


# -- account -------------------------------------------------------------------


async def test_account_password_change_ends_the_other_session(server: Server) -> None:
    async with browse(server) as laptop, browse(server) as phone:
        await sign_in(laptop)
        await sign_in(phone)
        new = "a different long passphrase"
        form = {"password": new, "password2": new, "csrftoken": await csrf_token(laptop)}
        wrong = await laptop.post("/-/account/password", data={**form, "current_password": "nope"})
        assert wrong.status_code == 400 and "current password is wrong" in wrong.text
        done = await laptop.post(
            "/-/account/password",
            data={**form, "current_password": PASSWORD, "csrftoken": await csrf_token(laptop)},
        )
        assert (done.status_code, done.headers["location"]) == (303, "/-/account?done=password")
        page = await laptop.get(done.headers["location"], headers=HTML)
        assert "Password changed" in page.text
        assert (await actor_of(laptop))["id"] == "alice"
        assert await actor_of(phone) is None


async def test_account_tokens_are_shown_once_and_revocable(server: Server) -> None:
    async with browse(server) as browser:
        await sign_in(browser)
        made = await browser.post(
            "/-/account/tokens",
            data={"name": "ci", "expires": "30", "csrftoken": await csrf_token(browser)},
        )
        assert made.status_code == 201, "the answer shows it: a redirect would need it kept"
        text = re.search(r"dmt_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", made.text)
        assert text is not None
        bearer = {"authorization": f"Bearer {text.group(0)}"}
        async with browse(server) as api:
            assert (await api.get("/-/whoami", headers=bearer)).json()["actor"]["via"] == "token"
            page = await browser.get("/-/account", headers=HTML)
            assert text.group(0) not in page.text, "shown once"
            token_id = text.group(0)[4:20]
            await browser.post(
                f"/-/account/tokens/{token_id}/revoke",
                data={"csrftoken": await csrf_token(browser)},
            )
            assert (await api.get("/-/whoami", headers=bearer)).json()["actor"] is None


async def test_a_token_an_older_version_kept_in_the_session_is_cleared(server: Server) -> None:
    """Older versions kept a new token in the session until the account page showed it."""
    async with browse(server) as browser:
        await sign_in(browser)
        key = session_signer().unsign(browser.cookies[COOKIE])
        payload = await server.store.load(key)
        assert payload is not None
        saved = json.loads(payload)
        saved["d"]["_new_token"] = "dmt_0123456789abcdef_" + "A" * 43
        await server.store.save(key, json.dumps(saved), time.time() + 3600)
        page = await browser.get("/-/account", headers=HTML)
        assert page.status_code == 200 and "dmt_0123456789abcdef" not in page.text
        payload = await server.store.load(session_signer().unsign(browser.cookies[COOKIE]))
        assert payload is not None and "_new_token" not in payload


async def test_account_lists_and_revokes_own_sessions(server: Server) -> None:
    async with browse(server) as laptop, browse(server) as phone:
        await sign_in(laptop)
        await sign_in(phone)
        listing = (await laptop.get("/-/account", headers={"accept": "application/json"})).json()
        others = [s for s in listing["sessions"] if not s["current"]]
        assert len(listing["sessions"]) == 2 and len(others) == 1
        await laptop.post(
            f"/-/account/sessions/{others[0]['id']}/revoke",
            data={"csrftoken": await csrf_token(laptop)},
        )
        assert await actor_of(phone) is None
        assert (await actor_of(laptop))["id"] == "alice"


async def test_signed_out_browser_is_sent_to_sign_in(server: Server) -> None:
    async with browse(server) as browser:
        page = await browser.get("/-/account", headers=HTML)
        assert page.status_code == 302
        assert page.headers["location"] == "/-/login?next=%2F-%2Faccount"
        api = await browser.get("/-/account", headers={"accept": "application/json"})
        assert api.status_code == 401


# -- whoami, forward-auth, health ------------------------------------------------


async def test_whoami(server: Server) -> None:
    async with browse(server) as browser:
        anonymous = await browser.get("/-/whoami")
        assert anonymous.json() == {"actor": None}
        assert COOKIE not in browser.cookies, "no session is made for an anonymous whoami"
        await sign_in(browser)
        actor = await actor_of(browser)
        assert (actor["id"], actor["username"]) == ("alice", "alice")


async def test_forward_auth(server: Server) -> None:
    async with browse(server) as proxy:
        assert (await proxy.get("/-/auth")).status_code == 401
        browser = await proxy.get("/-/auth", headers=HTML)
        login = "http://auth.example.com/-/login"
        assert (browser.status_code, browser.headers["location"]) == (302, login)
        await sign_in(proxy)
        ok = await proxy.get("/-/auth")
        assert ok.status_code == 200
        assert ok.headers["x-doorman-user"] == "alice"
        assert ok.headers["x-doorman-admin"] == "false"


async def test_forward_auth_sends_browsers_back_where_they_were(server: Server) -> None:
    forwarded = {
        **HTML,
        "x-forwarded-proto": "https",
        "x-forwarded-host": "app.example.com",
        "x-forwarded-uri": "/reports?x=1",
    }
    async with browse(server) as browser:
        bounce = await browser.get("/-/auth", headers=forwarded)
        assert bounce.status_code == 302
        query = parse_qs(urlsplit(bounce.headers["location"]).query)
        assert query["next"] == ["https://app.example.com/reports?x=1"]
        evil = {**forwarded, "x-forwarded-host": "evil.example"}
        refused = await browser.get("/-/auth", headers=evil)
        assert "evil" not in refused.headers["location"]
        with_rd = await browser.get("/-/auth?rd=https://app.example.com/")
        assert with_rd.status_code == 302 and "next_sig" in with_rd.headers["location"]
        back = await sign_in(browser, next=query["next"][0], next_sig=query["next_sig"][0])
        assert back.headers["location"] == "https://app.example.com/reports?x=1"


@pytest.mark.parametrize(
    "headers",
    [
        {"x-original-url": "https://["},
        {"x-original-url": "http://[::1"},
        {"x-forwarded-host": "[", "x-forwarded-uri": "/"},
        {"x-forwarded-host": "app.example.com]", "x-forwarded-uri": "/x"},
    ],
)
async def test_forward_auth_takes_a_broken_url_for_no_url(
    server: Server, headers: dict[str, str]
) -> None:
    """A URL Python cannot split (an IPv6 bracket left open) is a 302 to login, not a 500."""
    async with browse(server) as proxy:
        from_header = await proxy.get("/-/auth", headers={**HTML, **headers})
        given = headers.get("x-original-url", "http://[")
        from_rd = await proxy.get("/-/auth", params={"rd": given})
    for answer in (from_header, from_rd):
        assert answer.status_code == 302
        assert answer.headers["location"] == "http://auth.example.com/-/login"


async def test_forward_auth_percent_encodes_non_ascii_names(server: Server) -> None:
    await server.doorman.create_user("josé", PASSWORD)
    async with browse(server) as proxy:
        await sign_in(proxy, "josé")
        assert (await proxy.get("/-/auth")).headers["x-doorman-user"] == "jos%C3%A9"


async def test_health(tmp_path: Path) -> None:
    async with running(tmp_path) as found, browse(found) as probe:
        ok = await probe.get("/-/health")
        assert (ok.status_code, ok.json()) == (200, {"status": "ok", "failed": []})
    async with running(tmp_path, sessions="redis://127.0.0.1:1/0") as down, browse(down) as probe:
        failed = await probe.get("/-/health")
        assert failed.status_code == 503
        assert failed.json() == {"status": "unavailable", "failed": ["sessions"]}


# -- no 500 from any client input ------------------------------------------------


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    username=st.text(max_size=300),
    password=st.text(max_size=300),
    next_=st.text(max_size=300),
    signature=st.text(max_size=100),
)
async def test_no_input_to_the_login_form_gives_a_500(
    server: Server, username: str, password: str, next_: str, signature: str
) -> None:
    async with browse(server) as browser:
        data = {
            "username": username,
            "password": password,
            "next": next_,
            "next_sig": signature,
            "csrftoken": await csrf_token(browser),
        }
        response = await browser.post("/-/login", data=data)
        assert response.status_code in (303, 400, 401, 429)
        if response.status_code == 303:
            location = response.headers["location"]
            assert location.startswith("/") and not location.startswith("//")


async def test_a_deployer_template_overrides_the_page(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "login.html").write_text(
        '{% extends "base.html" %}{% block content %}<h1>Sign in to Example Corp</h1>'
        "<p>{{ csrftoken|length > 20 }}</p>{% endblock %}"
    )
    async with running(tmp_path, template_dir=str(templates)) as found, browse(found) as browser:
        page = await browser.get("/-/login", headers=HTML)
        assert "Sign in to Example Corp" in page.text
        assert "<p>True</p>" in page.text, "the page context is the same"
        account = await browser.get("/-/setup?token=x", headers=HTML)
        assert "not valid" in account.text, "other pages keep doorman's own templates"
