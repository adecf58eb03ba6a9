"""The CLI's error contract at start-up: one line on stderr, exit status 1, never a traceback.

Bad settings stop ``serve`` before it prints or starts anything; a port in use is
found before the set-up link is made; a mistyped SQLite path is not silently
created. The set-up link comes once the server listens, as the last line before
uvicorn's "running" line. (Missing optional packages: tests/test_extras.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import Result
from sqlalchemy.ext.asyncio import AsyncEngine

from doorman.config import SETTINGS
from doorman.db import create_engine
from doorman.db.migrations import ensure_schema
from doorman.db.schema import settings_table
from doorman.server.app import create_app
from doorman.server.setup import issue_setup_token, setup_token_valid
from doorman.server.workers import settings_from_environment

from .helpers import free_port
from .servers import ROOT, Server, fresh_postgres_database, running, start_server
from .test_cli import Invoke, create, fails, ok, say_running

# test_cli's fixtures, its autouse clean environment among them:
from .test_cli import clean_environment as clean_environment
from .test_cli import db as db
from .test_cli import doorman_cli as doorman_cli
from .test_config import BAD

pytestmark = pytest.mark.e2e

LINK = "Create the first admin at "
RUNNING = "Uvicorn running on"


# -- serve, up to a worker's start-up, without serving ---------------------------------------


@pytest.fixture
def worker_starts(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """uvicorn.run does what a worker does before it serves, then says it is running.

    It builds the app from the settings ``serve`` handed over and runs its
    lifespan start-up and shut-down: a setting that failed only there would
    end the command with an exception rather than one line.
    """
    import uvicorn

    calls: list[dict[str, Any]] = []

    def run(app: object, **options: Any) -> None:
        calls.append({"app": app, **options})
        assert app == "doorman.server.workers:serve_app"
        asyncio.run(_start_and_stop(create_app(settings_from_environment())))
        say_running(options)

    monkeypatch.setenv("DOORMAN_SERVE_SETTINGS", "")
    monkeypatch.setattr(uvicorn, "run", run)
    return calls


async def _start_and_stop(app: Any) -> None:
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    answers: list[str] = []

    async def send(message: dict[str, Any]) -> None:
        answers.append(message["type"])
        if message["type"] == "lifespan.startup.complete":
            await inbox.put({"type": "lifespan.shutdown"})
        elif message["type"].endswith(".failed"):
            raise RuntimeError(f"a worker would not start: {message}")

    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, send)
    assert answers == ["lifespan.startup.complete", "lifespan.shutdown.complete"], answers


def serve(invoke: Invoke, *args: str, env: dict[str, str] | None = None) -> Result:
    return invoke("serve", "--port", str(free_port()), *args, env=env)


def test_good_settings_get_through_a_worker_start_up(
    doorman_cli: Invoke, worker_starts: list[Any]
) -> None:
    """The control for the table below: with good settings the worker starts."""
    result = ok(serve(doorman_cli, env={"DOORMAN_CORS_ORIGINS": "https://app.example.com"}))
    assert len(worker_starts) == 1
    assert result.stdout.startswith(LINK) and result.stdout.count("\n") == 1


def _toml(value: Any) -> str:
    """A TOML value for the bad values of the table: lists, tables, numbers, booleans, text."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return json.dumps(value)


@pytest.mark.parametrize(
    ("name", "value"), [(name, value) for name, values in BAD.items() for value in values]
)
def test_every_bad_setting_stops_serve_with_one_line(
    doorman_cli: Invoke, worker_starts: list[Any], tmp_path: Path, name: str, value: Any
) -> None:
    """Text through its DOORMAN_ variable, other values through doorman.toml."""
    setting = next(s for s in SETTINGS if s.name == name)
    env = {}
    if isinstance(value, str):
        env[setting.env] = value
        origin = setting.env
    else:
        (tmp_path / "doorman.toml").write_text(f"{name} = {_toml(value)}\n")
        origin = "doorman.toml"
    port = [] if name == "port" else ["--port", str(free_port())]  # a flag would win
    result = doorman_cli("serve", *port, env=env)
    line = fails(result, f"{name} = ", f"(from {origin})")
    assert result.stdout == "" and worker_starts == [], line
    assert "<hidden>" in line if setting.hidden else True


# -- a port that cannot be listened on ---------------------------------------------------------


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@contextlib.contextmanager
def _occupied(host: str) -> Iterator[int]:
    """A port on ``host`` that another server listens on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as other:
        other.bind((host, 0))
        other.listen()
        yield other.getsockname()[1]


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_a_port_in_use_is_one_line_before_anything_starts(
    doorman_cli: Invoke, worker_starts: list[Any], db: str, host: str, workers: str
) -> None:
    if host == "::1" and not _has_ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    with _occupied(host) as port:
        result = doorman_cli("serve", "--host", host, "--port", str(port), "--workers", workers)
    fails(result, f"port {port} on {host} is in use: ", "--port")
    assert result.stdout == "" and worker_starts == []
    assert not Path(db).exists()  # checked before the database (and a set-up token) is made


@pytest.mark.parametrize(
    ("host", "fragment"),
    [
        ("no-such-host.invalid", "cannot listen on 'no-such-host.invalid': "),
        ("192.0.2.1", "cannot listen on 192.0.2.1: not an address of this machine; fix --host"),
    ],
)
def test_a_host_that_cannot_be_listened_on_is_one_line(
    doorman_cli: Invoke, worker_starts: list[Any], host: str, fragment: str
) -> None:
    result = serve(doorman_cli, "--host", host)
    fails(result, fragment)
    assert result.stdout == "" and worker_starts == []


# -- in a real process: nothing but the one line ------------------------------------------------


def _serve_process(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DOORMAN_")}
    environment.update(DOORMAN_DB=str(tmp_path / "doorman.db"), **env)
    return subprocess.run(
        [sys.executable, "-m", "doorman", "serve", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environment,
        timeout=60,
        check=False,
    )


def test_the_issues_cases_in_a_real_process(tmp_path: Path) -> None:
    """A wildcard origin, a port in use: no set-up link, no uvicorn, one line."""
    wildcard = _serve_process(tmp_path, "--port", str(free_port()), DOORMAN_CORS_ORIGINS="*")
    with _occupied("127.0.0.1") as port:
        taken = _serve_process(tmp_path, "--port", str(port))
    for result, fragment in [
        (wildcard, "Error: cors_origins = '*' (from DOORMAN_CORS_ORIGINS): '*' would let"),
        (taken, f"Error: port {port} on 127.0.0.1 is in use: "),
    ]:
        assert result.returncode == 1 and result.stdout == "", result
        assert result.stderr.startswith(fragment) and result.stderr.count("\n") == 1, result


# -- the set-up link: once the server listens, the last line before "running" --------------------


def _log_lines(server: Server) -> list[str]:
    return server.log().splitlines()


def test_the_setup_link_is_the_line_before_uvicorn_says_it_is_running(tmp_path: Path) -> None:
    server = start_server(tmp_path / "one")
    with running(server):
        lines = _log_lines(server)
    links = [i for i, line in enumerate(lines) if line.startswith(LINK)]
    assert len(links) == 1, lines
    assert lines[links[0] + 1].startswith(f"INFO:     {RUNNING} http://127.0.0.1:"), lines
    assert lines[links[0] - 1] == "INFO:     Application startup complete.", lines


def test_with_workers_the_setup_link_comes_once_a_worker_listens(tmp_path: Path) -> None:
    import httpx

    server = start_server(tmp_path / "two", workers=2)
    with running(server):
        deadline = time.monotonic() + 30
        while not any(line.startswith(LINK) for line in _log_lines(server)):
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
        lines = _log_lines(server)
        [link] = [line.removeprefix(LINK) for line in lines if line.startswith(LINK)]
        assert httpx.get(link, timeout=10).status_code == 200  # the page it names answers
    running_at = next(i for i, line in enumerate(lines) if RUNNING in line)
    first_ready = lines.index("INFO:     Application startup complete.")
    assert running_at < first_ready < lines.index(LINK + link), lines


# -- servers that start together on one new database ----------------------------------------


@pytest.mark.postgres
def test_a_server_issues_its_setup_token_while_another_does() -> None:
    """Two ``serve`` on one new PostgreSQL database: neither fails on the token's row."""
    with fresh_postgres_database() as url:
        asyncio.run(_issue_while_another_server_does(url))


async def _issue_while_another_server_does(url: str) -> None:
    engine = create_engine(url)
    try:
        await ensure_schema(engine)
        async with engine.connect() as other, other.begin():  # the other server, not committed
            row = {"name": "setup_token_sha256", "value": "the other server's"}
            await other.execute(settings_table.insert().values(row))
            issuing = asyncio.ensure_future(issue_setup_token(engine))
            await _until_a_query_waits_for_a_lock(engine)
        token = await issuing
        assert token is not None and await setup_token_valid(engine, token)
    finally:
        await engine.dispose()


async def _until_a_query_waits_for_a_lock(engine: AsyncEngine) -> None:
    waiting = sa.text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + 10
    while True:
        async with engine.connect() as connection:
            if (await connection.execute(waiting)).scalar_one():
                return
        assert time.monotonic() < deadline, "issue_setup_token never met the other's row"
        await asyncio.sleep(0.05)


# -- a SQLite path that does not exist -----------------------------------------------------------


READING_COMMANDS = [
    ("users", "list"),
    ("users", "passwd", "alice", "--password-stdin"),
    ("users", "disable", "alice"),
    ("users", "enable", "alice"),
    ("users", "delete", "alice", "--yes"),
    ("sessions", "list"),
    ("sessions", "revoke", "alice"),
    ("sessions", "clear-expired"),
    ("sessions", "flush", "--yes"),
    ("tokens", "create", "alice"),
    ("tokens", "list"),
    ("tokens", "revoke", "dmt_x"),
    ("db", "dump"),
    ("db", "migrate"),
]


@pytest.mark.parametrize("command", READING_COMMANDS, ids=" ".join)
@pytest.mark.parametrize("spelling", ["path", "url"])
def test_a_mistyped_sqlite_path_is_refused_not_created(
    doorman_cli: Invoke, tmp_path: Path, command: tuple[str, ...], spelling: str
) -> None:
    typo = tmp_path / "doorman.bd"
    db = str(typo) if spelling == "path" else f"sqlite:///{typo}"
    result = doorman_cli(*command, "--db", db, input="whatever password\n")
    fails(result, f"no database at {typo} (create it with `doorman db init` or `doorman serve`)")
    assert not typo.exists()


def test_the_commands_that_make_a_database_still_do(
    doorman_cli: Invoke, worker_starts: list[Any], tmp_path: Path
) -> None:
    made = {name: tmp_path / f"{name}.db" for name in ("init", "create", "load", "serve")}
    ok(doorman_cli("db", "init", "--db", str(made["init"])))
    ok(create(doorman_cli, "alice", "--db", str(made["create"])))
    ok(doorman_cli("db", "dump", "dump.json", "--db", str(made["create"])))
    ok(doorman_cli("db", "load", "dump.json", "--db", str(made["load"])))
    ok(serve(doorman_cli, "--db", str(made["serve"])))
    assert all(path.exists() for path in made.values())
    ok(doorman_cli("db", "schema", "--db", str(tmp_path / "none.db")))  # prints SQL, opens none
    assert not (tmp_path / "none.db").exists()


@pytest.mark.parametrize("db", [":memory:", "sqlite://", "sqlite+aiosqlite:///:memory:"])
def test_an_in_memory_database_is_one_line(doorman_cli: Invoke, db: str) -> None:
    """Each command (each worker) would get an empty database of its own: refused, no traceback."""
    fails(doorman_cli("users", "list", "--db", db), "db = ", "in memory")


def test_a_server_database_is_not_checked_for_a_file(doorman_cli: Invoke) -> None:
    fails(
        doorman_cli("users", "list", "--db", "postgresql://nobody@127.0.0.1:1/x"), "did not answer"
    )


# -- make serve: only what serving needs -------------------------------------------------------


def test_make_serve_installs_the_server_extra_only() -> None:
    """The Makefile's serve target installs .[server]; make test, .[dev] (dry run)."""
    dry = _make_dry_run("serve")
    assert "pip install --quiet -e '.[server]'" in dry and ".[dev]" not in dry, dry
    assert dry.rstrip().endswith("/nonexistent-venv/bin/doorman serve --host 127.0.0.1 --port 8000")
    test = _make_dry_run("test")
    assert "pip install --quiet -e '.[dev]'" in test, test


def _make_dry_run(target: str) -> str:
    """What ``make TARGET`` would run, from scratch, into a venv that is not there."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return subprocess.run(
        ["make", "--no-print-directory", "-n", "-B", target, "VENV=/nonexistent-venv"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=30,
        check=True,
    ).stdout
