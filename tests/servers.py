"""Real servers on loopback for the multi-worker and fault tests.

- ``doorman serve`` in a subprocess on a free 127.0.0.1 port, in a directory of
  its own (so no doorman.toml of the checkout is read), with only the DOORMAN_*
  variables the test gives;
- the HTTP a person's browser would send it: the login form with its
  ``csrftoken``, the session cookie, ``/-/whoami``;
- a fresh PostgreSQL database on the shared server, dropped afterwards;
- a private Redis server and a private PostgreSQL cluster that a test may stop
  and start again. The shared services are never stopped: other tests use them.

Every wait is bounded; a server that does not come up fails the test with its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.cookiejar
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import POSTGRES_URL, _missing
from .helpers import COOKIE, free_port, listening, parse_set_cookie

ROOT = Path(__file__).resolve().parent.parent
SECRET = "servers-test-secret-" + "q" * 24
PASSWORD = "correct horse battery staple"
START_S = 20.0  # a server must answer /-/health within this (workers start one by one)
REQUEST_S = 10.0  # every HTTP request gives up after this
CSRF_FIELD = re.compile(r'name="csrftoken" value="([^"]+)"')
#: Visitors without a session keep their CSRF secret in this cookie, not in a session.
CSRF_COOKIE = "doorman_csrf"
JSON = {"accept": "application/json"}

#: A plugin that says which worker process answered, and for whom: ``GET /-/test/pid``.
PID_PLUGIN = """\
import os

from starlette.responses import JSONResponse

from doorman import hookimpl


async def pid(request):
    return JSONResponse({"pid": os.getpid(), "actor": request.scope.get("actor")})


@hookimpl
def register_routes(doorman):
    return [("/-/test/pid", pid)]
"""


# -- doorman serve ---------------------------------------------------------------------


def doorman_env(settings: Mapping[str, object]) -> dict[str, str]:
    """This environment without DOORMAN_*, plus ``DOORMAN_<NAME>`` for each of ``settings``.

    The secret is ``SECRET`` unless ``secret`` is given; ``secret=None`` sets none.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOORMAN_")}
    settings = {"secret": SECRET, **settings}  # secret=None: made on first start, kept in the db
    env.update({f"DOORMAN_{k.upper()}": str(v) for k, v in settings.items() if v is not None})
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


@dataclass
class Server:
    """One ``doorman serve`` (its supervisor, with ``--workers`` above 1) on a loopback port."""

    url: str
    directory: Path
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    ready: bool = False  # answered /-/health
    problems: list[str] = field(default_factory=list)

    def log(self) -> str:
        return (self.directory / "server.log").read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def workers(self) -> list[int]:
        """The worker processes' ids (``--workers`` above 1): the supervisor's children."""
        pid = self.process.pid
        try:
            text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        except OSError:
            return []
        children = [int(child) for child in text.split()]
        # multiprocessing's resource tracker is a child too; workers run uvicorn
        return [child for child in children if "resource_tracker" not in _cmdline(child)]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def start_server(
    directory: Path,
    *,
    workers: int = 1,
    pid_route: bool = False,
    port: int | None = None,
    command: Sequence[str] = ("serve",),
    **settings: object,
) -> Server:
    """Start ``python -m doorman serve`` in ``directory``; ``settings`` become DOORMAN_* variables.

    Does not wait: call ``wait_until_healthy``. ``pid_route`` adds ``GET /-/test/pid``.
    ``port`` is a free one unless given; ``command`` may be ``("protect", "MODULE:APP")``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    if pid_route:
        plugins = directory / "plugins"
        plugins.mkdir(exist_ok=True)
        (plugins / "pid.py").write_text(PID_PLUGIN)
        settings = {**settings, "plugins_dir": str(plugins)}
    port = port or free_port()
    env = doorman_env(settings)
    argv = [sys.executable, "-m", "doorman", *command, "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--workers", str(workers)]
    with (directory / "server.log").open("ab") as log:
        process = subprocess.Popen(
            argv,
            cwd=directory,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the workers go with it
        )
    return Server(f"http://127.0.0.1:{port}", directory, process, env)


def wait_until_healthy(server: Server, timeout: float = START_S) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(server.url + "/-/health", timeout=1).status_code == 200:
                server.ready = True
                return
        if not server.alive() or time.monotonic() > deadline:
            pytest.fail(
                f"doorman serve did not answer /-/health within {timeout:.0f} s "
                f"(exit status {server.process.poll()}):\n{server.log()}"
            )
        time.sleep(0.05)


def stop_server(server: Server) -> str:
    """Stop the server (SIGTERM, then SIGKILL); what went wrong in its life, or ""."""
    if server.alive():
        server.process.terminate()
    try:
        status = server.process.wait(START_S)
    except subprocess.TimeoutExpired:
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(START_S)
        return f"did not stop within {START_S:.0f} s of SIGTERM:\n{server.log()}"
    with contextlib.suppress(ProcessLookupError):  # a worker left behind
        os.killpg(server.process.pid, signal.SIGKILL)
    log = server.log()
    if not server.ready:
        return ""  # stopped while starting (a test skipped), or failed and said so
    problems = list(server.problems)
    if status not in (0, -signal.SIGTERM):
        problems.append(f"exited with status {status}")
    if "Traceback" in log:
        problems.append("logged a traceback")
    if re.search(r'" 5(?!03)\d\d ', log):
        problems.append("answered a 5xx other than 503")
    return "; ".join(problems) + f":\n{log}" if problems else ""


@contextlib.contextmanager
def running(*servers: Server) -> Iterator[None]:
    """Wait for ``servers`` (started side by side); stop them all afterwards, cleanly."""
    try:
        for server in servers:
            wait_until_healthy(server)
        yield
    finally:
        problems = [problem for server in servers if (problem := stop_server(server))]
    assert not problems, "\n\n".join(problems)


def doorman_cli(
    server: Server, *args: str, input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m doorman ARGS`` with the settings of ``server``."""
    return subprocess.run(
        [sys.executable, "-m", "doorman", *args],
        input=input,
        capture_output=True,
        text=True,
        cwd=server.directory,
        env=server.env,
        timeout=timeout,
        check=False,
    )


def add_users(db: str, *usernames: str, admins: tuple[str, ...] = ()) -> None:
    """Create users (password ``PASSWORD``) in ``db``, in this process: quicker than the CLI.

    The server hashes with the same parameters, so signing in does not re-hash.
    """
    from doorman.config import close_doorman, load_settings, open_doorman

    async def create() -> None:
        settings = load_settings(environ={}, overrides={"db": db, "secret": SECRET})
        doorman, store, _ = await open_doorman(settings)
        try:
            for name in usernames:
                await doorman.create_user(name, PASSWORD, admin=name in admins)
        finally:
            await close_doorman(doorman, store)

    in_own_loop(create())


def in_own_loop(coroutine: Any) -> Any:
    """Run ``coroutine`` in a thread with its own event loop (a test loop may be running)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result(timeout=60)


# -- what a browser sends ------------------------------------------------------------------


def cookie_of(response: httpx.Response, name: str = COOKIE) -> str | None:
    """The session cookie a response sets: its value, "" when it deletes it, None when untouched."""
    for header in response.headers.get_list("set-cookie"):
        found, value, attributes = parse_set_cookie(header)
        if found == name:
            return "" if attributes.get("max-age") == "0" else value
    return None


def no_cookie_jar() -> http.cookiejar.CookieJar:
    """For an httpx client shared by several visitors: it must not keep anyone's cookie."""
    return http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


def with_cookie(cookie: str | None, csrf: str | None = None, **headers: str) -> dict[str, str]:
    """``headers`` and a Cookie header with the session cookie and the CSRF cookie, if given."""
    pairs = [f"{name}={value}" for name, value in ((COOKIE, cookie), (CSRF_COOKIE, csrf)) if value]
    return {**headers, "cookie": "; ".join(pairs)} if pairs else headers


def login_form(url: str) -> tuple[str, str]:
    """GET the login page: (its CSRF cookie, the form's ``csrftoken``); no session is made."""
    page = httpx.get(url + "/-/login", timeout=REQUEST_S)
    assert page.status_code == 200, page.text
    found = CSRF_FIELD.search(page.text)
    cookie = cookie_of(page, CSRF_COOKIE)
    assert found and cookie, "the login page has no csrftoken field, or set no CSRF cookie"
    assert cookie_of(page) is None, "the login page made a session for a visitor"
    return cookie, found[1]


def post_login(url: str, username: str, password: str = PASSWORD) -> httpx.Response:
    """Fill in and submit the login form on a fresh connection, as a browser would."""
    csrf, token = login_form(url)
    form = {"username": username, "password": password, "csrftoken": token}
    headers = with_cookie(None, csrf=csrf)
    return httpx.post(url + "/-/login", data=form, headers=headers, timeout=REQUEST_S)


def sign_in(url: str, username: str, password: str = PASSWORD) -> str:
    """Sign in through the login form; the new session cookie."""
    answer = post_login(url, username, password)
    assert answer.status_code in (302, 303), (
        f"sign-in as {username}: {answer.status_code} {answer.text}"
    )
    cookie = cookie_of(answer)
    assert cookie, "a sign-in sets a new session cookie"
    return cookie


def whoami(url: str, cookie: str | None) -> dict[str, Any] | None:
    """The actor ``/-/whoami`` answers for ``cookie`` (None: nobody); fails on anything but 200."""
    answer = httpx.get(url + "/-/whoami", headers=with_cookie(cookie), timeout=REQUEST_S)
    assert answer.status_code == 200, f"{answer.status_code} {answer.text}"
    actor: dict[str, Any] | None = answer.json()["actor"]
    return actor


def username_of(url: str, cookie: str | None) -> str | None:
    actor = whoami(url, cookie)
    return None if actor is None else str(actor["username"])


def csrf_of(url: str, cookie: str) -> str:
    """The CSRF token of a signed-in session (what its pages' forms carry)."""
    answer = httpx.get(url + "/-/whoami?csrf=1", headers=with_cookie(cookie), timeout=REQUEST_S)
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["csrftoken"]
    return token


def post_form(url: str, path: str, cookie: str, fields: Mapping[str, str] = {}) -> httpx.Response:
    """POST a form of a signed-in session (with its CSRF token), asking for JSON."""
    form = {**fields, "csrftoken": csrf_of(url, cookie)}
    return httpx.post(url + path, data=form, headers=with_cookie(cookie, **JSON), timeout=REQUEST_S)


# -- a fresh database on the shared PostgreSQL ----------------------------------------------


@contextlib.contextmanager
def fresh_postgres_database(admin_url: str = POSTGRES_URL) -> Iterator[str]:
    """A new, uniquely named database on the shared server; dropped afterwards."""
    import asyncpg

    name = "doorman_servers_" + secrets.token_hex(4)

    async def execute(sql: str) -> None:
        connection = await asyncpg.connect(admin_url, timeout=5)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    try:
        in_own_loop(execute(f'CREATE DATABASE "{name}"'))
    except (TimeoutError, OSError, asyncpg.PostgresError) as error:
        _missing("PostgreSQL at " + admin_url, error)
    base, _, _ = admin_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        in_own_loop(execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# -- private services that a test may stop --------------------------------------------------


def _binary(name: str, *directories: str) -> str:
    found = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), *directories]))
    if found is None:
        _missing(name, FileNotFoundError(f"no {name!r} on PATH"))
    assert found is not None
    return found


def _wait_for(port: int, process: subprocess.Popen[bytes] | None, what: str, log: Path) -> None:
    deadline = time.monotonic() + 10
    while not listening(port):
        if (process is not None and process.poll() is not None) or time.monotonic() > deadline:
            pytest.fail(f"{what} did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.02)


class PrivateRedis:
    """A redis-server of this test's own on a free port; ``stop`` keeps its data for ``start``."""

    def __init__(self, directory: Path) -> None:
        self.binary = _binary("redis-server", "/usr/sbin", "/usr/local/bin")
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        command += ["--dbfilename", "dump.rdb", "--daemonize", "no"]
        log = self.directory / "redis.log"
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )
        _wait_for(self.port, self.process, "redis-server", log)

    def stop(self) -> None:
        """SHUTDOWN SAVE: the server writes its data to disk, then exits; ``start`` reads it."""
        assert self.process is not None
        # A bare socket: a client library would retry (and back off) once the server is gone.
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(b"SHUTDOWN SAVE\r\n")
            while sock.recv(1024):  # the server closes the connection as it exits
                pass
        self.process.wait(10)
        self.process = None

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


class PrivatePostgres:
    """A PostgreSQL cluster of this test's own (initdb) on a free port; stop and start at will.

    initdb refuses to run as root: as root, the cluster belongs to the ``postgres``
    user and every pg_ctl runs as that user (``runuser``).
    """

    def __init__(self) -> None:
        self.bin = self._bindir()
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.directory = Path(tempfile.mkdtemp(prefix="doorman-pg-"))
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            runuser = _binary("runuser", "/usr/sbin", "/sbin")
            self.as_user = [runuser, "-u", "postgres", "--"]
            shutil.chown(self.directory, "postgres")
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"

    @staticmethod
    def _bindir() -> Path:
        candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
        found = str(candidates[0]) if candidates else shutil.which("initdb")
        if found is None:
            _missing("initdb", FileNotFoundError("no PostgreSQL server binaries (initdb)"))
        assert found is not None
        return Path(found).parent

    def _run(self, *command: str) -> None:
        done = subprocess.run(
            [*self.as_user, *command], capture_output=True, text=True, timeout=30, check=False
        )
        if done.returncode != 0:
            pytest.fail(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")

    def init(self) -> None:
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
            "--no-sync", "--no-instructions", "-E", "UTF8",
        )  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
            "-o", options, "-w", "-t", "10", "start",
        )  # fmt: skip

    def stop(self) -> None:
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-t", "10", "-m", "fast", "stop"
        )

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
