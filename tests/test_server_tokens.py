"""What an API token may do to its own account, on a real ``doorman serve`` (issue 12).

Item 1 was found against a running server: a token limited to ``account`` made
itself an unlimited, never-expiring token, which reached the admin pages. Here
each account action a token can reach is tried over HTTP on loopback, as that
tester would: make a wider or longer-lived token, revoke a wider one, change
the password or email address, sign the person's sessions out. Item 10: a new
token is shown in the answer to the POST and kept nowhere, neither in the
session table nor in a signed cookie. Item 9: what an admin's password reset,
disable and "sign out everywhere" do to the user's tokens.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from doorman.accounts.tokens import MAX_LIVE_TOKENS
from doorman.config import close_doorman, load_settings, open_doorman
from doorman.core import Doorman
from doorman.sessions import SessionSigner
from doorman.stores.cookie import CookieStore

from .servers import (
    JSON,
    PASSWORD,
    REQUEST_S,
    SECRET,
    Server,
    add_users,
    cookie_of,
    csrf_of,
    in_own_loop,
    post_form,
    running,
    sign_in,
    start_server,
    whoami,
    with_cookie,
)

pytestmark = pytest.mark.e2e

T = TypeVar("T")
DAY = 86400
NEW_PASSWORD = "violet kestrel over moorland"
TOKEN_TEXT = r"dmt_[0-9a-f]{16}_[A-Za-z0-9_-]{43}"
HTML = {"accept": "text/html,application/xhtml+xml"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("tokens")
    found = start_server(directory, db=str(directory / "doorman.db"))
    with running(found):
        yield found


def db_of(server: Server) -> str:
    return str(server.directory / "doorman.db")


def with_accounts(server: Server, action: Callable[[Doorman], Awaitable[T]]) -> T:
    """Run ``action`` on the server's database, in this process (as a second worker would)."""

    async def run() -> T:
        settings = load_settings(environ={}, overrides={"db": db_of(server), "secret": SECRET})
        doorman, store, _ = await open_doorman(settings)
        try:
            return await action(doorman)
        finally:
            await close_doorman(doorman, store)

    result: T = in_own_loop(run())
    return result


def make_token(
    server: Server, username: str, *, scopes: list[str] | None = None, days: int | None = None
) -> str:
    async def create(doorman: Doorman) -> str:
        user = await doorman.users.require(username)
        expires_in = None if days is None else days * DAY
        return (await doorman.tokens.create(user, scopes=scopes, expires_in=expires_in))[1]

    return with_accounts(server, create)


def token_id(text: str) -> str:
    return text[4:20]


def bearer(text: str) -> dict[str, str]:
    return {"authorization": f"Bearer {text}", **JSON}


def get(server: Server, path: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.get(server.url + path, headers=headers, timeout=REQUEST_S)


def post(
    server: Server, path: str, headers: dict[str, str], body: dict[str, object] | None = None
) -> httpx.Response:
    return httpx.post(server.url + path, json=body or {}, headers=headers, timeout=REQUEST_S)


def live_tokens(server: Server, text: str) -> dict[str, dict[str, Any]]:
    """The account's live tokens by id, as the account page lists them to ``text``."""
    listed = get(server, "/-/account", bearer(text))
    assert listed.status_code == 200, listed.text
    return {token["id"]: token for token in listed.json()["tokens"]}


def works(server: Server, text: str) -> bool:
    return whoami_as(server, text) is not None


def whoami_as(server: Server, text: str) -> dict[str, Any] | None:
    answer = get(server, "/-/whoami", bearer(text))
    assert answer.status_code == 200, answer.text
    actor: dict[str, Any] | None = answer.json()["actor"]
    return actor


# -- item 1: a token makes no token wider or longer-lived than itself --------------------


def test_a_scoped_token_cannot_make_itself_a_wider_one(server: Server) -> None:
    """The finding as reported: an admin's token limited to ``account`` asks for ``"0"``."""
    add_users(db_of(server), "ada", admins=("ada",))
    scoped = make_token(server, "ada", scopes=["account"], days=30)
    assert get(server, "/-/admin/users", bearer(scoped)).status_code == 403
    own_end = live_tokens(server, scoped)[token_id(scoped)]["expires_at"]

    for expires in ("0", "365", "30"):
        made = post(server, "/-/account/tokens", bearer(scoped), {"expires": expires})
        assert made.status_code == 201, made.text
        child = made.json()["token"]
        assert get(server, "/-/admin/users", bearer(child)).status_code == 403
        forward = get(server, "/-/auth", bearer(child))
        assert forward.status_code == 403, "not even allowed to view"
        assert "x-doorman-admin" not in forward.headers
        listed = live_tokens(server, scoped)[token_id(child)]
        assert listed["scopes"] == ["account"], expires
        assert listed["expires_at"] <= own_end, expires
        assert made.json()["created"] == {
            key: listed[key] for key in ("id", "scopes", "expires_at")
        }

    for scopes in ("account view", "admin", "account,admin"):
        wider = post(
            server, "/-/account/tokens", bearer(scoped), {"expires": "30", "scopes": scopes}
        )
        assert wider.status_code == 403, scopes
        assert "only the scopes it has" in wider.json()["error"]
    same = post(
        server, "/-/account/tokens", bearer(scoped), {"expires": "30", "scopes": " account,"}
    )
    assert same.status_code == 201, same.text
    assert same.json()["created"]["scopes"] == ["account"]
    assert len(live_tokens(server, scoped)) == 5, "one scoped token and the four it made"


def test_scopes_may_be_a_json_list_and_none_is_refused(server: Server) -> None:
    add_users(db_of(server), "liz")
    cookie = sign_in(server.url, "liz")
    person = with_cookie(cookie, **JSON, **{"x-csrftoken": csrf_of(server.url, cookie)})
    made = post(server, "/-/account/tokens", person, {"expires": "30", "scopes": ["view"]})
    assert made.status_code == 201 and made.json()["created"]["scopes"] == ["view"]
    for nothing in ([], "", " , "):
        refused = post(server, "/-/account/tokens", person, {"expires": "30", "scopes": nothing})
        assert refused.status_code == 400, nothing  # never read as "not limited"
        assert "at least one action" in refused.json()["errors"][0]
    scoped = make_token(server, "liz", scopes=["account"])
    wider = post(
        server, "/-/account/tokens", bearer(scoped), {"expires": "30", "scopes": ["admin"]}
    )
    assert wider.status_code == 403
    assert len(live_tokens(server, scoped)) == 2


def test_a_token_making_tokens_in_a_loop_stops_at_the_limit(server: Server) -> None:
    add_users(db_of(server), "loop")
    text = make_token(server, "loop")
    answers = [post(server, "/-/account/tokens", bearer(text), {"expires": "0"}).status_code]
    while answers[-1] == 201 and len(answers) < MAX_LIVE_TOKENS + 5:
        answers.append(
            post(server, "/-/account/tokens", bearer(text), {"expires": "0"}).status_code
        )
    assert answers == [201] * (MAX_LIVE_TOKENS - 1) + [400]
    assert len(live_tokens(server, text)) == MAX_LIVE_TOKENS


def test_an_admins_token_limited_to_view_is_no_admin_to_the_apps_behind(server: Server) -> None:
    """Found while attacking item 1: /-/auth said X-Doorman-Admin: true for such a token."""
    add_users(db_of(server), "adele", admins=("adele",))
    for scopes, admin in ((None, "true"), (["view"], "false"), (["admin", "view"], "true")):
        forward = get(server, "/-/auth", bearer(make_token(server, "adele", scopes=scopes)))
        assert forward.status_code == 200, scopes
        assert forward.headers["x-doorman-admin"] == admin, scopes


def test_an_unlimited_token_can_rotate_itself(server: Server) -> None:
    add_users(db_of(server), "rota")
    old = make_token(server, "rota")
    made = post(server, "/-/account/tokens", bearer(old), {"expires": "0", "name": "next"})
    assert made.status_code == 201
    assert (made.json()["created"]["scopes"], made.json()["created"]["expires_at"]) == (None, None)
    new = made.json()["token"]
    revoked = post(server, f"/-/account/tokens/{token_id(old)}/revoke", bearer(new))
    assert revoked.json() == {"revoked": True}
    assert not works(server, old) and works(server, new)
    # The other way round too: a token may always revoke itself.
    assert post(server, f"/-/account/tokens/{token_id(new)}/revoke", bearer(new)).status_code == 200
    assert not works(server, new)


def test_a_token_revokes_only_itself_and_tokens_within_its_reach(server: Server) -> None:
    add_users(db_of(server), "reach")
    wide = make_token(server, "reach")
    later = make_token(server, "reach", scopes=["account"], days=90)
    scoped = make_token(server, "reach", scopes=["account"], days=30)
    made = post(server, "/-/account/tokens", bearer(scoped), {"expires": "30"}).json()["token"]
    for target in (wide, later):
        refused = post(server, f"/-/account/tokens/{token_id(target)}/revoke", bearer(scoped))
        assert refused.status_code == 403, refused.text
        assert works(server, target)
    ok = post(server, f"/-/account/tokens/{token_id(made)}/revoke", bearer(scoped))
    assert ok.json() == {"revoked": True} and not works(server, made)
    # Another user's token reads as missing, as before: no hint that it exists.
    add_users(db_of(server), "other")
    others = make_token(server, "other", scopes=["view"], days=1)
    missing = post(server, f"/-/account/tokens/{token_id(others)}/revoke", bearer(wide))
    assert missing.status_code == 404 and works(server, others)


def test_a_token_cannot_change_the_password_or_email_nor_sign_sessions_out(
    server: Server,
) -> None:
    add_users(db_of(server), "pat")
    cookie = sign_in(server.url, "pat")
    text = make_token(server, "pat")
    headers = bearer(text)
    changed = post(
        server,
        "/-/account/password",
        headers,
        {"current_password": PASSWORD, "password": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )
    assert changed.status_code == 403, changed.text
    moved = post(
        server, "/-/account/email", headers, {"current_password": PASSWORD, "email": "m@evil.test"}
    )
    assert moved.status_code == 403, moved.text
    (signin,) = get(server, "/-/account", headers).json()["sessions"]
    ended = post(server, f"/-/account/sessions/{signin['id']}/revoke", headers)
    assert ended.status_code == 403, ended.text
    assert "sign in" in ended.json()["error"]

    actor = whoami(server.url, cookie)
    assert actor is not None and actor["username"] == "pat", "the session lives on"
    pat = with_accounts(server, lambda doorman: doorman.users.require("pat"))
    assert pat.email is None
    assert sign_in(server.url, "pat"), "the password is unchanged"
    # The person, signed in, still may: the session's CSRF token, no API token.
    form = {"current_password": PASSWORD, "email": "pat@example.com"}
    form["csrftoken"] = csrf_of(server.url, cookie)
    done = httpx.post(
        server.url + "/-/account/email",
        data=form,
        headers=with_cookie(cookie, **JSON),
        timeout=REQUEST_S,
    )
    assert done.status_code == 200, done.text


# -- item 10: a new token is shown once and kept nowhere in plain text -------------------


def create_on_the_page(server: Server, cookie: str) -> httpx.Response:
    """Make a token with the account page's form, as a browser posts it."""
    form = {"name": "ci", "expires": "30", "csrftoken": csrf_of(server.url, cookie)}
    return httpx.post(
        server.url + "/-/account/tokens",
        data=form,
        headers=with_cookie(cookie, **HTML),
        timeout=REQUEST_S,
    )


def shown_in(answer: httpx.Response) -> str:
    """The token the answer shows."""
    assert answer.status_code == 201, answer.status_code
    assert answer.headers["cache-control"] == "no-store"
    assert "it will not be shown again" in answer.text
    found = re.search(TOKEN_TEXT, answer.text)
    assert found is not None, answer.text
    return found[0]


def test_a_new_token_is_in_the_answer_and_not_in_the_session_table(server: Server) -> None:
    add_users(db_of(server), "sam")
    cookie = sign_in(server.url, "sam")
    answer = create_on_the_page(server, cookie)
    with contextlib.closing(sqlite3.connect(db_of(server))) as database:  # `with` alone: no close
        rows = [data for (data,) in database.execute("SELECT data FROM doorman_sessions")]
    assert rows and not [data for data in rows if "dmt_" in data], "a token in a session"
    text = shown_in(answer)
    assert works(server, text)
    page = httpx.get(server.url + "/-/account", headers=with_cookie(cookie, **HTML))
    assert page.status_code == 200 and text not in page.text


def test_a_new_token_is_not_in_a_signed_cookie(tmp_path: Path) -> None:
    directory = tmp_path / "cookie"
    server = start_server(directory, db=str(directory / "doorman.db"), sessions="cookie")
    with running(server):
        add_users(db_of(server), "cora")
        cookie = sign_in(server.url, "cora")
        answer = create_on_the_page(server, cookie)
        assert "dmt_" not in session_in(cookie_of(answer) or cookie), "a token in the cookie"
        assert works(server, shown_in(answer))


def session_in(cookie: str) -> str:
    """What a signed-cookie session holds: its JSON, as the server reads it."""
    key = SessionSigner(SECRET).unsign(cookie)
    payload = CookieStore().load_nowait(key)
    assert payload is not None
    json.loads(payload)
    return payload


# -- item 9: an admin's reset, disable and sign-out, and the user's tokens ---------------


@pytest.fixture(scope="module")
def boss(server: Server) -> str:
    """The session cookie of an admin of ``server``."""
    add_users(db_of(server), "boss", admins=("boss",))
    return sign_in(server.url, "boss")


def act(
    server: Server, boss: str, username: str, action: str, fields: dict[str, str] | None = None
) -> str:
    """An admin's action on one user, as the user page's form sends it; the notice."""
    answer = post_form(server.url, f"/-/admin/users/{username}/{action}", boss, fields or {})
    assert answer.status_code == 200, answer.text
    notice: str = answer.json().get("notice", "")
    return notice


def test_a_password_reset_revokes_the_tokens_unless_kept(server: Server, boss: str) -> None:
    add_users(db_of(server), "rex")
    text = make_token(server, "rex")
    reset = {"password": NEW_PASSWORD, "password2": NEW_PASSWORD}
    notice = act(server, boss, "rex", "password", reset)
    assert not works(server, text), "the intruder's token outlived the reset"
    assert "API tokens revoked" in notice
    kept = make_token(server, "rex")
    notice = act(server, boss, "rex", "password", {**reset, "revoke_tokens": "off"})
    assert works(server, kept) and "their API tokens still work" in notice


def test_disable_revokes_the_tokens_so_enable_brings_none_back(server: Server, boss: str) -> None:
    add_users(db_of(server), "dora")
    text = make_token(server, "dora")
    disabled, enabled = act(server, boss, "dora", "disable"), act(server, boss, "dora", "enable")
    assert not works(server, text), "re-enabling brought the token back"
    assert "API tokens revoked" in disabled and enabled == "User enabled."
    kept = make_token(server, "dora")
    notice = act(server, boss, "dora", "disable", {"revoke_tokens": "off"})
    assert not works(server, kept) and "work again if they are enabled" in notice
    assert "tokens work again" in act(server, boss, "dora", "enable")
    assert works(server, kept)


def test_sign_out_everywhere_keeps_the_tokens_unless_asked(server: Server, boss: str) -> None:
    add_users(db_of(server), "sol")
    cookie = sign_in(server.url, "sol")
    text = make_token(server, "sol")
    notice = act(server, boss, "sol", "sign-out")
    assert whoami(server.url, cookie) is None
    assert works(server, text) and "API tokens still work" in notice
    assert "API tokens revoked" in act(server, boss, "sol", "sign-out", {"revoke_tokens": "on"})
    assert not works(server, text)
    refused = post_form(server.url, "/-/admin/users/sol/sign-out", boss, {"revoke_tokens": "?"})
    assert refused.status_code == 400


def test_the_user_page_offers_to_revoke_the_tokens(server: Server, boss: str) -> None:
    add_users(db_of(server), "uma")
    sign_in(server.url, "uma")  # so that "Sign out everywhere" is offered
    page = httpx.get(server.url + "/-/admin/users/uma", headers=with_cookie(boss, **HTML))
    assert "revoke_tokens" not in page.text, "no box without tokens"
    make_token(server, "uma")
    make_token(server, "uma")
    page = httpx.get(server.url + "/-/admin/users/uma", headers=with_cookie(boss, **HTML))
    boxes = re.findall(r'<input id="([a-z-]+)-revoke-tokens" [^>]*?( checked)?>', page.text)
    assert boxes == [("disable", " checked"), ("password", " checked"), ("sign-out", "")]
    assert page.text.count("Also revoke their API tokens (2)") == 3
