"""Faults under load: a store that goes away, SQLite under many writers, a worker killed.

- Redis, and separately PostgreSQL, stopped while a few clients keep asking
  ``/-/auth``, ``/-/whoami`` and ``/-/health``: every answer that needed the
  missing service is 503, never a signed-in 200; doorman stays up; once the
  service is back, the sessions made before the fault work again within 5 s,
  with no restart. These stop PRIVATE servers (a redis-server and an initdb
  cluster of this module's own, on free ports), never the shared ones.
- ``doorman serve --workers 3`` on one SQLite file with concurrent
  registrations, sign-ins, sign-outs and password changes: no 5xx, no
  "database is locked" anywhere.
- Workers SIGKILLed mid-request (and ``doorman users create`` killed mid-run):
  the database holds no half-written user, sign-in or session, and a restarted
  server works with it.

Every loop is bounded by a count and a deadline; everything runs on loopback.
Missing binaries skip these tests, or fail them when DOORMAN_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from doorman import PasswordHasher

from .servers import (
    CSRF_COOKIE,
    CSRF_FIELD,
    PrivatePostgres,
    PrivateRedis,
    Server,
    add_users,
    cookie_of,
    fresh_postgres_database,
    no_cookie_jar,
    post_login,
    running,
    sign_in,
    start_server,
    username_of,
    wait_until_healthy,
    with_cookie,
)

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

RECOVERY_S = 5.0  # the bound: sessions work again this soon after the service is back
OUTAGE_S = 1.0
PASSWORDS = ("first long password for load", "second long password for load")
#: Limits no test here reaches, so every answer is about the store, not the throttle.
NO_THROTTLE = {
    "throttle_per_account": 100_000,
    "throttle_per_address": 1_000_000,
    "throttle_registrations": 1_000_000,
}


# -- private services ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    cluster = PrivatePostgres()
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.close()


# -- load: a few clients asking, every answer recorded ------------------------------------


@dataclass
class Answer:
    started: float
    ended: float
    path: str
    user: str | None  # whose cookie was sent; None: no cookie
    status: int | None  # None: no HTTP answer at all
    actor: str | None = None  # who the server said it was (whoami's actor, auth's header)
    error: str = ""


@dataclass
class Load:
    """Clients asking ``/-/auth``, ``/-/whoami`` and ``/-/health`` until stopped."""

    url: str
    cookies: dict[str, str]  # username -> session cookie
    answers: list[Answer] = field(default_factory=list)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    limit: int = 20_000

    async def run(self, clients: int = 4) -> None:
        jar = no_cookie_jar()
        async with httpx.AsyncClient(base_url=self.url, timeout=5, cookies=jar) as client:
            await asyncio.gather(*(self._client(client, number) for number in range(clients)))

    async def _client(self, client: httpx.AsyncClient, number: int) -> None:
        users: list[str | None] = [*self.cookies, None]
        turn = number
        while not self.stopped.is_set() and len(self.answers) < self.limit:
            path = ("/-/auth", "/-/whoami", "/-/health")[turn % 3]
            user = users[turn % len(users)]
            turn += 1
            started = time.monotonic()
            cookie = self.cookies.get(user) if user else None
            try:
                response = await client.get(path, headers=with_cookie(cookie))
            except httpx.HTTPError as error:
                self.answers.append(
                    Answer(started, time.monotonic(), path, user, None, None, repr(error))
                )
                await asyncio.sleep(0.02)
                continue
            status = response.status_code
            problem = response.text[:200] if status >= 500 else ""
            ended = time.monotonic()
            self.answers.append(
                Answer(started, ended, path, user, status, _actor(response), problem)
            )
            await asyncio.sleep(0.002)

    def between(self, start: float, end: float) -> list[Answer]:
        """The answers to requests made wholly within [start, end]."""
        return [a for a in self.answers if a.started >= start and a.ended <= end]


def _actor(response: httpx.Response) -> str | None:
    if response.status_code != 200:
        return None
    if response.url.path.endswith("/auth"):
        return response.headers.get("x-doorman-user")
    if response.url.path.endswith("/whoami"):
        actor = response.json()["actor"]
        return None if actor is None else str(actor["username"])
    return None


async def poll(check: Callable[[], Awaitable[bool]], within: float) -> float:
    """Call ``check`` until it is true; how long that took. Fails after ``within`` seconds."""
    start = time.monotonic()
    while True:
        if await check():
            return time.monotonic() - start
        if time.monotonic() - start > within:
            pytest.fail(f"not so within {within} s")
        await asyncio.sleep(0.05)


async def _answered(load: Load, count: int) -> bool:
    return sum(1 for answer in load.answers if answer.status is not None) >= count


async def all_signed_in(url: str, cookies: dict[str, str]) -> bool:
    async with httpx.AsyncClient(base_url=url, timeout=2, cookies=no_cookie_jar()) as client:
        for user, cookie in cookies.items():
            try:
                seen = await client.get("/-/whoami", headers=with_cookie(cookie))
                gate = await client.get("/-/auth", headers=with_cookie(cookie))
            except httpx.HTTPError:
                return False
            if seen.status_code != 200 or _actor(seen) != user:
                return False
            if gate.status_code != 200 or gate.headers.get("x-doorman-user") != user:
                return False
        return True


async def outage(
    server: Server, stop: Callable[[], None], start: Callable[[], None], cookies: dict[str, str]
) -> None:
    """Run the load; stop the service; start it again; check every answer and the recovery."""
    load = Load(server.url, cookies)
    running_load = asyncio.create_task(load.run())
    try:
        await asyncio.sleep(0.3)
        # A loaded machine may answer nothing in 0.3 s: the "before" check needs answers.
        await poll(lambda: _answered(load, 3), within=RECOVERY_S)
        stopping = time.monotonic()
        await asyncio.to_thread(stop)
        down = time.monotonic()
        await asyncio.sleep(OUTAGE_S)
        assert server.alive(), f"doorman stopped during the outage:\n{server.log()}"
        restarting = time.monotonic()
        await asyncio.to_thread(start)
        back = time.monotonic()
        took = await poll(lambda: all_signed_in(server.url, cookies), within=RECOVERY_S)
        recovered = back + took
        await asyncio.sleep(0.3)
    finally:
        load.stopped.set()
        await asyncio.wait_for(running_load, 10)
    assert server.alive(), server.log()

    print(f"stop {down - stopping:.2f} s, start {back - restarting:.2f} s, recovery {took:.2f} s")
    before = load.between(0, stopping)
    assert before and all(a.status in (200, 401) for a in before), _show(before)
    signed = [a for a in before if a.user is not None and a.path != "/-/health"]
    assert signed and all(a.status == 200 and a.actor == a.user for a in signed), _show(signed)

    during = load.between(down, restarting)
    checked = [a for a in during if a.user is not None or a.path == "/-/health"]
    # the load really ran through the outage: a few answers of each kind, all of them 503
    for path in ("/-/auth", "/-/whoami", "/-/health"):
        assert len([a for a in checked if a.path == path]) >= 5, _show(during)
    assert all(a.status == 503 for a in checked), _show([a for a in checked if a.status != 503])
    anonymous = [a for a in during if a not in checked]
    # no cookie, nothing to look up: the answers need neither service
    assert all(a.status == (401 if a.path == "/-/auth" else 200) for a in anonymous), _show(
        [a for a in anonymous if a.status != (401 if a.path == "/-/auth" else 200)]
    )
    assert all(a.actor is None for a in anonymous)

    # nothing, ever, answered as someone else, or with a 5xx but 503, or not at all
    assert all(a.status is not None for a in load.answers), _show(load.answers)
    assert all(a.status == 503 or a.status < 500 for a in load.answers if a.status)
    assert all(a.actor in (None, a.user) for a in load.answers)

    after = load.between(recovered, time.monotonic())
    signed = [a for a in after if a.user is not None and a.path != "/-/health"]
    assert signed and all(a.status == 200 and a.actor == a.user for a in signed), _show(signed)
    # /-/health pings anew each time: an idle pooled connection may fail once, then not
    health = [a for a in after if a.path == "/-/health"]
    assert health and health[-1].status == 200, _show(health)


def _show(answers: list[Answer]) -> str:
    return "\n".join(f"{a.path} {a.user} -> {a.status} {a.actor} {a.error}" for a in answers[:20])


def sign_in_everyone(server: Server, db: str, count: int = 3) -> dict[str, str]:
    """Sessions made before the fault: username -> cookie."""
    names = [f"user{number}" for number in range(count)]
    add_users(db, *names)
    return {name: sign_in(server.url, name) for name in names}


@dataclass
class Deployment:
    server: Server
    cookies: dict[str, str]


@pytest.fixture(scope="module")
def postgres_and_redis(
    private_redis: PrivateRedis,
    private_postgres: PrivatePostgres,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployment]:
    """doorman on the private PostgreSQL (users) and Redis (sessions); each test stops one."""
    with fresh_postgres_database(private_postgres.url) as db:
        directory = tmp_path_factory.mktemp("postgres-and-redis")
        server = start_server(directory, db=db, sessions=private_redis.url, **NO_THROTTLE)
        with running(server):
            yield Deployment(server, sign_in_everyone(server, db))


# -- Redis, then PostgreSQL, goes away -------------------------------------------------------


async def test_redis_down_answers_503_then_the_sessions_work_again(
    postgres_and_redis: Deployment, private_redis: PrivateRedis
) -> None:
    server, cookies = postgres_and_redis.server, postgres_and_redis.cookies
    await outage(server, private_redis.stop, private_redis.start, cookies)


async def test_postgres_down_answers_503_then_the_sessions_work_again(
    postgres_and_redis: Deployment, private_postgres: PrivatePostgres
) -> None:
    server, cookies = postgres_and_redis.server, postgres_and_redis.cookies
    await outage(server, private_postgres.stop, private_postgres.start, cookies)


async def test_postgres_down_with_the_sessions_in_it_too(
    private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    with fresh_postgres_database(private_postgres.url) as db:
        server = start_server(tmp_path, db=db, sessions="db", **NO_THROTTLE)
        with running(server):
            cookies = sign_in_everyone(server, db)
            await outage(server, private_postgres.stop, private_postgres.start, cookies)


# -- SQLite, several workers writing at once -------------------------------------------------


@dataclass
class Visitor:
    """One browser: its own session cookie; it signs up, in, out, and changes its password."""

    client: httpx.AsyncClient
    username: str
    passwords: set[str]  # what the password may be now: one, or two after a lost answer
    log: list[tuple[str, int | None, str]]
    cookie: str | None = None
    csrf_cookie: str | None = None  # the CSRF secret of a browser without a session
    registered: list[str] = field(default_factory=list)  # accounts it created, answered 303

    async def send(self, step: str, method: str, path: str, **options: Any) -> httpx.Response:
        headers = with_cookie(self.cookie, self.csrf_cookie, **options.pop("headers", {}))
        try:
            response = await self.client.request(method, path, headers=headers, **options)
        except httpx.HTTPError as error:
            self.log.append((step, None, repr(error)))
            self.cookie = None
            raise
        self.log.append((step, response.status_code, response.text[:300]))
        found = cookie_of(response)
        if found is not None:
            self.cookie = found or None
        self.csrf_cookie = cookie_of(response, CSRF_COOKIE) or self.csrf_cookie
        return response

    async def token(self, path: str) -> str:
        """The CSRF token on the form at ``path``; "" when there is none (the POST then fails)."""
        page = await self.send("form " + path, "GET", path)
        found = CSRF_FIELD.search(page.text)
        return found[1] if found else ""

    async def register(self, username: str) -> None:
        password = PASSWORDS[0]
        form = {"username": username, "password": password, "password2": password}
        form["csrftoken"] = await self.token("/-/register")
        done = await self.send("register", "POST", "/-/register", data=form)
        if done.status_code == 303:
            self.registered.append(username)

    async def sign_in(self) -> bool:
        for password in sorted(self.passwords):
            form = {"username": self.username, "password": password}
            form["csrftoken"] = await self.token("/-/login")
            if (await self.send("login", "POST", "/-/login", data=form)).status_code == 302:
                self.passwords = {password}
                return True
        return False

    async def change_password(self) -> None:
        (old,) = self.passwords
        new = PASSWORDS[1 - PASSWORDS.index(old)]
        form = {"current_password": old, "password": new, "password2": new}
        form["csrftoken"] = await self.token("/-/account")
        self.passwords = {old, new}  # until the answer says which
        done = await self.send("password", "POST", "/-/account/password", data=form)
        self.passwords = {new} if done.status_code == 303 else {old}

    async def sign_out(self) -> None:
        token = await self.token("/-/account")
        await self.send("logout", "POST", "/-/logout", data={"csrftoken": token})

    async def round(self, number: int) -> None:
        await self.register(f"{self.username}-new{number}")
        await self.sign_out()
        if await self.sign_in():
            await self.change_password()
            await self.sign_out()


async def busy_visitors(url: str, usernames: list[str], seconds: float) -> list[Visitor]:
    """Each visitor does rounds until ``seconds`` pass (bounded by a count too)."""
    log: list[tuple[str, int | None, str]] = []
    limits = httpx.Limits(max_keepalive_connections=0)  # a fresh connection each request
    options: dict[str, Any] = {"timeout": 15, "limits": limits, "cookies": no_cookie_jar()}
    async with httpx.AsyncClient(base_url=url, **options) as client:
        visitors = [Visitor(client, name, {PASSWORDS[0]}, log) for name in usernames]
        deadline = time.monotonic() + seconds

        async def keep_going(visitor: Visitor) -> None:
            for number in range(50):
                if time.monotonic() > deadline:
                    return
                try:
                    await visitor.round(number)
                except httpx.HTTPError:
                    visitor.cookie = None  # a lost answer: start a new round

        await asyncio.wait_for(asyncio.gather(*(keep_going(v) for v in visitors)), seconds + 30)
    return visitors


def prepare_users(db: str, usernames: list[str]) -> None:
    """Users whose password is ``PASSWORDS[0]``."""
    from doorman.config import close_doorman, load_settings, open_doorman

    from .servers import SECRET, in_own_loop

    async def create() -> None:
        settings = load_settings(environ={}, overrides={"db": db, "secret": SECRET})
        doorman, store, _ = await open_doorman(settings)
        try:
            for name in usernames:
                await doorman.create_user(name, PASSWORDS[0])
        finally:
            await close_doorman(doorman, store)

    in_own_loop(create())


async def test_sqlite_with_three_workers_never_shows_a_lock(tmp_path: Path) -> None:
    db = str(tmp_path / "doorman.db")
    usernames = [f"writer{number}" for number in range(6)]
    prepare_users(db, usernames)
    server = start_server(
        tmp_path / "server", workers=3, db=db, allow_registration=1, **NO_THROTTLE
    )
    with running(server):
        visitors = await busy_visitors(server.url, usernames, seconds=3)
    log = visitors[0].log
    failed = [entry for entry in log if entry[1] is None or entry[1] >= 500]
    assert not failed, failed[:10]
    by_step: dict[str, set[int | None]] = {}
    for step, status, _ in log:
        by_step.setdefault(step, set()).add(status)
    expected = {"register": {303}, "login": {302}, "password": {303}, "logout": {303}}
    for step, statuses in expected.items():
        assert by_step.get(step) == statuses, (step, by_step.get(step))
    assert all(v.registered for v in visitors)  # each got through a round at least
    assert "database is locked" not in server.log()


# -- a worker killed mid-request ---------------------------------------------------------------

_ARGON2 = re.compile(r"\$argon2id\$v=19\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]{16,}\$[A-Za-z0-9+/]{32,}")


def check_database(db: str, passwords: dict[str, set[str]]) -> None:
    """No half-written row: every user whole, every sign-in and session pointing at one.

    ``passwords``: what the password of some users may be; their hashes must verify.
    """
    connection = sqlite3.connect(db)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
        users = connection.execute(
            "SELECT id, username, username_key, password_hash, is_active, created_at"
            " FROM doorman_users"
        ).fetchall()
        hasher = PasswordHasher()
        for _id, username, key, password_hash, active, created in users:
            assert username and key == username.casefold() and active == 1 and created > 0
            assert _ARGON2.fullmatch(password_hash), (username, password_hash)
            if username in passwords:
                verdicts = [hasher.verify_sync(p, password_hash) for p in passwords[username]]
                assert any(verdict.ok for verdict in verdicts), username
        ids = {row[0] for row in users}
        signins = connection.execute("SELECT user_id, created_at, last_seen FROM doorman_signins")
        for user_id, created, seen in signins:
            assert user_id in ids and created > 0 and seen >= created
        for (payload,) in connection.execute("SELECT data FROM doorman_sessions"):
            record = json.loads(payload)  # {"d": data, "c": created, "a": saved at}
            assert isinstance(record["d"], dict) and record["c"] > 0 and record["a"] > 0, record
            if "_auth_user_id" in record["d"]:
                assert record["d"]["_auth_user_id"] in ids, record
    finally:
        connection.close()


async def killed_cli_creates(server: Server, count: int) -> list[str]:
    """``doorman users create`` runs side by side, each SIGKILLed at a random moment.

    Some are killed while Python starts, some while they write, some after they are done.
    """

    async def create(name: str) -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "doorman", "users", "create", name, "--password-stdin",
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            cwd=server.directory, env=server.env,
        )  # fmt: skip
        assert process.stdin is not None
        process.stdin.write(PASSWORDS[0].encode() + b"\n")
        await process.stdin.drain()
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), random.uniform(0.8, 2.0))
        except TimeoutError:
            process.kill()
            await asyncio.wait_for(process.wait(), 10)

    names = [f"cli{number}" for number in range(count)]
    await asyncio.gather(*(create(name) for name in names))
    return names


async def kill_workers(server: Server, times: int) -> list[int]:
    """SIGKILL a worker of ``server``, ``times`` times; uvicorn starts a new one each time."""
    killed = []
    for _ in range(times):
        await asyncio.sleep(random.uniform(0.3, 0.8))
        alive = [pid for pid in server.workers() if pid not in killed]
        if alive:
            victim = random.choice(alive)
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
    assert killed, "no worker to kill"
    deadline = time.monotonic() + 15
    while len(set(server.workers()) - set(killed)) < 2:  # replaced by fresh workers
        assert time.monotonic() < deadline, f"no new workers: {server.workers()}\n{server.log()}"
        await asyncio.sleep(0.1)
    return killed


async def test_killed_workers_leave_no_half_written_rows(tmp_path: Path) -> None:
    db = str(tmp_path / "doorman.db")
    usernames = [f"victim{number}" for number in range(4)]
    prepare_users(db, [*usernames, "witness"])
    settings = {"db": db, "allow_registration": 1, **NO_THROTTLE}
    server = start_server(tmp_path / "server", workers=2, **settings)
    with running(server):
        witness = sign_in(server.url, "witness", PASSWORDS[0])
        load = asyncio.create_task(busy_visitors(server.url, usernames, seconds=3))
        creates = asyncio.create_task(killed_cli_creates(server, 3))
        killed = await kill_workers(server, 3)
        visitors, made = await asyncio.gather(load, creates)
        wait_until_healthy(server)
        assert not set(killed) & set(server.workers())
    log = visitors[0].log
    assert not [entry for entry in log if entry[1] is not None and entry[1] >= 500], log

    passwords = {visitor.username: visitor.passwords for visitor in visitors}
    passwords.update({name: {PASSWORDS[0]} for name in ["witness", *made]})
    check_database(db, passwords)

    # the same database under a fresh server: the sessions and accounts in it work
    again = start_server(tmp_path / "again", **settings)
    with running(again):
        assert username_of(again.url, witness) == "witness"
        for visitor in visitors:
            tries = sorted(visitor.passwords)
            assert any(post_login(again.url, visitor.username, p).status_code == 302 for p in tries)
            if visitor.registered:
                assert sign_in(again.url, visitor.registered[-1], PASSWORDS[0])
