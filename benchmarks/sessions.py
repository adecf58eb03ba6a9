"""Session middleware overhead, in process: doorman beside the anchors, in one run.

Each app is called directly with an ASGI scope and fake receive/send callables:
no network, no HTTP client, so what is measured is the middleware itself.

Workloads (the request always carries a valid cookie made by the same contender):

- READ: the handler reads ``session["n"]`` and returns it; nothing needs saving.
- WRITE: the handler increments ``n``, so a new Set-Cookie (or a store write) follows.

Overhead is measured against a floor: the bare ASGI app for pure ASGI middlewares,
the same framework app without sessions for framework-bound ones (Microdot, Django).

    make bench-sessions
    benchmarks/.venv/bin/python benchmarks/sessions.py [--write-docs] [--repeat 5]

To profile one contender (py-spy is in benchmarks/requirements.txt):

    benchmarks/.venv/bin/py-spy record -r 1000 -f raw -o profile.txt -- \
        taskset -c 1 benchmarks/.venv/bin/python benchmarks/sessions.py \
        --loop "doorman CookieStore:read" --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import os
import platform
import statistics
import sys
import tempfile
import time
import types
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _report import package_versions  # benchmarks/_report.py

SECRET = "x" * 40
REDIS_URL = "redis://127.0.0.1:6379/0"  # loopback only
WORKLOADS = ("read", "write")
PACKAGES = (
    "doorman",
    "starlette",
    "starsessions",
    "asgi-sessions",
    "microdot",
    "django",
    "itsdangerous",
    "pyjwt",
    "cryptography",
    "redis",
    "sqlalchemy",
    "aiosqlite",
)
DOCS = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
BEGIN, END = "<!-- sessions:begin -->", "<!-- sessions:end -->"

Scope = dict[str, Any]
Message = dict[str, Any]
ASGIApp = Callable[..., Awaitable[None]]


class Skip(Exception):
    """A contender that cannot run here (a store not written yet, no Redis server)."""


@dataclass
class Contender:
    name: str
    app: ASGIApp
    floor: str | None = None  # the contender this one is measured against; None: a floor
    cookie: str | None = None  # the session cookie's name; None: no sessions
    read_sets_cookie: bool = False  # what this library does on an unmodified session
    signed_anchor: bool = False  # keeps data in a signed cookie: counts for the target
    io: dict[str, Callable[[], Awaitable[Any]]] = field(default_factory=dict)  # raw round trips
    close: Callable[[], Awaitable[None]] | None = None
    scopes: dict[str, Scope] = field(default_factory=dict)  # filled in by prepare()


# -- the fake server side ---------------------------------------------------------------


class Exchange:
    """One request's receive/send pair, as a server would give them."""

    __slots__ = ("_done", "_received", "body", "complete", "start")

    def __init__(self) -> None:
        self.start: Message | None = None
        self.body = b""
        self.complete = False
        self._received = False
        self._done: asyncio.Event | None = None  # made only for apps that wait for a disconnect

    async def receive(self) -> Message:
        if not self._received:
            self._received = True
            return {"type": "http.request", "body": b"", "more_body": False}
        if not self.complete:  # like uvicorn: a disconnect once the response is sent
            if self._done is None:
                self._done = asyncio.Event()
            await self._done.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.start = message
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")
            if not message.get("more_body"):
                self.complete = True
                if self._done is not None:
                    self._done.set()

    def set_cookie(self, name: str) -> str | None:
        """The value of the Set-Cookie sent for ``name``, if any."""
        assert self.start is not None, "no response started"
        for header, value in self.start["headers"]:
            if header.lower() == b"set-cookie" and value.startswith(name.encode() + b"="):
                return value.split(b";", 1)[0].split(b"=", 1)[1].decode("latin-1")
        return None


def make_scope(workload: str, cookie: str | None = None) -> Scope:
    headers = [(b"host", b"testserver"), (b"user-agent", b"bench"), (b"accept", b"*/*")]
    if cookie is not None:
        headers.append((b"cookie", cookie.encode("latin-1")))
    path = f"/{workload}"
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def call(app: ASGIApp, scope: Scope) -> Exchange:
    exchange = Exchange()
    await app(dict(scope), exchange.receive, exchange.send)
    return exchange


# -- the inner apps -------------------------------------------------------------------


async def respond(send: Callable[[Message], Awaitable[None]], body: bytes) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def bare_app(scope: Scope, receive: Any, send: Any) -> None:
    await respond(send, b"1")


async def session_app(scope: Scope, receive: Any, send: Any) -> None:
    session = scope["session"]
    if scope["path"] == "/write":
        session["n"] = session.get("n", 0) + 1
    await respond(send, str(session["n"]).encode())


# -- the contenders: each factory returns one, or raises Skip ---------------------------


async def bare() -> Contender:
    return Contender("bare ASGI app", bare_app)


async def doorman_cookie() -> Contender:
    from doorman import CookieStore, SessionMiddleware

    app = SessionMiddleware(session_app, secret=SECRET, store=CookieStore())
    return Contender("doorman CookieStore", app, "bare ASGI app", "doorman_session")


async def doorman_cookie_unremembered() -> Contender:
    """The cookie store verifying every cookie anew: a browser's first request with it."""
    from doorman import CookieStore, SessionMiddleware

    try:
        from doorman.sessions import SessionSigner
    except ImportError as exc:  # a doorman from before issue 14, measured for comparison
        raise Skip(f"no SessionSigner ({exc})") from None

    class Forgetful(SessionSigner):
        __slots__ = ()

        def _remember(self, cookie: str, verified: tuple[str, bool]) -> None:
            return None

    app = SessionMiddleware(session_app, secret=SECRET, store=CookieStore())
    app.policy.signer = Forgetful(SECRET)
    name = "doorman CookieStore, no cookie remembered"
    return Contender(name, app, "bare ASGI app", "doorman_session")


async def doorman_memory() -> Contender:
    from doorman import MemoryStore, SessionMiddleware

    app = SessionMiddleware(session_app, secret=SECRET, store=MemoryStore())
    return Contender("doorman MemoryStore", app, "bare ASGI app", "doorman_session")


async def doorman_redis() -> Contender:
    try:
        from doorman import RedisStore, SessionMiddleware
    except (ImportError, AttributeError) as exc:
        raise Skip(f"no doorman.RedisStore ({exc})") from None
    store = RedisStore(url=REDIS_URL)
    try:
        await store.ping()
    except Exception as exc:
        await store.close()
        raise Skip(f"no Redis server answers at {REDIS_URL} ({exc})") from None
    # A short max_age: what the benchmark leaves in Redis expires within ten minutes.
    app = SessionMiddleware(session_app, secret=SECRET, store=store, max_age=600)
    probe, payload = "doorman-bench:probe", '{"d":{"n":1},"c":1700000000,"a":1700000000}'
    await store.client.set(probe, payload, px=600_000)

    async def close() -> None:
        await store.client.delete(probe)
        await store.close()

    return Contender(
        "doorman RedisStore",
        app,
        "bare ASGI app",
        "doorman_session",
        io={  # what the store itself sends: GET, and SET ... PX ... XX
            "read": lambda: store.client.get(probe),
            "write": lambda: store.client.set(probe, payload, px=600_000, xx=True),
        },
        close=close,
    )


async def doorman_sql(tmp: Path) -> Contender:
    try:
        from doorman import SessionMiddleware
        from doorman.db import sessions_table
        from doorman.stores.base import storage_id
        from doorman.stores.sql import SQLStore
    except ImportError as exc:
        raise Skip(f"no doorman.stores.sql.SQLStore ({exc})") from None
    store = SQLStore(str(tmp / "sessions.db"))
    app = SessionMiddleware(session_app, secret=SECRET, store=store)
    # One row of our own, read and rewritten through the store's engine as the store does.
    key = await store.save(None, '{"d":{"n":1},"c":1700000000,"a":1700000000}', time.time() + 600)
    table, sid = sessions_table, storage_id(key)
    select = table.select().with_only_columns(table.c.data).where(table.c.id == sid)
    update = table.update().where(table.c.id == sid).values(expires_at=time.time() + 600)

    async def read() -> Any:
        async with store.engine.connect() as connection:
            return (await connection.execute(select)).scalar_one()

    async def write() -> Any:
        async with store.engine.begin() as connection:
            return await connection.execute(update)

    async def close() -> None:
        await store.delete(key)
        await store.close()

    return Contender(
        "doorman SQLStore (SQLite)",
        app,
        "bare ASGI app",
        "doorman_session",
        io={"read": read, "write": write},
        close=close,
    )


async def starlette() -> Contender:
    from starlette.middleware.sessions import SessionMiddleware

    app = SessionMiddleware(session_app, secret_key=SECRET)
    return Contender(
        "Starlette SessionMiddleware", app, "bare ASGI app", "session", signed_anchor=True
    )


def _starsessions(store: Any) -> ASGIApp:
    from starsessions import SessionAutoloadMiddleware, SessionMiddleware

    return SessionMiddleware(
        SessionAutoloadMiddleware(session_app), store=store, lifetime=14 * 24 * 3600
    )


async def starsessions_cookie() -> Contender:
    from starsessions import CookieStore

    app = _starsessions(CookieStore(secret_key=SECRET))
    return Contender(
        "starsessions CookieStore",
        app,
        "bare ASGI app",
        "session",
        read_sets_cookie=True,  # it saves and re-sends the cookie on every request
        signed_anchor=True,
    )


async def starsessions_memory() -> Contender:
    from starsessions import InMemoryStore

    app = _starsessions(InMemoryStore())
    return Contender(
        "starsessions InMemoryStore", app, "bare ASGI app", "session", read_sets_cookie=True
    )


async def asgi_sessions(kind: str) -> Contender:
    from asgi_sessions import SessionMiddleware

    # asgi-sessions 1.3 pads any fernet secret that is not exactly 32 characters
    # to 64 ("=" * (32 - len % 32)), which Fernet refuses: give it 32.
    secret = SECRET[:32] if kind == "fernet" else SECRET
    app = SessionMiddleware(session_app, secret_key=secret, session_type=kind)
    return Contender(f"asgi-sessions {kind}", app, "bare ASGI app", "session", signed_anchor=True)


def _microdot(with_session: bool) -> ASGIApp:
    from microdot.asgi import Microdot

    app = Microdot()
    if not with_session:

        @app.get("/read")
        @app.get("/write")
        async def floor(request: Any) -> str:
            return "1"

        return app
    from microdot.session import Session, with_session

    Session(app, secret_key=SECRET)

    @app.get("/read")
    @with_session
    async def read(request: Any, session: Any) -> str:
        return str(session["n"])

    @app.get("/write")
    @with_session
    async def write(request: Any, session: Any) -> str:
        session["n"] = session.get("n", 0) + 1
        session.save()
        return str(session["n"])

    return app


async def microdot_floor() -> Contender:
    return Contender("Microdot app", _microdot(with_session=False))


async def microdot_session() -> Contender:
    app = _microdot(with_session=True)
    return Contender("Microdot Session (JWT)", app, "Microdot app", "session", signed_anchor=True)


def _django(middleware: list[str]) -> ASGIApp:
    import django
    from django.conf import settings
    from django.core.handlers.asgi import ASGIHandler
    from django.http import HttpResponse
    from django.urls import path

    if not settings.configured:

        async def view(request: Any) -> HttpResponse:
            session = getattr(request, "session", None)
            if session is None:
                return HttpResponse(b"1", content_type="text/plain")
            if request.path == "/write":
                session["n"] = session.get("n", 0) + 1
            return HttpResponse(str(session["n"]), content_type="text/plain")

        urls = types.ModuleType("bench_django_urls")
        urls.urlpatterns = [path("read", view), path("write", view)]  # type: ignore[attr-defined]
        sys.modules[urls.__name__] = urls
        settings.configure(
            DEBUG=False,
            SECRET_KEY=SECRET,
            ALLOWED_HOSTS=["testserver"],
            ROOT_URLCONF=urls.__name__,
            INSTALLED_APPS=[],
            SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
        )
        django.setup()
    settings.MIDDLEWARE = middleware  # read once, when the handler is built
    return ASGIHandler()


async def django_floor() -> Contender:
    return Contender("Django app", _django([]))


async def django_session() -> Contender:
    app = _django(["django.contrib.sessions.middleware.SessionMiddleware"])
    return Contender("Django signed_cookies", app, "Django app", "sessionid", signed_anchor=True)


def factories(tmp: Path) -> list[Callable[[], Awaitable[Contender]]]:
    return [
        bare,
        doorman_cookie,
        doorman_cookie_unremembered,
        doorman_memory,
        doorman_redis,
        lambda: doorman_sql(tmp),
        starlette,
        starsessions_cookie,
        starsessions_memory,
        lambda: asgi_sessions("jwt"),
        lambda: asgi_sessions("fernet"),
        microdot_floor,
        microdot_session,
        django_floor,
        django_session,
    ]


# -- checking that each contender does what the table claims ----------------------------


async def prepare(c: Contender) -> None:
    """Make the contender's cookie, and fail loudly unless READ and WRITE do their job."""
    if c.cookie is None:
        for workload in WORKLOADS:
            c.scopes[workload] = make_scope(workload)
            done = await call(c.app, c.scopes[workload])
            check(c, done.start is not None and done.start["status"] == 200, "floor: not a 200")
        return
    seed = (await call(c.app, make_scope("write"))).set_cookie(c.cookie)
    check(c, seed is not None, "the first write sent no session cookie")
    header = f"{c.cookie}={seed}"
    c.scopes = {workload: make_scope(workload, header) for workload in WORKLOADS}

    read = await call(c.app, c.scopes["read"])
    check(c, read.body == b"1", f"READ answered {read.body!r}, not the stored 1")
    sent = read.set_cookie(c.cookie) is not None
    check(c, sent == c.read_sets_cookie, f"READ sent a Set-Cookie: {sent}")

    write = await call(c.app, c.scopes["write"])
    check(c, write.body == b"2", f"WRITE answered {write.body!r}, not 2")
    fresh = write.set_cookie(c.cookie)
    check(c, fresh is not None, "WRITE sent no Set-Cookie")
    again = await call(c.app, make_scope("read", f"{c.cookie}={fresh}"))
    check(c, again.body == b"2", f"the WRITE was not kept: read back {again.body!r}")


def check(c: Contender, ok: bool, problem: str) -> None:
    if not ok:
        raise SystemExit(f"benchmark is wrong for {c.name}: {problem}")


# -- timing ---------------------------------------------------------------------------


#: What a batch is timed with: the process's CPU time (every thread's), so that other
#: programs on a shared machine do not count, or the wall clock (--clock wall).
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
clock = CLOCKS["cpu"]


async def time_requests(app: ASGIApp, scope: Scope, n: int) -> float:
    """Microseconds per request over ``n`` sequential requests."""
    gc.collect()
    start = clock()
    for _ in range(n):
        exchange = Exchange()
        await app(dict(scope), exchange.receive, exchange.send)
    elapsed = clock() - start
    assert exchange.start is not None and exchange.start["status"] == 200
    return elapsed / n * 1e6


async def time_calls(fn: Callable[[], Awaitable[Any]], n: int) -> float:
    gc.collect()
    start = clock()
    for _ in range(n):
        await fn()
    return (clock() - start) / n * 1e6


@dataclass
class Job:
    key: tuple[str, str]  # (contender or raw I/O name, workload)
    run: Callable[[int], Awaitable[float]]
    n: int = 0


def jobs_for(contenders: list[Contender]) -> list[Job]:
    jobs = []
    for c in contenders:
        for workload in WORKLOADS:
            scope = c.scopes[workload]
            jobs.append(Job((c.name, workload), lambda n, a=c.app, s=scope: time_requests(a, s, n)))
        for workload, fn in c.io.items():
            jobs.append(Job((f"{c.name} raw I/O", workload), lambda n, f=fn: time_calls(f, n)))
    return jobs


async def calibrate(job: Job, seconds: float) -> None:
    """Pick a request count that takes about ``seconds`` per batch."""
    per_request = await job.run(50) / 1e6
    job.n = max(200, min(20_000, int(seconds / per_request)))


async def measure(jobs: list[Job], repeat: int) -> dict[tuple[str, str], float]:
    """Median µs per request; every repetition runs every job once, in a rotated order."""
    samples: dict[tuple[str, str], list[float]] = {job.key: [] for job in jobs}
    for rep in range(repeat):
        shift = rep * len(jobs) // repeat
        order = jobs[shift:] + jobs[:shift]
        for job in order:
            samples[job.key].append(await job.run(job.n))
        print(f"  repetition {rep + 1}/{repeat} done", file=sys.stderr)
    return {key: statistics.median(values) for key, values in samples.items()}


# -- reporting ------------------------------------------------------------------------


def table(contenders: list[Contender], us: dict[tuple[str, str], float]) -> str:
    head = (
        "| contender | floor | READ µs/req | overhead µs | ratio "
        "| WRITE µs/req | overhead µs | ratio |\n"
        "|---|---|--:|--:|--:|--:|--:|--:|\n"
    )
    rows = []
    for c in contenders:
        cells = [c.name, c.floor or "(floor)"]
        for workload in WORKLOADS:
            mine = us[c.name, workload]
            cells.append(f"{mine:.1f}")
            if c.floor is None:
                cells += ["", ""]
            else:
                floor = us[c.floor, workload]
                cells += [f"{mine - floor:.1f}", f"{mine / floor:.2f}"]
        rows.append("| " + " | ".join(cells) + " |")
    return head + "\n".join(rows) + "\n"


def io_notes(contenders: list[Contender], us: dict[tuple[str, str], float]) -> list[str]:
    """Server stores: the overhead left once the store's raw round trips are taken off."""
    notes = []
    for c in contenders:
        if not c.io or c.floor is None:
            continue
        raw_read, raw_write = us[f"{c.name} raw I/O", "read"], us[f"{c.name} raw I/O", "write"]
        read = us[c.name, "read"] - us[c.floor, "read"]
        write = us[c.name, "write"] - us[c.floor, "write"] - raw_write
        if read < raw_read:  # READ made no round trip: the store kept the row (SQLStore's epochs)
            taken = f"READ {read:.1f} µs (no round trip), WRITE {write:.1f} µs (minus 1 write)"
        else:
            read, write = read - raw_read, write - raw_read
            taken = (
                f"READ {read:.1f} µs (minus 1 read), WRITE {write:.1f} µs (minus 1 read + 1 write)"
            )
        notes.append(
            f"- {c.name}: one raw read round trip {raw_read:.1f} µs, one raw write "
            f"{raw_write:.1f} µs; overhead minus them: {taken}."
        )
    return notes


#: Issue 14: (doorman's contender, its anchor, the most of the anchor's overhead it may add).
TARGETS = (
    ("doorman CookieStore", "Starlette SessionMiddleware", 0.45),
    ("doorman MemoryStore", "starsessions InMemoryStore", 0.5),
)


def target(contenders: list[Contender], us: dict[tuple[str, str], float]) -> list[str]:
    """Issue 14's targets: doorman's overhead as a share of its anchor's, READ and WRITE."""
    by_name = {c.name: c for c in contenders}

    def overhead(name: str, workload: str) -> float:
        floor = by_name[name].floor
        assert floor is not None
        return us[name, workload] - us[floor, workload]

    lines = []
    for mine, anchor, share in TARGETS:
        if mine not in by_name or anchor not in by_name:
            lines.append(f"- target: {mine} or {anchor} did not run")
            continue
        for workload in WORKLOADS:
            ours, theirs = overhead(mine, workload), overhead(anchor, workload)
            verdict = "MET" if ours <= theirs * share else "NOT MET"
            lines.append(
                f"- target (issue 14), {workload.upper()}: {mine} adds {ours:.1f} µs, "
                f"{anchor} {theirs:.1f} µs: {ours / theirs:.2f} of it, at most {share}: {verdict}"
            )
    unremembered, starlette = "doorman CookieStore, no cookie remembered", TARGETS[0][1]
    if unremembered in by_name and starlette in by_name:
        shares = ", ".join(
            f"{w.upper()} {overhead(unremembered, w) / overhead(starlette, w):.2f}"
            for w in WORKLOADS
        )
        lines.append(
            f"- {unremembered} (a cookie's first request; not a target), as a share of "
            f"Starlette's: {shares}"
        )
    return lines


async def cookie_sizes() -> list[str]:
    """Issue 14: the cookie for {"count": 1}, as name=value, no longer than Starlette's."""
    from starlette.middleware.sessions import SessionMiddleware as StarletteMiddleware

    from doorman import SessionMiddleware

    async def count(scope: Scope, receive: Any, send: Any) -> None:
        scope["session"]["count"] = 1
        await respond(send, b"1")

    made = {
        "doorman, secret_key= (named session)": (
            SessionMiddleware(count, secret_key=SECRET),
            "session",
        ),
        "doorman, secret= (named doorman_session)": (
            SessionMiddleware(count, secret=SECRET),
            "doorman_session",
        ),
        "Starlette": (StarletteMiddleware(count, secret_key=SECRET), "session"),
    }
    sizes = {}
    for label, (app, name) in made.items():
        value = (await call(app, make_scope("write"))).set_cookie(name)
        assert value is not None
        sizes[label] = len(f"{name}={value}")
    ours, theirs = sizes["doorman, secret_key= (named session)"], sizes["Starlette"]
    listed = ", ".join(f"{label} {size} bytes" for label, size in sizes.items())
    verdict = "MET" if ours <= theirs else "NOT MET"
    return [f'- target (issue 14), the cookie for {{"count": 1}} (name=value): {listed}: {verdict}']


def versions() -> str:
    return ", ".join(package_versions(PACKAGES))


CLOCK_NOTES = {
    "cpu": """Batches are timed by the process's CPU time (every thread's), so the time
other programs on this shared machine take is not in them; nor is waiting for
Redis or for SQLite's threads: the server stores' rows are CPU, not latency.""",
    "wall": "Batches are timed by the wall clock (`--clock wall`).",
}


def section(report: str, skipped: list[str], repeat: int, placement: str, clock: str) -> str:
    skips = "".join(f"\n- skipped: {note}" for note in skipped)
    return f"""{BEGIN}
## Session middleware overhead

`benchmarks/sessions.py`, run {dt.date.today().isoformat()} on {platform.machine()} Linux
with {os.cpu_count()} cores, {placement}; each number is the median of {repeat}
repetitions, the contenders interleaved within each repetition.
{CLOCK_NOTES[clock]}
Versions: {versions()}.

Every request carries a valid cookie made beforehand by the same contender.
READ reads one key and changes nothing; WRITE increments it, so a new cookie
(or a store write) follows; a warm-up pass checks both before timing. "overhead"
is the time over the contender's floor: the bare ASGI app (one 200 response) for
the pure ASGI middlewares, the same framework app without sessions for Microdot
and Django; "ratio" is time over floor. Server stores are also shown with their
own raw round trips taken off, to show the middleware's share.

What the libraries do, as checked by the warm-up pass:

- doorman, Starlette, asgi-sessions, Microdot and Django send a cookie only when
  the session changed; starsessions saves the session and re-sends the cookie on
  every request, READ included.
- Microdot runs its cookie hook (a plain function) in a worker thread, so its
  WRITE includes a thread hop; Django runs SessionMiddleware's hooks through
  `sync_to_async` on its per-request thread; its floor already pays for that
  thread, hence its small ratios.
- asgi-sessions 1.3 only accepts a `fernet` secret of exactly 32 characters
  (others are padded to 64 and refused by Fernet); this run gives it 32.
- doorman remembers the last 1,024 session cookies it verified (see
  docs/security.md), and every request here carries a cookie it has seen, as a
  browser's requests do until the cookie changes; "no cookie remembered"
  verifies the HMAC on every request, as on a cookie's first one.

{report}{skips}
{END}"""


INTRO = """# Performance

These numbers come from in-process micro-benchmarks: the ASGI app is called
directly with a scope and fake receive/send callables, so no network and no
HTTP client cost are in them. The machine is shared and noisy: read the
overheads and ratios measured side by side in one run, not the absolute
microseconds across runs.

To reproduce (it makes `benchmarks/.venv` with the pinned anchors from
`benchmarks/requirements.txt` and doorman from this checkout, then rewrites the
section below):

    make bench-sessions

"""


def write_docs(text: str) -> None:
    old = DOCS.read_text() if DOCS.exists() else INTRO
    if BEGIN in old and END in old:
        before, rest = old.split(BEGIN, 1)
        new = before + text + rest.split(END, 1)[1]
    else:
        new = old.rstrip("\n") + "\n\n" + text + "\n"
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    DOCS.write_text(new)
    print(f"wrote {DOCS}", file=sys.stderr)


# -- main -----------------------------------------------------------------------------


def pin_to_one_cpu() -> str:
    """Run on one CPU: thread hand-offs (aiosqlite, Django, Microdot) get far less bimodal."""
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned"
    cpu = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return f"pinned to CPU {cpu}"


async def loop(spec: str, seconds: float) -> None:
    """Run one contender's workload (``NAME:read`` or ``NAME:write``) for py-spy to record."""
    name, _, workload = spec.rpartition(":")
    with tempfile.TemporaryDirectory(prefix="doorman-bench-") as tmp:
        for factory in factories(Path(tmp)):
            contender = await factory()
            if contender.name == name:
                break
            if contender.close is not None:
                await contender.close()
        else:
            raise SystemExit(f"no contender named {name!r}")
        try:
            await prepare(contender)
            scope, end = contender.scopes[workload], time.perf_counter() + seconds
            while time.perf_counter() < end:
                await time_requests(contender.app, scope, 1000)
        finally:
            if contender.close is not None:
                await contender.close()


async def main(args: argparse.Namespace) -> None:
    global clock
    clock = CLOCKS[args.clock]
    placement = pin_to_one_cpu() if args.pin else "not pinned"
    print(placement, file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="doorman-bench-") as tmp:
        contenders, skipped = [], []
        for factory in factories(Path(tmp)):
            try:
                contenders.append(await factory())
            except Skip as exc:
                skipped.append(str(exc))
                print(f"skipping: {exc}", file=sys.stderr)
        try:
            for c in contenders:
                await prepare(c)
            jobs = jobs_for(contenders)
            for job in jobs:
                await calibrate(job, args.seconds)
            print(f"{len(jobs)} jobs x {args.repeat} repetitions", file=sys.stderr)
            us = await measure(jobs, args.repeat)
        finally:
            for c in contenders:
                if c.close is not None:
                    await c.close()
    report = table(contenders, us)
    notes = io_notes(contenders, us) + target(contenders, us) + await cookie_sizes()
    report += "\n" + "\n".join(notes) + "\n"
    print(report)
    for note in skipped:
        print(f"skipped: {note}")
    if args.write_docs:
        write_docs(section(report, skipped, args.repeat, placement, args.clock))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-docs", action="store_true", help=f"rewrite {DOCS.name}")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions (median reported)")
    parser.add_argument("--seconds", type=float, default=0.3, help="target seconds per batch")
    parser.add_argument(
        "--no-pin", dest="pin", action="store_false", help="do not pin the process to one CPU"
    )
    parser.add_argument(
        "--clock", choices=CLOCKS, default="cpu", help="time batches by CPU time or wall clock"
    )
    parser.add_argument(
        "--loop",
        metavar="NAME:WORKLOAD",
        help="only run this contender's workload, --seconds long, for a profiler",
    )
    arguments = parser.parse_args()
    if arguments.loop:
        asyncio.run(loop(arguments.loop, arguments.seconds))
    else:
        asyncio.run(main(arguments))
