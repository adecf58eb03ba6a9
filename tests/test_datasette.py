"""The Datasette plugin, with the real ``datasette`` package and real doorman sessions.

Same-database mode signs people in at the sign-in server app (in process, on
the same SQLite file) and sends the cookie it set to Datasette. Gate mode runs
a real ``doorman serve`` on loopback. docs/datasette.md's examples are run too.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import json
import logging
import os
import re
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from doorman import PasswordHasher
from doorman.config import Settings, load_settings, open_doorman
from doorman.core import Doorman
from doorman.exceptions import ConfigError
from doorman.server.app import create_app

from .conftest import SECRET
from .helpers import COOKIE, client, session_signer
from .test_browser import SECRET as SERVE_SECRET
from .test_browser import Server as ServeProcess
from .test_browser import free_port, start, stop, wait_until_healthy
from .test_server import PASSWORD, Server, csrf_token, running, sign_in

# Datasette's own leak, not doorman's: datasette.utils.detect_json1() and sqlite_version()
# open an in-memory sqlite3 connection and never close it (one on import, one per table
# page), and Python 3.13 warns when the garbage collector finds one. Ignored by message,
# only while Datasette is imported and this module's tests run, and collected when the
# last of them ends (still under that filter), so none is left for the collector to find
# in another module's test. Once per module: a full collection costs half a second.
DATASETTES_LEAK = r"unclosed database in <sqlite3\.Connection object"

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", DATASETTES_LEAK, ResourceWarning)
    from datasette.app import Datasette
    from datasette.plugins import pm
    from datasette.utils import actor_matches_allow

    from doorman.integrations import datasette as plugin

    gc.collect()

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings(f"ignore:{DATASETTES_LEAK}:ResourceWarning"),
]


def collect_datasettes_leaks() -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", DATASETTES_LEAK, ResourceWarning)
        gc.collect()


@pytest.fixture(autouse=True, scope="module")
def datasettes_leaks_collected() -> Iterator[None]:
    yield
    collect_datasettes_leaks()


DOC = Path(__file__).parent.parent / "docs" / "datasette.md"
#: Who sees what in ``data.db``, as in the doc. Users: alice and carol (editors), bob.
ACCESS = {"secrets": {"id": "alice"}, "drafts": {"groups": "editors"}}
FAST = {"time_cost": 1, "memory_cost": 1024}


def doc_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.S)


def make_data(directory: Path) -> Path:
    path = directory / "data.db"
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        for table in ("public", "secrets", "drafts"):
            db.execute(f"create table {table} (id integer primary key, note text)")
            db.execute(f"insert into {table} (note) values ('in {table}')")
    return path


def build(data: Path, settings: dict[str, Any]) -> Datasette:
    """Datasette with ``settings`` (plugins, databases) where this version reads them."""
    if "config" in inspect.signature(Datasette).parameters:  # 1.0: datasette.yaml
        return Datasette(files=[str(data)], config=settings)
    return Datasette(files=[str(data)], metadata=settings)


def with_access(plugin_config: dict[str, Any]) -> dict[str, Any]:
    tables = {name: {"allow": allow} for name, allow in ACCESS.items()}
    return {"plugins": {"doorman": plugin_config}, "databases": {"data": {"tables": tables}}}


@contextlib.asynccontextmanager
async def datasette(data: Path, settings: dict[str, Any]) -> AsyncIterator[Datasette]:
    ds = build(data, settings)
    try:
        yield ds
    finally:
        await plugin.close(ds)


async def actor_in(ds: Datasette, cookie: str | None) -> Any:
    cookies = {COOKIE: cookie} if cookie is not None else None
    response = await ds.client.get("/-/actor.json", cookies=cookies)
    assert response.status_code == 200, response.text
    return response.json()["actor"]


async def status_of(ds: Datasette, path: str, cookie: str | None) -> int:
    cookies = {COOKIE: cookie} if cookie is not None else None
    return (await ds.client.get(path, cookies=cookies)).status_code


async def cookie_for(server: Server, username: str) -> str:
    """Sign in at the sign-in server app; the session cookie it set."""
    async with client(server.app) as browser:
        response = await sign_in(browser, username)
        assert response.status_code in (302, 303), response.text
        return browser.cookies[COOKIE]


# -- same database -------------------------------------------------------------------


@pytest.fixture
async def accounts(tmp_path: Path) -> AsyncIterator[Server]:
    async with running(tmp_path) as server:
        await server.doorman.create_user("alice", PASSWORD, groups=["editors"])
        await server.doorman.create_user("bob", PASSWORD)
        await server.doorman.create_user("carol", PASSWORD, groups=["editors"])
        yield server


@pytest.fixture
def same_db(accounts: Server, tmp_path: Path) -> dict[str, Any]:
    """Datasette settings of the same-database mode, on the sign-in server's files."""
    return with_access({"db": accounts.settings.db, "secret": SECRET})


def test_the_plugin_is_installed_under_datasettes_entry_point() -> None:
    plugins = dict(pm.list_name_plugin())
    assert plugins["doorman"] is plugin


@pytest.mark.e2e
def test_doorman_itself_never_imports_datasette() -> None:
    code = (
        "import sys, doorman, doorman.config, doorman.cli, doorman.server.app, "
        "doorman.integrations.starlette; print('datasette' in sys.modules)"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "False"


async def test_actor_json_shows_the_doorman_actor(
    accounts: Server, same_db: dict[str, Any], tmp_path: Path
) -> None:
    async with datasette(make_data(tmp_path), same_db) as ds:
        actor = await actor_in(ds, await cookie_for(accounts, "alice"))
        assert actor == json.loads(doc_blocks("json")[0])
        assert await actor_in(ds, None) is None


async def test_allow_blocks_match_the_id_and_the_groups(
    accounts: Server, same_db: dict[str, Any], tmp_path: Path
) -> None:
    async with datasette(make_data(tmp_path), same_db) as ds:
        alice, bob, carol = [await cookie_for(accounts, name) for name in ("alice", "bob", "carol")]
        assert await status_of(ds, "/data/secrets", alice) == 200
        assert await status_of(ds, "/data/drafts", alice) == 200
        assert await status_of(ds, "/data/secrets", bob) == 403
        assert await status_of(ds, "/data/drafts", bob) == 403
        assert await status_of(ds, "/data/secrets", carol) == 403
        assert await status_of(ds, "/data/drafts.json", carol) == 200
        assert await status_of(ds, "/data/secrets", None) == 403
        assert await status_of(ds, "/data/public", None) == 200


#: Who each allow block of the doc's table lets in, among these actors.
DOC_ALLOW = {
    "{id: alice}": {"alice"},
    "{id: [alice, bob]}": {"alice", "bob"},
    "{groups: editors}": {"alice", "carol"},
    "{admin: true}": {"admin"},
    "{auth_methods: otp}": set(),  # every cookie here is a password's: ["pwd"]
    '{via: "*"}': {"alice", "bob", "carol", "admin"},
    '{id: "*"}': {"alice", "bob", "carol", "admin", "datasette root"},
}


async def test_the_docs_allow_blocks_let_in_whom_they_say(
    accounts: Server, same_db: dict[str, Any], tmp_path: Path
) -> None:
    await accounts.doorman.create_user("admin", PASSWORD, admin=True)
    rows = re.findall(r"^\| `allow: (\{.*?\})` \|", DOC.read_text(), re.M)
    assert rows == list(DOC_ALLOW)
    async with datasette(make_data(tmp_path), same_db) as ds:
        actors = {
            name: await actor_in(ds, await cookie_for(accounts, name))
            for name in ("alice", "bob", "carol", "admin")
        }
        assert all(actors[name]["auth_methods"] == ["pwd"] for name in actors)
        actors["datasette root"] = {"id": "root"}  # what `datasette --root` signs in as
        actors["anonymous"] = None
        for row, allowed in DOC_ALLOW.items():
            block = yaml.safe_load(row)
            admitted = {name for name, actor in actors.items() if matches(actor, block)}
            assert admitted == allowed, row


def matches(actor: dict[str, Any] | None, allow: dict[str, Any]) -> bool:
    return bool(actor_matches_allow(actor, allow))


async def _change_password(server: Server, cookie: str) -> None:
    user = await server.doorman.users.require("alice")
    await server.doorman.set_password(user, "a brand new passphrase", validate=False)


async def _disable(server: Server, cookie: str) -> None:
    await server.doorman.users.set_active(await server.doorman.users.require("alice"), False)


async def _sign_out(server: Server, cookie: str) -> None:
    async with client(server.app, cookies={COOKIE: cookie}) as browser:
        token = await csrf_token(browser)
        response = await browser.post("/-/logout", data={"csrftoken": token})
        assert response.status_code in (302, 303)


async def _sign_out_everywhere(server: Server, cookie: str) -> None:
    await server.doorman.end_sessions(await server.doorman.users.require("alice"))


@pytest.mark.parametrize(
    "end", [_change_password, _disable, _sign_out, _sign_out_everywhere], ids=lambda f: f.__name__
)
async def test_a_session_ended_at_doorman_is_over_in_datasette(
    accounts: Server, same_db: dict[str, Any], tmp_path: Path, end: Any
) -> None:
    async with datasette(make_data(tmp_path), same_db) as ds:
        cookie = await cookie_for(accounts, "alice")
        assert (await actor_in(ds, cookie))["id"] == "alice"
        await end(accounts, cookie)
        assert await actor_in(ds, cookie) is None
        assert await status_of(ds, "/data/secrets", cookie) == 403


async def test_forged_and_damaged_cookies_give_no_actor_and_no_500(
    accounts: Server, same_db: dict[str, Any], tmp_path: Path
) -> None:
    async with datasette(make_data(tmp_path), same_db) as ds:
        real = await cookie_for(accounts, "alice")
        key, _, signature = real.rpartition(".")
        forged = [
            "garbage",
            f"{key}.{signature[::-1]}",
            f"{key}x.{signature}",
            session_signer("another-secret-" + "x" * 32).sign(key.partition(".")[0]),
            session_signer().sign("no-such-session-key"),
            "a" * 5000,
            '"quoted"',
        ]
        for cookie in forged:
            assert await actor_in(ds, cookie) is None, cookie
            assert await status_of(ds, "/data/secrets", cookie) == 403
        assert (await actor_in(ds, real))["id"] == "alice"


async def test_only_the_session_cookie_counts_not_doorman_api_tokens(
    accounts: Server, same_db: dict[str, Any], tmp_path: Path
) -> None:
    # A token may be limited to some scopes, which Datasette's rules cannot see: not an actor.
    user = await accounts.doorman.users.require("alice")
    _, token = await accounts.doorman.tokens.create(user, scopes=["view"])
    async with datasette(make_data(tmp_path), same_db) as ds:
        bearer = {"authorization": f"Bearer {token}"}
        for cookies in (None, {COOKIE: "not-a-session"}):
            response = await ds.client.get("/-/actor.json", headers=bearer, cookies=cookies)
            assert response.json() == {"actor": None}


async def test_a_session_store_that_does_not_answer_gives_no_actor_and_a_log_line(
    accounts: Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    down = f"redis://127.0.0.1:{free_port()}/0"
    settings = with_access({"db": accounts.settings.db, "secret": SECRET, "sessions": down})
    async with datasette(make_data(tmp_path), settings) as ds:
        with caplog.at_level(logging.WARNING):
            cookie = session_signer().sign("some-session-key")
            assert await actor_in(ds, cookie) is None
            assert await status_of(ds, "/data/secrets", cookie) == 403
    assert "this Datasette request is anonymous" in caplog.text
    assert cookie not in caplog.text


async def test_a_database_gone_after_startup_gives_no_actor_and_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "doorman.db"
    doorman = Doorman(str(db), secret=SECRET, entry_points=False)
    await doorman.startup()
    await doorman.close()
    async with datasette(make_data(tmp_path), with_access({"db": str(db), "secret": SECRET})) as ds:
        await ds.invoke_startup()
        db.rename(tmp_path / "moved.db")
        db.mkdir()  # SQLite cannot open a directory: the database is down
        with caplog.at_level(logging.WARNING, logger="doorman.datasette"):
            cookie = session_signer().sign("some-session-key")
            assert await actor_in(ds, cookie) is None
            assert await status_of(ds, "/data/secrets", cookie) == 403
    assert "this Datasette request is anonymous" in caplog.text


async def test_without_a_secret_the_one_kept_in_the_database_is_used(tmp_path: Path) -> None:
    settings = load_settings(environ={}, overrides={"db": str(tmp_path / "doorman.db")})
    doorman, store, found = await open_doorman(settings)
    try:
        doorman.hasher = doorman.users.hasher = PasswordHasher(**FAST)
        await doorman.create_user("alice", PASSWORD, groups=["editors"])
        resolved = Settings.from_mapping({"db": settings.db, "secret": found})
        app = create_app(resolved, doorman=doorman, store=store)
        cookie = await cookie_for(Server(app, doorman, store, resolved), "alice")
    finally:
        await store.close()
        await doorman.close()
        await doorman.engine.dispose()
    async with datasette(make_data(tmp_path), with_access({"db": settings.db})) as ds:
        assert (await actor_in(ds, cookie))["id"] == "alice"


async def test_browsing_datasette_keeps_an_idle_session_alive_and_ends_an_idle_one(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, idle_timeout=60) as server:
        await server.doorman.create_user("alice", PASSWORD)
        settings = with_access({"db": server.settings.db, "secret": SECRET, "idle_timeout": 60})
        async with datasette(make_data(tmp_path), settings) as ds:
            for idle, alive in ((50, True), (61, False)):
                cookie = await cookie_for(server, "alice")
                key = session_signer().unsign(cookie)
                record = json.loads(await server.store.load(key) or "")
                record["a"] -= idle  # as if the last request had come `idle` seconds ago
                await server.store.save(key, json.dumps(record), time.time() + 60)
                actor = await actor_in(ds, cookie)
                assert (actor is not None) is alive
                touched = await server.store.load(key)
                if alive:  # saved again: the idle deadline moved on
                    assert touched is not None
                    assert json.loads(touched)["a"] > record["a"]
                else:
                    assert touched is None


async def test_the_menu_links_to_sign_in_with_next_and_to_the_account(
    accounts: Server, tmp_path: Path
) -> None:
    links = {"login_url": "/-/login", "account_url": "https://auth.example.com/-/account"}
    settings = with_access({"db": accounts.settings.db, "secret": SECRET, **links})
    async with datasette(make_data(tmp_path), settings) as ds:
        anonymous = (await ds.client.get("/data/public?_size=1")).text
        assert 'href="/-/login?next=%2Fdata%2Fpublic%3F_size%3D1"' in anonymous
        assert "auth.example.com/-/account" not in anonymous
        cookie = await cookie_for(accounts, "alice")
        signed_in = (await ds.client.get("/", cookies={COOKIE: cookie})).text
        assert 'href="https://auth.example.com/-/account"' in signed_in
        assert "/-/login" not in signed_in


async def test_lifespan_shutdown_closes_the_plugin(
    accounts: Server, same_db: dict[str, Any], tmp_path: Path
) -> None:
    async with datasette(make_data(tmp_path), same_db) as ds:
        cookie = await cookie_for(accounts, "alice")
        assert (await actor_in(ds, cookie))["id"] == "alice"
        messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
        sent: list[str] = []

        async def receive() -> dict[str, Any]:
            return messages.pop(0)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message["type"])

        await ds.app()({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
        assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
        assert await actor_in(ds, cookie) is None  # closed: the plugin no longer answers


async def test_an_unconfigured_datasette_is_left_alone(tmp_path: Path) -> None:
    ds = build(make_data(tmp_path), {})
    await ds.invoke_startup()
    assert await plugin.resolve_actor(ds, None) is None
    assert (await ds.client.get("/-/actor.json", cookies={COOKIE: "anything"})).json() == {
        "actor": None
    }


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "give exactly one"),
        ({"db": "x.db", "api_url": "http://127.0.0.1/-/whoami"}, "give exactly one"),
        ({"db": "{db}", "secret": SECRET, "colour": "red"}, "colour: unknown option"),
        ({"db": "{dir}/missing.db", "secret": SECRET}, "no such file"),
        ({"db": "{db}", "secret": {"$env": "DOORMAN_TEST_NOT_SET"}}, "secret: empty"),
        ({"db": "{db}", "secret": "short"}, "secret"),
        ({"db": "{db}", "sessions": "memory", "secret": SECRET}, "cannot be shared|memory"),
        ({"db": "{db}", "secret": SECRET, "ttl": 5}, "ttl: only with api_url"),
        ({"api_url": "ftp://example.com"}, "api_url"),
        ({"api_url": "http://"}, "api_url"),
        ({"api_url": "http://[::1/-/whoami"}, "api_url"),
        ({"api_url": "http://127.0.0.1/-/whoami", "db": None}, "give exactly one"),
        ({"api_url": "http://127.0.0.1/-/whoami", "ttl": -1}, "ttl = -1"),
        ({"api_url": "http://127.0.0.1/-/whoami", "timeout": 0}, "timeout = 0"),
        ({"api_url": "http://127.0.0.1/-/whoami", "cookies": "doorman_session"}, "cookies"),
        ({"api_url": "http://127.0.0.1/-/whoami", "login_url": 3}, "login_url"),
    ],
)
async def test_a_bad_configuration_stops_datasette_at_startup(
    accounts: Server, tmp_path: Path, config: dict[str, Any], message: str
) -> None:
    filled = {
        key: value.format(db=accounts.settings.db, dir=tmp_path) if type(value) is str else value
        for key, value in config.items()
    }
    ds = build(make_data(tmp_path), {"plugins": {"doorman": filled}})
    with pytest.raises(ConfigError, match=message) as raised:
        await ds.invoke_startup()
    assert "plugins.doorman" in str(raised.value)
    assert SECRET not in str(raised.value)


async def test_the_docs_same_database_example(
    accounts: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the example's `db: doorman.db` is the sign-in server's file
    monkeypatch.setenv("DOORMAN_SECRET", SECRET)
    example = yaml.safe_load(doc_blocks("yaml")[0])
    async with datasette(make_data(tmp_path), example) as ds:
        alice, bob, carol = [await cookie_for(accounts, name) for name in ("alice", "bob", "carol")]
        assert await status_of(ds, "/data/secrets", alice) == 200
        assert await status_of(ds, "/data/secrets", bob) == 403
        assert await status_of(ds, "/data/secrets", carol) == 403
        assert await status_of(ds, "/data/drafts", carol) == 200
        assert await status_of(ds, "/data/drafts", bob) == 403
        assert await status_of(ds, "/data/drafts", None) == 403
        page = (await ds.client.get("/")).text
        assert 'href="https://auth.example.com/-/login"' in page


# -- through the gate: a real `doorman serve` ------------------------------------------


@contextlib.contextmanager
def signin_server(directory: Path) -> Iterator[ServeProcess]:
    """A real ``doorman serve``, its database in ``directory``: alice (of editors) and bob."""

    async def add_users() -> None:
        doorman = Doorman(str(directory / "doorman.db"), secret=SECRET, entry_points=False)
        doorman.hasher = doorman.users.hasher = PasswordHasher(**FAST)
        try:
            await doorman.startup()
            await doorman.create_user("alice", PASSWORD, groups=["editors"])
            await doorman.create_user("bob", PASSWORD)
        finally:
            await doorman.close()

    asyncio.run(add_users())
    server = start(directory)
    try:
        wait_until_healthy(server)
        yield server
    finally:
        server.process.terminate()
        problem = stop(server)
    assert not problem, problem


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with signin_server(tmp_path_factory.mktemp("serve")) as server:
        yield server


@contextlib.contextmanager
def datasette_serving(
    datasette: list[str], config: str, *, config_flag: str, data: Path, cwd: Path
) -> Iterator[str]:
    """A real ``datasette serve`` (run by the command ``datasette``) of ``data``; its URL.

    ``config`` (YAML) goes in a file given with ``config_flag``: ``--metadata`` for
    Datasette 0.x, ``--config`` for 1.0. It runs in ``cwd`` with DOORMAN_SECRET set to
    ``doorman serve``'s secret, for the docs' ``$env: DOORMAN_SECRET``.
    """
    (data.parent / "datasette.yaml").write_text(config)
    port = free_port()
    command = [*datasette, "serve", str(data), config_flag, str(data.parent / "datasette.yaml")]
    command += ["-h", "127.0.0.1", "-p", str(port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOORMAN_", "VIRTUAL_ENV"))}
    env["DOORMAN_SECRET"] = SERVE_SECRET
    log = data.parent / "datasette.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while not _answers(url + "/-/versions.json"):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(15)
    text = log.read_text()
    assert "Application shutdown complete" in text, text
    assert "Traceback" not in text, text


def check_served_access(url: str, serve: ServeProcess) -> None:
    """Through a real ``datasette serve``: alice and bob as the sign-in server knows them."""
    alice = asyncio.run(served_cookie(serve, "alice"))
    bob = asyncio.run(served_cookie(serve, "bob"))
    with httpx.Client(base_url=url, timeout=10) as browser:
        as_alice, as_bob = {"cookie": f"{COOKIE}={alice}"}, {"cookie": f"{COOKIE}={bob}"}
        actor = browser.get("/-/actor.json", headers=as_alice).json()["actor"]
        assert actor == json.loads(doc_blocks("json")[0])
        assert browser.get("/-/actor.json", headers=as_bob).json()["actor"]["id"] == "bob"
        assert browser.get("/data/secrets", headers=as_alice).status_code == 200
        assert browser.get("/data/drafts", headers=as_alice).status_code == 200
        assert browser.get("/data/secrets", headers=as_bob).status_code == 403
        assert browser.get("/data/drafts", headers=as_bob).status_code == 403
        assert browser.get("/data/secrets").status_code == 403
        assert browser.get("/data/public").status_code == 200


@pytest.mark.e2e
def test_datasette_serve_and_doorman_serve_share_the_database(
    serve: ServeProcess, tmp_path: Path
) -> None:
    """The docs' metadata.yaml, as is, in a real `datasette serve` next to `doorman serve`."""
    # In doorman serve's directory: the example's `db: doorman.db` is its file.
    with datasette_serving(
        [sys.executable, "-m", "datasette"],
        doc_blocks("yaml")[0],
        config_flag="--metadata",
        data=make_data(tmp_path),
        cwd=serve.directory,
    ) as url:
        check_served_access(url, serve)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


async def served_cookie(server: ServeProcess, username: str) -> str:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as browser:
        token = (await browser.get("/-/whoami?csrf=1")).json()["csrftoken"]
        data = {"username": username, "password": PASSWORD, "csrftoken": token}
        assert (await browser.post("/-/login", data=data)).status_code in (302, 303)
        return browser.cookies[COOKIE]


async def served_logout(server: ServeProcess, cookie: str) -> None:
    async with httpx.AsyncClient(base_url=server.url, cookies={COOKIE: cookie}) as browser:
        token = (await browser.get("/-/whoami?csrf=1")).json()["csrftoken"]
        response = await browser.post("/-/logout", data={"csrftoken": token})
        assert response.status_code in (302, 303)


@pytest.mark.e2e  # a real `doorman serve` (the module's `serve` fixture)
async def test_gate_mode_asks_the_sign_in_server(serve: ServeProcess, tmp_path: Path) -> None:
    settings = with_access({"api_url": f"{serve.url}/-/whoami"})
    async with datasette(make_data(tmp_path), settings) as ds:
        alice, bob = await served_cookie(serve, "alice"), await served_cookie(serve, "bob")
        assert await actor_in(ds, alice) == json.loads(doc_blocks("json")[0])
        assert await status_of(ds, "/data/secrets", alice) == 200
        assert await status_of(ds, "/data/secrets", bob) == 403
        assert await status_of(ds, "/data/drafts", bob) == 403
        assert await status_of(ds, "/data/secrets", None) == 403
        assert await actor_in(ds, alice[:-3] + "xyz") is None
        await served_logout(serve, alice)
        assert await actor_in(ds, alice) is None
        assert (await actor_in(ds, bob))["id"] == "bob"


@pytest.mark.e2e  # a real `doorman serve` (the module's `serve` fixture)
async def test_the_docs_gate_example_remembers_answers_for_ttl(
    serve: ServeProcess, tmp_path: Path
) -> None:
    example = yaml.safe_load(doc_blocks("yaml")[1])
    example["plugins"]["doorman"]["api_url"] = f"{serve.url}/-/whoami"
    assert example["plugins"]["doorman"]["ttl"] == 10
    async with datasette(make_data(tmp_path), example) as ds:
        alice = await served_cookie(serve, "alice")
        assert (await actor_in(ds, alice))["id"] == "alice"
        await served_logout(serve, alice)
        # Within ttl the remembered answer stands: the documented price of fewer calls.
        assert (await actor_in(ds, alice))["id"] == "alice"
        assert await actor_in(ds, alice + "x") is None  # another cookie is asked about afresh


@pytest.mark.e2e  # a real `doorman serve` (the module's `serve` fixture)
@pytest.mark.parametrize("where", ["down", "not whoami"])
async def test_gate_mode_fails_closed_with_a_log_line(
    serve: ServeProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    cookie = await served_cookie(serve, "alice")
    api_url = {
        "down": f"http://doorman:hunter2@127.0.0.1:{free_port()}/-/whoami",
        "not whoami": f"{serve.url}/-/no-such-page",
    }[where]
    async with datasette(make_data(tmp_path), with_access({"api_url": api_url})) as ds:
        with caplog.at_level(logging.WARNING, logger="doorman.datasette"):
            assert await actor_in(ds, cookie) is None
            assert await status_of(ds, "/data/secrets", cookie) == 403
    assert "this Datasette request is anonymous" in caplog.text
    assert cookie not in caplog.text
    assert "hunter2" not in caplog.text
