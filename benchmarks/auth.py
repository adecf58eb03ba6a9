"""Accounts cost, in process: sign-in (argon2id) and actor resolution, doorman beside anchors.

LOGIN: one sign-in end to end (``Doorman.authenticate``: the throttle's counters,
the user lookup and the argon2id verify, on a SQLite users file), the bare
``PasswordHasher.verify`` and the first HTTP Basic request (nothing cached yet),
beside Django 5.2's ``check_password`` (its default PBKDF2-SHA256, 1,000,000
iterations, and its Argon2PasswordHasher), Django's ``aauthenticate`` and
datasette-auth-passwords' ``verify_password`` (PBKDF2-SHA256, 480,000). Then 16
people sign in at once, each burst in a fresh process: sign-ins per second and the
growth of the peak RSS, beside the same 16 verifies in 16 threads (no bound). This
part is not pinned to a CPU: argon2 lanes and the hashing pool get both cores.

ACTOR: what ``AuthMiddleware`` adds to a request carrying a session cookie (signed
cookie store, SQLite store), a Bearer API token, HTTP Basic (the pair cached) or
nothing, over the same stack without it, driven in process with the fake server
and timing loop of ``benchmarks/sessions.py``, pinned to one CPU as it is; also
with the database answered from memory, to show doorman's own code. Beside it:
Django's ``aget_user`` over its session load, Starlette's
``AuthenticationMiddleware`` with a dict-backed Bearer backend,
datasette-auth-passwords' Basic check, and the bare SQLite round trips.

    make bench-auth
    benchmarks/.venv/bin/python benchmarks/auth.py [--write-docs] [--repeat 5] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import functools
import gc
import importlib.metadata
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sessions as bench  # benchmarks/sessions.py: the fake server side and the timing loop
from _report import package_versions, write_block  # benchmarks/_report.py

SECRET = "x" * 40
USERNAME, PASSWORD = "alice", "correct horse battery staple"
CLIENT = "127.0.0.1"
BURST = 16  # sign-ins at once
COOKIE = "doorman_session"
PACKAGES = (
    "doorman",
    "argon2-cffi",
    "argon2-cffi-bindings",
    "sqlalchemy",
    "aiosqlite",
    "django",
    "asgiref",
    "starlette",
    "datasette-auth-passwords",
    "datasette",
)
DOCS = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
BEGIN, END = "<!-- auth:begin -->", "<!-- auth:end -->"
HEADING = "## Accounts: login and actor resolution"

Scope = dict[str, Any]
ASGIApp = Callable[..., Awaitable[None]]
Call = Callable[[], Awaitable[Any]]


# -- the accounts on both sides -----------------------------------------------------------


@dataclass
class DjangoSide:
    default_hash: str  # PBKDF2-SHA256, Django's default hasher
    argon2_hash: str  # Django's Argon2PasswordHasher
    sessions: dict[str, str]  # session engine module -> the signed-in session's key
    argon2_params: str
    iterations: int


def setup_django(tmp: Path) -> DjangoSide:
    """Django 5.2 configured in process: auth and sessions on a SQLite file, alice signed in."""
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY=SECRET,
        USE_TZ=True,
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django.contrib.sessions",
        ],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": str(tmp / "django.db"),
                # The tuning doorman's engine applies, so that both read the same way.
                "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL"},
            }
        },
        PASSWORD_HASHERS=[
            "django.contrib.auth.hashers.PBKDF2PasswordHasher",  # the default, first
            "django.contrib.auth.hashers.Argon2PasswordHasher",
        ],
    )
    django.setup()
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
    )
    from django.contrib.auth.hashers import (
        Argon2PasswordHasher,
        PBKDF2PasswordHasher,
        make_password,
    )
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user(USERNAME, password=PASSWORD)
    sessions = {}
    for engine in ("signed_cookies", "db"):
        module = f"django.contrib.sessions.backends.{engine}"
        store = importlib.import_module(module).SessionStore()
        store[SESSION_KEY] = str(user.pk)
        store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store.save()
        sessions[module] = store.session_key
    argon2 = Argon2PasswordHasher
    return DjangoSide(
        default_hash=user.password,
        argon2_hash=make_password(PASSWORD, hasher="argon2"),
        sessions=sessions,
        argon2_params=f"m={argon2.memory_cost},t={argon2.time_cost},p={argon2.parallelism}",
        iterations=PBKDF2PasswordHasher.iterations,
    )


@dataclass
class DoormanSide:
    doorman: Any  # doorman.Doorman
    user: Any  # doorman.User
    token: str
    cookie_store: Any
    sql_store: Any
    cookies: dict[str, str]  # store name -> Cookie header value of a signed-in session


async def setup_doorman(db: Path) -> DoormanSide:
    """A users file with alice (default argon2id), her API token and two signed-in sessions."""
    from doorman import CookieStore, Doorman, SQLStore

    doorman = Doorman(str(db), secret=SECRET, entry_points=False)
    await doorman.startup()
    user = await doorman.create_user(USERNAME, PASSWORD, groups=["editors"])
    for i in range(BURST):
        await doorman.create_user(burst_user(i)[0], PASSWORD)
    _, token = await doorman.tokens.create(user, name="bench")
    cookie_store = CookieStore()
    sql_store = SQLStore(engine=doorman.engine)  # one engine for users and sessions, as apps do
    cookies = {
        "cookie": await login_cookie(doorman, cookie_store, user),
        "sql": await login_cookie(doorman, sql_store, user),
    }
    return DoormanSide(doorman, user, token, cookie_store, sql_store, cookies)


async def login_cookie(doorman: Any, store: Any, user: Any) -> str:
    from doorman import AuthMiddleware, SessionMiddleware, login

    async def sign_in(scope: Scope, receive: Any, send: Any) -> None:
        await login(scope, user)
        await bench.respond(send, b"in")

    app = SessionMiddleware(AuthMiddleware(sign_in, doorman), secret=SECRET, store=store)
    value = (await bench.call(app, make_scope())).set_cookie(COOKIE)
    if value is None:
        raise SystemExit("benchmark is wrong: login() sent no session cookie")
    return f"{COOKIE}={value}"


def make_scope(cookie: str | None = None, authorization: str | None = None) -> Scope:
    scope = bench.make_scope("whoami", cookie)
    if authorization is not None:
        scope["headers"].append((b"authorization", authorization.encode("latin-1")))
    return scope


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


async def inner_app(scope: Scope, receive: Any, send: Any) -> None:
    """The same app inside every stack: it reads its session (if any) and names the user."""
    session = scope.get("session")
    if session is not None:
        await session.load()
        session.get("cart")
    user = scope.get("user")
    name = user.display_name if user is not None and user.is_authenticated else "-"
    await bench.respond(send, name.encode())


# -- LOGIN: one sign-in, and a burst -------------------------------------------------------


@dataclass
class Login:
    name: str
    scheme: str
    call: Call
    anchor: bool = False  # the row the ratios are to


def login_rows(d: DoormanSide, j: DjangoSide) -> list[Login]:
    import argon2
    from datasette_auth_passwords.utils import hash_password, verify_password
    from django.contrib.auth import aauthenticate
    from django.contrib.auth.hashers import check_password

    from doorman import AuthMiddleware, SessionMiddleware

    doorman, encoded = d.doorman, d.user.password_hash
    params = argon2.extract_parameters(encoded)  # doorman's defaults, as stored
    own = f"argon2id m={params.memory_cost},t={params.time_cost},p={params.parallelism}"
    datasette_hash = hash_password(PASSWORD)  # the plugin's default iterations
    basic_scope = make_scope(authorization=basic(USERNAME, PASSWORD))

    async def authenticate() -> bool:
        user = await doorman.authenticate(USERNAME, PASSWORD, client=CLIENT)
        return bool(user.username == USERNAME)

    async def verify() -> bool:
        return bool((await doorman.hasher.verify(PASSWORD, encoded)).ok)

    async def first_basic() -> bool:  # a new middleware: nothing cached yet
        auth = AuthMiddleware(inner_app, doorman, basic_auth=True)
        app = SessionMiddleware(auth, secret=SECRET, store=d.cookie_store)
        return (await bench.call(app, basic_scope)).body == USERNAME.encode()

    async def django_default() -> bool:
        return bool(check_password(PASSWORD, j.default_hash))

    async def django_argon2() -> bool:
        return bool(check_password(PASSWORD, j.argon2_hash))

    async def django_authenticate() -> bool:
        user = await aauthenticate(username=USERNAME, password=PASSWORD)
        return user is not None and user.get_username() == USERNAME

    async def datasette() -> bool:
        return bool(verify_password(PASSWORD, datasette_hash))

    pbkdf2 = f"PBKDF2-SHA256, {j.iterations:,} iterations"
    return [
        Login("doorman `Doorman.authenticate` (end to end, SQLite)", own, authenticate),
        Login("doorman `PasswordHasher.verify`", own, verify),
        Login("doorman HTTP Basic, first request (nothing cached)", own, first_basic),
        Login("Django `check_password`, default hasher", pbkdf2, django_default, anchor=True),
        Login(
            "Django `check_password`, `Argon2PasswordHasher`",
            f"argon2id {j.argon2_params}",
            django_argon2,
        ),
        Login("Django `aauthenticate` (end to end, SQLite)", pbkdf2, django_authenticate),
        Login(
            "datasette-auth-passwords `verify_password`",
            f"PBKDF2-SHA256, {int(datasette_hash.split('$')[1]):,} iterations",
            datasette,
        ),
    ]


async def calibrate(job: bench.Job, seconds: float, most: int = 20_000) -> None:
    """A count of calls that takes about ``seconds``, found from a short probe."""
    n = 1
    while True:
        per_call = await job.run(n) / 1e6
        if per_call * n >= 0.02 or n >= 256:
            break
        n *= 4
    job.n = max(1, min(most, round(seconds / per_call)))


async def measure_logins(rows: list[Login], repeat: int, seconds: float) -> dict[str, float]:
    """Median milliseconds per sign-in."""
    for row in rows:
        if not await row.call():
            raise SystemExit(f"benchmark is wrong for {row.name}: the right password failed")
    jobs = [
        bench.Job((row.name, "login"), lambda n, c=row.call: bench.time_calls(c, n)) for row in rows
    ]
    for job in jobs:
        await calibrate(job, seconds)
    print(f"login: {len(jobs)} jobs x {repeat} repetitions", file=sys.stderr)
    us = medians(await measure(jobs, repeat))
    return {name: value / 1000 for (name, _), value in us.items()}


def burst_user(i: int) -> tuple[str, str]:
    """The i-th of the burst's users, and the address it signs in from."""
    return f"user{i:02d}", f"127.0.0.{i + 1}"


async def burst(kind: str, db: str) -> dict[str, float]:
    """In a fresh process: 16 people sign in at once; their wall time and peak RSS growth.

    Sixteen accounts from sixteen addresses: one account tried 16 times at once
    is what the throttle is there to stop.
    """
    from doorman import Doorman

    doorman = Doorman(db, secret=SECRET, entry_points=False)
    await doorman.startup()
    people = [burst_user(i) for i in range(BURST)]
    users = [await doorman.users.require(name) for name, _ in people]
    gc.collect()  # the engine is warm; no argon2 has run in this process yet
    before = peak_rss_kib()
    start = time.perf_counter()
    if kind == "doorman":
        found = await asyncio.gather(
            *(doorman.authenticate(name, PASSWORD, client=address) for name, address in people)
        )
        ok = [user.id for user in found] == [user.id for user in users]
    else:  # the same verifies with no bound: one thread each
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(max_workers=BURST) as pool:
            verify = functools.partial(doorman.hasher.verify_sync, PASSWORD)
            verdicts = await asyncio.gather(
                *(loop.run_in_executor(pool, verify, user.password_hash) for user in users)
            )
        ok = all(verdict.ok for verdict in verdicts)
    elapsed = time.perf_counter() - start
    grown = peak_rss_kib() - before
    await doorman.close()
    if not ok:
        raise SystemExit(f"burst {kind}: a sign-in failed")
    return {"seconds": elapsed, "rss_mib": grown / 1024}


def peak_rss_kib() -> int:
    """This process's peak RSS in KiB.

    On Linux, from the kernel's high-water mark of this address space (VmHWM):
    ``getrusage``'s ``ru_maxrss`` is the same figure, except that it keeps the
    peak of the process that spawned this one across ``exec``, which would hide
    the growth being measured here.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_bursts(db: Path, repeat: int) -> dict[str, dict[str, float]]:
    """Alternate the two kinds, each in its own process; medians."""
    found: dict[str, list[dict[str, float]]] = {"doorman": [], "threads": []}
    for _ in range(repeat):
        for kind in found:
            child = subprocess.run(
                [sys.executable, __file__, "--burst", kind, "--db", str(db)],
                capture_output=True,
                text=True,
                check=False,
                timeout=300,
            )
            if child.returncode != 0:
                raise SystemExit(f"the {kind} burst failed:\n{child.stderr[-2000:]}")
            found[kind].append(json.loads(child.stdout.strip().splitlines()[-1]))
    print(f"bursts: {repeat} x {len(found)} processes", file=sys.stderr)
    return {
        kind: {key: statistics.median(s[key] for s in samples) for key in ("seconds", "rss_mib")}
        for kind, samples in found.items()
    }


# -- ACTOR: resolution per request ---------------------------------------------------------

SESSION, TOKEN, BASIC, NOBODY, DATABASE = (
    "session cookie",
    "Bearer token",
    "HTTP Basic, cached",
    "none (anonymous)",
    "(database)",
)
DOORMAN_COOKIE, DOORMAN_SQL = "doorman, CookieStore (signed cookie)", "doorman, SQLStore (SQLite)"
DJANGO_COOKIE = "Django `aget_user`, signed_cookies"
DJANGO_DB = "Django `aget_user`, db sessions (SQLite)"
STARLETTE = "Starlette `AuthenticationMiddleware`, dict backend"
DATASETTE = "datasette-auth-passwords check (no cache)"
RAW_SELECT = "raw SQLite primary-key SELECT, same engine"
USERS_GET = "doorman `users.get(id)` (user and groups)"
TOKENS_VERIFY = "doorman `tokens.verify(text)`"
BASIC_AUTH = "doorman, `basic_auth=True`"
IN_MEMORY = "database answered from memory"
OWN = "doorman's own code, no I/O"


@dataclass
class Row:
    credentials: str
    name: str
    run: Callable[[int], Awaitable[float]]  # µs per request (or call)
    floor_name: str = ""
    floor: Callable[[int], Awaitable[float]] | None = None
    anchor: str | None = None  # the key of the row whose overhead this one is compared to
    note: str = ""

    @property
    def key(self) -> str:
        return f"{self.credentials}: {self.name}"


def requests(app: ASGIApp, scope: Scope) -> Callable[[int], Awaitable[float]]:
    return lambda n: bench.time_requests(app, scope, n)


def calls(fn: Call) -> Callable[[int], Awaitable[float]]:
    return lambda n: bench.time_calls(fn, n)


async def checked(app: ASGIApp, scope: Scope, expect: bytes, what: str) -> None:
    """Fail loudly unless the stack names the expected user and leaves the session alone."""
    done = await bench.call(app, scope)
    if done.body != expect or done.set_cookie(COOKIE) is not None:
        raise SystemExit(f"benchmark is wrong for {what}: answered {done.body!r}, not {expect!r}")


class MemoryUsers:
    """``doorman.users`` with ``get`` answered from memory: AuthMiddleware's own code alone."""

    def __init__(self, real: Any, user: Any) -> None:
        self._real, self._user = real, user

    async def get(self, user_id: int) -> Any:
        return self._user if user_id == self._user.id else None

    get_kept = get

    def __getattr__(self, name: str) -> Any:  # by_username etc.: the real ones
        return getattr(self._real, name)


class MemoryTokens:
    """``doorman.tokens`` with ``verify`` answered from memory."""

    def __init__(self, real: Any, text: str, token: Any) -> None:
        self._real, self._text, self._token = real, text, token

    async def verify(self, text: str) -> Any:
        return self._token if text == self._text else None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


async def memory_doorman(d: DoormanSide) -> Any:
    """A Doorman on the same engine whose per-request lookups never reach the database."""
    from doorman import Doorman

    found = Doorman(secret=SECRET, engine=d.doorman.engine, entry_points=False)
    found.users = MemoryUsers(found.users, d.user)
    token = await d.doorman.tokens.verify(d.token)
    found.tokens = MemoryTokens(found.tokens, d.token, token)
    return found


async def doorman_rows(d: DoormanSide, memory: Any) -> list[Row]:
    from doorman import AuthMiddleware, SessionMiddleware

    bearer, pair = f"Bearer {d.token}", basic(USERNAME, PASSWORD)
    cookie, sql = make_scope(d.cookies["cookie"]), make_scope(d.cookies["sql"])
    real, cookies = d.doorman, d.cookie_store
    cases = [
        (SESSION, DOORMAN_COOKIE, real, cookies, cookie, False, f"{SESSION}: {DJANGO_COOKIE}", ""),
        (SESSION, DOORMAN_SQL, real, d.sql_store, sql, False, f"{SESSION}: {DJANGO_DB}", ""),
        (SESSION, f"{DOORMAN_COOKIE}, {IN_MEMORY}", memory, cookies, cookie, False, None, OWN),
        (TOKEN, "doorman", real, cookies, make_scope(authorization=bearer), False,
         f"{TOKEN}: {STARLETTE}", ""),
        (TOKEN, f"doorman, {IN_MEMORY}", memory, cookies, make_scope(authorization=bearer), False,
         f"{TOKEN}: {STARLETTE}", ""),
        (BASIC, BASIC_AUTH, real, cookies, make_scope(authorization=pair), True,
         f"HTTP Basic: {DATASETTE}", ""),
        (BASIC, f"{BASIC_AUTH}, {IN_MEMORY}", memory, cookies, make_scope(authorization=pair),
         True, None, OWN),
        (NOBODY, "doorman", real, cookies, make_scope(), False, f"{NOBODY}: {STARLETTE}", ""),
    ]  # fmt: skip
    rows = []
    for credentials, name, doorman, store, scope, basic_auth, anchor, note in cases:
        auth = AuthMiddleware(inner_app, doorman, basic_auth=basic_auth)
        app = SessionMiddleware(auth, secret=SECRET, store=store)
        floor = SessionMiddleware(inner_app, secret=SECRET, store=store)
        expect = b"-" if credentials == NOBODY else USERNAME.encode()
        await checked(app, scope, expect, name)  # for Basic, this one pays argon2 and caches
        await checked(floor, scope, b"-", f"{name}, floor")
        floor_name = f"SessionMiddleware({type(store).__name__}) + app"
        rows.append(
            Row(credentials, name, requests(app, scope), floor_name, requests(floor, scope),
                anchor, note)
        )  # fmt: skip
    return rows


async def database_rows(d: DoormanSide) -> list[Row]:
    """The round trips doorman's lookups are made of, through the same engine."""
    doorman, user_id, token = d.doorman, d.user.id, d.token

    async def select() -> Any:
        async with doorman.engine.connect() as connection:
            result = await connection.exec_driver_sql(
                "SELECT * FROM doorman_users WHERE id = ?", (user_id,)
            )
            return result.first()

    async def get() -> Any:
        return await doorman.users.get(user_id)

    async def verify() -> Any:
        return await doorman.tokens.verify(token)

    for fn in (select, get, verify):
        if await fn() is None:
            raise SystemExit(f"benchmark is wrong: {fn.__name__}() found nothing")
    return [
        Row(DATABASE, RAW_SELECT, calls(select)),
        Row(DATABASE, USERS_GET, calls(get)),
        Row(DATABASE, TOKENS_VERIFY, calls(verify)),
    ]


def starlette_rows(token: str) -> list[Row]:
    from starlette.authentication import (
        AuthCredentials,
        AuthenticationBackend,
        BaseUser,
        SimpleUser,
    )
    from starlette.middleware.authentication import AuthenticationMiddleware
    from starlette.requests import HTTPConnection

    class DictTokens(AuthenticationBackend):
        """The cheapest Bearer backend there is: one dict lookup, no I/O."""

        def __init__(self, tokens: dict[str, str]) -> None:
            self.tokens = tokens

        async def authenticate(
            self, conn: HTTPConnection
        ) -> tuple[AuthCredentials, BaseUser] | None:
            scheme, _, credentials = conn.headers.get("authorization", "").partition(" ")
            username = self.tokens.get(credentials) if scheme.lower() == "bearer" else None
            if username is None:
                return None
            return AuthCredentials(["authenticated"]), SimpleUser(username)

    app = AuthenticationMiddleware(inner_app, backend=DictTokens({token: USERNAME}))
    with_token, without = make_scope(authorization=f"Bearer {token}"), make_scope()
    return [
        Row(TOKEN, STARLETTE, requests(app, with_token), "bare ASGI app",
            requests(inner_app, with_token)),
        Row(NOBODY, STARLETTE, requests(app, without), "bare ASGI app",
            requests(inner_app, without)),
    ]  # fmt: skip


def datasette_rows() -> list[Row]:
    """datasette-auth-passwords' HTTP Basic check, as its ``actor_from_request`` hook runs it."""
    from datasette.app import Datasette
    from datasette_auth_passwords.utils import hash_password, scope_has_valid_authorization

    config = {f"{USERNAME}_password_hash": hash_password(PASSWORD)}
    datasette = Datasette(memory=True, metadata={"plugins": {"datasette-auth-passwords": config}})
    scope = make_scope(authorization=basic(USERNAME, PASSWORD))

    async def check() -> Any:
        return scope_has_valid_authorization(scope, datasette)

    async def nothing() -> None:
        return None

    if scope_has_valid_authorization(scope, datasette) != {"id": USERNAME}:
        raise SystemExit(f"benchmark is wrong for {DATASETTE}: alice was not recognised")
    return [Row("HTTP Basic", DATASETTE, calls(check), "an empty call", calls(nothing))]


async def django_rows(j: DjangoSide) -> list[Row]:
    from django.contrib.auth import SESSION_KEY, aget_user
    from django.http import HttpRequest

    rows = []
    for module, key in j.sessions.items():
        store_class = importlib.import_module(module).SessionStore

        def request(store_class: Any = store_class, key: str = key) -> Any:
            found = HttpRequest()
            found.session = store_class(key)  # what SessionMiddleware puts there
            return found

        async def session_read(request: Callable[[], Any] = request) -> Any:
            return await request().session.aget(SESSION_KEY)

        async def user(request: Callable[[], Any] = request) -> Any:
            return await aget_user(request())

        name = DJANGO_COOKIE if module.endswith("signed_cookies") else DJANGO_DB
        found = await user()
        if not found.is_authenticated or found.get_username() != USERNAME:
            raise SystemExit(f"benchmark is wrong for {name}: aget_user gave {found!r}")
        if await session_read() is None:
            raise SystemExit(f"benchmark is wrong for {name}: the session is empty")
        floor_name = "the same session read alone"
        rows.append(Row(SESSION, name, calls(user), floor_name, calls(session_read)))
    return rows


async def measure_rows(
    rows: list[Row], repeat: int, seconds: float
) -> dict[tuple[str, str], list[float]]:
    """µs per request (or call) of every stack and floor, one sample per repetition."""
    jobs = []
    for row in rows:
        jobs.append(bench.Job((row.key, "stack"), row.run))
        if row.floor is not None:
            jobs.append(bench.Job((row.key, "floor"), row.floor))
    for job in jobs:
        await calibrate(job, seconds)
    print(f"actor: {len(jobs)} jobs x {repeat} repetitions", file=sys.stderr)
    return await measure(jobs, repeat)


async def measure(jobs: list[bench.Job], repeat: int) -> dict[tuple[str, str], list[float]]:
    """Every repetition runs every job once, in a rotated order (as sessions.py's measure)."""
    samples: dict[tuple[str, str], list[float]] = {job.key: [] for job in jobs}
    for rep in range(repeat):
        shift = rep * len(jobs) // repeat
        for job in jobs[shift:] + jobs[:shift]:
            samples[job.key].append(await job.run(job.n))
        print(f"  repetition {rep + 1}/{repeat} done", file=sys.stderr)
    return samples


def medians(samples: dict[tuple[str, str], list[float]]) -> dict[tuple[str, str], float]:
    return {key: statistics.median(values) for key, values in samples.items()}


# -- reporting -----------------------------------------------------------------------------


def login_table(rows: list[Login], ms: dict[str, float]) -> str:
    anchor = next(row for row in rows if row.anchor)
    lines = [
        "| contender | hash | ms per sign-in | ratio to Django's default |",
        "|---|---|--:|--:|",
    ]
    for row in rows:
        ratio = ms[row.name] / ms[anchor.name]
        lines.append(f"| {row.name} | {row.scheme} | {ms[row.name]:.1f} | {ratio:.2f} |")
    return "\n".join(lines) + "\n"


def burst_table(found: dict[str, dict[str, float]]) -> str:
    pool = min(4, os.cpu_count() or 1)  # PasswordHasher's default max_concurrency
    names = {
        "doorman": f"doorman `Doorman.authenticate` (hashing pool of {pool})",
        "threads": f"the same argon2id verify in {BURST} threads (no bound), for contrast",
    }
    lines = [
        f"| {BURST} sign-ins at once | sign-ins/s | wall ms | peak RSS growth MiB |",
        "|---|--:|--:|--:|",
    ]
    for kind, name in names.items():
        seconds, mib = found[kind]["seconds"], found[kind]["rss_mib"]
        lines.append(f"| {name} | {BURST / seconds:.0f} | {seconds * 1000:.0f} | {mib:.0f} |")
    return "\n".join(lines) + "\n"


def actor_table(rows: list[Row], us: dict[tuple[str, str], float]) -> str:
    lines = [
        "| credentials | contender | floor | µs/req | floor µs | overhead µs | anchor | ratio |",
        "|---|---|---|--:|--:|--:|---|--:|",
    ]
    over = overheads(rows, us)
    for row in rows:
        cells = [row.credentials, row.name, row.floor_name, f"{us[row.key, 'stack']:.1f}"]
        if row.floor is None:
            cells += ["", ""]
        else:
            cells += [f"{us[row.key, 'floor']:.1f}", f"{over[row.key]:.1f}"]
        if row.anchor is not None:
            cells += [row.anchor.split(": ", 1)[1], ratio(over[row.key] / over[row.anchor])]
        else:
            cells += [row.note, ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def ratio(value: float) -> str:
    """Two decimals, or enough to tell a small ratio from zero."""
    return f"{value:.2f}" if value >= 0.1 else f"{value:.1g}"


def overheads(rows: list[Row], us: dict[tuple[str, str], float]) -> dict[str, float]:
    return {r.key: us[r.key, "stack"] - us[r.key, "floor"] for r in rows if r.floor is not None}


def actor_notes(rows: list[Row], samples: dict[tuple[str, str], list[float]]) -> list[str]:
    """What each overhead is made of: doorman's own code, and the database round trips."""
    us = medians(samples)
    over = overheads(rows, us)
    own = {c: over[f"{c}: {n}, {IN_MEMORY}"] for c, n in [(SESSION, DOORMAN_COOKIE),
           (TOKEN, "doorman"), (BASIC, BASIC_AUTH)]}  # fmt: skip
    select_key = (f"{DATABASE}: {RAW_SELECT}", "stack")
    select, low, high = us[select_key], min(samples[select_key]), max(samples[select_key])
    get = us[f"{DATABASE}: {USERS_GET}", "stack"]
    verify = us[f"{DATABASE}: {TOKENS_VERIFY}", "stack"]
    cookie, token = over[f"{SESSION}: {DOORMAN_COOKIE}"], over[f"{TOKEN}: doorman"]
    pair = over[f"{BASIC}: {BASIC_AUTH}"]
    return [
        f"- doorman's own code per request, measured with `users.get` and `tokens.verify` "
        f"answered from memory: session {own[SESSION]:.1f} µs (auth hash check, actor, scope), "
        f"Bearer token {own[TOKEN]:.1f} µs, HTTP Basic cached {own[BASIC]:.1f} µs (base64, an "
        f"HMAC of the pair, the cache, whether the account needs a second step); no "
        f"credentials {over[f'{NOBODY}: doorman']:.1f} µs.",
        f"- the database: the raw primary-key SELECT through doorman's engine takes "
        f"{select:.1f} µs (from {low:.1f} to {high:.1f} over the repetitions: the machine's "
        f"noise); `users.get` (the user and its groups, a query each time) {get:.1f} µs; "
        f"`tokens.verify` {verify:.1f} µs, from the process's token cache once warm.",
        f"- a signed-in session's user and a token's come from the process's caches, which "
        f"the change epochs keep fresh (docs/architecture.md): the session and Bearer stacks "
        f"cost about their own code ({cookie:.1f} and {token:.1f} µs measured); so does HTTP "
        f"Basic with a remembered pair ({pair:.1f} µs): its user and whether it needs a second "
        f"step are kept the same way.",
    ]


def versions() -> str:
    return ", ".join(package_versions(PACKAGES))


def environment() -> str:
    return f"{platform.machine()} Linux, {os.cpu_count()} cores ({cpu_model()})"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


#: What the tables cannot compare evenly; printed with them and written to the docs.
CAVEATS = [
    "- Bearer token against Starlette's dict backend: that backend does no I/O; doorman "
    "looks its token and user up, answered from the process's caches once warm (a "
    "write anywhere moves the change epoch and the next request reads afresh).",
    "- Django's `aget_user` and datasette-auth-passwords' check are called directly, "
    "not through their frameworks' request handling (Django's ASGI handler alone costs "
    "about half a millisecond a request: the sessions table), while doorman's figure "
    "includes its middleware call. Django reads the user from the database on every "
    "request; doorman, once warm, from its signed-in cache: most of the gap is there.",
    "- datasette-auth-passwords runs its check twice per request when `http_basic_auth` "
    "is on (its ASGI wrapper, then its `actor_from_request` hook): read from its source, "
    "not timed through Datasette; the table times one check.",
    "- HTTP Basic is doorman's steady state with the pair cached; the first request of "
    "a pair (or one after five minutes) costs a sign-in: the sign-in table.",
    "- The sign-in part is not pinned to a CPU, and the machine is shared: read the "
    "ratios; absolute milliseconds move from run to run.",
]


@dataclass
class Results:
    logins: str
    bursts: str
    actors: str
    notes: list[str]
    repeat: int
    placement: str


def section(r: Results) -> str:
    notes, caveats = "\n".join(r.notes), "\n".join(CAVEATS)
    return f"""{BEGIN}
`benchmarks/auth.py`, run {dt.date.today().isoformat()} on {environment()}; each
number is the median of {r.repeat} repetitions, the contenders interleaved within
each repetition.
Versions: {versions()}.

### Sign-in cost

alice is in a SQLite users file, hashed with doorman's default argon2id (the
OWASP parameters); Django and datasette-auth-passwords check hashes made with
their own defaults. `Doorman.authenticate` is a whole sign-in: the throttle's
counters for the account and the address, the user lookup, and the verify in
the hashing pool. Django's `aauthenticate` is its whole sign-in: the user
lookup and the verify (Django has no throttle). The first HTTP Basic request
goes through a new `AuthMiddleware(basic_auth=True)`: a sign-in, after which
the pair is cached. This part is not pinned to a CPU, so that Django's argon2
(8 lanes) and doorman's hashing pool can use both cores, as in production.

{r.logins}
Sixteen people then sign in at once (16 accounts, 16 addresses: one account
tried 16 times at once is what the throttle stops), each burst in a fresh
process that has run no argon2 yet, so that the growth of its peak RSS is the
memory the burst needed. The peak is the kernel's high-water mark (`VmHWM`):
`getrusage`'s `ru_maxrss` is the same figure, but on Linux it keeps the peak of
the spawning process across `exec`, which hides the growth. doorman's hashing
pool runs at most min(4, CPUs) hashes at once, 19 MiB each, and queues the
rest; the contrast row runs the same verifies in one thread each.

{r.bursts}
### Actor resolution per request

What `AuthMiddleware` adds to one request ({r.placement}): the stack
`SessionMiddleware(AuthMiddleware(app))` against the same stack without
`AuthMiddleware` (the floor), on the same request, driven in process as in
`benchmarks/sessions.py`. The app is the same in both: it reads its session
and answers the user's name, so loading the session is in the floor (the
sessions table above measures it). Before timing, each stack must name alice
(nobody, for no credentials), its floor nobody, and neither may send a cookie.
The users are in a SQLite file; the SQLStore shares the users' engine.

- "database answered from memory": the same stack, with `users.get` and
  `tokens.verify` served from a dict, so that doorman's own code shows apart
  from its round trips.
- HTTP Basic is shown in its steady state: the first request verified the pair
  with argon2id (the sign-in table) and cached it for five minutes; each
  request still reads the user, to see that it is active and its password
  unchanged. datasette-auth-passwords caches nothing: its check (called
  directly, against an empty call) runs one PBKDF2 each time, and with
  `http_basic_auth` on, its ASGI wrapper and its `actor_from_request` hook each
  run it, so a request pays it twice.
- Django's `aget_user` (what `request.auser()` runs) is called directly on a
  new request whose session is a new `SessionStore` for the signed-in key, as
  Django's `SessionMiddleware` makes it; its floor is that session's first read
  alone (for db sessions, the SELECT of the session row). Its ORM calls each
  run in `sync_to_async`, one thread hop for the whole query, as in any async
  Django view. No middleware call is in its figure; doorman's includes one.
- Starlette's `AuthenticationMiddleware` with a Bearer backend that looks the
  token up in a dict is the cheapest resolution there is: no database, no
  hash. Its floor is the bare app. doorman's token check reads two rows when
  its caches are cold (and writes the token's last use at most once a minute:
  once or twice a run).
- The "(database)" rows are single calls through doorman's engine: each query
  is one trip to the SQLite connection's thread (doorman's connections run a
  statement, fetch its rows and close its cursor at once, and skip the pool's
  rollback of a read: `db/sqlite_connection.py`), the floor any lookup that
  reaches the database pays.

{r.actors}
{notes}

Not like for like, and why:

{caveats}
{END}"""


def write_docs(text: str) -> None:
    intro = (
        f"{HEADING}\n\nSign-in cost and per-request actor resolution, doorman beside "
        "Django, Starlette\nand datasette-auth-passwords. To reproduce (the same "
        "`benchmarks/.venv`; about\na minute and a half; `--quick` for a rougher "
        "run in under a minute):\n\n    make bench-auth\n\n"
    )
    write_block(DOCS, BEGIN, END, text, intro)
    print(f"wrote {DOCS}", file=sys.stderr)


# -- main ----------------------------------------------------------------------------------


def pin_every_thread() -> str:
    """Pin the process, threads already started included (aiosqlite's, asgiref's), to one CPU."""
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned"
    cpu = max(os.sched_getaffinity(0))
    for task in os.listdir("/proc/self/task"):
        with contextlib.suppress(ProcessLookupError):  # a thread that just ended
            os.sched_setaffinity(int(task), {cpu})
    return f"pinned to CPU {cpu} (every thread)"


async def run(args: argparse.Namespace, tmp: Path, django_side: DjangoSide) -> Results:
    d = await setup_doorman(tmp / "doorman.db")
    memory = await memory_doorman(d)
    try:
        logins = login_rows(d, django_side)
        ms = await measure_logins(logins, args.repeat, args.login_seconds)
        bursts = run_bursts(tmp / "doorman.db", args.repeat)
        placement = pin_every_thread() if args.pin else "not pinned"
        print(placement, file=sys.stderr)
        rows = (
            await doorman_rows(d, memory)
            + starlette_rows(d.token)
            + await django_rows(django_side)
            + datasette_rows()
            + await database_rows(d)
        )
        samples = await measure_rows(rows, args.repeat, args.seconds)
    finally:
        await memory.close()
        await d.doorman.close()
    return Results(
        logins=login_table(logins, ms),
        bursts=burst_table(bursts),
        actors=actor_table(rows, medians(samples)),
        notes=actor_notes(rows, samples),
        repeat=args.repeat,
        placement=placement,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-docs", action="store_true", help=f"rewrite {DOCS.name}")
    parser.add_argument("--repeat", type=int, help="repetitions, median reported (default 5)")
    parser.add_argument("--quick", action="store_true", help="3 repetitions, shorter batches")
    parser.add_argument(
        "--no-pin", dest="pin", action="store_false", help="do not pin the actor part to one CPU"
    )
    parser.add_argument("--burst", choices=["doorman", "threads"], help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.burst:  # a child process of run_bursts()
        print(json.dumps(asyncio.run(burst(args.burst, args.db))))
        return
    args.repeat = args.repeat or (3 if args.quick else 5)
    args.seconds, args.login_seconds = (0.1, 0.15) if args.quick else (0.3, 0.4)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="doorman-bench-auth-") as name:
        tmp = Path(name)
        django_side = setup_django(tmp)  # sync ORM: before the event loop starts
        results = asyncio.run(run(args, tmp, django_side))
    print(f"{environment()}; median of {args.repeat}; actor part {results.placement}")
    print(f"Versions: {versions()}\n")
    print("\n".join([results.logins, results.bursts, results.actors, *results.notes]))
    print("\nNot like for like, and why:\n" + "\n".join(CAVEATS))
    print(f"run took {time.perf_counter() - started:.0f} s", file=sys.stderr)
    if args.write_docs:
        write_docs(section(results))


if __name__ == "__main__":
    main()
