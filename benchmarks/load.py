"""Forward-auth under load: ``doorman serve`` (one uvicorn worker) and wrk, over loopback.

For each session store, a real ``python -m doorman serve --workers 1`` is started on
a free port of 127.0.0.1, with a user (``doorman users create --password-stdin``) and
an API token (``doorman tokens create``) made beforehand in the same database. The
script signs in once over HTTP (``/-/whoami?csrf=1``, then a JSON ``POST /-/login``
with ``X-CSRFToken``), checks each request once by hand, and then wrk loads:

- ``GET /-/auth`` with the session cookie (200, ``X-Doorman-User: alice``);
- ``GET /-/auth`` with no credentials (401);
- ``GET /-/whoami`` with ``Authorization: Bearer <token>`` (200).

Stores: sqlite (``--sessions db`` on a SQLite file), redis (redis://127.0.0.1:6379/15,
flushed before and after), cookie (the signed-cookie store, users in SQLite) and
postgres (users and sessions in a throwaway database on postgresql://postgres@127.0.0.1,
dropped afterwards). The server is pinned to one CPU and wrk (one thread) to the
other with taskset. Every server runs at once, idle but for the one being loaded, so
that each repetition can visit every (store, request) pair in a rotated order. wrk's
Lua script (benchmarks/load.lua) counts every response by status: any status but the
expected one, and any socket error or timeout, is reported as an error.

    make bench-load
    benchmarks/.venv/bin/python benchmarks/load.py [--stores sqlite,redis,cookie,postgres]
        [--seconds 10] [--repeat 5] [--connections 32] [--profile redis] [--write-docs]
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
import re
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
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _report import package_versions, write_block  # benchmarks/_report.py

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DOCS = ROOT / "docs" / "performance.md"
LUA = HERE / "load.lua"
BEGIN, END = "<!-- load:begin -->", "<!-- load:end -->"
HEADING = "## Forward-auth under load"

HOST = "127.0.0.1"  # loopback only
REDIS_URL = "redis://127.0.0.1:6379/15"
POSTGRES_URL = "postgresql://postgres@127.0.0.1/test"  # where the throwaway database is made
USERNAME, PASSWORD = "alice", "correct horse battery staple"
SECRET = "load-benchmark-secret-" + "x" * 32  # a fixed secret: no row written on first start
COOKIE = "doorman_session"
ALL_STORES = ("sqlite", "redis", "cookie", "postgres")
# The issue 6 target for /-/auth with a session, Redis or signed-cookie store, one worker.
TARGET_RPS, TARGET_P99_MS, TARGET_STORES = 3000, 50.0, ("redis", "cookie")
PROFILE_RATE = 200  # py-spy samples a second
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


CASES = (
    Case("session cookie", "/-/auth", 200),
    Case("none (anonymous)", "/-/auth", 401),
    Case("Bearer token", "/-/whoami", 200),
)


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

    @property
    def cpu_us(self) -> float:
        """The server's CPU time per request: what one request costs, whatever else runs."""
        return self.cpu_seconds / max(1, self.requests) * 1e6

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
            if request(server, "GET", "/-/health")[0] == 200:
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
    for case in CASES:
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
    if store == "sqlite":
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
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
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
    )


def wrk_version() -> str:
    done = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    first = (done.stdout or done.stderr).splitlines()
    return first[0].split(" [", 1)[0].strip() if first else "wrk"


# -- the measurement -------------------------------------------------------------------


def measure(servers: list[Server], args: argparse.Namespace, where: Placement) -> None:
    pairs = [(server, case) for server in servers for case in CASES]
    for server, case in pairs:  # warm-up: unmeasured, but its statuses are checked
        run = wrk(server, case, args.warmup, args.connections, where)
        if run.unexpected(case.expected):
            print(
                f"warm-up {server.store}, {case.name}: {describe_errors(run, case)}",
                file=sys.stderr,
            )
    per_run = max(1, round(args.seconds / args.repeat))
    for rep in range(args.repeat):
        shift = rep * len(pairs) // args.repeat
        for server, case in pairs[shift:] + pairs[:shift]:
            run = wrk(server, case, per_run, args.connections, where)
            server.runs.setdefault(case.name, []).append(run)
            print(
                f"  {rep + 1}/{args.repeat} {server.store:8} {case.name:17} "
                f"{run.rps:8.0f} req/s  p50 {run.p50:6.2f} ms  p99 {run.p99:6.2f} ms"
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


def table(servers: list[Server]) -> str:
    lines = [
        "| store | request | credentials | status | requests/s | lowest-highest "
        "| p50 ms | p99 ms | server CPU µs/req | errors |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for server in servers:
        for case in CASES:
            runs = server.runs[case.name]
            rps = [run.rps for run in runs]
            total = sum(run.requests for run in runs)
            errors = sum(run.unexpected(case.expected) for run in runs)
            lines.append(
                f"| {server.store} | `GET {case.path}` | {case.name} | {case.expected} "
                f"| {statistics.median(rps):,.0f} | {min(rps):,.0f}-{max(rps):,.0f} "
                f"| {statistics.median(r.p50 for r in runs):.1f} "
                f"| {statistics.median(r.p99 for r in runs):.1f} "
                f"| {statistics.median(r.cpu_us for r in runs):,.0f} "
                f"| {errors:,} of {total:,} |"
            )
    return "\n".join(lines) + "\n"


def target(servers: list[Server]) -> list[str]:
    lines = []
    for server in servers:
        if server.store not in TARGET_STORES:
            continue
        runs = server.runs["session cookie"]
        rps = statistics.median(run.rps for run in runs)
        p99 = statistics.median(run.p99 for run in runs)
        cpu = statistics.median(run.cpu_us for run in runs)
        met = rps >= TARGET_RPS and p99 < TARGET_P99_MS
        lines.append(
            f"- target (issue 6), `/-/auth` with a session, {server.store} store, one worker: "
            f"{rps:,.0f} requests/s (target ≥ {TARGET_RPS:,}), p99 {p99:.1f} ms "
            f"(target < {TARGET_P99_MS:.0f}): {'MET' if met else 'NOT MET'}. At "
            f"{cpu:,.0f} µs of server CPU per request, one worker on a core of its own could "
            f"serve at most about {1e6 / cpu:,.0f} requests/s"
            + (
                f" (the target needs at most {1e6 / TARGET_RPS:,.0f} µs)."
                if 1e6 / cpu < TARGET_RPS
                else "."
            )
        )
    if not lines:
        lines.append("- target (issue 6): neither the redis nor the cookie store ran")
    return lines


def additions(servers: list[Server]) -> list[str]:
    """What credentials add over the anonymous 401 on the same server: server CPU."""

    def cpu(server: Server, name: str) -> float:
        return statistics.median(run.cpu_us for run in server.runs[name])

    session = ", ".join(
        f"{s.store} +{cpu(s, 'session cookie') - cpu(s, 'none (anonymous)'):,.0f} µs"
        for s in servers
    )
    bearer = ", ".join(
        f"{s.store} +{cpu(s, 'Bearer token') - cpu(s, 'none (anonymous)'):,.0f} µs" for s in servers
    )
    floor = ", ".join(f"{s.store} {cpu(s, 'none (anonymous)'):,.0f} µs" for s in servers)
    return [
        f"- server CPU per request with no credentials (the 401: uvicorn, Starlette, "
        f"doorman's middlewares and the access log, no store or database call): {floor}",
        f"- what a session adds to it (the session read and the user and sign-in lookup): "
        f"{session}",
        f"- what a Bearer token adds (the token and its user, one lookup; `/-/whoami` "
        f"answers JSON): {bearer}",
    ]


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
        parts.append(f"--profile {args.profile}")
    if args.write_docs:
        parts.append("--write-docs")
    return " ".join(parts)


def section(
    servers: list[Server],
    args: argparse.Namespace,
    where: Placement,
    context: dict[str, str],
    skipped: list[str],
    profile: str,
) -> str:
    per_run = max(1, round(args.seconds / args.repeat))
    shown = Server("shown", "DB", "STORE")  # the commands with placeholders, not a tmp path
    serve = shlex.join(serve_command(shown, where)).replace(sys.executable, "python")
    wrk_line = shlex.join(wrk_command(shown, CASES[0], per_run, args.connections, where, True))
    serve, wrk_line = serve.replace("--port 0", "--port PORT"), wrk_line.replace(":0/", ":PORT/")
    stores = "".join(f"\n  - {s.store}: {s.note}" for s in servers)
    skips = "".join(f"\n- skipped: {note}" for note in skipped)
    return f"""{BEGIN}
`benchmarks/load.py`, run {dt.date.today().isoformat()} on {platform.machine()} Linux with \
{os.cpu_count()} cores ({cpu_model()}); the run took {context["took"]}.

- Placement: {where.describe()}; Redis and PostgreSQL themselves are not pinned.
- Each figure is the median of {args.repeat} wrk runs of {per_run} s ({args.connections} \
connections, one wrk thread), the stores and requests interleaved in a rotated order \
within each repetition, after a {args.warmup} s warm-up of each; "lowest-highest" is \
the spread of those runs.
- The machine is shared: before the runs {context["load_before"]}; after them \
{context["load_after"]}. Read the server CPU per request (the server process's user \
and system time, every thread, over the requests it answered) as the steadier figure: \
it leaves out the time spent waiting for a CPU that another program holds.
- Versions: {context["versions"]}.
- The exact command: `python {own_command(args)}`; each server: `{serve}`; each run: \
`{wrk_line}`.
- Stores:{stores}

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
{chr(10).join(additions(servers) + target(servers))}{skips}
{profile}{END}"""


DOCS_INTRO = f"""{HEADING}

What a proxy's forward-auth check costs over real HTTP: `doorman serve` with one
uvicorn worker on loopback, loaded by wrk (`apt-get install wrk`). Unlike the
sections above, these numbers include the HTTP server, the sockets, and the session
store's and the database's round trips. The issue 6 target is at least 3,000
requests/s with a p99 under 50 ms for `/-/auth` with a session, with the Redis or the
signed-cookie store, on one worker: the lines under the table say whether the run met
it. To reproduce (about a minute and a half: the SQLite and Redis stores, then a
profile of the Redis one; `benchmarks/.venv/bin/python benchmarks/load.py --stores
sqlite,redis,cookie,postgres --profile redis --write-docs` runs all four stores in
about two and a half minutes):

    make bench-load

"""


def write_docs(text: str) -> None:
    write_block(DOCS, BEGIN, END, text, DOCS_INTRO)
    print(f"wrote {DOCS}", file=sys.stderr)


# -- profiling -------------------------------------------------------------------------


CATEGORIES = (  # (label, start of a frame's file path), the first that matches wins
    ("uvicorn (the HTTP protocol)", "uvicorn/"),
    ("starlette (routing, request, response)", "starlette/"),
    ("doorman: sessions", "doorman/sessions/"),
    ("doorman: stores", "doorman/stores/"),
    ("doorman: auth (actor, users, tokens)", "doorman/auth/"),
    ("doorman: the rest (server views, signing, database)", "doorman/"),
    ("sqlalchemy (query building, compiling, results)", "sqlalchemy/"),
    ("aiosqlite (queue hand-offs to its threads, sqlite3 calls)", "aiosqlite/"),
    ("redis client", "redis/"),
    ("asyncpg", "asyncpg/"),
    ("logging (doorman's access log)", "logging/"),
    ("uvloop's event loop itself (C code under asyncio.run)", "asyncio/runners.py"),
    ("asyncio", "asyncio/"),
    ("threads and queues (stdlib)", "threading.py"),
    ("threads and queues (stdlib)", "queue.py"),
    ("threads and queues (stdlib)", "concurrent/"),
)
GREENLET = "- SQLAlchemy's sync work in its greenlets (execute, connect, close)"
#: Frames whose share "on the stack" (inclusive) is shown: (label, what the frame starts with).
ON_STACK = (
    ("the session store's read (Session.load)", "Session.load (doorman/"),
    ("the actor (AuthMiddleware.resolve), of which:", "AuthMiddleware.resolve (doorman/"),
    ("- the user and sign-in lookup (Users.get_signed_in)", "Users.get_signed_in (doorman/"),
    ("- the API token and its user (Tokens.verify_with_user)", "Tokens.verify_with_user ("),
    ("Starlette: routing, the view, the response", "Starlette.__call__ (starlette/"),
    ("SQLAlchemy's async bridge (greenlet_spawn), of which:", "greenlet_spawn (sqlalchemy/"),
    (GREENLET, ""),  # counted by read_samples: stacks that start inside a greenlet
    (
        "aiosqlite's hand-offs to its thread (Connection._execute)",
        "Connection._execute (aiosqlite/",
    ),
    ("new threads (Thread.start: new aiosqlite connections)", "Thread.start ("),
    ("the access line (Logger.handle)", "Logger.handle (logging/"),
)
_FRAME_FILE = re.compile(r"\((.*):\d+\)$")


def category(frame: str) -> str:
    found = _FRAME_FILE.search(frame)
    path = found[1] if found else frame
    for label, start in CATEGORIES:
        if path.startswith(start) or f"/{start}" in path:
            return label
    return "other (stdlib and the rest)"


@dataclass
class Samples:
    total: int = 0
    own: Counter[str] = field(default_factory=Counter)  # by category of the innermost frame
    leaves: Counter[str] = field(default_factory=Counter)
    on_stack: Counter[str] = field(default_factory=Counter)  # by ON_STACK label


def read_samples(raw: Path) -> Samples:
    """py-spy's raw (collapsed) output: "frame;frame;...;innermost count" a line."""
    found = Samples()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n, frames = int(count), stack.split(";")
        found.total += n
        found.own[category(frames[-1])] += n
        found.leaves[frames[-1]] += n
        labels = {label for label, head in ON_STACK if head for f in frames if f.startswith(head)}
        if category(frames[0]).startswith("sqlalchemy"):
            # SQLAlchemy's sync code runs in a greenlet whose stack starts there: the
            # doorman frames that awaited it are not on it, but the time is theirs.
            labels |= {GREENLET, "SQLAlchemy's async bridge (greenlet_spawn), of which:"}
        for label in labels:
            found.on_stack[label] += n
    return found


def profile(server: Server, case: Case, args: argparse.Namespace, where: Placement) -> str:
    """One more wrk run with py-spy sampling the server: where the CPU time goes."""
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        return "\npy-spy is not installed in this venv: no profile.\n"
    assert server.process is not None
    seconds = max(2, min(args.seconds, 5))
    with tempfile.TemporaryDirectory(prefix="doorman-load-") as tmp:
        raw = Path(tmp) / "profile.txt"
        command = [str(spy), "record", "--pid", str(server.process.pid)]
        command += ["--duration", str(seconds), "--rate", str(PROFILE_RATE), "--gil"]
        command += ["--format", "raw", "--output", str(raw)]
        sampler = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        time.sleep(0.5)  # py-spy attaches; wrk's run ends before its sampling does
        run = wrk(server, case, seconds - 1, args.connections, where)
        try:
            _, error = sampler.communicate(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            sampler.kill()
            sampler.wait()
            return "\npy-spy did not finish: no profile.\n"
        if sampler.returncode != 0 or not raw.exists():
            last = (error.strip().splitlines() or ["no message"])[-1]
            return f"\npy-spy failed ({last}): no profile.\n"
        samples = read_samples(raw)
    if not samples.total:
        return "\npy-spy took no samples: no profile.\n"
    return profile_text(server, case, run, samples)


def profile_text(server: Server, case: Case, run: Run, samples: Samples) -> str:
    total = samples.total

    def us(n: int) -> str:  # GIL-holding time per request that n samples stand for
        return f"{n / PROFILE_RATE / max(1, run.requests) * 1e6:,.0f}"

    rows = ["| innermost Python frame in | share of samples | ≈ µs per request |", "|---|--:|--:|"]
    rows += [f"| {label} | {n / total:.0%} | {us(n)} |" for label, n in samples.own.most_common()]
    stack = ["| on the stack (inclusive) | share of samples | ≈ µs per request |", "|---|--:|--:|"]
    for label in dict.fromkeys(label for label, _ in ON_STACK):
        n = samples.on_stack[label]
        stack.append(f"| {label} | {n / total:.0%} | {us(n)} |")
    top = "".join(f"\n- {n / total:.0%} `{frame}`" for frame, n in samples.leaves.most_common(8))
    return f"""
### Where the time goes (py-spy)

`{server.store}` store, `GET {case.path}` with a {case.name}, one more wrk run while
py-spy sampled the server {PROFILE_RATE} times a second, each time the thread that
held the GIL (`py-spy record --gil`): {run.requests:,} requests ({run.rps:,.0f}/s while
sampled, {run.cpu_us:,.0f} µs of server CPU each), {total:,} samples. "≈ µs per
request" is the samples' time over the requests: Python's own work per request. C
code that keeps the GIL counts under the Python frame that called it (uvloop's loop
under `Runner.run`); a thread that holds the GIL while the kernel has switched to
another counts too, which on one busy core inflates the frame just after a thread
wake-up (aiosqlite's queue put in `Connection._execute`). SQLAlchemy runs its sync
engine code in greenlets, whose stacks start at SQLAlchemy: those samples lack the
doorman frames that awaited them, so the actor's and the session's rows leave that
work out; it is in the greenlet row (the user lookup's query, for the most part).

{chr(10).join(rows)}

{chr(10).join(stack)}

The innermost frames with the most samples:
{top}
"""


# -- main ------------------------------------------------------------------------------


def main(args: argparse.Namespace) -> int:
    if shutil.which("wrk") is None:
        print(
            "benchmarks/load.py needs wrk (an HTTP load generator), which is not installed.\n"
            "On Debian or Ubuntu: sudo apt-get install -y wrk (then run this again).",
            file=sys.stderr,
        )
        return 2
    if args.profile and args.profile not in args.stores:
        raise SystemExit(f"--profile {args.profile}: not one of --stores {','.join(args.stores)}")
    if not 1 <= args.repeat <= args.seconds <= 600:
        raise SystemExit("give 1 <= --repeat <= --seconds <= 600")
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
        for store in args.stores:
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
        measure(servers, args, where)
        context["load_after"] = machine_load()
        profiled = ""
        if args.profile:
            chosen = next((s for s in servers if s.store == args.profile), None)
            if chosen is None:
                profiled = f"\nNo profile: the {args.profile} store did not run.\n"
            else:
                profiled = profile(chosen, CASES[0], args, where)
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
        default=["sqlite", "redis"],
        help="comma-separated, of: " + ", ".join(ALL_STORES) + " (default: sqlite,redis)",
    )
    parser.add_argument(
        "--seconds",
        type=int,
        default=10,
        help="seconds of load per store and request, split into --repeat runs (default 10)",
    )
    parser.add_argument("--repeat", type=int, default=5, help="runs per store and request (median)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument(
        "--warmup", type=int, default=1, help="warm-up seconds per store and request"
    )
    parser.add_argument(
        "--profile",
        metavar="STORE",
        help="after the runs, profile this store's server with py-spy during one more /-/auth run",
    )
    parser.add_argument("--write-docs", action="store_true", help=f"rewrite {DOCS.name}")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not use taskset")
    sys.exit(main(parser.parse_args()))
