"""Many workers, one truth: what one doorman process does, every other sees at once.

Two ``doorman serve`` processes on their own loopback ports share PostgreSQL
(users, tokens, sign-ins) and Redis (sessions, throttle counts); then again
PostgreSQL alone (``--sessions db``), with no DOORMAN_SECRET, so both must agree
on the secret generated in the database. A sign-in on one is signed in on the
other; a sign-out, a revoke (by an admin, or ``doorman sessions revoke``), a
password change, a disabled account and a throttled account on one are seen by
the other on its very next request. Then the same inside one ``doorman serve
--workers 3`` on SQLite, where a test-only plugin route says which worker
answered, over a fresh connection each time.

Each deployment has a fresh PostgreSQL database (dropped afterwards) and an empty
Redis database number of its own (its doorman keys deleted afterwards). Without
PostgreSQL or Redis these tests skip, or fail when DOORMAN_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import secrets
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from .conftest import REDIS_URL, _missing
from .servers import (
    PASSWORD,
    REQUEST_S,
    Server,
    add_users,
    cookie_of,
    doorman_cli,
    fresh_postgres_database,
    post_form,
    post_login,
    running,
    sign_in,
    start_server,
    username_of,
    whoami,
    with_cookie,
)

pytestmark = pytest.mark.e2e

NEW_PASSWORD = "a different horse, stapled"
#: Few attempts per account, many per address: every request here comes from 127.0.0.1.
THROTTLE = {"throttle_per_account": 3, "throttle_per_address": 1000, "throttle_window": 600}


@pytest.fixture(scope="module")
def redis_db_url() -> Iterator[str]:
    """The shared Redis, on a database number nobody uses now; our keys deleted afterwards."""
    import redis

    base = urllib.parse.urlsplit(REDIS_URL)
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
        count = int(client.config_get("databases").get("databases", 16))
    except (redis.RedisError, OSError) as error:
        _missing("Redis at " + REDIS_URL, error)
    finally:
        client.close()
    numbers = list(range(1, count))
    secrets.SystemRandom().shuffle(numbers)
    for number in numbers:
        url = base._replace(path=f"/{number}").geturl()
        client = redis.Redis.from_url(url)
        try:
            if client.dbsize() == 0:
                break
        finally:
            client.close()
    else:
        pytest.skip("every Redis database number is in use")
    yield url
    client = redis.Redis.from_url(url)
    try:
        for pattern in ("doorman:session:*", "doorman:throttle:*"):
            names = list(client.scan_iter(match=pattern))
            if names:
                client.delete(*names)
    finally:
        client.close()


def _settings(kind: str, db: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    if kind == "postgres+redis":
        return {"db": db, "sessions": request.getfixturevalue("redis_db_url"), **THROTTLE}
    # PostgreSQL alone, and no DOORMAN_SECRET: the servers share the one generated in the db
    return {"db": db, "sessions": "db", "secret": None, **THROTTLE}


@dataclass
class Pair:
    """Two doorman servers on one shared state."""

    a: Server
    b: Server
    db: str

    def users(self, *stems: str, admins: tuple[str, ...] = ()) -> list[str]:
        """New users (password ``PASSWORD``), named after ``stems`` and unique in the run."""
        suffix = secrets.token_hex(3)
        names = [f"{stem}-{suffix}" for stem in stems]
        add_users(self.db, *names, admins=tuple(f"{stem}-{suffix}" for stem in admins))
        return names


@pytest.fixture(scope="module", params=["postgres+redis", "postgres"])
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    with fresh_postgres_database() as db:
        settings = _settings(request.param, db, request)
        directory = tmp_path_factory.mktemp("pair")
        # Both start at once on the empty database: they migrate it side by side.
        a = start_server(directory / "a", **settings)
        b = start_server(directory / "b", **settings)
        with running(a, b):
            yield Pair(a, b, db)


def test_a_sign_in_on_one_is_a_sign_in_on_the_other(pair: Pair) -> None:
    (alice,) = pair.users("alice")
    cookie = sign_in(pair.a.url, alice)
    actor = whoami(pair.b.url, cookie)
    assert actor is not None and actor["username"] == alice
    assert whoami(pair.a.url, cookie) == actor
    gate = httpx.get(pair.b.url + "/-/auth", headers=with_cookie(cookie), timeout=REQUEST_S)
    assert gate.status_code == 200 and gate.headers["x-doorman-user"] == alice

    signed_out = post_form(pair.b.url, "/-/logout", cookie)
    assert signed_out.status_code == 200 and signed_out.json() == {"actor": None}
    assert whoami(pair.a.url, cookie) is None
    gate = httpx.get(pair.a.url + "/-/auth", headers=with_cookie(cookie), timeout=REQUEST_S)
    assert gate.status_code == 401


def test_an_admin_revoke_on_one_is_seen_by_the_other(pair: Pair) -> None:
    root, bob = pair.users("root", "bob", admins=("root",))
    admin = sign_in(pair.a.url, root)
    on_b, on_a = sign_in(pair.b.url, bob), sign_in(pair.a.url, bob)
    account = httpx.get(
        pair.b.url + "/-/account", headers=with_cookie(on_b, accept="application/json")
    )
    (current,) = [s["id"] for s in account.json()["sessions"] if s["current"]]

    revoked = post_form(pair.a.url, f"/-/admin/sessions/{current}/revoke", admin)
    assert revoked.status_code == 200, revoked.text
    assert whoami(pair.b.url, on_b) is None  # the very next request, on the other server
    assert username_of(pair.b.url, on_a) == bob  # that session only

    signed_out = post_form(pair.b.url, f"/-/admin/users/{bob}/sign-out", admin)
    assert signed_out.status_code == 200, signed_out.text
    assert whoami(pair.a.url, on_a) is None


def test_sessions_revoke_on_the_command_line_is_seen_by_both(pair: Pair) -> None:
    (carol,) = pair.users("carol")
    on_a, on_b = sign_in(pair.a.url, carol), sign_in(pair.b.url, carol)
    done = doorman_cli(pair.a, "sessions", "revoke", carol)
    assert done.returncode == 0, done.stderr
    assert whoami(pair.a.url, on_b) is None
    assert whoami(pair.b.url, on_a) is None


def test_a_password_change_on_one_ends_the_other_sessions_everywhere(pair: Pair) -> None:
    (dave,) = pair.users("dave")
    elsewhere, here = sign_in(pair.a.url, dave), sign_in(pair.b.url, dave)
    fields = {"current_password": PASSWORD, "password": NEW_PASSWORD, "password2": NEW_PASSWORD}
    changed = post_form(pair.b.url, "/-/account/password", here, fields)
    assert changed.status_code == 200, changed.text
    renewed = cookie_of(changed)  # the session that changed it goes on, under a new key
    assert renewed

    assert whoami(pair.a.url, elsewhere) is None
    assert whoami(pair.a.url, here) is None
    assert username_of(pair.a.url, renewed) == dave
    assert post_login(pair.a.url, dave, PASSWORD).status_code == 401
    assert username_of(pair.b.url, sign_in(pair.a.url, dave, NEW_PASSWORD)) == dave


def test_a_disabled_user_is_signed_out_and_refused_everywhere(pair: Pair) -> None:
    root, erin = pair.users("root", "erin", admins=("root",))
    admin = sign_in(pair.a.url, root)
    on_b = sign_in(pair.b.url, erin)
    disabled = post_form(pair.a.url, f"/-/admin/users/{erin}/disable", admin)
    assert disabled.status_code == 200, disabled.text
    assert whoami(pair.b.url, on_b) is None
    assert post_login(pair.b.url, erin).status_code == 401

    enabled = post_form(pair.b.url, f"/-/admin/users/{erin}/enable", admin)
    assert enabled.status_code == 200, enabled.text
    assert username_of(pair.b.url, sign_in(pair.a.url, erin)) == erin


def test_failed_sign_ins_on_one_throttle_the_other(pair: Pair) -> None:
    root, fred = pair.users("root", "fred", admins=("root",))
    admin = sign_in(pair.b.url, root)
    for _attempt in range(THROTTLE["throttle_per_account"]):
        assert post_login(pair.a.url, fred, "not the password").status_code == 401
    refused = post_login(pair.b.url, fred)  # the right password, on the other server
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["retry-after"]) > 0
    assert post_login(pair.a.url, fred).status_code == 429

    unlocked = post_form(pair.b.url, f"/-/admin/users/{fred}/unlock", admin)
    assert unlocked.status_code == 200, unlocked.text
    assert username_of(pair.b.url, sign_in(pair.a.url, fred)) == fred


# -- doorman serve --workers 3 -----------------------------------------------------------------


class Workers:
    """One ``doorman serve --workers 3``, asked over a fresh connection each time."""

    def __init__(self, server: Server, db: str) -> None:
        self.server = server
        self.url = server.url
        self.db = db
        self.pids: set[int] = set()

    def everywhere(self, cookie: str | None, times: int = 9) -> set[str | None]:
        """Who ``cookie`` is, asked ``times`` times, three at once: a set of one, if consistent."""

        def ask(_: int) -> tuple[int, str | None]:
            answer = httpx.get(self.url + "/-/test/pid", headers=with_cookie(cookie), timeout=5)
            assert answer.status_code == 200, answer.text
            actor = answer.json()["actor"]
            return answer.json()["pid"], None if actor is None else actor["username"]

        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(ask, range(times)))
        self.pids.update(pid for pid, _ in answers)
        return {name for _, name in answers}


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    """On one SQLite file, the one-machine set-up (the pair above covers PostgreSQL and Redis)."""
    directory = tmp_path_factory.mktemp("workers")
    db = str(directory / "doorman.db")
    server = start_server(directory / "server", workers=3, pid_route=True, db=db, **THROTTLE)
    with running(server):
        assert len(server.workers()) == 3, server.workers()
        yield Workers(server, db)


def test_workers_of_one_server_agree_after_every_change(workers: Workers) -> None:
    url = workers.url
    add_users(workers.db, "root", "gina", admins=("root",))
    admin = sign_in(url, "root")
    cookie = sign_in(url, "gina")
    assert workers.everywhere(cookie) == {"gina"}

    # revoked on the command line
    done = doorman_cli(workers.server, "sessions", "revoke", "gina")
    assert done.returncode == 0, done.stderr
    assert workers.everywhere(cookie) == {None}
    assert workers.everywhere(admin) == {"root"}

    # a password change in one session ends the other
    elsewhere, here = sign_in(url, "gina"), sign_in(url, "gina")
    fields = {"current_password": PASSWORD, "password": NEW_PASSWORD, "password2": NEW_PASSWORD}
    changed = post_form(url, "/-/account/password", here, fields)
    assert changed.status_code == 200, changed.text
    here = cookie_of(changed) or ""  # the session goes on, under a new key
    assert workers.everywhere(elsewhere) == {None}
    assert workers.everywhere(here) == {"gina"}

    # disabled by the admin: signed out, and refused by every worker
    assert post_form(url, "/-/admin/users/gina/disable", admin).status_code == 200
    assert workers.everywhere(here) == {None}
    with ThreadPoolExecutor(3) as pool:
        statuses = set(pool.map(lambda _: post_login(url, "gina", NEW_PASSWORD).status_code, "abc"))
    assert statuses == {401}
    assert post_form(url, "/-/admin/users/gina/enable", admin).status_code == 200
    assert post_form(url, "/-/admin/users/gina/unlock", admin).status_code == 200  # those 3 counted

    # failed sign-ins, spread over the workers, throttle the account on all of them
    for _attempt in range(THROTTLE["throttle_per_account"]):
        assert post_login(url, "gina", "not the password").status_code == 401
    with ThreadPoolExecutor(3) as pool:
        statuses = set(pool.map(lambda _: post_login(url, "gina", NEW_PASSWORD).status_code, "abc"))
    assert statuses == {429}

    assert len(workers.pids) >= 2, f"every answer came from one worker: {workers.pids}"
    assert workers.pids <= set(workers.server.workers())
