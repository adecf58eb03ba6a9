"""The forward-auth fast path answers exactly as the full stack does, byte for byte.

``create_app`` sends ``/-/auth`` down a short stack (``doorman.server.fast_auth``).
Each test here asks the same request of the server as built (its entrance: the
fast path) and of the full stack behind it, each time from the same starting
state, and compares status, every header in order, and body. The states are
the ones a proxy meets: signed in, anonymous, a browser to send to the login
page, a forged or ended session, a refused user, a token, HTTP Basic, CORS, an
idle timeout that renews the cookie, a plugin's actor, a store that is down.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from doorman import PasswordHasher
from doorman._types import ASGIApp
from doorman.config import Settings, assemble, load_settings
from doorman.core import Doorman
from doorman.hookspecs import hookimpl
from doorman.server.app import create_app
from doorman.server.fast_auth import FastPaths, ForwardAuthEntrance

from .conftest import SECRET
from .helpers import client, migrated_sqlite, session_signer

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery staple"
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


@dataclass
class World:
    """One server: its app as built, and the full stack behind the fast path."""

    app: ASGIApp
    full: ASGIApp
    doorman: Doorman
    settings: Settings


def full_stack(app: Any) -> ASGIApp:
    """The app behind ``FastPaths``: what answered ``/-/auth`` before the fast path.

    Without a fast path (a plugin wraps the app), the app itself.
    """
    found = app
    while not isinstance(found, FastPaths):
        found = getattr(found, "app", None)
        if found is None:
            return app  # type: ignore[no-any-return]
    return found.app


@contextlib.asynccontextmanager
async def world(
    tmp_path: Path, *, plugins: list[Any] = (), **overrides: Any
) -> AsyncIterator[World]:  # type: ignore[assignment]
    if "db" not in overrides:
        overrides["db"] = migrated_sqlite(tmp_path / "doorman.db")
    options = {
        "secret": SECRET,
        "public_url": "https://auth.example.com",
        "allowed_origins": ["https://app.example.com"],
        **overrides,
    }
    settings = load_settings(environ={}, overrides=options)
    doorman, store = assemble(settings, [SECRET])
    doorman.hasher = doorman.users.hasher = PasswordHasher(time_cost=1, memory_cost=1024)
    for plugin in plugins:
        doorman.plugins.register(plugin)
    await doorman.startup()
    await doorman.create_user("alice", PASSWORD)
    try:
        app = create_app(settings, doorman=doorman, store=store)
        yield World(app, full_stack(app), doorman, settings)
    finally:
        await store.close()
        await doorman.close()
        await doorman.engine.dispose()


async def sign_in(world: World, username: str = "alice") -> bytes:
    """A session cookie header value, from a JSON sign-in over the app."""
    async with client(world.app, base_url="https://auth.example.com") as browser:
        token = (await browser.get("/-/whoami?csrf=1")).json()["csrftoken"]
        answer = await browser.post(
            "/-/login",
            json={"username": username, "password": PASSWORD},
            headers={"x-csrftoken": token},
        )
        assert answer.status_code == 200, answer.text
        return f"doorman_session={browser.cookies['doorman_session']}".encode()


async def ask(
    app: ASGIApp,
    headers: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
    *,
    method: str = "GET",
    path: str = "/-/auth",
    query: bytes = b"",
    root_path: str = "",
) -> Answer:
    """One request straight through ``app``, as uvicorn would make it; what it sent."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": root_path,
        "headers": [(b"host", b"auth.example.com"), *headers],
        "client": ("203.0.113.7", 50000),
        "server": ("127.0.0.1", 8000),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start, *bodies = sent
    assert start["type"] == "http.response.start", sent
    body = b"".join(m.get("body", b"") for m in bodies)
    return start["status"], [tuple(h) for h in start["headers"]], body  # type: ignore[misc]


def without_cookie_values(answer: Answer) -> Answer:
    """Set-Cookie values differ from run to run (new keys, new times); their attributes not."""
    status, headers, body = answer
    kept = []
    for name, value in headers:
        if name == b"set-cookie":
            cookie, _, attributes = value.partition(b";")
            name_part = cookie.split(b"=", 1)[0]
            value = (
                name_part
                + (b"=<value>" if cookie != name_part + b"=" else b"=")
                + b";"
                + attributes
            )
        kept.append((name, value))
    return status, kept, body


async def same_answer(
    world: World, prepare: Callable[[], Awaitable[list[tuple[bytes, bytes]]]], **request: Any
) -> Answer:
    """The fast path's answer, after checking it against the full stack's from a fresh state."""
    full = await ask(world.full, await prepare(), **request)
    fast = await ask(world.app, await prepare(), **request)
    assert without_cookie_values(fast) == without_cookie_values(full)
    return fast


def headers_of(answer: Answer) -> dict[bytes, bytes]:
    return dict(answer[1])


async def nothing() -> list[tuple[bytes, bytes]]:
    return []


# -- the answers a proxy gets ------------------------------------------------------------


@pytest.mark.parametrize("sessions", ["cookie", "db", "memory"])
async def test_signed_in_anonymous_and_browsers(tmp_path: Path, sessions: str) -> None:
    async with world(tmp_path, sessions=sessions) as w:

        async def signed_in() -> list[tuple[bytes, bytes]]:
            return [(b"cookie", await sign_in(w))]

        ok = await same_answer(w, signed_in)
        assert ok[0] == 200 and headers_of(ok)[b"x-doorman-user"] == b"alice"
        assert (await same_answer(w, nothing))[0] == 401

        async def other_cookies() -> list[tuple[bytes, bytes]]:
            return [(b"cookie", b"theme=dark; xdoorman_session=1"), (b"authorization", b"")]

        assert (await same_answer(w, other_cookies))[0] == 401
        html = [(b"accept", b"text/html,application/xhtml+xml")]

        async def browser() -> list[tuple[bytes, bytes]]:
            return html

        assert (await same_answer(w, browser))[0] == 302
        rd = await same_answer(w, nothing, query=b"rd=https://app.example.com/x")
        assert rd[0] == 302 and b"next_sig" in headers_of(rd)[b"location"]
        for method in ("HEAD", "POST", "PUT", "DELETE"):
            assert (await same_answer(w, signed_in, method=method))[0] == 200
        assert (await same_answer(w, nothing, method="PATCH"))[0] == 405
        assert (await same_answer(w, signed_in, root_path="/auth", path="/auth/-/auth"))[0] in (
            200,
            404,
        )


async def test_forged_and_ended_sessions(tmp_path: Path) -> None:
    async with world(tmp_path, sessions="cookie") as w:

        async def forged() -> list[tuple[bytes, bytes]]:
            cookie = await sign_in(w)
            return [(b"cookie", cookie[:-4] + b"AAAA")]

        refused = await same_answer(w, forged)
        assert refused[0] == 401 and (b"vary", b"Cookie") in refused[1]

        async def disabled() -> list[tuple[bytes, bytes]]:
            users = w.doorman.users
            await users.set_active(await users.require("alice"), True)
            cookie = await sign_in(w)
            await users.set_active(await users.require("alice"), False)
            return [(b"cookie", cookie)]

        ended = await same_answer(w, disabled)
        assert ended[0] == 401 and b"set-cookie" in headers_of(ended)
        await w.doorman.users.set_active(await w.doorman.users.require("alice"), True)

        async def two_cookies() -> list[tuple[bytes, bytes]]:
            one, other = await sign_in(w), await sign_in(w)
            return [(b"cookie", one + b"; " + other)]

        assert (await same_answer(w, two_cookies))[0] == 200


async def test_a_user_the_rules_refuse_gets_403(tmp_path: Path) -> None:
    async with world(tmp_path, permissions={"view": {"allow": {"id": ["bob"]}}}) as w:

        async def signed_in() -> list[tuple[bytes, bytes]]:
            return [(b"cookie", await sign_in(w))]

        assert (await same_answer(w, signed_in))[0] == 403


async def test_tokens_and_basic(tmp_path: Path) -> None:
    async with world(tmp_path, basic_auth=True) as w:
        alice = await w.doorman.users.require("alice")
        _, text = await w.doorman.tokens.create(alice, name="proxy")

        async def bearer() -> list[tuple[bytes, bytes]]:
            return [(b"authorization", f"Bearer {text}".encode())]

        assert headers_of(await same_answer(w, bearer))[b"x-doorman-user"] == b"alice"
        pair = base64.b64encode(f"alice:{PASSWORD}".encode())

        async def basic() -> list[tuple[bytes, bytes]]:
            return [(b"authorization", b"Basic " + pair)]

        assert (await same_answer(w, basic))[0] == 200

        async def wrong() -> list[tuple[bytes, bytes]]:
            return [(b"authorization", b"Bearer not-a-token")]

        assert (await same_answer(w, wrong))[0] == 401


async def test_cors_headers_come_as_before(tmp_path: Path) -> None:
    async with world(tmp_path, cors_origins=["https://app.example.com"]) as w:

        async def from_app() -> list[tuple[bytes, bytes]]:
            return [(b"cookie", await sign_in(w)), (b"origin", b"https://app.example.com")]

        answer = await same_answer(w, from_app)
        assert headers_of(answer)[b"access-control-allow-origin"] == b"https://app.example.com"

        async def from_elsewhere() -> list[tuple[bytes, bytes]]:
            return [(b"origin", b"https://evil.example")]

        assert (b"vary", b"Origin") in (await same_answer(w, from_elsewhere))[1]


async def test_an_idle_timeout_renews_the_cookie_as_before(tmp_path: Path) -> None:
    async with world(tmp_path, sessions="cookie", idle_timeout=600) as w:

        async def signed_in() -> list[tuple[bytes, bytes]]:
            return [(b"cookie", await sign_in(w))]

        assert (await same_answer(w, signed_in))[0] == 200


class HeaderActor:
    """A plugin: ``X-Robot: name`` is the actor ``name``."""

    @hookimpl
    def actor_from_request(self, doorman: Any, scope: Any) -> Any:
        for name, value in scope["headers"]:
            if name == b"x-robot":
                return {"id": value.decode(), "username": value.decode()}
        return None


async def test_a_plugins_actor_is_asked_for(tmp_path: Path) -> None:
    async with world(tmp_path, plugins=[HeaderActor()]) as w:

        async def robot() -> list[tuple[bytes, bytes]]:
            return [(b"x-robot", b"r2d2")]

        assert headers_of(await same_answer(w, robot))[b"x-doorman-user"] == b"r2d2"


async def test_a_session_store_that_is_down_fails_closed_as_before(tmp_path: Path) -> None:
    signed = session_signer().sign("k" * 43).encode()

    async def with_cookie() -> list[tuple[bytes, bytes]]:
        return [(b"cookie", b"doorman_session=" + signed)]

    async with world(tmp_path, sessions="redis://127.0.0.1:1/0") as w:
        assert (await same_answer(w, with_cookie))[0] == 503


class Wrapper:
    """A plugin's ``asgi_wrapper``: it must see ``/-/auth`` too."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl
    def asgi_wrapper(self, doorman: Any) -> Any:
        def wrap(app: Any) -> Any:
            async def wrapped(scope: Any, receive: Any, send: Any) -> None:
                if scope["type"] == "http":
                    self.seen.append(scope["path"])
                await app(scope, receive, send)

            return wrapped

        return wrap


async def test_a_plugins_asgi_wrapper_still_sees_forward_auth(tmp_path: Path) -> None:
    wrapper = Wrapper()
    async with world(tmp_path, plugins=[wrapper]) as w:
        assert w.full is w.app, "no fast path past a plugin's wrapper"
        assert (await ask(w.app))[0] == 401
    assert wrapper.seen == ["/-/auth"]


# -- /-/whoami takes a short stack too ----------------------------------------------------


@pytest.mark.parametrize("sessions", ["cookie", "db"])
async def test_whoami_answers_as_before(tmp_path: Path, sessions: str) -> None:
    async with world(tmp_path, sessions=sessions, cors_origins=["https://app.example.com"]) as w:
        alice = await w.doorman.users.require("alice")
        _, text = await w.doorman.tokens.create(alice, name="api", scopes=["view"])

        async def bearer() -> list[tuple[bytes, bytes]]:
            return [(b"authorization", f"Bearer {text}".encode())]

        async def signed_in() -> list[tuple[bytes, bytes]]:
            return [(b"cookie", await sign_in(w)), (b"origin", b"https://app.example.com")]

        token = await same_answer(w, bearer, path="/-/whoami")
        assert b'"token"' in token[2] and b'"scopes":["view"]' in token[2]
        assert b'"id":"alice"' in (await same_answer(w, signed_in, path="/-/whoami"))[2]
        assert (await same_answer(w, nothing, path="/-/whoami"))[2] == b'{"actor":null}'
        assert (await same_answer(w, signed_in, path="/-/whoami", method="HEAD"))[0] == 200
        assert (await same_answer(w, nothing, path="/-/whoami", method="POST"))[0] == 405
        csrf = await ask(w.app, path="/-/whoami", query=b"csrf=1")  # a new token each time
        assert b"csrftoken" in csrf[2] and b"set-cookie" in headers_of(csrf)


# -- kept answers: asked again and again, and after each change ------------------------------


async def again_and_again(
    world: World, headers: list[tuple[bytes, bytes]], **request: Any
) -> Answer:
    """The same request three times through the fast path, each time as the full stack answers."""
    answers = []
    for _ in range(3):
        full = await ask(world.full, headers, **request)
        fast = await ask(world.app, headers, **request)
        assert without_cookie_values(fast) == without_cookie_values(full)
        answers.append(fast)
    assert answers[0] == answers[1] == answers[2]
    return answers[-1]


class CountingStack:
    """Stands in front of the entrance's stack: how many requests the entrance sent down it."""

    def __init__(self, entrance: ForwardAuthEntrance) -> None:
        self.stack, self.calls = entrance.stack, 0
        entrance.stack = self

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        await self.stack(scope, receive, send)


def entrance_of(app: Any) -> ForwardAuthEntrance:
    while not isinstance(app, FastPaths):
        app = app.app
    entrance = app.paths["/-/auth"].app
    while not isinstance(entrance, ForwardAuthEntrance):
        entrance = entrance.app
    return entrance


@pytest.mark.parametrize("sessions", ["cookie", "db"])
async def test_a_repeated_check_is_answered_at_the_entrance(tmp_path: Path, sessions: str) -> None:
    """The kept answer, as the full stack gives it, without going down the stack; a request
    with credentials still goes down it."""
    async with world(tmp_path, sessions=sessions) as w:
        cookie = [(b"cookie", await sign_in(w))]
        stack = CountingStack(entrance_of(w.app))
        answer = await again_and_again(w, cookie)
        assert answer[0] == 200 and stack.calls == 1, "the first makes the answer; two kept"
        await ask(w.app, [*cookie, (b"authorization", b"Bearer not-a-token")])
        assert stack.calls == 2


@pytest.mark.parametrize("sessions", ["cookie", "db"])
async def test_an_idle_timeout_renews_the_cookie_at_the_entrance_too(
    tmp_path: Path, sessions: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    async with world(tmp_path, sessions=sessions, idle_timeout=300) as w:  # a touch every 30 s
        cookie = [(b"cookie", await sign_in(w))]
        stack = CountingStack(entrance_of(w.app))
        await again_and_again(w, cookie)
        now = time.time()
        monkeypatch.setattr(time, "time", lambda: now + 40)  # a touch is due, last_seen not
        answer = await ask(w.app, cookie)
        assert answer[0] == 200 and stack.calls == 1
        renewed = headers_of(answer)[b"set-cookie"].split(b";")[0]
        assert (await ask(w.app, [(b"cookie", renewed)]))[0] == 200
        monkeypatch.setattr(time, "time", lambda: now + 40 + 301)  # idle past the timeout
        assert (await ask(w.app, [(b"cookie", renewed)]))[0] == 401


async def test_answers_made_at_the_entrance_are_logged_as_the_stacks_are(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with world(tmp_path) as w:
        cookie = [(b"cookie", await sign_in(w))]
        stack = CountingStack(entrance_of(w.app))
        with caplog.at_level(logging.INFO, logger="doorman.access"):
            for headers in (cookie, cookie, [], [(b"cookie", b"doorman_session=forged")]):
                await ask(w.app, headers)
    assert stack.calls == 2, "the first signed-in check and the forged cookie"
    access = [r for r in caplog.records if r.name == "doorman.access"]
    lines = [re.sub(r" [0-9.]+ms$", "", r.getMessage()) for r in access]
    forged = [r for r in caplog.records if "bad signature" in r.getMessage()]
    assert len(forged) == 1, "the entrance and the stack read the cookie once between them"
    assert lines == [
        '203.0.113.7 "GET /-/auth HTTP/1.1" 200',
        '203.0.113.7 "GET /-/auth HTTP/1.1" 200',
        '203.0.113.7 "GET /-/auth HTTP/1.1" 401',
        '203.0.113.7 "GET /-/auth HTTP/1.1" 401',
    ]


async def alice(world: World) -> Any:
    return await world.doorman.users.require("alice")


CHANGES = {
    "disabled": lambda w, a: w.doorman.users.set_active(a, False),
    "new groups": lambda w, a: w.doorman.users.set_groups(a, ["staff"]),
    "made admin": lambda w, a: w.doorman.users.set_admin(a, True),
    "new password": lambda w, a: w.doorman.users.set_password(a, "a brand new passphrase"),
    "signed out everywhere": lambda w, a: w.doorman.signins.revoke_all(a),
}


@pytest.fixture
def postgres_db(emptied_postgres_url: str) -> str:
    """A PostgreSQL database as good as this test's own: doorman's tables, no rows."""
    return emptied_postgres_url


@pytest.mark.parametrize("change", CHANGES)
@pytest.mark.parametrize("sessions", ["cookie", "db", "postgres"])
async def test_a_kept_signed_in_answer_ends_with_any_change(
    tmp_path: Path, sessions: str, change: str, request: pytest.FixtureRequest
) -> None:
    options = {"sessions": sessions}
    if sessions == "postgres":  # users, sign-ins and sessions in PostgreSQL: epochs read
        options = {"sessions": "db", "db": request.getfixturevalue("postgres_db")}
    async with world(tmp_path, **options) as w:
        cookie = [(b"cookie", await sign_in(w))]
        assert (await again_and_again(w, cookie))[0] == 200
        await CHANGES[change](w, await alice(w))
        # The first answer after the change ends the session (the server-side store
        # deletes it): from then on, both stacks see the same state again.
        first = await ask(w.app, cookie)
        after = await again_and_again(w, cookie)
        if change in ("new groups", "made admin"):
            assert first == after and after[0] == 200
            admin, groups = (
                headers_of(after)[h] for h in (b"x-doorman-admin", b"x-doorman-groups")
            )
            assert (admin, groups) == (
                (b"false", b"staff") if change == "new groups" else (b"true", b"")
            )
        else:
            assert first[0] == after[0] == 401
            assert b"set-cookie" in headers_of(first), "the session is ended, not kept"


@pytest.mark.parametrize("change", ["revoked", *CHANGES])
async def test_a_kept_token_answer_ends_with_any_change(tmp_path: Path, change: str) -> None:
    async with world(tmp_path) as w:
        token, text = await w.doorman.tokens.create(await alice(w), name="api")
        bearer = [(b"authorization", f"Bearer {text}".encode())]
        assert b'"id":"alice"' in (await again_and_again(w, bearer, path="/-/whoami"))[2]
        if change == "revoked":
            await w.doorman.tokens.revoke(token.id)
        else:
            await CHANGES[change](w, await alice(w))
        after = (await again_and_again(w, bearer, path="/-/whoami"))[2]
        if change in ("revoked", "disabled"):
            assert after == b'{"actor":null}'
        else:
            assert b'"id":"alice"' in after


async def test_kept_answers_end_on_time_and_note_use_once_a_minute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    async with world(tmp_path) as w:
        cookie = [(b"cookie", await sign_in(w))]
        _, text = await w.doorman.tokens.create(await alice(w), name="api", expires_in=600)
        bearer = [(b"authorization", f"Bearer {text}".encode())]
        await again_and_again(w, cookie)
        await again_and_again(w, bearer, path="/-/whoami")
        now = time.time()
        monkeypatch.setattr(time, "time", lambda: now + 90)  # past last_seen's minute
        await ask(w.app, cookie)
        await ask(w.app, bearer, path="/-/whoami")
        [signin] = await w.doorman.signins.list()
        [used] = await w.doorman.tokens.list()
        assert signin.last_seen >= now + 90 and used.last_used_at == now + 90
        monkeypatch.setattr(time, "time", lambda: now + 601)  # the token has expired
        assert (await again_and_again(w, bearer, path="/-/whoami"))[2] == b'{"actor":null}'


async def test_many_requests_at_once_after_a_change_on_postgres(
    tmp_path: Path, postgres_db: str
) -> None:
    """Each finds the kept answer gone stale while reading the epoch; none may fail (a 500)."""
    import asyncio

    async with world(tmp_path, db=postgres_db, sessions="db") as w:
        token, text = await w.doorman.tokens.create(await alice(w), name="api")
        bearer = [(b"authorization", f"Bearer {text}".encode())]
        cookie = [(b"cookie", await sign_in(w))]
        await again_and_again(w, bearer, path="/-/whoami")
        await again_and_again(w, cookie)
        await w.doorman.tokens.revoke(token.id)
        await w.doorman.users.set_groups(await alice(w), ["staff"])

        async def one(headers: list[tuple[bytes, bytes]], path: str) -> Answer:
            return await asyncio.create_task(ask(w.app, headers, path=path))

        tokens = await asyncio.gather(*(one(bearer, "/-/whoami") for _ in range(20)))
        sessions = await asyncio.gather(*(one(cookie, "/-/auth") for _ in range(20)))
    assert {body for _, _, body in tokens} == {b'{"actor":null}'}
    assert {headers_of(answer)[b"x-doorman-groups"] for answer in sessions} == {b"staff"}
