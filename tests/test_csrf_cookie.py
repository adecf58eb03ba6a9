"""Anonymous visitors store nothing: their CSRF token is bound to a cookie, not a session.

Every cookieless ``GET /-/login`` or ``/-/whoami?csrf=1`` once stored a
14-day session only to hold a CSRF token: 300 requests made 300 rows in
SQLite and 300 keys in Redis. Now a visitor without a session gets a
``doorman_csrf`` cookie holding a random value, and the token is an HMAC of
it (double submit); a session that holds data (someone signed in) keeps its
own token, and only that one counts for it.
"""

from __future__ import annotations

import re
import socket
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from doorman.auth.csrf import COOKIE as CSRF_COOKIE
from doorman.auth.csrf import CSRF
from doorman.stores import open_store

from .conftest import SECRET
from .helpers import COOKIE, client, parse_set_cookie
from .servers import (
    CSRF_FIELD,
    PrivateRedis,
    fresh_postgres_database,
    in_own_loop,
    post_login,
    running,
    start_server,
)
from .test_server import HTML, PASSWORD, Server, browse, csrf_token, sign_in
from .test_server import running as running_in_process

pytestmark = pytest.mark.anyio

VISITS = 10_000
#: What anonymous visitors ask for, in turn: mostly the token for scripts (the cheapest
#: request that once stored a session), and pages with forms, a page not found and a
#: refused form (each page carries a token too).
ANONYMOUS = [
    *[("GET", "/-/whoami?csrf=1")] * 10,
    ("GET", "/-/login"),
    ("GET", "/-/login?next=/reports"),
    ("GET", "/-/register"),
    ("GET", "/-/no-such-page"),
    ("POST", "/-/login"),
    ("GET", "/-/account"),
]


# -- the store grows only with sign-ins: a real server, each store ------------------------


def session_count(sessions: str, db: str) -> int:
    async def count() -> int:
        store = open_store(sessions, db=db)
        try:
            found: int = await store.count()  # type: ignore[attr-defined]
            return found
        finally:
            await store.close()

    result: int = in_own_loop(count())
    return result


def _raw_request(method: str, path: str) -> bytes:
    body = b"username=alice&password=guess" if method == "POST" else b""
    head = f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: text/html\r\n"
    if body:
        head += "content-type: application/x-www-form-urlencoded\r\n"
    return f"{head}content-length: {len(body)}\r\n\r\n".encode() + body


def visit_anonymously(port: int, visits: int) -> Counter[int]:
    """``visits`` cookieless requests, pipelined on one connection; the statuses seen.

    Raw HTTP/1.1: a client library would spend more time than the server does.
    Status 0 counts the session cookies set (none should be).
    """
    batch = b"".join(_raw_request(method, path) for method, path in ANONYMOUS)
    statuses: Counter[int] = Counter()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        answers = sock.makefile("rb")
        for _ in range(visits // len(ANONYMOUS)):
            sock.sendall(batch)
            for method, path in ANONYMOUS:
                status = int(answers.readline().split()[1])
                length = None
                while (line := answers.readline().lower()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name == b"set-cookie" and value.strip().startswith(COOKIE.encode()):
                        statuses[0] += 1  # a session cookie: counted apart
                    if name == b"content-length":
                        length = int(value)
                assert length is not None, f"{method} {path}: no content-length"
                answers.read(length)
                statuses[status] += 1
    return statuses


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(db, sessions) of a deployment whose session store holds nothing yet."""
    sqlite = str(tmp_path / "doorman.db")
    if request.param == "sqlite":
        yield sqlite, "db"
    elif request.param == "postgres":
        with fresh_postgres_database() as db:
            yield db, "db"
    else:
        yield sqlite, request.getfixturevalue("private_redis").url


@pytest.mark.e2e
def test_ten_thousand_anonymous_requests_store_no_session(
    deployment: tuple[str, str], tmp_path: Path
) -> None:
    db, sessions = deployment
    server = start_server(tmp_path / "serve", db=db, sessions=sessions, allow_registration="true")
    with running(server):
        before = session_count(sessions, db)
        statuses = visit_anonymously(int(server.url.rsplit(":", 1)[1]), VISITS)
        assert session_count(sessions, db) == before, "anonymous visitors filled the store"
        assert statuses.pop(0, 0) == 0, "a session cookie for an anonymous visitor"
        assert sum(statuses.values()) == VISITS
        assert set(statuses) == {200, 302, 403, 404}, statuses
        from .servers import add_users

        add_users(db, "alice")
        assert post_login(server.url, "alice").status_code == 302
        assert session_count(sessions, db) == before + 1, "a sign-in is what makes a session"


# -- the double submit, in process -----------------------------------------------------------


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_in_process(tmp_path, allow_registration=True) as found:
        await found.doorman.create_user("alice", PASSWORD)
        yield found


def set_cookies(answer: httpx.Response) -> dict[str, dict[str, str]]:
    """Each cookie the answer sets: name -> its attributes, and its value under "=" ."""
    found = {}
    for header in answer.headers.get_list("set-cookie"):
        name, value, attributes = parse_set_cookie(header)
        found[name] = {**attributes, "=": value}
    return found


async def test_a_visitor_gets_a_csrf_cookie_and_no_session(server: Server) -> None:
    async with browse(server) as browser:
        page = await browser.get("/-/login", headers=HTML)
        cookies = set_cookies(page)
        assert COOKIE not in cookies, "no session for a visitor"
        csrf = cookies[CSRF_COOKIE]
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", csrf["="])
        assert csrf["path"] == "/" and csrf["samesite"] == "Lax" and "httponly" in csrf
        assert csrf["max-age"] == str(server.settings.session_max_age)
        assert "secure" not in csrf and "domain" not in csrf, "this host only"
        token = CSRF_FIELD.search(page.text)
        assert token is not None and token[1] != csrf["="], "the token is not the cookie"
        again = await browser.get("/-/login", headers=HTML)
        assert CSRF_COOKIE not in set_cookies(again), "made once, then kept"
        assert CSRF_FIELD.search(again.text)[1] == token[1]  # type: ignore[index]
        assert (await browser.get("/-/whoami?csrf=1")).json()["csrftoken"] == token[1]


async def test_the_cookie_is_secure_on_https_or_when_told(tmp_path: Path) -> None:
    async with (
        running_in_process(tmp_path) as found,
        client(found.app, base_url="https://auth.example.com") as web,
    ):
        answer = await web.get("/-/whoami?csrf=1")
        assert "secure" in set_cookies(answer)[CSRF_COOKIE]
    (tmp_path / "b").mkdir()
    async with (
        running_in_process(tmp_path / "b", cookie_secure=True) as found,
        client(found.app) as web,
    ):
        assert "secure" in set_cookies(await web.get("/-/login"))[CSRF_COOKIE]


async def test_the_token_is_bound_to_its_cookie(server: Server) -> None:
    form = {"username": "alice", "password": PASSWORD}
    async with browse(server) as mine, browse(server) as theirs:
        token = await csrf_token(mine)
        other = await csrf_token(theirs)
        assert token != other
        async with browse(server) as stranger:
            alone = await stranger.post("/-/login", data={**form, "csrftoken": token})
            assert alone.status_code == 403, "the token alone is not enough"
        swapped = await mine.post("/-/login", data={**form, "csrftoken": other})
        assert swapped.status_code == 403, "another browser's token"
        forged_cookie = {"cookie": f"{CSRF_COOKIE}={'A' * 43}"}
        async with browse(server) as forger:
            forged = await forger.post(
                "/-/login", data={**form, "csrftoken": token}, headers=forged_cookie
            )
            assert forged.status_code == 403, "a cookie of the attacker's choosing"
        assert (await mine.post("/-/login", data={**form, "csrftoken": token})).status_code == 302


async def test_a_signed_in_session_counts_only_its_own_token(server: Server) -> None:
    async with browse(server) as browser:
        before = await csrf_token(browser)
        await sign_in(browser)
        after = await csrf_token(browser)
        assert after != before, "sign-in rotates the token"
        stale = await browser.post("/-/logout", data={"csrftoken": before})
        assert stale.status_code == 403, "the cookie's token does not count once signed in"
        assert (await browser.get("/-/whoami")).json()["actor"]["id"] == "alice"
        out = await browser.post("/-/logout", data={"csrftoken": after})
        assert out.status_code == 303
        assert (await csrf_token(browser)) == before, "signed out: the cookie's token again"


async def test_a_json_client_signs_in_with_the_header(server: Server) -> None:
    async with browse(server) as api:
        token = (await api.get("/-/whoami?csrf=1")).json()["csrftoken"]
        assert COOKIE not in api.cookies
        body = {"username": "alice", "password": PASSWORD}
        signed = await api.post("/-/login", json=body, headers={"x-csrftoken": token})
        assert signed.status_code == 200 and signed.json()["actor"]["id"] == "alice"


async def test_forward_auth_never_touches_csrf(server: Server) -> None:
    async with browse(server) as proxy:
        for headers in ({}, HTML):
            answer = await proxy.get("/-/auth", headers=headers)
            assert "set-cookie" not in answer.headers
        assert not proxy.cookies


def test_a_token_outlives_a_secret_rotation() -> None:
    old, new = "o" * 40, "n" * 40
    scope: dict[str, Any] = {"type": "http", "headers": []}
    token = CSRF([old]).token(scope)
    value = scope["doorman.csrf_cookie"]
    later = {"type": "http", "headers": [(b"cookie", f"{CSRF_COOKIE}={value}".encode())]}
    assert CSRF([new, old]).verify(later, token), "the old secret still verifies"
    assert not CSRF([new]).verify(later, token), "until it is dropped"
    assert not CSRF([SECRET]).verify(later, token + "x")


async def test_a_visitor_signs_in_with_the_session_store_down(tmp_path: Path) -> None:
    """The login page needs no store now; the sign-in still fails closed (503)."""
    async with (
        running_in_process(tmp_path, sessions="redis://127.0.0.1:1/0") as down,
        browse(down) as browser,
    ):
        page = await browser.get("/-/login", headers=HTML)
        assert page.status_code == 200
        token = CSRF_FIELD.search(page.text)
        assert token is not None
        form = {"username": "alice", "password": PASSWORD, "csrftoken": token[1]}
        assert (await browser.post("/-/login", data=form)).status_code == 503


async def test_any_asgi_app_can_bind_its_forms_to_the_cookie() -> None:
    """``CSRF`` and ``CSRFCookieMiddleware`` in a plain Starlette app, as docs/fastapi.md says."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from doorman import MemoryStore, SessionMiddleware
    from doorman.auth.csrf import CSRFCookieMiddleware

    csrf = CSRF(SECRET)

    async def form(request: Request) -> PlainTextResponse:
        if request.method == "GET":
            return PlainTextResponse(csrf.token(request.scope))
        given = (await request.form()).get("csrftoken")
        if not csrf.verify(request.scope, given):
            return PlainTextResponse("forged", 403)
        request.session["signed"] = True
        return PlainTextResponse("ok")

    store = MemoryStore()
    app = Starlette(routes=[Route("/form", form, methods=["GET", "POST"])])
    wrapped = SessionMiddleware(CSRFCookieMiddleware(app, csrf=csrf), secret=SECRET, store=store)
    async with client(wrapped) as browser:
        token = (await browser.get("/form")).text
        assert CSRF_COOKIE in browser.cookies and await store.count() == 0
        assert (await browser.post("/form", data={"csrftoken": "x" * 43})).status_code == 403
        assert (await browser.post("/form", data={"csrftoken": token})).text == "ok"
        assert await store.count() == 1
        session_token = (await browser.get("/form")).text
        assert session_token != token, "the session holds data now: its own token"
        assert (await browser.post("/form", data={"csrftoken": token})).status_code == 403
        assert (await browser.post("/form", data={"csrftoken": session_token})).text == "ok"
