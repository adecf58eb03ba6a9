"""The login storm: 200 sign-ins at once against ``doorman serve`` (one uvicorn worker).

For each session store (the same four as benchmarks/load.py, set up by its
``prepared``), 200 users are made beforehand in the store's database, in process,
with doorman's own ``PasswordHasher`` (argon2id, the real parameters) and
``Users.create``. Then, for each throttle scenario, a fresh
``python -m doorman serve --workers 1`` is started on loopback and 200 simulated
browsers (one ``httpx.AsyncClient`` each, so one connection each) do what a
browser's script does: ``GET /-/whoami?csrf=1`` for a CSRF token and the cookie it
is bound to (20 browsers at a time; no session is made before sign-in), then,
released at once, a JSON ``POST /-/login`` with ``X-CSRFToken``. The script
records each login's status and latency, the storm's wall time and the server's
memory from /proc (``VmRSS`` before and after, sampled every 10 ms during the
storm, and the kernel's high-water mark ``VmHWM``), then checks every new session
with ``GET /-/whoami``. The server is pinned to one CPU
and the browsers to the other with taskset / sched_setaffinity, as in load.py.

Throttle scenarios (doorman lets a password check through while the failures
plus the checks in flight are under each limit, and a check that meets only
checks in flight waits for their outcome):

- raised: ``DOORMAN_THROTTLE_PER_ADDRESS=1000``; every login must answer 200;
- defaults: 20 per address, 5 per account, 900 s; every login from 127.0.0.1,
  so at most 20 are checked at a time and the others wait: every login must
  answer 200;
- proxied: the defaults, each browser behind the trusted proxy with its own
  ``X-Forwarded-For`` address (127.0.0.1 is the default ``forwarded_allow_ips``);
  every login must answer 200.

    make bench-storm
    benchmarks/.venv/bin/python benchmarks/storm.py [--stores sqlite,redis,cookie,postgres]
        [--logins 200] [--scenarios raised,defaults,proxied] [--write-docs]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import os
import platform
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from _report import package_versions, write_block  # benchmarks/_report.py
from load import (  # benchmarks/load.py
    ALL_STORES,
    COOKIE,
    DOCS,
    PACKAGES,
    SECRET,
    Placement,
    Server,
    Skip,
    cpu_model,
    cpu_seconds,
    machine_load,
    placement,
    prepared,
    serve_command,
    start,
    stop,
    stores,
)

BEGIN, END = "<!-- storm:begin -->", "<!-- storm:end -->"
HEADING = "## Login storm"
TARGET_MB = 300  # issue 6: the login storm under 300 MB of peak server memory
MB = 1_000_000
LOGIN_TIMEOUT = 120.0  # seconds for one request, once sent
STORM_TIMEOUT = 300.0  # seconds for the whole storm
SAMPLE_EVERY = 0.01  # seconds between /proc samples during the storm
PREPARE_AT_ONCE = 20  # browsers getting their session (or checking it) at once


def username(index: int) -> str:
    return f"storm{index:03d}"


def password(index: int) -> str:
    return f"storm {index:03d} correct horse battery staple"


@dataclass(frozen=True)
class Scenario:
    """How the throttle is set for one storm, and what the logins must answer."""

    name: str
    env: dict[str, str]
    forwarded: bool  # each browser sends its own X-Forwarded-For address
    describe: str


SCENARIOS = (
    Scenario(
        "raised",
        {"DOORMAN_THROTTLE_PER_ADDRESS": "1000"},
        False,
        "`DOORMAN_THROTTLE_PER_ADDRESS=1000` (per account 5, window 900 s: the defaults), "
        "every login from 127.0.0.1: each account signs in once, so every login must "
        "answer 200",
    ),
    Scenario(
        "defaults",
        {},
        False,
        "the defaults (20 per address, 5 per account, 900 s), every login from 127.0.0.1: "
        "at most 20 are checked at a time, the others wait for a slot (a right password "
        "is never refused because others are in flight), so every login must answer 200",
    ),
    Scenario(
        "proxied",
        {},
        True,
        "the defaults, each browser behind the trusted proxy (127.0.0.1, the default "
        "`forwarded_allow_ips`) with its own `X-Forwarded-For` address: every login must "
        "answer 200",
    ),
)
BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}


# -- the server's memory ---------------------------------------------------------------


@dataclass(frozen=True)
class Memory:
    """Figures from /proc/<pid>/status, in bytes (threads: a count)."""

    rss: int
    hwm: int
    threads: int


def memory(pid: int) -> Memory:
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM", "Threads"):
            values[name] = int(rest.split()[0])
    return Memory(values["VmRSS"] * 1024, values["VmHWM"] * 1024, values["Threads"])


class Sampler(threading.Thread):
    """Reads the server's /proc status every ``SAMPLE_EVERY`` s: the highest RSS and threads."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.rss = self.threads = self.samples = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            with contextlib.suppress(OSError):
                now = memory(self.pid)
                self.rss, self.threads = max(self.rss, now.rss), max(self.threads, now.threads)
                self.samples += 1
            self.done.wait(SAMPLE_EVERY)


# -- the users -------------------------------------------------------------------------


async def make_hashes(count: int) -> list[str]:
    """One argon2id hash per user, with doorman's hasher and its pool (both CPUs)."""
    from doorman.accounts.passwords import PasswordHasher

    hasher = PasswordHasher()
    try:
        return list(await asyncio.gather(*(hasher.hash(password(i)) for i in range(count))))
    finally:
        hasher.close()


async def create_users(db: str, hashes: list[str]) -> None:
    from doorman.core import Doorman

    doorman = Doorman(db, secret=SECRET, entry_points=False)
    try:
        await doorman.startup()  # makes the tables, as `doorman serve` would
        for index, encoded in enumerate(hashes):
            await doorman.users.create(username(index), password_hash=encoded)
    finally:
        await doorman.close()


# -- the browsers ----------------------------------------------------------------------


#: A browser without a session keeps its CSRF secret in this cookie.
CSRF_COOKIE = "doorman_csrf"


def new_cookie(response: httpx.Response, name: str = COOKIE) -> str | None:
    """``doorman_session=...`` (or cookie ``name``) from the response's Set-Cookie, if set."""
    for value in response.headers.get_list("set-cookie"):
        pair = value.split(";", 1)[0]
        if pair.startswith(name + "=") and pair != name + "=":
            return pair
    return None


@dataclass
class Browser:
    """One simulated browser: its client (one connection), session and login."""

    index: int
    client: httpx.AsyncClient
    cookie: str = ""
    csrf: str = ""
    status: int | str = ""  # the login's status, or the name of a socket error
    seconds: float = 0.0  # the login's latency
    problem: str = ""  # what was wrong with an answer of the expected status

    async def prepare(self, gate: asyncio.Semaphore) -> None:
        """A CSRF token and its cookie, as a page's script gets them before a login."""
        async with gate:
            try:
                response = await self.client.get("/-/whoami?csrf=1")
            except httpx.HTTPError as error:
                self.status = f"GET /-/whoami?csrf=1: {type(error).__name__}"
                return
        cookie = new_cookie(response, CSRF_COOKIE)
        if response.status_code != 200 or cookie is None:
            self.status = f"GET /-/whoami?csrf=1: {response.status_code}"
            return
        self.cookie, self.csrf = cookie, response.json()["csrftoken"]

    async def login(self, release: asyncio.Event) -> None:
        await release.wait()
        if self.status:  # no session to sign in with
            return
        headers = {"Cookie": self.cookie, "X-CSRFToken": self.csrf}
        body = {"username": username(self.index), "password": password(self.index)}
        began = time.perf_counter()
        try:
            response = await self.client.post("/-/login", json=body, headers=headers)
        except httpx.HTTPError as error:
            self.status, self.seconds = type(error).__name__, time.perf_counter() - began
            return
        self.seconds, self.status = time.perf_counter() - began, response.status_code
        if response.status_code == 200:
            self.problem = self._signed_in(response)
        elif response.status_code == 429 and "retry-after" not in response.headers:
            self.problem = "a 429 with no Retry-After"

    def _signed_in(self, response: httpx.Response) -> str:
        cookie = new_cookie(response)
        actor = (response.json().get("actor") or {}).get("id")
        if actor != username(self.index):
            return f"the login answered actor {actor!r}"
        if cookie is None or cookie == self.cookie:
            return "the login kept the session key (no rotation)"
        self.cookie = cookie
        return ""

    async def whoami(self, client: httpx.AsyncClient, gate: asyncio.Semaphore) -> str:
        """What is wrong with the signed-in session (empty: ``/-/whoami`` names the user).

        Asked on ``client``, not the browser's own: uvicorn closes a keep-alive
        connection after 5 idle seconds, and the early logins' have waited longer.
        """
        try:
            async with gate:
                response = await client.get("/-/whoami", headers={"Cookie": self.cookie})
        except httpx.HTTPError as error:
            return f"/-/whoami: {type(error).__name__}"
        if response.status_code != 200:
            return f"/-/whoami answered {response.status_code}"
        actor = (response.json().get("actor") or {}).get("id")
        return "" if actor == username(self.index) else f"/-/whoami named {actor!r}"


@contextlib.contextmanager
def pinned(cpu: int | None) -> Iterator[None]:
    """Run this thread (and the threads it starts) on ``cpu``, then as before."""
    if cpu is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


# -- one storm -------------------------------------------------------------------------


@dataclass
class Storm:
    """What one storm found."""

    store: str
    scenario: Scenario
    logins: int
    wall: float = 0.0
    latencies: dict[int | str, list[float]] = field(default_factory=dict)  # by status

    @property
    def statuses(self) -> Counter[int | str]:
        return Counter({status: len(seconds) for status, seconds in self.latencies.items()})

    @property
    def ok_seconds(self) -> list[float]:
        return self.latencies.get(200, [])

    problems: list[str] = field(default_factory=list)
    sessions_ok: int = 0
    idle: Memory | None = None  # after start-up
    ready: Memory | None = None  # the 200 CSRF tokens handed out, before the storm
    after: Memory | None = None  # right after the storm
    sampled_rss: int = 0
    sampled_threads: int = 0
    samples: int = 0
    cpu: float = 0.0  # the server's CPU seconds during the storm
    logged: Counter[str] = field(default_factory=Counter)  # the server's ERROR lines

    @property
    def succeeded(self) -> int:
        return self.statuses[200]

    @property
    def peak(self) -> int:
        """The highest RSS seen: ``VmHWM`` after the storm, or a higher sample."""
        return max(self.after.hwm if self.after else 0, self.sampled_rss)

    def errors(self) -> int:
        """Responses of a status the scenario does not allow, and socket errors."""
        return sum(n for status, n in self.statuses.items() if status != 200)

    def verdict(self) -> list[str]:
        """What is wrong with this storm, by the scenario's rule (empty: nothing)."""
        wrong = [f"{n} x {status}" for status, n in self.statuses.items() if status not in (200,)]
        found = list(dict.fromkeys(self.problems))
        if self.sessions_ok != self.succeeded:
            found.append(f"{self.succeeded - self.sessions_ok} new sessions did not work")
        return wrong + found


def browser_headers(scenario: Scenario, index: int) -> dict[str, str]:
    if not scenario.forwarded:
        return {}
    return {"X-Forwarded-For": f"10.77.{index // 250}.{index % 250 + 1}"}


async def run_storm(server: Server, scenario: Scenario, logins: int) -> Storm:
    assert server.process is not None
    pid = server.process.pid
    found = Storm(server.store, scenario, logins, idle=memory(pid))
    timeout = httpx.Timeout(LOGIN_TIMEOUT, connect=10.0)
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with contextlib.AsyncExitStack() as stack:
        browsers = []
        for index in range(logins):
            client = httpx.AsyncClient(
                base_url=server.url(""),
                timeout=timeout,
                limits=limits,
                headers=browser_headers(scenario, index),
            )
            browsers.append(Browser(index, await stack.enter_async_context(client)))
        gate = asyncio.Semaphore(PREPARE_AT_ONCE)
        await asyncio.wait_for(asyncio.gather(*(b.prepare(gate) for b in browsers)), 120)
        found.ready = memory(pid)
        await release_all(browsers, found, pid)
        found.after = memory(pid)
        for browser in browsers:
            found.latencies.setdefault(browser.status, []).append(browser.seconds)
            if browser.problem:
                found.problems.append(browser.problem)
        signed_in = [b for b in browsers if b.status == 200 and not b.problem]
        checker = await stack.enter_async_context(
            httpx.AsyncClient(base_url=server.url(""), timeout=timeout)
        )
        gate = asyncio.Semaphore(PREPARE_AT_ONCE)
        checks = asyncio.gather(*(b.whoami(checker, gate) for b in signed_in))
        answers = await asyncio.wait_for(checks, 120)
        found.sessions_ok = answers.count("")
        found.problems += [answer for answer in answers if answer]
    return found


async def release_all(browsers: list[Browser], found: Storm, pid: int) -> None:
    """Every login at once; the wall time, the server's CPU and memory meanwhile."""
    release = asyncio.Event()
    tasks = [asyncio.create_task(b.login(release)) for b in browsers]
    await asyncio.sleep(0)  # each task now waits for the release
    sampler = Sampler(pid)
    sampler.start()
    cpu, began = cpu_seconds(pid), time.perf_counter()
    release.set()
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), STORM_TIMEOUT)
    finally:
        found.wall = time.perf_counter() - began
        found.cpu = cpu_seconds(pid) - cpu
        sampler.done.set()
        sampler.join(timeout=5)
    found.sampled_rss, found.sampled_threads = sampler.rss, sampler.threads
    found.samples = sampler.samples


def storm_on(base: Server, scenario: Scenario, logins: int, where: Placement, tmp: Path) -> Storm:
    """A fresh server with the scenario's settings (its own VmHWM), one storm, stopped."""
    server = dataclasses.replace(base, env=dict(scenario.env), process=None)
    start(server, where, tmp)
    try:
        with pinned(where.client):
            found = asyncio.run(run_storm(server, scenario, logins))
    finally:
        stop(server)
        assert server.log is not None
        # uvicorn's and doorman's lines at INFO; the throttle's warnings are expected.
        lines = server.log.read_text().splitlines()
        noise = [x for x in lines if not x.startswith("INFO") and "throttled" not in x]
        if noise:
            print(f"{server.store} server's stderr:", *noise[:10], sep="\n", file=sys.stderr)
    found.logged = Counter(normalized(x) for x in lines if x.startswith("ERROR"))
    print(f"  {summary(found)}", file=sys.stderr)
    return found


def normalized(line: str) -> str:
    """A server's log line without what changes from run to run (paths, database names)."""
    line = line.removeprefix("ERROR").strip().split(" (Background on this error", 1)[0]
    line = re.sub(r"/tmp/doorman-storm-\w+/", "", line)
    return re.sub(r"doorman_load_[0-9a-f]+", "doorman_load_…", line)


# -- reporting -------------------------------------------------------------------------


def mib(n: int) -> str:
    return f"{n / 2**20:,.0f}"


def quantile(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def statuses_text(storm: Storm) -> str:
    """``196 x 200, 4 x 503 (after 5.1-5.3 s)``: each status but 200 with its latencies."""
    parts = []
    for status, seconds in sorted(storm.latencies.items(), key=lambda item: str(item[0])):
        timed = isinstance(status, int) and status != 200
        after = f" (after {min(seconds):.1f}-{max(seconds):.1f} s)" if timed else ""
        parts.append(f"{len(seconds)} x {status}{after}")
    return ", ".join(parts)


def summary(storm: Storm) -> str:
    return (
        f"{storm.store:8} {storm.scenario.name:8} {storm.wall:6.2f} s  {statuses_text(storm)}  "
        f"p50 {quantile(storm.ok_seconds, 0.5) * 1000:,.0f} ms  "
        f"p99 {quantile(storm.ok_seconds, 0.99) * 1000:,.0f} ms  peak {mib(storm.peak)} MiB"
        + (f"  PROBLEMS: {'; '.join(storm.verdict())}" if storm.verdict() else "")
    )


def login_table(storms: list[Storm]) -> str:
    lines = [
        "| store | throttle | logins | wall s | logins/s | p50 ms | p99 ms | statuses "
        "| errors | sessions that work | server CPU s | verdict |",
        "|---|---|--:|--:|--:|--:|--:|---|--:|--:|--:|---|",
    ]
    for s in storms:
        lines.append(
            f"| {s.store} | {s.scenario.name} | {s.logins} | {s.wall:.2f} "
            f"| {s.succeeded / s.wall:,.1f} | {quantile(s.ok_seconds, 0.5) * 1000:,.0f} "
            f"| {quantile(s.ok_seconds, 0.99) * 1000:,.0f} | {statuses_text(s)} | {s.errors()} "
            f"| {s.sessions_ok} of {s.succeeded} | {s.cpu:.1f} "
            f"| {'; '.join(s.verdict()) or 'ok'} |"
        )
    return "\n".join(lines) + "\n"


def memory_table(storms: list[Storm], logins: int) -> str:
    lines = [
        f"| store | throttle | RSS idle MiB | RSS with {logins} sessions MiB "
        "| peak RSS sampled MiB | peak `VmHWM` MiB | RSS after MiB | storm's growth MiB "
        f"| threads (peak) | under {TARGET_MB} MB |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for s in storms:
        assert s.idle and s.ready and s.after
        lines.append(
            f"| {s.store} | {s.scenario.name} | {mib(s.idle.rss)} | {mib(s.ready.rss)} "
            f"| {mib(s.sampled_rss)} | {mib(s.after.hwm)} | {mib(s.after.rss)} "
            f"| {mib(s.after.hwm - s.ready.rss)} | {s.idle.threads} → {s.sampled_threads} "
            f"| {'yes' if s.peak < TARGET_MB * MB else '**no**'} |"
        )
    return "\n".join(lines) + "\n"


def target_lines(storms: list[Storm]) -> list[str]:
    if not storms:
        return []
    worst = max(storms, key=lambda s: s.peak)
    met = all(s.peak < TARGET_MB * MB for s in storms)
    full = [s.cpu / s.logins * 1000 for s in storms if s.succeeded == s.logins]
    cost = (
        f"- server CPU per login in the storms where every login succeeded: "
        f"{statistics.median(full):,.0f} ms (median; {min(full):,.0f}-{max(full):,.0f}), "
        "most of it the argon2id verify"
        if full
        else "- no storm had every login succeed"
    )
    return [
        cost,
        f"- target (issue 6), the login storm under {TARGET_MB} MB ({TARGET_MB * MB / 2**20:.0f} "
        f"MiB) of peak server memory: the highest peak was {mib(worst.peak)} MiB "
        f"({worst.peak / MB:,.0f} MB; {worst.store}, {worst.scenario.name}): "
        + ("MET" if met else "NOT MET"),
        "- every storm by its scenario's rule: "
        + (
            "all as expected"
            if not any(s.verdict() for s in storms)
            else "NOT MET: "
            + "; ".join(f"{s.store} {s.scenario.name}" for s in storms if s.verdict())
        ),
    ]


#: What a server's ERROR line means, for the lines a storm has been seen to cause.
CAUSES = {
    "MaxConnectionsError": "redis-py 8's asyncio connection pool holds at most 100 "
    "connections by default and raises `MaxConnectionsError` instead of waiting when all "
    "are in use; `RedisStore` makes its client with that default, so the Redis command "
    "of the 101st request in flight fails (each login's session load comes first)",
    "database is locked": "a SQLite writer waited longer than the 5 s busy timeout for "
    "the write lock",
    "QueuePool limit": "SQLAlchemy's pool (10 connections, 20 more in overflow) had none "
    "free within its 5 s `pool_timeout`",
}


def logged_lines(storms: list[Storm]) -> list[str]:
    """What the servers logged at ERROR, storm by storm (the causes of 5xx answers)."""
    lines, seen = [], set()
    for s in storms:
        for text, n in s.logged.most_common(3):
            lines.append(f"- {s.store}, {s.scenario.name}: {n} x `{text}`")
            seen |= {key for key in CAUSES if key in text}
    if not lines:
        return ["The servers logged nothing at ERROR."]
    why = [f"- why ({key}): {CAUSES[key]}." for key in CAUSES if key in seen]
    return ["What the servers logged at ERROR:", "", *lines, *why]


def memory_lines(storms: list[Storm]) -> list[str]:
    """Where the storm's memory goes: the hashing pool's argon2 buffers, and threads."""
    pool = min(4, os.cpu_count() or 1)  # PasswordHasher's default max_concurrency
    growth = [(s.peak - s.ready.rss) / 2**20 for s in storms if s.ready]
    threads: dict[str, int] = {}
    for s in storms:
        threads[s.store] = max(threads.get(s.store, 0), s.sampled_threads)
    return [
        f"- the storm's growth, {min(growth):,.0f}-{max(growth):,.0f} MiB, is mostly the "
        f"hashing pool: {pool} argon2id verifies at once, 19 MiB each "
        f"({pool * 19456 / 1024:,.0f} MiB), however many logins wait; the rest is the "
        "requests in flight and the database connections, each SQLite connection an "
        "aiosqlite thread (threads at the peak: "
        + ", ".join(f"{store} {n}" for store, n in threads.items())
        + ")",
    ]


def own_command(args: argparse.Namespace) -> str:
    parts = [
        "benchmarks/storm.py",
        f"--stores {','.join(args.stores)}",
        f"--logins {args.logins}",
        f"--scenarios {','.join(args.scenarios)}",
    ]
    if args.write_docs:
        parts.append("--write-docs")
    return " ".join(parts)


def section(
    storms: list[Storm],
    args: argparse.Namespace,
    where: Placement,
    context: dict[str, str],
    notes: dict[str, str],
    skipped: list[str],
) -> str:
    shown = Server("shown", "DB", "STORE")
    serve = " ".join(serve_command(shown, where)).replace(sys.executable, "python")
    serve = serve.replace("--port 0", "--port PORT")
    scenarios = "".join(f"\n  - {n}: {BY_NAME[n].describe}" for n in args.scenarios)
    store_notes = "".join(f"\n  - {store}: {note}" for store, note in notes.items())
    skips = "".join(f"\n- skipped: {note}" for note in skipped)
    return f"""{BEGIN}
`benchmarks/storm.py`, run {dt.date.today().isoformat()} on {platform.machine()} Linux with \
{os.cpu_count()} cores ({cpu_model()}); the run took {context["took"]}.

- Placement: {where.describe().replace("wrk", "the browsers")}; Redis and PostgreSQL \
are not pinned.
- The machine is shared with other agents' test runs: before the storms \
{context["load_before"]}; after them {context["load_after"]}. Wall times and \
latencies move with that; the memory figures do not.
- Versions: {context["versions"]}.
- The exact command: `python {own_command(args)}`; each server: `{serve}`, with the \
scenario's environment.
- Users: {args.logins} (`storm000`...), each with its own password, made beforehand in \
the store's database with `Users.create(password_hash=...)`, hashed by doorman's \
`PasswordHasher` (argon2id m=19456 KiB, t=2, p=1); the server verifies each login \
with that hash in its hashing pool (at most min(4, CPUs) = 2 hashes at once).
- Stores:{store_notes}
- Throttle scenarios, each on a fresh server (so that its `VmHWM` is the storm's):\
{scenarios}

Each of the {args.logins} browsers is its own `httpx.AsyncClient` (one connection):
it first gets a CSRF token and its cookie (`GET /-/whoami?csrf=1`; {PREPARE_AT_ONCE}
browsers at a time, so that the page loads are not a storm of their own), then all the
`POST /-/login` (JSON, `X-CSRFToken`) are released at once. "wall s" runs from the
release to the last answer; the latencies are those of the successful logins, from
each request's start. "errors" counts any status the scenario does not allow, and
socket errors or timeouts. Each 200 must name the user and rotate the session key,
and each new session must then name the user at `GET /-/whoami` ("sessions that
work"). "logins/s" is the successful logins over the wall time; server CPU is the
server process's user and system time during the storm, every thread (the hashing
pool's included). Memory comes from `/proc/<pid>/status` of the server (one process:
`--workers 1` runs uvicorn in the `doorman serve` process): `VmRSS` at start-up, after
the {args.logins} CSRF tokens, sampled every {SAMPLE_EVERY * 1000:.0f} ms during
the storm and after it; `VmHWM` is the kernel's high-water mark of the RSS since the
process started; "storm's growth" is `VmHWM` less the RSS just before the release.

{login_table(storms)}
{memory_table(storms, args.logins)}
{chr(10).join(memory_lines(storms) + target_lines(storms))}{skips}

{chr(10).join(logged_lines(storms))}
{END}"""


DOCS_INTRO = f"""{HEADING}

Two hundred people sign in at the same moment: `doorman serve` with one uvicorn
worker on loopback, each login a JSON `POST /-/login` that the server checks with
argon2id. The issue 6 target is a peak server memory under 300 MB with no errors,
every login succeeding or throttled as configured. To reproduce (about five minutes:
all four stores, three throttle scenarios each; Redis and PostgreSQL are skipped
when they do not answer):

    make bench-storm

"""


# -- main ------------------------------------------------------------------------------


def main(args: argparse.Namespace) -> int:
    started = time.monotonic()
    where = placement(args.pin)
    print(where.describe(), file=sys.stderr)
    context = {"load_before": machine_load()}
    print(f"hashing {args.logins} passwords (argon2id)...", file=sys.stderr)
    hashes = asyncio.run(make_hashes(args.logins))
    server_versions: dict[str, str] = {}
    storms: list[Storm] = []
    skipped: list[str] = []
    notes: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="doorman-storm-") as tmp:
        for store in args.stores:
            try:
                with prepared(store, Path(tmp), server_versions) as base:
                    asyncio.run(create_users(base.db, hashes))
                    notes[store] = base.note
                    for name in args.scenarios:
                        storms.append(storm_on(base, BY_NAME[name], args.logins, where, Path(tmp)))
            except Skip as error:
                skipped.append(str(error))
                print(f"skipping {error}", file=sys.stderr)
    if not storms:
        raise SystemExit("no store could run: " + "; ".join(skipped))
    context["load_after"] = machine_load()
    found = package_versions((*PACKAGES, "argon2-cffi", "httpx"))
    found += [f"{name} server {version}" for name, version in server_versions.items()]
    context["versions"] = ", ".join(found)
    context["took"] = f"{time.monotonic() - started:.0f} s"
    text = section(storms, args, where, context, notes, skipped)
    print(text)
    if args.write_docs:
        write_block(DOCS, BEGIN, END, text, DOCS_INTRO)
        print(f"wrote {DOCS}", file=sys.stderr)
    return 1 if any(s.verdict() for s in storms) else 0


def scenarios(text: str) -> list[str]:
    chosen = [s.strip() for s in text.split(",") if s.strip()]
    for name in chosen:
        if name not in BY_NAME:
            raise argparse.ArgumentTypeError(f"{name!r}: choose from {', '.join(BY_NAME)}")
    return chosen


def arguments() -> Any:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--stores",
        type=stores,
        default=list(ALL_STORES),
        help="comma-separated, of: " + ", ".join(ALL_STORES) + " (default: all that can run)",
    )
    parser.add_argument("--logins", type=int, default=200, help="users and logins (default 200)")
    parser.add_argument(
        "--scenarios",
        type=scenarios,
        default=list(BY_NAME),
        help="throttle scenarios, of: " + ", ".join(BY_NAME) + " (default: all)",
    )
    parser.add_argument("--write-docs", action="store_true", help=f"rewrite {DOCS.name}")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not use taskset")
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(main(arguments()))
