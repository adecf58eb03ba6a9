"""Forward-auth under load: ``doorman serve`` (one uvicorn worker) and wrk, over loopback.

For each session store, a real ``python -m doorman serve --workers 1`` is started on
a free port of 127.0.0.1, with a user (``doorman users create --password-stdin``) and
an API token (``doorman tokens create``) made beforehand in the same database. The
script signs in once over HTTP (``/-/whoami?csrf=1``, then a JSON ``POST /-/login``
with ``X-CSRFToken``), checks each request once by hand, and then wrk loads:

- ``GET /-/auth`` with the session cookie (200, ``X-Doorman-User: alice``);
- ``GET /-/auth`` with no credentials (401);
- ``GET /-/whoami`` with ``Authorization: Bearer <token>`` (200).

Beside them, in the same run and with the same uvicorn options, the floor: a bare
ASGI app (benchmarks/bare_app.py) that answers 200 with one header. Every figure is
also given as a ratio to the floor's requests/s, which carries across machines
where requests/s do not.

Stores: cookie (the signed-cookie store, users in SQLite), redis
(redis://127.0.0.1:6379/15, flushed before and after), postgres (users and sessions
in a throwaway database on postgresql://postgres@127.0.0.1, dropped afterwards) and
sqlite (``--sessions db`` on a SQLite file). The servers are pinned to one CPU and
wrk (one thread) to the other with taskset; wrk's own CPU time is measured, to show
that the client was not the bottleneck. Every server runs at once, idle but for the
one being loaded, so that each repetition visits every (server, request) pair in a
rotated order. wrk's Lua script (benchmarks/load.lua) counts every response by
status: any status but the expected one, and any socket error or timeout, is
reported as an error.

    make bench-load
    benchmarks/.venv/bin/python benchmarks/load.py [--stores cookie,redis,postgres,sqlite]
        [--seconds 5] [--repeat 3] [--connections 32] [--profile cookie,redis] [--write-docs]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import http.client
import json
import os
import platform
import resource
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _pyspy import PROFILE_INTRO, profile_text, record  # benchmarks/_pyspy.py
from _report import package_versions, write_block  # benchmarks/_report.py

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DOCS = ROOT / "docs" / "performance.md"
LUA = HERE / "load.lua"
BARE_APP = HERE / "bare_app.py"
BEGIN, END = "<!-- load:begin -->", "<!-- load:end -->"
HEADING = "## Forward-auth under load"

HOST = "127.0.0.1"  # loopback only
REDIS_URL = "redis://127.0.0.1:6379/15"
POSTGRES_URL = "postgresql://postgres@127.0.0.1/test"  # where the throwaway database is made
USERNAME, PASSWORD = "alice", "correct horse battery staple"
SECRET = "load-benchmark-secret-" + "x" * 32  # a fixed secret: no row written on first start
COOKIE = "doorman_session"
ALL_STORES = ("cookie", "redis", "postgres", "sqlite")
BARE = "bare"  # the floor's name where a store's would be
PACKAGES = (
    "doorman",
    "uvicorn",
    "uvloop",
    "httptools",
    "starlette",
    "sqlalchemy",
    "aiosqlite",
    "redis",
    "asyncpg",
)


class Skip(Exception):
    """A store that cannot run here (no Redis or PostgreSQL server answers)."""


@dataclass(frozen=True)
class Case:
    """One kind of request wrk sends over and over."""

    name: str  # the credentials, as the table names them
    path: str
    expected: int


SIGNED_IN = Case("session cookie", "/-/auth", 200)
ANONYMOUS = Case("none (anonymous)", "/-/auth", 401)
BEARER = Case("Bearer token", "/-/whoami", 200)
CASES = (SIGNED_IN, ANONYMOUS, BEARER)
FLOOR = Case("none (bare ASGI app)", "/", 200)


@dataclass
class Run:
    """What one wrk run reported (load.lua's line)."""

    requests: int
    seconds: float
    statuses: dict[int, int]
    socket_errors: dict[str, int]
    p50: float
    p90: float
    p99: float
    cpu_seconds: float = 0.0  # the server process's CPU time (every thread) during the run
    client_cpu_seconds: float = 0.0  # wrk's own CPU time (user and system)

    @property
    def cpu_us(self) -> float:
        """The server's CPU time per request: what one request costs, whatever else runs."""
        return self.cpu_seconds / max(1, self.requests) * 1e6

    @property
    def client_busy(self) -> float:
        """wrk's CPU time over the run's length: 1.0 would be its core fully used."""
        return self.client_cpu_seconds / max(1e-9, self.seconds)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def unexpected(self, expected: int) -> int:
        wrong = sum(n for status, n in self.statuses.items() if status != expected)
        return wrong + sum(self.socket_errors.values())


@dataclass
class Server:
    """One ``doorman serve`` with its store, user, token and signed-in session."""

    store: str
    db: str
    sessions: str
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    cookie: str = ""  # "doorman_session=..."
    token: str = ""
    note: str = ""  # how the store is set up, for the docs
    runs: dict[str, list[Run]] = field(default_factory=dict)  # case name -> measured runs
    env: dict[str, str] = field(default_factory=dict)  # more environment for the server

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    @property
    def cases(self) -> tuple[Case, ...]:
        return (FLOOR,) if self.store == BARE else CASES

    def headers(self, case: Case) -> dict[str, str]:
        if case.name == "session cookie":
            return {"Cookie": self.cookie}
        if case.name == "Bearer token":
            return {"Authorization": f"Bearer {self.token}"}
        return {}


# -- CPUs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    server: int | None
    client: int | None

    def pin(self, cpu: int | None) -> list[str]:
        return ["taskset", "-c", str(cpu)] if cpu is not None else []

    def describe(self) -> str:
        if self.server is None:
            return "not pinned (fewer than 2 CPUs or no taskset)"
        return (
            f"the server pinned to CPU {self.server} and wrk to CPU {self.client} with taskset, "
            "so that they do not fight over one core"
        )


def placement(pin: bool) -> Placement:
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not pin or len(cpus) < 2 or shutil.which("taskset") is None:
        return Placement(None, None)
    return Placement(server=cpus[-1], client=cpus[0])


# -- the commands ----------------------------------------------------------------------


def doorman_env() -> dict[str, str]:
    """The environment for doorman's commands: no stray DOORMAN_* settings, a fixed secret."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOORMAN_")}
    env["DOORMAN_SECRET"] = SECRET
    return env


def doorman(args: list[str], cwd: Path, stdin: str | None = None) -> str:
    """Run ``python -m doorman ARGS`` to the end; its standard output, or a clear failure."""
    done = subprocess.run(
        [sys.executable, "-m", "doorman", *args],
        cwd=cwd,
        env=doorman_env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"doorman {' '.join(args[:2])} failed:\n{done.stderr.strip()}")
    return done.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def serve_command(server: Server, where: Placement) -> list[str]:
    if server.store == BARE:
        bare = [sys.executable, str(BARE_APP), "--host", HOST, "--port", str(server.port)]
        return [*where.pin(where.server), *bare]
    return [
        *where.pin(where.server),
        sys.executable,
        "-m",
        "doorman",
        "serve",
        "--db",
        server.db,
        "--sessions",
        server.sessions,
        "--host",
        HOST,
        "--port",
        str(server.port),
        "--workers",
        "1",
    ]


def start(server: Server, where: Placement, tmp: Path) -> None:
    """Start the server and wait (at most 60 s) until ``/-/health`` answers 200."""
    server.port = free_port()
    server.log = tmp / f"serve-{server.store}.log"
    ready = "/" if server.store == BARE else "/-/health"
    with server.log.open("wb") as log:
        # doorman's access log goes to stdout: thrown away (it is on by default, as in a
        # default deployment); errors go to stderr: kept to show.
        server.process = subprocess.Popen(
            serve_command(server, where),
            cwd=tmp,
            env={**doorman_env(), **server.env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SystemExit(f"doorman serve ({server.store}) exited:\n{server.log.read_text()}")
        with contextlib.suppress(OSError):
            if request(server, "GET", ready)[0] == 200:
                return
        time.sleep(0.2)
    raise SystemExit(f"doorman serve ({server.store}) did not answer within 60 s")


def stop(server: Server) -> None:
    process = server.process
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown: the lifespan closes
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def request(
    server: Server,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: Any = None,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    connection = http.client.HTTPConnection(HOST, server.port, timeout=10)
    try:
        payload = None if body is None else json.dumps(body).encode()
        sent = dict(headers or {})
        if payload is not None:
            sent["Content-Type"] = "application/json"
        connection.request(method, path, body=payload, headers=sent)
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def session_cookie(headers: http.client.HTTPMessage, name: str = COOKIE) -> str | None:
    for value in headers.get_all("set-cookie") or []:
        pair = value.split(";", 1)[0]
        if pair.startswith(name + "=") and pair != name + "=":
            return pair
    return None


def sign_in(server: Server) -> None:
    """The way a browser's script does it: the CSRF token, then a JSON login."""
    status, headers, body = request(server, "GET", "/-/whoami?csrf=1")
    cookie = session_cookie(headers, "doorman_csrf")  # a visitor's CSRF cookie; no session yet
    if status != 200 or cookie is None:
        raise SystemExit(f"{server.store}: /-/whoami?csrf=1 answered {status} and no CSRF cookie")
    csrf = json.loads(body)["csrftoken"]
    status, headers, body = request(
        server,
        "POST",
        "/-/login",
        {"Cookie": cookie, "X-CSRFToken": csrf},
        {"username": USERNAME, "password": PASSWORD},
    )
    signed = session_cookie(headers)
    if status != 200 or signed is None or json.loads(body)["actor"]["id"] != USERNAME:
        raise SystemExit(f"{server.store}: the login answered {status}: {body[:200]!r}")
    server.cookie = signed


def check_by_hand(server: Server) -> None:
    """Each request once, before any load: the status, and who it was for."""
    for case in server.cases:
        status, headers, body = request(server, "GET", case.path, server.headers(case))
        problem = None
        if status != case.expected:
            problem = f"status {status}, not {case.expected}"
        elif case.path == "/-/auth" and status == 200 and headers["x-doorman-user"] != USERNAME:
            problem = f"X-Doorman-User {headers['x-doorman-user']!r}"
        elif case.path == "/-/whoami" and (json.loads(body)["actor"] or {}).get("id") != USERNAME:
            problem = f"actor {body[:200]!r}"
        elif session_cookie(headers) is not None:
            problem = "a Set-Cookie was sent: each request would make a new session"
        if problem:
            raise SystemExit(f"{server.store}, {case.name} ({case.path}): {problem}")


# -- the stores ------------------------------------------------------------------------


def flush_redis() -> str:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        client.flushdb()
        return str(client.info("server")["redis_version"])
    finally:
        client.close()


async def _postgres(statement: str) -> str:
    import asyncpg

    connection = await asyncpg.connect(POSTGRES_URL, timeout=10)
    try:
        await connection.execute(statement)
        return str(await connection.fetchval("SHOW server_version"))
    finally:
        await connection.close()


def postgres(statement: str) -> str:
    return asyncio.run(_postgres(statement))


@contextlib.contextmanager
def prepared(store: str, tmp: Path, server_versions: dict[str, str]) -> Iterator[Server]:
    """The store's database (and Redis db or PostgreSQL database), cleaned up afterwards."""
    sqlite = str(tmp / f"{store}.db")
    if store == BARE:
        yield Server(store, "", "", note="the floor: benchmarks/bare_app.py, no doorman at all")
    elif store == "sqlite":
        yield Server(store, sqlite, "db", note="sessions and users in one SQLite file (WAL)")
    elif store == "cookie":
        yield Server(store, sqlite, "cookie", note="signed-cookie sessions, users in SQLite")
    elif store == "redis":
        try:
            server_versions["Redis"] = flush_redis()
        except Exception as error:
            raise Skip(f"redis: no Redis server answers at {REDIS_URL} ({error})") from None
        try:
            yield Server(store, sqlite, REDIS_URL, note=f"sessions in {REDIS_URL}, users in SQLite")
        finally:
            flush_redis()
    elif store == "postgres":
        name = f"doorman_load_{secrets.token_hex(4)}"
        try:
            server_versions["PostgreSQL"] = postgres(f"CREATE DATABASE {name}")
        except Exception as error:
            raise Skip(f"postgres: no PostgreSQL server at {POSTGRES_URL} ({error})") from None
        base = POSTGRES_URL.rsplit("/", 1)[0]
        try:
            yield Server(
                store, f"{base}/{name}", "db", note="sessions and users in PostgreSQL (asyncpg)"
            )
        finally:
            postgres(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    else:
        raise SystemExit(f"unknown store {store!r}; choose from {', '.join(ALL_STORES)}")


def set_up(server: Server, where: Placement, tmp: Path) -> None:
    if server.store == BARE:
        start(server, where, tmp)
        check_by_hand(server)
        return
    doorman(["users", "create", USERNAME, "--password-stdin", "--db", server.db], tmp, PASSWORD)
    server.token = doorman(
        ["tokens", "create", USERNAME, "--name", "load", "--db", server.db], tmp
    ).strip()
    start(server, where, tmp)
    sign_in(server)
    check_by_hand(server)


# -- wrk -------------------------------------------------------------------------------


def wrk_command(
    server: Server, case: Case, seconds: int, connections: int, where: Placement, shown: bool
) -> list[str]:
    headers = []
    for name, value in server.headers(case).items():
        if shown:  # the command as printed: no session or token in it
            value = "<session cookie>" if name == "Cookie" else "Bearer <token>"
        headers += ["-H", f"{name}: {value}"]
    return [
        *where.pin(where.client),
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "-s",
        str(LUA.relative_to(ROOT)) if shown else str(LUA),
        *headers,
        server.url(case.path),
    ]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, all its threads, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(server: Server, case: Case, seconds: int, connections: int, where: Placement) -> Run:
    command = wrk_command(server, case, seconds, connections, where, shown=False)
    assert server.process is not None
    before = cpu_seconds(server.process.pid)
    client_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    # taskset execs wrk: the child this run waited for is wrk itself.
    client = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = client.ru_utime + client.ru_stime - client_before.ru_utime - client_before.ru_stime
    line = next((x for x in done.stdout.splitlines() if x.startswith("LOADJSON ")), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    data = json.loads(line.removeprefix("LOADJSON "))
    latency = data["latency_ms"]
    return Run(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        statuses={int(k): v for k, v in data["statuses"].items()},
        socket_errors={k: v for k, v in data["errors"].items() if v},
        p50=latency["p50"],
        p90=latency["p90"],
        p99=latency["p99"],
        cpu_seconds=cpu_seconds(server.process.pid) - before,
        client_cpu_seconds=client_cpu,
    )


def wrk_version() -> str:
    done = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    first = (done.stdout or done.stderr).splitlines()
    return first[0].split(" [", 1)[0].strip() if first else "wrk"


# -- the measurement -------------------------------------------------------------------


def measure(servers: list[Server], args: argparse.Namespace, where: Placement) -> None:
    pairs = [(server, case) for server in servers for case in server.cases]
    for server, case in pairs:  # warm-up: unmeasured, but its statuses are checked
        run = wrk(server, case, args.warmup, args.connections, where)
        if run.unexpected(case.expected):
            print(
                f"warm-up {server.store}, {case.name}: {describe_errors(run, case)}",
                file=sys.stderr,
            )
    for rep in range(args.repeat):
        shift = rep * len(pairs) // args.repeat
        for server, case in pairs[shift:] + pairs[:shift]:
            run = wrk(server, case, args.seconds, args.connections, where)
            server.runs.setdefault(case.name, []).append(run)
            print(
                f"  {rep + 1}/{args.repeat} {server.store:8} {case.name:20} "
                f"{run.rps:8.0f} req/s  p50 {run.p50:6.2f} ms  p99 {run.p99:6.2f} ms  "
                f"server {run.cpu_us:5.0f} µs/req  wrk {run.client_busy:4.0%}"
                + (
                    f"  errors: {describe_errors(run, case)}"
                    if run.unexpected(case.expected)
                    else ""
                ),
                file=sys.stderr,
            )


def describe_errors(run: Run, case: Case) -> str:
    wrong = {s: n for s, n in run.statuses.items() if s != case.expected}
    parts = [f"{n} x {s}" for s, n in sorted(wrong.items())]
    parts += [f"{n} socket {kind}" for kind, n in run.socket_errors.items()]
    return ", ".join(parts) or "none"


# -- reporting -------------------------------------------------------------------------


def median_of(server: Server, case: Case, what: str) -> float:
    return statistics.median(getattr(run, what) for run in server.runs[case.name])


def ratio(runs: list[Run], to: list[Run]) -> float:
    """The median, over the repetitions, of one run's requests/s over the other's.

    Each repetition visits every server within a few seconds, so the machine's
    load changes less between the two runs of one repetition than across them.
    """
    return statistics.median(run.rps / other.rps for run, other in zip(runs, to, strict=True))


def floor_runs(servers: list[Server]) -> list[Run] | None:
    bare = next((s for s in servers if s.store == BARE), None)
    return None if bare is None else bare.runs[FLOOR.name]


def floor_cpu(servers: list[Server]) -> float | None:
    bare = next((s for s in servers if s.store == BARE), None)
    return None if bare is None else median_of(bare, FLOOR, "cpu_us")


def table(servers: list[Server]) -> str:
    floor, floor_us = floor_runs(servers), floor_cpu(servers)
    lines = [
        "| server | request | credentials | status | requests/s | ratio to bare "
        "| lowest-highest | p50 ms | p99 ms | server CPU µs/req | CPU ratio | wrk CPU | errors |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for server in servers:
        for case in server.cases:
            runs = server.runs[case.name]
            rps = [run.rps for run in runs]
            total = sum(run.requests for run in runs)
            errors = sum(run.unexpected(case.expected) for run in runs)
            to_bare = f"{ratio(runs, floor):.2f}" if floor else "-"
            cpu = median_of(server, case, "cpu_us")
            cpu_ratio = f"{floor_us / cpu:.2f}" if floor_us and cpu else "-"
            lines.append(
                f"| {server.store} | `GET {case.path}` | {case.name} | {case.expected} "
                f"| {statistics.median(rps):,.0f} | {to_bare} | {min(rps):,.0f}-{max(rps):,.0f} "
                f"| {median_of(server, case, 'p50'):.1f} | {median_of(server, case, 'p99'):.1f} "
                f"| {cpu:,.0f} | {cpu_ratio} "
                f"| {max(run.client_busy for run in runs):.0%} | {errors:,} of {total:,} |"
            )
    return "\n".join(lines) + "\n"


# The issue 14 targets: (case, stores, lowest ratio to the bare app, highest p99 in ms).
RATIO_TARGETS = (
    (SIGNED_IN, ("cookie", "redis"), 0.40, 10.0),
    (ANONYMOUS, ("cookie", "redis"), 0.50, None),
    (BEARER, ("cookie", "redis", "postgres", "sqlite"), 0.35, None),
)
POSTGRES_TO_REDIS = 0.8  # PostgreSQL's signed-in /-/auth against Redis's


def targets(servers: list[Server]) -> list[str]:
    floor, floor_us = floor_runs(servers), floor_cpu(servers)
    if floor is None or not floor_us:
        return ["- targets (issue 14): the bare app did not run, so no ratios"]
    by_store = {s.store: s for s in servers}
    lines = []
    for case, stores, lowest, p99_limit in RATIO_TARGETS:
        for store in stores:
            if store not in by_store:
                continue
            to_bare = ratio(by_store[store].runs[case.name], floor)
            p99 = median_of(by_store[store], case, "p99")
            by_cpu = floor_us / median_of(by_store[store], case, "cpu_us")
            met = to_bare >= lowest and (p99_limit is None or p99 < p99_limit)
            p99_text = "" if p99_limit is None else f", p99 {p99:.1f} ms (target < {p99_limit:g})"
            lines.append(
                f"- target (issue 14), `GET {case.path}` with {case.name}, {store}: "
                f"{to_bare:.2f}x the bare app's requests/s (target ≥ {lowest:.2f}; "
                f"by server CPU per request {by_cpu:.2f}x){p99_text}: "
                f"{'MET' if met else 'NOT MET'}"
            )
    if "postgres" in by_store and "redis" in by_store:
        postgres, redis = (by_store[s].runs[SIGNED_IN.name] for s in ("postgres", "redis"))
        to_redis = ratio(postgres, redis)
        by_cpu = statistics.median(r.cpu_us for r in redis) / statistics.median(
            r.cpu_us for r in postgres
        )
        lines.append(
            f"- target (issue 14), signed-in `GET /-/auth`, postgres against redis: "
            f"{to_redis:.2f}x redis's requests/s (target ≥ {POSTGRES_TO_REDIS}; by server CPU "
            f"per request {by_cpu:.2f}x): {'MET' if to_redis >= POSTGRES_TO_REDIS else 'NOT MET'}"
        )
    return lines


def additions(servers: list[Server]) -> list[str]:
    """doorman's own CPU per request: over the bare app's, and what credentials add."""

    def cpu(server: Server, case: Case) -> float:
        return median_of(server, case, "cpu_us")

    stores = [s for s in servers if s.store != BARE]
    lines = []
    bare = next((s for s in servers if s.store == BARE), None)
    if bare is not None:
        floor = ", ".join(
            f"{s.store} +{cpu(s, ANONYMOUS) - cpu(bare, FLOOR):,.0f} µs" for s in stores
        )
        lines.append(
            f"- server CPU per request of the bare app (uvicorn's own work): "
            f"{cpu(bare, FLOOR):,.0f} µs; what doorman adds to it for the anonymous 401 "
            f"(no store or database call): {floor}"
        )
    session = ", ".join(
        f"{s.store} +{cpu(s, SIGNED_IN) - cpu(s, ANONYMOUS):,.0f} µs" for s in stores
    )
    bearer = ", ".join(f"{s.store} +{cpu(s, BEARER) - cpu(s, ANONYMOUS):,.0f} µs" for s in stores)
    lines += [
        f"- what a session adds to the 401 (the session read and the user and sign-in "
        f"lookup): {session}",
        f"- what a Bearer token adds (the token and its user, one lookup; `/-/whoami` "
        f"answers JSON): {bearer}",
    ]
    return lines


def machine_load() -> str:
    """How busy the machine is besides us: the load average and the kernel's CPU pressure."""
    parts = []
    with contextlib.suppress(OSError):
        parts.append(f"load average {Path('/proc/loadavg').read_text().split()[0]}")
    with contextlib.suppress(OSError, IndexError, ValueError):
        some = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        avg10 = dict(kv.split("=") for kv in some.split()[1:])["avg10"]
        parts.append(f"CPU pressure {float(avg10):.0f}% (runnable tasks kept waiting, last 10 s)")
    return ", ".join(parts) or "unknown"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def versions(server_versions: dict[str, str]) -> str:
    found = package_versions(PACKAGES)
    found.append(wrk_version())
    found += [f"{name} server {version}" for name, version in server_versions.items()]
    return ", ".join(found)


def own_command(args: argparse.Namespace) -> str:
    parts = [
        "benchmarks/load.py",
        f"--stores {','.join(args.stores)}",
        f"--seconds {args.seconds}",
        f"--repeat {args.repeat}",
        f"--connections {args.connections}",
        f"--warmup {args.warmup}",
    ]
    if args.profile:
        parts.append(f"--profile {','.join(args.profile)}")
    if args.write_docs:
        parts.append("--write-docs")
    return " ".join(parts)


def section(
    servers: list[Server],
    args: argparse.Namespace,
    where: Placement,
    context: dict[str, str],
    skipped: list[str],
    profiled: str,
) -> str:
    per_run = args.seconds
    shown = Server("shown", "DB", "STORE")  # the commands with placeholders, not a tmp path
    serve = shlex.join(serve_command(shown, where)).replace(sys.executable, "python")
    bare = shlex.join(serve_command(Server(BARE, "", ""), where))
    bare = bare.replace(sys.executable, "python").replace(str(ROOT) + "/", "")
    wrk_line = shlex.join(wrk_command(shown, SIGNED_IN, per_run, args.connections, where, True))
    serve, wrk_line = serve.replace("--port 0", "--port PORT"), wrk_line.replace(":0/", ":PORT/")
    bare = bare.replace("--port 0", "--port PORT")
    stores = "".join(f"\n  - {s.store}: {s.note}" for s in servers)
    skips = "".join(f"\n- skipped: {note}" for note in skipped)
    return f"""{BEGIN}
`benchmarks/load.py`, run {dt.date.today().isoformat()} on {platform.machine()} Linux with \
{os.cpu_count()} cores ({cpu_model()}); the run took {context["took"]}.

- Placement: {where.describe()}; Redis and PostgreSQL: {context.get("stores_pinned", "not pinned")}.
- Each figure is the median of {args.repeat} wrk runs of {per_run} s ({args.connections} \
connections, one wrk thread), the servers and requests interleaved in a rotated order \
within each repetition, after a {args.warmup} s warm-up of each; "lowest-highest" is \
the spread of those runs. "ratio to bare" is the requests/s over the bare app's in \
the same repetition, the median of the repetitions: the figure to compare across runs \
and machines.
- The machine is shared: before the runs {context["load_before"]}; after them \
{context["load_after"]}. Read the ratios and the server CPU per request (the server \
process's user and system time, every thread, over the requests it answered) as the \
steadier figures: the CPU leaves out the time spent waiting for a CPU that another \
program holds.
- "CPU ratio" is the bare app's server CPU per request over this one's: the share of \
the bare app's rate that one busy core could serve, whatever else ran meanwhile.
- "wrk CPU" is the client's user and system time over the run's length, the highest \
of the runs: below 100%, wrk had time to spare on its core, and the server was the \
bottleneck.
- Versions: {context["versions"]}.
- The exact command: `python {own_command(args)}`; each server: `{serve}`; the floor: \
`{bare}`; each run: `{wrk_line}`.
- Servers:{stores}

`doorman serve` runs with its access log on (the `access_log` setting, on by default;
doorman writes the line itself, uvicorn's own is off): each request's line is
formatted and written (here to /dev/null), as in a default deployment. The session
cookie is a real one, from a JSON sign-in over HTTP; the Bearer token comes from
`doorman tokens create`. Every response
is counted by status in wrk's Lua script (`benchmarks/load.lua`), and "errors" counts
the responses with any other status, plus socket errors and timeouts, over the
measured runs. Every request was also checked once by hand before the load: `/-/auth`
names alice in `X-Doorman-User`, `/-/whoami` names her as the actor, and none of them
sends a new cookie.

{table(servers)}
{chr(10).join(additions(servers) + targets(servers))}{skips}
{PROFILE_INTRO + profiled if profiled else ""}{END}"""


DOCS_INTRO = f"""{HEADING}

What a proxy's forward-auth check costs over real HTTP: `doorman serve` with one
uvicorn worker on loopback, loaded by wrk (`apt-get install wrk`), beside a bare
ASGI app under the same uvicorn options in the same run. Unlike the sections above,
these numbers include the HTTP server, the sockets, and the session store's and the
database's round trips. The issue 14 targets are ratios to the bare app: the lines
under the table say which the run met. To reproduce (about two and a half minutes:
the signed-cookie, Redis and PostgreSQL stores, then a profile of the signed-in
`/-/auth` on the first two; Redis and PostgreSQL are skipped when they do not
answer):

    make bench-load

"""


def write_docs(text: str) -> None:
    write_block(DOCS, BEGIN, END, text, DOCS_INTRO)
    print(f"wrote {DOCS}", file=sys.stderr)


# -- main ------------------------------------------------------------------------------


def main(args: argparse.Namespace) -> int:
    if shutil.which("wrk") is None:
        print(
            "benchmarks/load.py needs wrk (an HTTP load generator), which is not installed.\n"
            "On Debian or Ubuntu: sudo apt-get install -y wrk (then run this again).",
            file=sys.stderr,
        )
        return 2
    for store in args.profile:
        if store not in args.stores:
            raise SystemExit(f"--profile {store}: not one of --stores {','.join(args.stores)}")
    if not (1 <= args.repeat <= 20 and 1 <= args.seconds <= 60):
        raise SystemExit("give 1 <= --repeat <= 20 and 1 <= --seconds <= 60")
    started = time.monotonic()
    where = placement(args.pin)
    print(where.describe(), file=sys.stderr)
    server_versions: dict[str, str] = {}
    skipped: list[str] = []
    context = {"load_before": machine_load()}
    with (
        tempfile.TemporaryDirectory(prefix="doorman-load-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        servers = []
        for store in [BARE, *args.stores]:
            try:
                server = stack.enter_context(prepared(store, Path(tmp), server_versions))
            except Skip as error:
                skipped.append(str(error))
                print(f"skipping {error}", file=sys.stderr)
                continue
            stack.callback(stop, server)
            set_up(server, where, Path(tmp))
            servers.append(server)
            print(f"{store}: serving on {server.url('/')}", file=sys.stderr)
        if not servers:
            raise SystemExit("no store could run: " + "; ".join(skipped))
        context["stores_pinned"] = stack.enter_context(stores_beside_client(where))
        measure(servers, args, where)
        context["load_after"] = machine_load()
        profiled = "".join(profile(servers, store, args, where) for store in args.profile)
        for server in servers:
            stop(server)
            assert server.log is not None
            noise = [x for x in server.log.read_text().splitlines() if not x.startswith("INFO:")]
            if noise:
                print(f"{server.store} server's stderr:", *noise, sep="\n", file=sys.stderr)
    context["versions"] = versions(server_versions)
    context["took"] = f"{time.monotonic() - started:.0f} s"
    text = section(servers, args, where, context, skipped, profiled)
    print(text)
    print(f"took {context['took']}", file=sys.stderr)
    if args.write_docs:
        write_docs(text)
    return 0


#: The stores' own servers, by process name: moved to wrk's CPU during the runs.
STORE_PROCESSES = ("redis-server", "postgres")


@contextlib.contextmanager
def stores_beside_client(where: Placement) -> Iterator[str]:
    """Redis and PostgreSQL on wrk's CPU during the runs, as they were afterwards.

    On two CPUs, the kernel otherwise puts them (and PostgreSQL's background
    writers) on the server's core now and then, which costs the server CPU time
    per request for the same code. Yields how they were placed, for the docs.
    """
    if where.client is None:
        yield "not pinned"
        return
    before: dict[int, set[int]] = {}
    for name in STORE_PROCESSES:
        found = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True, check=False)
        for pid in found.stdout.split():
            for task in Path(f"/proc/{pid}/task").glob("*"):
                with contextlib.suppress(OSError):
                    before[int(task.name)] = os.sched_getaffinity(int(task.name))
                    os.sched_setaffinity(int(task.name), {where.client})
    try:
        yield (
            f"pinned to CPU {where.client} beside wrk during the runs ({len(before)} threads)"
            if before
            else "not pinned (not found, or not allowed)"
        )
    finally:
        for task, cpus in before.items():
            with contextlib.suppress(OSError):  # a backend that ended meanwhile
                os.sched_setaffinity(task, cpus)


def profile(servers: list[Server], store: str, args: argparse.Namespace, where: Placement) -> str:
    """The signed-in ``/-/auth`` on ``store``'s server once more, sampled by py-spy."""
    what = f"`{store}` store, `GET {SIGNED_IN.path}` with a {SIGNED_IN.name}"
    server = next((s for s in servers if s.store == store), None)
    if server is None or server.process is None:
        return f"\nNo profile of the {store} store: it did not run.\n"
    found = record(
        server.process.pid,
        max(3, min(args.seconds + 1, 6)),
        lambda seconds: wrk(server, SIGNED_IN, seconds, args.connections, where),
    )
    if isinstance(found, str):
        return f"\nNo profile of the {store} store: {found}.\n"
    return profile_text(what, *found)


def stores(text: str) -> list[str]:
    chosen = [s.strip() for s in text.split(",") if s.strip()]
    for store in chosen:
        if store not in ALL_STORES:
            raise argparse.ArgumentTypeError(f"{store!r}: choose from {', '.join(ALL_STORES)}")
    return chosen


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--stores",
        type=stores,
        default=["cookie", "redis", "postgres"],
        help="comma-separated, of: "
        + ", ".join(ALL_STORES)
        + " (default: cookie,redis,postgres); the bare app always runs",
    )
    parser.add_argument(
        "--seconds", type=int, default=5, help="seconds of each wrk run (default 5)"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per server and request, the median shown"
    )
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument(
        "--warmup", type=int, default=1, help="warm-up seconds per store and request"
    )
    parser.add_argument(
        "--profile",
        metavar="STORES",
        type=stores,
        default=[],
        help="after the runs, profile these stores' servers (comma-separated) with py-spy, "
        "each during one more signed-in /-/auth run",
    )
    parser.add_argument("--write-docs", action="store_true", help=f"rewrite {DOCS.name}")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not use taskset")
    sys.exit(main(parser.parse_args()))
