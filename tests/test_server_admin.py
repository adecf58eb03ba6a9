"""The admin pages over HTTP, in process: who may see them, every action, CSRF, escaping."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from doorman import PasswordHasher
from doorman.accounts.users import User
from doorman.config import assemble, load_settings
from doorman.core import Doorman
from doorman.exceptions import Throttled
from doorman.server.app import create_app

from .conftest import SECRET
from .helpers import client, migrated_sqlite, shared_and_emptied

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "a different long passphrase"
HTML = {"accept": "text/html,application/xhtml+xml"}
JSON = {"accept": "application/json"}

#: Every admin route, with a user "bob" (who is no admin) to act on.
GET_ROUTES = [
    "/-/admin",
    "/-/admin/users",
    "/-/admin/users/bob",
    "/-/admin/users/bob/delete",
    "/-/admin/sessions",
    "/-/admin/tokens",
    "/-/admin/events",
]
ACTIONS = [
    "groups",
    "sign-out",
    "revoke-tokens",
    "disable",
    "enable",
    "make-admin",
    "remove-admin",
    "password",
    "unlock",
]
POST_ROUTES = [
    "/-/admin/users",
    *(f"/-/admin/users/bob/{action}" for action in ACTIONS),
    "/-/admin/users/bob/delete",
    "/-/admin/users/bob/sessions/SIGNIN/revoke",
    "/-/admin/users/bob/tokens/TOKEN/revoke",
    "/-/admin/sessions/SIGNIN/revoke",
    "/-/admin/tokens/TOKEN/revoke",
]
#: What each POST route is given, so that with a CSRF token it would change something.
POST_DATA = {
    "/-/admin/users": {
        "username": "mallory",
        "password": PASSWORD,
        "password2": PASSWORD,
        "admin": "on",
    },
    "/-/admin/users/bob/groups": {"groups": "owners"},
    "/-/admin/users/bob/password": {"password": NEW_PASSWORD, "password2": NEW_PASSWORD},
    "/-/admin/users/bob/delete": {"confirm": "bob"},
}


@dataclass
class Server:
    app: Any
    doorman: Doorman


@contextlib.asynccontextmanager
async def admin_server(path: Path) -> AsyncIterator[Server]:
    """The sign-in server on a new SQLite file in ``path``, with nobody in it yet."""
    options = {"db": migrated_sqlite(path / "doorman.db"), "secret": SECRET}
    settings = load_settings(environ={}, overrides=options)
    doorman, store = assemble(settings, [SECRET])
    doorman.hasher = doorman.users.hasher = PasswordHasher(time_cost=1, memory_cost=1024)
    await doorman.startup()
    try:
        yield Server(create_app(settings, doorman=doorman, store=store), doorman)
    finally:
        await store.close()
        await doorman.close()
        await doorman.engine.dispose()


async def with_people(server: Server) -> Server:
    """``server`` with alice, bob (members) and root (an admin) in it."""
    for name in ("alice", "bob"):
        await server.doorman.create_user(name, PASSWORD, email=f"{name}@example.com")
    await server.doorman.create_user("root", PASSWORD, admin=True)
    return server


@pytest.fixture(scope="module", autouse=True)
async def shared_admin_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    """One server for the tests of each module that has this fixture (imported by name)."""
    async with admin_server(tmp_path_factory.mktemp("shared")) as found:
        yield found


@pytest.fixture
async def server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Server]:
    """The admin pages' server, with alice, bob and root.

    In a module that has ``shared_admin_server`` (autouse there), that one, emptied: its
    SQL sessions, throttle counts and events go too (all in its database), and what
    the app keeps in the process rests on the epochs the DELETEs move. In a module
    that imports ``server`` alone, the test's own.
    """
    shared = await shared_and_emptied(request, "shared_admin_server")
    if shared is not None:
        yield await with_people(shared)
        return
    async with admin_server(tmp_path) as found:
        yield await with_people(found)


@contextlib.asynccontextmanager
async def signed_in(
    server: Server, username: str = "root", **headers: str
) -> AsyncIterator[httpx.AsyncClient]:
    """A browser signed in as ``username``."""
    async with client(server.app, headers=headers) as browser:
        data = {"username": username, "password": PASSWORD, "csrftoken": await token_of(browser)}
        assert (await browser.post("/-/login", data=data)).status_code == 302
        yield browser


async def token_of(browser: httpx.AsyncClient) -> str:
    token = (await browser.get("/-/whoami?csrf=1")).json()["csrftoken"]
    assert isinstance(token, str)
    return token


async def actor_of(browser: httpx.AsyncClient) -> Any:
    return (await browser.get("/-/whoami")).json()["actor"]


async def post(
    browser: httpx.AsyncClient, path: str, data: dict[str, str] | None = None, **headers: str
) -> httpx.Response:
    """A form POST with this browser's CSRF token."""
    form = {**(data or {}), "csrftoken": await token_of(browser)}
    return await browser.post(path, data=form, headers={**HTML, **headers})


async def json_post(
    browser: httpx.AsyncClient, path: str, body: dict[str, str] | None = None
) -> httpx.Response:
    """A JSON POST with this browser's CSRF token in the header."""
    headers = {"x-csrftoken": await token_of(browser)}
    return await browser.post(path, json=body or {}, headers=headers)


async def user(server: Server, name: str) -> User:
    return await server.doorman.users.require(name)


def real_path(path: str, signin: str, token: str) -> str:
    return path.replace("SIGNIN", signin).replace("TOKEN", token)


# -- who may see the admin pages -------------------------------------------------


async def state_of_bob(server: Server) -> tuple[Any, ...]:
    bob = await user(server, "bob")
    signins = await server.doorman.signins.list(bob)
    tokens = await server.doorman.tokens.list(bob)
    return (bob, [s.id for s in signins], [t.id for t in tokens])


async def test_members_get_403_on_every_admin_route(server: Server) -> None:
    _, token_text = await server.doorman.tokens.create(await user(server, "bob"), name="ci")
    async with signed_in(server, "bob"), signed_in(server, "alice") as alice:
        before = await state_of_bob(server)
        signin, token = before[1][0], before[2][0]
        for path in GET_ROUTES:
            assert (await alice.get(path, headers=HTML)).status_code == 403, path
        for path in POST_ROUTES:
            response = await post(alice, real_path(path, signin, token), POST_DATA.get(path))
            assert response.status_code == 403, path
        assert await state_of_bob(server) == before
        assert await server.doorman.users.by_username("mallory") is None
        # An API token of a member is no way in either.
        bearer = {"authorization": f"Bearer {token_text}", **JSON}
        assert (await alice.get("/-/admin/users", headers=bearer)).status_code == 403


async def test_anonymous_browsers_go_to_login_and_posts_get_401(server: Server) -> None:
    async with client(server.app) as browser:
        for path in GET_ROUTES:
            response = await browser.get(path, headers=HTML)
            assert response.status_code == 302, path
            assert response.headers["location"].startswith("/-/login?next=%2F-%2Fadmin"), path
            assert (await browser.get(path, headers=JSON)).status_code == 401, path
        for path in POST_ROUTES:
            response = await post(browser, real_path(path, "x", "y"), POST_DATA.get(path))
            assert response.status_code == 401, path
    assert (await user(server, "bob")).is_active
    assert await server.doorman.users.by_username("mallory") is None


async def test_admin_home_redirects_to_the_users(server: Server) -> None:
    async with signed_in(server) as admin:
        response = await admin.get("/-/admin", headers=HTML)
    assert response.status_code == 302
    assert response.headers["location"] == "/-/admin/users"


async def test_every_page_is_private_framed_by_nothing_and_labelled(server: Server) -> None:
    await server.doorman.tokens.create(await user(server, "bob"), name="ci")
    async with signed_in(server, "bob"), signed_in(server) as admin:
        for path, current in [
            ("/-/admin/users", "Users"),
            ("/-/admin/users/bob", None),
            ("/-/admin/users/bob/delete", None),
            ("/-/admin/sessions", "Sessions"),
            ("/-/admin/tokens", "Tokens"),
        ]:
            page = await admin.get(path, headers=HTML)
            assert page.status_code == 200, path
            assert page.headers["cache-control"] == "no-store", path
            assert page.headers["x-frame-options"] == "DENY", path
            csp = page.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "style-src 'self'" in csp
            assert "<script" not in page.text and "style=" not in page.text, path
            assert_inputs_labelled(page.text, path)
            if current:
                assert f'aria-current="page">{current}</a>' in page.text
            else:
                assert 'aria-current="page"' not in page.text
            assert '<th scope="col">' in page.text or path.endswith("/delete")
        action = await post(admin, "/-/admin/users/bob/unlock")
        assert action.headers["cache-control"] == "no-store"
        assert action.headers["x-frame-options"] == "DENY"
        json_page = await admin.get("/-/admin/users/bob", headers=JSON)
        assert json_page.headers["cache-control"] == "no-store"


def assert_inputs_labelled(page: str, path: str) -> None:
    inputs = re.findall(r"<input\b[^>]*>", page)
    ids = [re.search(r'\bid="([^"]+)"', tag) for tag in inputs if 'type="hidden"' not in tag]
    assert all(ids), f"{path}: an input without an id"
    for found in ids:
        assert found is not None
        assert f'<label for="{found[1]}"' in page, f"{path}: no label for {found[1]}"


# -- the list of users -------------------------------------------------------------


async def test_search_and_paging(server: Server) -> None:
    for i in range(55):
        await server.doorman.users.create(f"member{i:02}", password_hash=None)
    async with signed_in(server) as admin:
        first = await admin.get("/-/admin/users?q=member", headers=HTML)
        assert first.status_code == 200
        assert "55 users matching" in first.text
        assert first.text.count('href="/-/admin/users/member') == 50
        assert 'href="/-/admin/users?q=member&amp;page=2"' in first.text
        assert "Previous page" not in first.text
        second = await admin.get("/-/admin/users?q=member&page=2", headers=HTML)
        assert second.text.count('href="/-/admin/users/member') == 5
        assert 'href="/-/admin/users?q=member&amp;page=1"' in second.text
        assert "Next page" not in second.text
        everyone = await admin.get("/-/admin/users?page=2", headers=JSON)
        assert everyone.json()["total"] == 58
        assert everyone.json()["pages"] == 2 and len(everyone.json()["users"]) == 8
        for page in ("0", "-3", "abc", "9" * 5000, "99"):  # clamped, never a 500
            found = await admin.get("/-/admin/users", params={"page": page}, headers=JSON)
            assert found.status_code == 200
            assert found.json()["page"] in (1, 2), page
        by_email = await admin.get("/-/admin/users?q=ALICE@EXAMPLE", headers=JSON)
        assert [u["username"] for u in by_email.json()["users"]] == ["alice"]


async def test_percent_and_underscore_are_searched_literally(server: Server) -> None:
    for name in ("under_score", "underXscore"):
        await server.doorman.users.create(name, password_hash=None)
    # Usernames have no "%"; emails may.
    await server.doorman.users.create("percent", email="50%off@example.com")
    await server.doorman.users.create("letter", email="50Xoff@example.com")
    async with signed_in(server) as admin:
        for q, expected in [("_", ["under_score"]), ("%", ["percent"]), ("r_s", ["under_score"])]:
            found = await admin.get("/-/admin/users", params={"q": q}, headers=JSON)
            assert [u["username"] for u in found.json()["users"]] == expected, q
        page = await admin.get("/-/admin/users", params={"q": "<b>x</b>"}, headers=HTML)
        assert "<b>x</b>" not in page.text and "&lt;b&gt;x&lt;/b&gt;" in page.text


async def test_create_a_user(server: Server) -> None:
    async with signed_in(server) as admin:
        data = {
            "username": "carol",
            "email": "carol@example.com",
            "password": NEW_PASSWORD,
            "password2": NEW_PASSWORD,
            "groups": "staff, ops ,",
            "admin": "on",
        }
        response = await post(admin, "/-/admin/users", data)
        assert response.status_code == 303
        assert response.headers["location"] == "/-/admin/users/carol?done=created"
        page = await admin.get(response.headers["location"], headers=HTML)
        assert "User created." in page.text
    carol = await user(server, "carol")
    assert (
        carol.is_admin and carol.groups == ("ops", "staff") and carol.email == "carol@example.com"
    )
    assert (await server.doorman.hasher.verify(NEW_PASSWORD, carol.password_hash)).ok


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"username": "bad name"}, "A username is 1 to 150"),
        ({"username": "ALICE"}, "That username is taken."),
        ({"password2": "something else entirely"}, "The two passwords differ."),
        ({"password": "short", "password2": "short"}, "This password is shorter than 10"),
        ({"groups": "ok, !bad"}, "A group name is"),
        ({"email": "not-an-email"}, "is not an email address"),
    ],
)
async def test_a_bad_new_user_is_refused(
    server: Server, change: dict[str, str], message: str
) -> None:
    data = {"username": "dave", "password": NEW_PASSWORD, "password2": NEW_PASSWORD, **change}
    async with signed_in(server) as admin:
        page = await post(admin, "/-/admin/users", data)
        assert page.status_code == 400
        assert message in page.text
        answer = await json_post(admin, "/-/admin/users", data)
        assert answer.status_code == 400
        assert any(message in error for error in answer.json()["errors"])
    assert await server.doorman.users.count() == 3


async def test_notices_come_from_a_fixed_list(server: Server) -> None:
    async with signed_in(server) as admin:
        page = await admin.get("/-/admin/users/bob?done=<script>alert(1)</script>", headers=HTML)
        assert "alert(1)" not in page.text
        assert 'role="status"' not in page.text
        page = await admin.get("/-/admin/users/bob?done=unlock", headers=HTML)
        assert "Sign-in unlocked" in page.text


# -- actions on one user ----------------------------------------------------------------


async def test_disable_ends_their_session_and_enable_lets_them_back(server: Server) -> None:
    async with signed_in(server, "bob") as bob, signed_in(server) as admin:
        assert (await actor_of(bob))["username"] == "bob"
        response = await post(admin, "/-/admin/users/bob/disable")
        assert response.status_code == 303
        assert response.headers["location"] == "/-/admin/users/bob?done=disable"
        assert not (await user(server, "bob")).is_active
        assert await server.doorman.signins.list(await user(server, "bob")) == []
        assert await actor_of(bob) is None
        assert (await post(admin, "/-/admin/users/bob/enable")).status_code == 303
    assert (await user(server, "bob")).is_active
    async with signed_in(server, "bob") as bob:
        assert (await actor_of(bob))["username"] == "bob"


async def test_make_and_remove_admin(server: Server) -> None:
    async with signed_in(server) as admin:
        assert (await post(admin, "/-/admin/users/bob/make-admin")).status_code == 303
        assert (await user(server, "bob")).is_admin
        async with signed_in(server, "bob") as bob:
            assert (await bob.get("/-/admin/users", headers=HTML)).status_code == 200
            assert (await post(admin, "/-/admin/users/bob/remove-admin")).status_code == 303
            assert not (await user(server, "bob")).is_admin
            assert (await bob.get("/-/admin/users", headers=HTML)).status_code == 403


@pytest.mark.parametrize("action", ["disable", "remove-admin", "delete"])
async def test_admins_cannot_lock_themselves_out(server: Server, action: str) -> None:
    async with signed_in(server) as admin:
        data = {"confirm": "root"} if action == "delete" else None
        page = await post(admin, f"/-/admin/users/root/{action}", data)
        assert page.status_code == 400
        assert "your own account" in page.text
        answer = await json_post(admin, f"/-/admin/users/root/{action}", data)
        assert answer.status_code == 400 and answer.json()["errors"]
        root = await user(server, "root")
        assert root.is_admin and root.is_active
        assert (await actor_of(admin))["username"] == "root"


async def test_reset_password_checks_it_and_ends_their_sessions(server: Server) -> None:
    async with signed_in(server, "bob") as bob, signed_in(server) as admin:
        path = "/-/admin/users/bob/password"
        mismatch = await post(admin, path, {"password": NEW_PASSWORD, "password2": "other"})
        assert mismatch.status_code == 400 and "The two passwords differ." in mismatch.text
        weak = await post(admin, path, {"password": "bob", "password2": "bob"})
        assert weak.status_code == 400 and "This password is shorter" in weak.text
        assert (await actor_of(bob))["username"] == "bob"
        good = await post(admin, path, {"password": NEW_PASSWORD, "password2": NEW_PASSWORD})
        assert good.status_code == 303
        assert await actor_of(bob) is None
        assert await server.doorman.signins.list(await user(server, "bob")) == []
    found = await server.doorman.authenticate("bob", NEW_PASSWORD, client=None)
    assert found.username == "bob"


async def test_an_admin_resetting_their_own_password_stays_signed_in(server: Server) -> None:
    async with signed_in(server) as admin:
        form = {"password": NEW_PASSWORD, "password2": NEW_PASSWORD}
        assert (await post(admin, "/-/admin/users/root/password", form)).status_code == 303
        assert (await actor_of(admin))["username"] == "root"


async def test_revoke_one_sign_in_and_sign_out_everywhere(server: Server) -> None:
    bob = await user(server, "bob")
    async with signed_in(server, "bob") as laptop:
        (laptop_signin,) = [s.id for s in await server.doorman.signins.list(bob)]
        async with signed_in(server, "bob") as phone, signed_in(server) as admin:
            assert len(await server.doorman.signins.list(bob)) == 2
            path = f"/-/admin/users/bob/sessions/{laptop_signin}/revoke"
            response = await post(admin, path)
            assert response.status_code == 303
            assert response.headers["location"] == "/-/admin/users/bob?done=revoke-session"
            assert await actor_of(laptop) is None
            assert (await actor_of(phone))["username"] == "bob"
            again = await post(admin, path)
            assert again.headers["location"] == "/-/admin/users/bob?done=gone"
            assert (await json_post(admin, path)).status_code == 404
            # Another user's sign-in is not revoked through bob's page.
            root_signin = (await server.doorman.signins.list(await user(server, "root")))[0].id
            other = await json_post(admin, f"/-/admin/users/bob/sessions/{root_signin}/revoke")
            assert other.status_code == 404
            assert (await actor_of(admin))["username"] == "root"
            assert (await post(admin, "/-/admin/users/bob/sign-out")).status_code == 303
            assert await actor_of(phone) is None
            assert await server.doorman.signins.list(bob) == []
            assert (await actor_of(admin))["username"] == "root"


async def test_every_sign_in_is_listed_and_revocable(server: Server) -> None:
    async with signed_in(server, "bob") as bob, signed_in(server) as admin:
        page = await admin.get("/-/admin/sessions", headers=HTML)
        assert 'href="/-/admin/users/bob"' in page.text and "(this session)" in page.text
        bob_signin = (await server.doorman.signins.list(await user(server, "bob")))[0].id
        response = await post(admin, f"/-/admin/sessions/{bob_signin}/revoke")
        assert response.status_code == 303
        assert response.headers["location"] == "/-/admin/sessions?done=revoke-session"
        assert await actor_of(bob) is None
        again = await post(admin, f"/-/admin/sessions/{bob_signin}/revoke")
        assert again.headers["location"] == "/-/admin/sessions?done=gone"
        gone = await admin.get(again.headers["location"], headers=HTML)
        assert "that was signed out or revoked already" in gone.text
        assert (await json_post(admin, f"/-/admin/sessions/{bob_signin}/revoke")).status_code == 404
        listed = await admin.get("/-/admin/sessions", headers=JSON)
        assert [s["username"] for s in listed.json()["sessions"]] == ["root"]


async def test_a_hostile_user_agent_is_escaped(server: Server) -> None:
    hostile = "<script>alert(1)</script>"
    async with signed_in(server, "bob", **{"user-agent": hostile}), signed_in(server) as admin:
        for path in ("/-/admin/sessions", "/-/admin/users/bob"):
            page = await admin.get(path, headers=HTML)
            assert hostile not in page.text, path
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text, path


async def test_tokens_are_listed_and_revoked(server: Server) -> None:
    bob = await user(server, "bob")
    ci, ci_text = await server.doorman.tokens.create(bob, name="ci")
    laptop, laptop_text = await server.doorman.tokens.create(bob, name="laptop")
    _, script_text = await server.doorman.tokens.create(bob, name="script")
    async with signed_in(server) as admin:
        page = await admin.get("/-/admin/tokens", headers=HTML)
        assert 'aria-label="Revoke token ci of bob"' in page.text
        assert ci.id in page.text and laptop.id in page.text
        user_page = await admin.get("/-/admin/users/bob", headers=HTML)
        assert 'aria-label="Revoke token ci"' in user_page.text
        response = await post(admin, f"/-/admin/users/bob/tokens/{ci.id}/revoke")
        assert response.headers["location"] == "/-/admin/users/bob?done=revoke-token"
        assert await server.doorman.tokens.verify(ci_text) is None
        again = await json_post(admin, f"/-/admin/users/bob/tokens/{ci.id}/revoke")
        assert again.status_code == 404 and again.json()["errors"]
        assert (await json_post(admin, f"/-/admin/tokens/{ci.id}/revoke")).status_code == 404
        response = await post(admin, f"/-/admin/tokens/{laptop.id}/revoke")
        assert response.headers["location"] == "/-/admin/tokens?done=revoke-token"
        assert await server.doorman.tokens.verify(laptop_text) is None
        assert await server.doorman.tokens.verify(script_text) is not None
        assert (await post(admin, "/-/admin/users/bob/revoke-tokens")).status_code == 303
        assert await server.doorman.tokens.verify(script_text) is None
        listed = await admin.get("/-/admin/tokens", headers=JSON)
        assert listed.json() == {"tokens": []}


async def test_groups_are_edited(server: Server) -> None:
    async with signed_in(server) as admin:
        response = await post(admin, "/-/admin/users/bob/groups", {"groups": " staff,ops, ,staff"})
        assert response.status_code == 303
        assert (await user(server, "bob")).groups == ("ops", "staff")
        page = await admin.get("/-/admin/users/bob", headers=HTML)
        assert 'value="ops, staff"' in page.text
        bad = await post(admin, "/-/admin/users/bob/groups", {"groups": "ok, <bad>"})
        assert bad.status_code == 400 and "A group name is" in bad.text
        assert (await user(server, "bob")).groups == ("ops", "staff")
        assert (await post(admin, "/-/admin/users/bob/groups", {"groups": ""})).status_code == 303
    assert (await user(server, "bob")).groups == ()


async def test_delete_needs_the_username_typed_again(server: Server) -> None:
    async with signed_in(server, "bob") as bob, signed_in(server) as admin:
        confirm = await admin.get("/-/admin/users/bob/delete", headers=HTML)
        assert confirm.status_code == 200 and '<label for="confirm">' in confirm.text
        for wrong in ("", "BOB", "alice", " bob"):
            refused = await post(admin, "/-/admin/users/bob/delete", {"confirm": wrong})
            assert refused.status_code == 400, wrong
            assert "does not match" in refused.text
        assert await server.doorman.users.by_username("bob") is not None
        done = await post(admin, "/-/admin/users/bob/delete", {"confirm": "bob"})
        assert done.status_code == 303
        assert done.headers["location"] == "/-/admin/users?done=deleted"
        assert await server.doorman.users.by_username("bob") is None
        assert await actor_of(bob) is None
        assert (await admin.get("/-/admin/users/bob", headers=HTML)).status_code == 404


async def test_unlock_resets_the_throttle(server: Server) -> None:
    throttle = server.doorman.throttle
    for _ in range(throttle.per_account):
        async with await throttle.attempt("bob", None):
            pass  # no succeeded(): a failure
    with pytest.raises(Throttled):
        await throttle.check("bob", None)
    async with signed_in(server) as admin:
        page = await admin.get("/-/admin/users/bob", headers=HTML)
        assert "sign-in locked" in page.text
        assert (await admin.get("/-/admin/users/bob", headers=JSON)).json()["user"]["locked"]
        assert (await post(admin, "/-/admin/users/bob/unlock")).status_code == 303
    await throttle.check("bob", None)
    async with signed_in(server, "bob") as bob:
        assert (await actor_of(bob))["username"] == "bob"


async def test_unknown_users_and_actions_are_404(server: Server) -> None:
    async with signed_in(server) as admin:
        for path in ("/-/admin/users/nobody", "/-/admin/users/nobody/delete"):
            page = await admin.get(path, headers=HTML)
            assert page.status_code == 404 and "There is no such user." in page.text
        assert (await post(admin, "/-/admin/users/nobody/disable")).status_code == 404
        assert (await post(admin, "/-/admin/users/bob/explode")).status_code == 404
        assert (await admin.get("/-/admin/users/" + "x" * 5000, headers=JSON)).status_code == 404


async def test_usernames_with_url_characters_work(server: Server) -> None:
    await server.doorman.create_user("a+b@c.d", PASSWORD)
    async with signed_in(server) as admin:
        listed = await admin.get("/-/admin/users?q=a%2Bb", headers=HTML)
        assert 'href="/-/admin/users/a%2Bb%40c.d"' in listed.text
        page = await admin.get("/-/admin/users/a%2Bb%40c.d", headers=HTML)
        assert page.status_code == 200
        assert 'action="/-/admin/users/a%2Bb%40c.d/disable"' in page.text
        response = await post(admin, "/-/admin/users/a%2Bb%40c.d/disable")
        assert response.headers["location"] == "/-/admin/users/a%2Bb%40c.d?done=disable"
    assert not (await user(server, "a+b@c.d")).is_active


# -- CSRF and API clients ---------------------------------------------------------------


async def test_every_post_needs_the_csrf_token(server: Server) -> None:
    _, token_text = await server.doorman.tokens.create(await user(server, "bob"), name="ci")
    async with signed_in(server, "bob"), signed_in(server) as admin:
        before = await state_of_bob(server)
        signin, token = before[1][0], before[2][0]
        for path in POST_ROUTES:
            url = real_path(path, signin, token)
            data = POST_DATA.get(path, {})
            bare = await admin.post(url, data=data, headers=HTML)
            assert bare.status_code == 403, path
            forged = await admin.post(url, data={**data, "csrftoken": "x" * 43}, headers=HTML)
            assert forged.status_code == 403, path
            cross = await post(admin, url, data, **{"sec-fetch-site": "cross-site"})
            assert cross.status_code == 403, path
            as_json = await admin.post(url, json=data, headers=JSON)
            assert as_json.status_code == 403, path
        assert await state_of_bob(server) == before
        assert await server.doorman.users.by_username("mallory") is None
        assert await server.doorman.tokens.verify(token_text) is not None


async def test_an_admin_api_token_needs_no_csrf_token(server: Server) -> None:
    _, text = await server.doorman.tokens.create(await user(server, "root"), name="admin")
    bearer = {"authorization": f"Bearer {text}"}
    async with client(server.app, headers=bearer) as api:
        listed = await api.get("/-/admin/users", headers=JSON)
        assert listed.status_code == 200
        assert [u["username"] for u in listed.json()["users"]] == ["alice", "bob", "root"]
        created = await api.post(
            "/-/admin/users",
            json={"username": "erin", "password": NEW_PASSWORD, "password2": NEW_PASSWORD},
        )
        assert created.status_code == 201
        assert created.json()["user"]["username"] == "erin"
        disabled = await api.post("/-/admin/users/erin/disable", json={})
        assert disabled.json() == {"ok": True, "notice": "User disabled and signed out everywhere."}
        details = await api.get("/-/admin/users/erin", headers=JSON)
        assert details.json()["user"]["active"] is False
        missing = await api.post("/-/admin/users/nobody/enable", json={})
        assert missing.status_code == 404 and missing.json()["errors"]
