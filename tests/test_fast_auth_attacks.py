"""Attacks on the forward-auth fast path, from outside, against real ``doorman serve`` processes.

``tests/test_fast_auth.py`` compares the fast path with the full stack in
process. Here the servers are real (uvicorn, two workers, loopback only) and
the client is hostile:

- hostile cookies and credentials (two session cookies, two Cookie headers,
  ``xdoorman_session=``, odd spacing, quotes, truncated, forged, oversized,
  a session of one user beside a token or a password of another) are answered
  by the fast path exactly as by the full stack: a second server on the same
  database whose plugin wraps the app, which turns the fast path off;
- a kept signed-in answer ends at once, on both workers, when the session
  ends or changes elsewhere (another worker, the CLI), with many requests in
  flight right after the change was acknowledged;
- 2,000 distinct forged cookies, then a valid one: the caches churn, the
  answers stay right;
- the access log never shows a one-time link's token, however its route is
  spelled.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import re
import secrets
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .helpers import session_signer
from .servers import (
    PASSWORD,
    REQUEST_S,
    Server,
    add_users,
    csrf_of,
    doorman_cli,
    doorman_env,
    fresh_postgres_database,
    no_cookie_jar,
    post_form,
    running,
    sign_in,
    start_server,
    with_cookie,
)

pytestmark = pytest.mark.e2e

#: Each burst: this many requests, this many at a time, each on a new connection (so that
#: both workers answer some).
BURST, AT_ONCE = 200, 20
NEW_PASSWORD = "another horse battery staple 9"
#: Not compared: they differ from one answer to the next whatever the path.
_VARYING = {"date", "server"}
#: A plugin whose ``asgi_wrapper`` wraps the app: the server then has no fast path.
_NO_FAST_PATH = """\
from doorman import hookimpl


@hookimpl
def asgi_wrapper(doorman):
    return lambda app: app
"""


def initialised(directory: Path, db: str) -> str:
    """``db``, made with ``doorman db init`` (so that two servers may start on it at once)."""
    directory.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "doorman", "db", "init"],
        cwd=directory,
        env=doorman_env({"db": db}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return db


async def _burst(url: str, headers: dict[str, str], path: str) -> Counter[tuple[int, str]]:
    limits = httpx.Limits(max_keepalive_connections=0, max_connections=AT_ONCE)
    at_once = asyncio.Semaphore(AT_ONCE)
    seen: Counter[tuple[int, str]] = Counter()
    async with httpx.AsyncClient(
        limits=limits, timeout=REQUEST_S, cookies=no_cookie_jar()
    ) as client:

        async def one() -> None:
            async with at_once:
                answer = await client.get(url + path, headers=headers)
            seen[answer.status_code, answer.headers.get("x-doorman-groups", "-")] += 1

        await asyncio.gather(*(one() for _ in range(BURST)))
    return seen


def burst(url: str, cookie: str, path: str = "/-/auth") -> Counter[tuple[int, str]]:
    """(status, X-Doorman-Groups) of ``BURST`` checks of ``cookie``, ``AT_ONCE`` at a time."""
    return asyncio.run(_burst(url, with_cookie(cookie), path))


# -- a kept answer ends at once ---------------------------------------------------------------


@pytest.fixture(params=["cookie", "redis", "postgres"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path, redis_url: str) -> Iterator[Server]:
    """``doorman serve --workers 2`` with the sessions in a cookie, Redis or PostgreSQL."""
    with contextlib.ExitStack() as stack:
        if request.param == "postgres":
            db, sessions = stack.enter_context(fresh_postgres_database()), "db"
        else:
            db = str(tmp_path / "doorman.db")
            sessions = "cookie" if request.param == "cookie" else redis_url
        initialised(tmp_path, db)
        add_users(db, "admin", "alice", "bob", "carol", "dave", "erin", admins=("admin",))
        server = start_server(tmp_path / "server", workers=2, db=db, sessions=sessions)
        with running(server):
            yield server


def test_a_kept_answer_ends_at_once_on_both_workers(deployment: Server) -> None:
    server = deployment
    url = server.url
    admin = sign_in(url, "admin")
    signed_in = Counter({(200, ""): BURST})
    ended = Counter({(401, "-"): BURST})

    # Signed out by its own browser, on whichever worker.
    alice = sign_in(url, "alice")
    assert burst(url, alice) == signed_in
    copy = httpx.post(
        url + "/-/logout",
        data={"csrftoken": csrf_of(url, alice)},
        headers=with_cookie(alice),
        timeout=REQUEST_S,
    )
    assert copy.status_code in (302, 303)
    assert burst(url, alice) == ended, "a copy of a signed-out session still passes"

    # Disabled by an admin.
    bob = sign_in(url, "bob")
    assert burst(url, bob) == signed_in
    assert post_form(url, "/-/admin/users/bob/disable", admin).status_code == 200
    assert burst(url, bob) == ended

    # Signed out everywhere from the CLI: another process.
    carol = sign_in(url, "carol")
    assert burst(url, carol) == signed_in
    assert doorman_cli(server, "sessions", "revoke", "carol").returncode == 0
    assert burst(url, carol) == ended

    # A new password, chosen in another session: this one ends.
    dave, other = sign_in(url, "dave"), sign_in(url, "dave")
    assert burst(url, dave) == signed_in
    fields = {"current_password": PASSWORD, "password": NEW_PASSWORD, "password2": NEW_PASSWORD}
    assert post_form(url, "/-/account/password", other, fields).status_code == 200
    assert burst(url, dave) == ended

    # New groups: every answer names them at once.
    erin = sign_in(url, "erin")
    assert burst(url, erin) == signed_in
    groups = post_form(url, "/-/admin/users/erin/groups", admin, {"groups": "staff"})
    assert groups.status_code == 200
    assert burst(url, erin) == Counter({(200, "staff"): BURST})


# -- the fast path answers as the full stack does -----------------------------------------------


@pytest.fixture
def fast_and_full(tmp_path: Path) -> Iterator[tuple[Server, Server, str]]:
    """Two servers on one database and secret: one with the fast path, one without."""
    db = initialised(tmp_path, str(tmp_path / "doorman.db"))
    add_users(db, "alice", "bob", "carol")
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "no_fast_path.py").write_text(_NO_FAST_PATH)
    both = {"db": db, "sessions": "cookie", "basic_auth": "true", "access_log": "true"}
    fast = start_server(tmp_path / "fast", workers=2, **both)
    full = start_server(tmp_path / "full", plugins_dir=str(plugins), **both)
    with running(fast, full):
        yield fast, full, db


def _answer(client: httpx.Client, method: str, url: str, headers: list[tuple[str, str]]) -> object:
    answer = client.request(method, url, headers=headers)
    kept = sorted((k, v) for k, v in answer.headers.multi_items() if k not in _VARYING)
    return answer.status_code, kept, answer.content


def test_the_fast_path_answers_hostile_requests_as_the_full_stack_does(
    fast_and_full: tuple[Server, Server, str],
) -> None:
    fast, full, db = fast_and_full
    a, b = sign_in(fast.url, "alice"), sign_in(fast.url, "bob")
    made = doorman_cli(fast, "tokens", "create", "carol", "--db", db)
    assert made.returncode == 0, made.stderr
    token = made.stdout.split()[0]
    forged = session_signer().sign(secrets.token_urlsafe(32))  # signed, but no such session
    cookies = [
        None,
        f"doorman_session={a}",
        f"doorman_session={a}; doorman_session={b}",
        f"doorman_session={b}; doorman_session={a}",
        f"doorman_session={forged}; doorman_session={b}",
        f"doorman_session={a[:-3]}; doorman_session={b}",
        f"xdoorman_session={a}",
        f"xdoorman_session={a}; doorman_session={b}",
        f"doorman_session= {a}",
        f"doorman_session={a} ;",
        f"a=b;\tdoorman_session={a}",
        f'doorman_session="{a}"',
        f"DOORMAN_SESSION={a}",
        f"doorman_session={a}x",
        "doorman_session=",
        "doorman_session=" + "A" * 5000,
        f"doorman_session={a}" + "A" * 4000,
        "doorman_session=1700000000.eyJhIjoxfQ==",
    ]
    basic = base64.b64encode(f"carol:{PASSWORD}".encode()).decode()
    authorizations = [None, f"Bearer {token}", f"Bearer {token}x", f"Basic {basic}", "Digest x"]
    queries = ["", "?rd=/x", "?require=otp", "?require=", "?require=mfa,otp", "?a=%ff"]
    cases = [(c, z, "", None, False) for c, z in itertools.product(cookies, authorizations)]
    cases += [(c, None, q, "text/html", False) for c, q in itertools.product(cookies[:4], queries)]
    cases += [(c, None, "", None, True) for c in cookies[:4]]  # and a second Cookie header
    different = []
    with httpx.Client(timeout=REQUEST_S, cookies=no_cookie_jar()) as client:
        for path, (cookie, authorization, query, accept, twice) in itertools.product(
            ["/-/auth", "/-/whoami"], cases
        ):
            headers = [("cookie", cookie)] if cookie else []
            headers += [("cookie", f"doorman_session={b}")] if twice else []
            headers += [("authorization", authorization)] if authorization else []
            headers += [("accept", accept)] if accept else []
            answers = [_answer(client, "GET", s.url + path + query, headers) for s in (fast, full)]
            if answers[0] != answers[1]:
                different.append((path + query, headers, *answers))
    assert not different, different[:3]


def test_two_thousand_forged_cookies_then_a_real_one(
    fast_and_full: tuple[Server, Server, str],
) -> None:
    """The cookie store remembers 1,024 decoded keys, the signer as many signatures: churn them."""
    fast, _, _ = fast_and_full
    alice = sign_in(fast.url, "alice")
    signer = session_signer()
    forged = [
        f"doorman_session={signer.sign(secrets.token_urlsafe(24 + n % 700))}" for n in range(1400)
    ]
    forged += [
        f"doorman_session={secrets.token_urlsafe(40)}.{secrets.token_urlsafe(22)}"
        for _ in range(600)
    ]

    async def each_once() -> Counter[int]:
        at_once, seen = asyncio.Semaphore(AT_ONCE), Counter[int]()
        async with httpx.AsyncClient(timeout=REQUEST_S, cookies=no_cookie_jar()) as client:

            async def one(cookie: str) -> None:
                async with at_once:
                    seen[
                        (
                            await client.get(fast.url + "/-/auth", headers={"cookie": cookie})
                        ).status_code
                    ] += 1

            await asyncio.gather(*(one(cookie) for cookie in forged))
        return seen

    assert asyncio.run(each_once()) == Counter({401: len(forged)})
    assert burst(fast.url, alice) == Counter({(200, ""): BURST})


# -- the access log ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling",
    [
        "/-/password-reset/{token}",
        "/-/password%2Dreset/{token}",  # %2D is "-": the same route
        "/-/%70assword-reset/{token}",  # %70 is "p"
    ],
)
def test_a_link_token_stays_out_of_the_log_however_its_route_is_spelled(
    tmp_path: Path, spelling: str
) -> None:
    """The router matches the decoded path; the log hides the token in the raw one."""
    db = initialised(tmp_path, str(tmp_path / "doorman.db"))
    add_users(db, "alice")
    server = start_server(tmp_path / "server", db=db, access_log="true")
    with running(server):
        made = doorman_cli(
            server, "users", "reset-link", "alice", "--db", db, "--public-url", server.url
        )
        assert made.returncode == 0, made.stderr
        token = made.stdout.split()[-1].rsplit("/", 1)[-1]
        path = spelling.format(token=token)
        answer = httpx.get(server.url + path, timeout=REQUEST_S)
        assert answer.status_code == 303, "the link works: the route took the token"
        assert httpx.get(server.url + "/-/health", timeout=REQUEST_S).status_code == 200
        log = server.log()
    assert token not in log, [line for line in log.splitlines() if token in line]


#: An access line as doorman writes it: client, "METHOD PATH HTTP/V", status, milliseconds.
_ACCESS_LINE = re.compile(r'INFO +(\S+) "([A-Z]+) (\S+) HTTP/[\d.]+" (\d{3}) [\d.]+ms')


def test_a_forwarded_address_cannot_forge_the_fields_of_a_line(tmp_path: Path) -> None:
    """Behind a proxy (``forwarded_allow_ips``), the client's address comes from a header.

    uvicorn takes ``X-Forwarded-For`` from a trusted peer as it is, and when every
    hop is trusted (here: loopback, the default; anywhere with ``*``, a proxy in
    another container) the left-most entry, which the client wrote. No newline
    gets through, but quotes and blanks would make a line that reads as another
    request's.
    """
    server = start_server(tmp_path, db=str(tmp_path / "doorman.db"), access_log="true")
    forged = b'203.0.113.9" "GET /-/admin HTTP/1.1" 200 0.1ms'
    with running(server):
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=REQUEST_S) as connection:
            connection.sendall(
                b"GET /-/auth HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                b"X-Forwarded-For: " + forged + b"\r\n\r\n"
            )
            assert connection.recv(100).startswith(b"HTTP/1.1 401 ")
        assert httpx.get(server.url + "/-/health", timeout=REQUEST_S).status_code == 200
        log = server.log()
    access = [line for line in log.splitlines() if '" 401 ' in line]
    assert len(access) == 1, log
    parsed = _ACCESS_LINE.fullmatch(access[0])
    assert parsed is not None and parsed.group(2, 3) == ("GET", "/-/auth"), access[0]
