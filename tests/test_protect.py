"""``doorman protect``: an app behind sign-in, in process, and once as a real server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from click.testing import CliRunner

from doorman import PasswordHasher, hookimpl
from doorman._types import ASGIApp, Message, Receive, Scope, Send
from doorman.cli import main
from doorman.config import SETTINGS, Settings, assemble, load_settings
from doorman.core import Doorman
from doorman.exceptions import ConfigError
from doorman.server.app import create_app
from doorman.server.protect import AppTarget, ProtectedApp, is_public
from doorman.server.workers import protect_app

from .conftest import SECRET
from .helpers import COOKIE, client, free_port, migrated_sqlite
from .test_cli import say_running

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple"
HTML = {"accept": "text/html,application/xhtml+xml"}
JSON = {"accept": "application/json"}


# -- the app behind the gate, and the server around it -----------------------------------


class EchoApp:
    """Answers http with what it saw, greets websockets by name, records lifespan events."""

    def __init__(self, *, lifespan: bool = True, fail_startup: bool = False) -> None:
        self.lifespan = lifespan
        self.fail_startup = fail_startup
        self.events: list[str] = []
        self.seen: list[Scope] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            assert self.lifespan, "this app knows nothing of lifespan events"
            await self.run_lifespan(receive, send)
            return
        self.seen.append(scope)
        if scope["type"] == "websocket":
            assert (await receive())["type"] == "websocket.connect"
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": scope["actor"]["username"]})
            await send({"type": "websocket.close", "code": 1000})
            return
        actor = scope["actor"]
        body = {"path": scope["path"], "actor": actor, "user": scope["user"].display_name}
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})

    async def run_lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.fail_startup:
                    await send({"type": "lifespan.startup.failed", "message": "no cache"})
                    return
                self.events.append("startup")
                await send({"type": "lifespan.startup.complete"})
            else:
                self.events.append("shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return


@contextlib.asynccontextmanager
async def protecting(
    tmp_path: Path, app: ASGIApp, **overrides: Any
) -> AsyncIterator[tuple[ASGIApp, Doorman]]:
    """``app`` behind doorman, with the users alice and root (an admin)."""
    options = {"db": migrated_sqlite(tmp_path / "doorman.db"), "secret": SECRET, **overrides}
    settings = load_settings(environ={}, overrides=options)
    doorman, store = assemble(settings, [SECRET])
    doorman.hasher = doorman.users.hasher = PasswordHasher(time_cost=1, memory_cost=1024)
    await doorman.startup()
    await doorman.create_user("alice", PASSWORD)
    await doorman.create_user("root", PASSWORD, admin=True)
    try:
        yield create_app(settings, doorman=doorman, store=store, protected=app), doorman
    finally:
        await store.close()
        await doorman.close()
        await doorman.engine.dispose()


@pytest.fixture
def echo() -> EchoApp:
    return EchoApp()


@pytest.fixture
async def protected(tmp_path: Path, echo: EchoApp) -> AsyncIterator[ASGIApp]:
    async with protecting(tmp_path, echo, public_paths=["/about/", "/health"]) as (app, _):
        yield app


async def sign_in(browser: httpx.AsyncClient, username: str = "alice", **extra: str) -> None:
    token = (await browser.get("/-/whoami?csrf=1")).json()["csrftoken"]
    data = {"username": username, "password": PASSWORD, "csrftoken": token, **extra}
    response = await browser.post("/-/login", data=data)
    assert response.status_code == 302, response.text


# -- who gets through ------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_anonymous_browser_goes_to_the_login_page_and_comes_back(
    protected: ASGIApp, echo: EchoApp
) -> None:
    async with client(protected) as browser:
        refused = await browser.get("/notes/7?sort=new", headers=HTML)
        assert refused.status_code == 302
        location = urlsplit(refused.headers["location"])
        assert location.path == "/-/login"
        assert parse_qs(location.query) == {"next": ["/notes/7?sort=new"]}
        assert echo.seen == [], "the app never saw the anonymous request"

        login_page = await browser.get(refused.headers["location"], headers=HTML)
        assert login_page.status_code == 200
        assert 'name="next" value="/notes/7?sort=new"' in login_page.text
        token = re.search(r'name="csrftoken" value="([^"]+)"', login_page.text)
        assert token is not None
        data = {"username": "alice", "password": PASSWORD, "csrftoken": token[1]}
        signed_in = await browser.post("/-/login", data={**data, "next": "/notes/7?sort=new"})
        assert signed_in.status_code == 302
        assert signed_in.headers["location"] == "/notes/7?sort=new"

        page = await browser.get("/notes/7?sort=new", headers=HTML)
    assert page.status_code == 200
    seen = page.json()
    assert seen["path"] == "/notes/7"
    assert seen["actor"]["username"] == "alice" and seen["actor"]["via"] == "session"
    assert seen["user"] == "alice", "scope['user'] is there for Starlette apps"


@pytest.mark.anyio
async def test_an_api_client_gets_401_json(protected: ASGIApp, echo: EchoApp) -> None:
    async with client(protected) as api:
        for method in ("GET", "POST", "DELETE"):
            answer = await api.request(method, "/api/notes", headers=JSON)
            assert answer.status_code == 401, method
            assert answer.json() == {"error": "Sign in to continue."}
        bare = await api.get("/api/notes")  # no Accept at all
        assert bare.status_code == 401 and bare.headers["content-type"] == "application/json"
        bad_token = await api.get("/api/notes", headers={"authorization": "Bearer nonsense"})
        assert bad_token.status_code == 401
        assert bad_token.headers["www-authenticate"] == "Bearer"
    assert echo.seen == []


@pytest.mark.anyio
async def test_a_browser_post_without_a_session_is_refused_not_redirected(
    protected: ASGIApp, echo: EchoApp
) -> None:
    async with client(protected) as browser:
        answer = await browser.post("/notes", data={"text": "hi"}, headers=HTML)
    assert answer.status_code == 401 and "Sign in" in answer.text
    assert echo.seen == []


@pytest.mark.anyio
async def test_an_api_token_gets_through(tmp_path: Path, echo: EchoApp) -> None:
    async with protecting(tmp_path, echo) as (app, doorman):
        alice = await doorman.users.by_username("alice")
        assert alice is not None
        _, text = await doorman.tokens.create(alice)
        async with client(app) as api:
            answer = await api.get("/api/notes", headers={"authorization": f"Bearer {text}"})
    assert answer.status_code == 200
    assert answer.json()["actor"]["via"] == "token"


@pytest.mark.anyio
async def test_public_paths_need_no_sign_in_but_still_see_the_actor(
    protected: ASGIApp, echo: EchoApp
) -> None:
    async with client(protected) as browser:
        for path in ("/about", "/about/", "/about/team", "/health"):
            answer = await browser.get(path, headers=HTML)
            assert answer.status_code == 200, path
            assert answer.json()["actor"] is None
        # httpx removes literal dot segments; encoded, they reach the server as dots
        for path in ("/abouts", "/healthz", "/about/%2e%2e/notes", "/about/%2E/x", "/", "/x"):
            assert (await browser.get(path, headers=JSON)).status_code == 401, path
        await sign_in(browser)
        assert (await browser.get("/about", headers=JSON)).json()["actor"]["id"] == "alice"


@pytest.mark.parametrize(
    ("path", "public"),
    [
        ("/static", True),
        ("/static/", True),
        ("/static/app.css", True),
        ("/staticx", False),
        ("/static/../admin", False),
        ("/static/..", False),
        ("/static/./x", False),
        ("/static/..\\secret", False),  # some apps read "\\" as "/"
        ("/static/..;/secret", False),  # Java servers cut ";..." from a segment
        ("/static/%2e%2e/secret", False),  # an app that decodes again
        ("/static/a%3bb", False),
        ("/static/..?", False),  # from %3f: a proxy that builds a URL of it asks for "/"
        ("/static/..#", False),
        ("/static/a%20b.css", True),
        ("/", False),
        ("/other/static/x", False),
    ],
)
def test_is_public(path: str, public: bool) -> None:
    assert is_public(path, ["/static/"]) is public
    assert is_public(path, ["/static"]) is public
    assert is_public(path, []) is False


def test_the_raw_path_counts_too() -> None:
    """What the client sent, as an app that routes on ``raw_path`` would read it."""
    assert is_public("/static/x", ["/static/"], b"/static/x?a=1;b=2")
    assert not is_public("/static/x", ["/static/"], b"/static/%252e%252e/secret")
    assert not is_public("/static/x", ["/static/"], b"/static/..%5csecret")


def test_the_public_paths_setting_is_checked() -> None:
    assert Settings.from_mapping({"public_paths": "/static/, /health"}).public_paths == (
        "/static/",
        "/health",
    )
    for bad in (["static/"], ["/a b"], ["/x/../y"], ["/x?y"], [3], "/ok,relative"):
        with pytest.raises(ConfigError, match="public_paths"):
            Settings.from_mapping({"public_paths": bad})
    assert Settings.from_mapping({}).public_paths == ()


@pytest.mark.anyio
async def test_the_view_permission_decides_who_gets_through(tmp_path: Path, echo: EchoApp) -> None:
    rules = {"view": {"allow": {"id": ["root"]}}}  # not alice
    async with protecting(tmp_path, echo, permissions=rules) as (app, _):
        async with client(app) as browser:
            await sign_in(browser)
            page = await browser.get("/notes", headers=HTML)
            assert page.status_code == 403 and "Not for you" in page.text
            api = await browser.get("/notes", headers=JSON)
            assert api.status_code == 403 and api.json() == {"error": "You may not do this (view)."}
        assert echo.seen == []
        async with client(app) as browser:
            await sign_in(browser, "root")
            assert (await browser.get("/notes", headers=JSON)).json()["actor"]["id"] == "root"


@pytest.mark.anyio
async def test_doorman_keeps_its_routes_and_the_app_gets_the_rest(
    protected: ASGIApp, echo: EchoApp
) -> None:
    async with client(protected) as browser:
        assert (await browser.get("/-/whoami")).json() == {"actor": None}
        login = await browser.get("/-/login", headers=HTML)
        assert login.status_code == 200 and login.headers["x-frame-options"] == "DENY"
        assert (await browser.get("/-/nothing-here")).status_code == 404
        await sign_in(browser)
        assert (await browser.get("/-/whoami")).json()["actor"]["username"] == "alice"
        home = await browser.get("/", headers=HTML)
        assert home.json()["path"] == "/", "/ is the app's, not doorman's home"
        assert "x-frame-options" not in home.headers, "doorman's headers stay on its own pages"
        prefix_like = await browser.get("/-nope", headers=HTML)
        assert prefix_like.json()["path"] == "/-nope"
        token = (await browser.get("/-/whoami?csrf=1")).json()["csrftoken"]
        assert (await browser.post("/-/logout", data={"csrftoken": token})).status_code == 303
        assert (await browser.get("/", headers=JSON)).status_code == 401
    assert [s["path"] for s in echo.seen] == ["/", "/-nope"]


@pytest.mark.anyio
async def test_a_custom_route_prefix(tmp_path: Path, echo: EchoApp) -> None:
    async with protecting(tmp_path, echo, route_prefix="/auth/") as (app, _), client(app) as web:
        refused = await web.get("/-/whoami", headers=HTML)
        assert refused.headers["location"] == "/auth/login?next=%2F-%2Fwhoami"
        assert (await web.get("/auth/whoami")).json() == {"actor": None}


def test_doorman_needs_a_route_prefix_of_its_own(echo: EchoApp) -> None:
    with pytest.raises(ConfigError, match="route_prefix = '/': doorman protect needs a path"):
        ProtectedApp(echo, echo, prefix="/")


# -- websockets ------------------------------------------------------------------------


async def websocket(app: ASGIApp, path: str, headers: list[tuple[bytes, bytes]]) -> list[Message]:
    """Open a websocket to ``app`` by hand (httpx has none); every message the app sent."""
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
        "subprotocols": [],
    }
    incoming: asyncio.Queue[Message] = asyncio.Queue()
    await incoming.put({"type": "websocket.connect"})
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "websocket.close":
            await incoming.put({"type": "websocket.disconnect", "code": message["code"]})

    await asyncio.wait_for(app(scope, incoming.get, send), timeout=10)
    return sent


@pytest.mark.anyio
async def test_websockets_need_a_signed_in_actor(protected: ASGIApp, echo: EchoApp) -> None:
    assert await websocket(protected, "/live", []) == [{"type": "websocket.close", "code": 1008}]
    assert echo.seen == []
    async with client(protected) as browser:
        await sign_in(browser)
        cookie = f"{COOKIE}={browser.cookies[COOKIE]}".encode()
    sent = await websocket(protected, "/live", [(b"cookie", cookie)])
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert sent[1]["text"] == "alice"


# -- lifespan --------------------------------------------------------------------------


class Lifespan:
    """Speaks the lifespan protocol to an app, as a server does."""

    def __init__(self, app: ASGIApp) -> None:
        self.incoming: asyncio.Queue[Message] = asyncio.Queue()
        self.answers: asyncio.Queue[Message] = asyncio.Queue()
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self.task = asyncio.ensure_future(app(scope, self.incoming.get, self.answers.put))

    async def step(self, step: str) -> Message:
        await self.incoming.put({"type": f"lifespan.{step}"})
        return await asyncio.wait_for(self.answers.get(), timeout=10)

    async def finished(self) -> None:
        await asyncio.wait_for(self.task, timeout=10)


async def lifespan(app: ASGIApp, *steps: str) -> list[Message]:
    """Send ``lifespan.<step>`` for each step until one fails; the answers."""
    server = Lifespan(app)
    found = []
    for step in steps:
        found.append(await server.step(step))
        if found[-1]["type"].endswith(".failed"):
            break
    await server.finished()
    return found


@contextlib.asynccontextmanager
async def started(app: ASGIApp) -> AsyncIterator[None]:
    """``app`` between its lifespan start-up and shut-down."""
    server = Lifespan(app)
    assert await server.step("startup") == {"type": "lifespan.startup.complete"}
    yield
    assert await server.step("shutdown") == {"type": "lifespan.shutdown.complete"}
    await server.finished()


class StartupRecorder:
    def __init__(self) -> None:
        self.started = 0

    @hookimpl
    def startup(self) -> None:
        self.started += 1


@pytest.mark.anyio
async def test_lifespan_reaches_doorman_and_the_app(tmp_path: Path, echo: EchoApp) -> None:
    async with protecting(tmp_path, echo) as (app, doorman):
        recorder = StartupRecorder()
        doorman.plugins.register(recorder)
        answers = await lifespan(app, "startup", "shutdown")
        assert [a["type"] for a in answers] == [
            "lifespan.startup.complete",
            "lifespan.shutdown.complete",
        ]
        assert echo.events == ["startup", "shutdown"]
        assert recorder.started == 1, "doorman's startup hooks ran"


@pytest.mark.anyio
async def test_an_app_without_lifespan_still_starts(tmp_path: Path) -> None:
    bare = EchoApp(lifespan=False)
    async with protecting(tmp_path, bare, public_paths=["/"]) as (app, _):
        answers = await lifespan(app, "startup", "shutdown")
        assert [a["type"] for a in answers] == [
            "lifespan.startup.complete",
            "lifespan.shutdown.complete",
        ]
        async with client(app) as browser:
            assert (await browser.get("/x")).json()["path"] == "/x"


@pytest.mark.anyio
async def test_a_failed_app_startup_fails_the_server_startup(tmp_path: Path) -> None:
    failing = EchoApp(fail_startup=True)
    async with protecting(tmp_path, failing) as (app, _):
        [answer] = await lifespan(app, "startup")
    assert answer == {
        "type": "lifespan.startup.failed",
        "message": "the protected app: no cache",
    }


class BrokenStartup:
    @hookimpl
    def startup(self) -> None:
        raise RuntimeError("the plugin could not start")


@pytest.mark.anyio
async def test_a_failed_doorman_startup_fails_the_server_startup(
    tmp_path: Path, echo: EchoApp
) -> None:
    async with protecting(tmp_path, echo) as (app, doorman):
        doorman.plugins.register(BrokenStartup())
        [answer] = await lifespan(app, "startup")
    assert answer == {
        "type": "lifespan.startup.failed",
        "message": "RuntimeError: the plugin could not start",
    }
    assert echo.events == [], "the app is not started after doorman failed"


# -- finding the app -------------------------------------------------------------------


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory of app modules; sys.path and sys.modules are as before afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    directory = tmp_path / "apps"
    directory.mkdir()
    (directory / "good_app.py").write_text(
        "async def app(scope, receive, send):\n    pass\n\n"
        "def make_app():\n    return app\n\n"
        "def broken_factory():\n    raise RuntimeError('no config')\n\n"
        "class Holder:\n    inner = app\n\n"
        "number = 42\n"
    )
    (directory / "raising_app.py").write_text("raise ValueError('bad\\nconfig')\n")
    (directory / "importing_app.py").write_text("import not_installed_anywhere\n")
    yield directory
    for name in ("good_app", "raising_app", "importing_app"):
        sys.modules.pop(name, None)


@pytest.mark.parametrize(
    ("spec", "factory", "fragment"),
    [
        ("good_app", False, "give the app as MODULE:APP"),
        ("good_app:", False, "give the app as MODULE:APP"),
        ("no_such_module:app", False, "no module named 'no_such_module'"),
        ("good_app:nothing", False, "module 'good_app' has no 'nothing'"),
        ("good_app:number", False, "good_app:number is a int, not an ASGI app"),
        ("good_app:make_app", False, "takes no arguments: if it returns the app, add --factory"),
        ("good_app:broken_factory", True, "good_app:broken_factory(): RuntimeError: no config"),
        ("raising_app:app", False, "importing 'raising_app' failed: ValueError: bad config"),
        ("importing_app:app", False, "ModuleNotFoundError: No module named 'not_installed"),
    ],
)
def test_a_bad_app_is_one_clear_error(
    app_dir: Path, spec: str, factory: bool, fragment: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        AppTarget(spec, factory=factory, app_dir=str(app_dir)).load()
    assert fragment in str(raised.value) and "\n" not in str(raised.value)


def test_an_app_is_found_like_uvicorn_finds_it(app_dir: Path) -> None:
    module = AppTarget("good_app:app", app_dir=str(app_dir)).load()
    assert AppTarget("good_app:make_app", factory=True, app_dir=str(app_dir)).load() is module
    assert AppTarget("good_app:Holder.inner", app_dir=str(app_dir)).load() is module


@pytest.fixture
def uvicorn_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record uvicorn.run instead of serving; the variables for workers are restored.

    With one worker it says "running" as uvicorn does (and serve prints the set-up
    link); with several the link waits for a worker to listen, which none does here.
    """
    import uvicorn

    calls: list[dict[str, Any]] = []

    def run(app: object, **options: Any) -> None:
        calls.append({"app": app, **options})
        if options["workers"] == 1:
            say_running(options)

    monkeypatch.setenv("DOORMAN_SERVE_SETTINGS", "")
    monkeypatch.setenv("DOORMAN_PROTECT_APP", "")
    monkeypatch.setattr(uvicorn, "run", run)
    monkeypatch.setattr(sys, "path", list(sys.path))
    return calls


def protect_cli(tmp_path: Path, *args: str) -> Any:
    env = {s.env: None for s in SETTINGS}
    env.update(DOORMAN_DB=str(tmp_path / "cli.db"), DOORMAN_CONFIG=None)
    return CliRunner().invoke(main, ["protect", *args], env=env, prog_name="doorman")


def test_the_command_stops_with_one_line_on_a_bad_app(
    tmp_path: Path, app_dir: Path, uvicorn_calls: list[Any]
) -> None:
    for args in (["nowhere:app"], ["raising_app:app", "--app-dir", str(app_dir)]):
        result = protect_cli(tmp_path, *args)
        assert result.exit_code == 1 and "Traceback" not in result.output
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("Error: ")
    assert uvicorn_calls == []
    assert not (tmp_path / "cli.db").exists(), "the app is checked before the database"


async def browse_members(make_app: Any) -> None:
    """The members example behind sign-in, as uvicorn would serve it (factory in the loop)."""
    app = make_app()
    async with started(app), client(app) as browser:
        refused = await browser.get("/", headers=HTML)
        assert refused.headers["location"] == "/-/login?next=%2F"
        assert (await browser.get("/-/whoami")).json() == {"actor": None}
        about = await browser.get("/about", headers=HTML)
        assert about.status_code == 200 and "Anyone may read this" in about.text


@pytest.mark.e2e
def test_the_command_serves_the_app_in_one_process(
    tmp_path: Path, uvicorn_calls: list[dict[str, Any]]
) -> None:
    args = ["examples.members:app", "--app-dir", str(ROOT), "--public-paths", "/about"]
    port = free_port()
    result = protect_cli(tmp_path, *args, "--port", str(port))
    assert result.exit_code == 0, result.output
    assert f"Create the first admin at http://127.0.0.1:{port}/-/setup?token=" in result.stdout
    [call] = uvicorn_calls
    assert call["factory"] is True and call["workers"] == 1 and call["port"] == port
    assert os.environ["DOORMAN_SERVE_SETTINGS"] == "", "one process: nothing handed on"
    asyncio.run(browse_members(call["app"]))


def test_workers_import_the_app_themselves(
    tmp_path: Path, uvicorn_calls: list[dict[str, Any]]
) -> None:
    args = ["examples.members:app", "--app-dir", str(ROOT), "--workers", "2"]
    args += ["--port", str(free_port())]
    result = protect_cli(tmp_path, *args, "--public-paths", "/about")
    assert result.exit_code == 0, result.output
    [call] = uvicorn_calls
    assert call["app"] == "doorman.server.workers:protect_app"
    assert call["factory"] is True and call["workers"] == 2
    handed = json.loads(os.environ["DOORMAN_PROTECT_APP"])
    assert handed == {"spec": "examples.members:app", "factory": False, "app_dir": str(ROOT)}
    assert Settings.from_json(os.environ["DOORMAN_SERVE_SETTINGS"]).secret, "one secret for all"
    asyncio.run(browse_members(protect_app))  # what each worker does


def test_the_docs_show_the_example_that_is_tested() -> None:
    page = (ROOT / "docs" / "protect.md").read_text()
    [example] = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    assert example == (ROOT / "examples" / "members.py").read_text()
    assert "doorman protect examples.members:app --public-paths /about" in page


# -- a real server ---------------------------------------------------------------------


def wait_until_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/-/health", timeout=1).status_code == 200:
                return
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"doorman protect did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.1)


@pytest.mark.e2e
def test_doorman_protect_in_a_real_process(tmp_path: Path) -> None:
    """Two uvicorn workers, the real login form, the example app showing who signed in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOORMAN_")}
    env["PYTHONUNBUFFERED"] = "1"
    db = str(tmp_path / "doorman.db")
    doorman = [sys.executable, "-m", "doorman"]
    created = subprocess.run(
        [*doorman, "users", "create", "alice", "--password-stdin", "--db", db],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    port, log = free_port(), tmp_path / "server.log"
    command = [*doorman, "protect", "examples.members:app", "--app-dir", str(ROOT), "--db", db]
    command += ["--port", str(port), "--workers", "2", "--public-paths", "/about"]
    with log.open("wb") as output:  # cwd is not the checkout: --app-dir finds the example
        process = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process, log)
        with httpx.Client(base_url=url, timeout=10) as browser:
            refused = browser.get("/", headers=HTML)
            assert refused.status_code == 302
            assert refused.headers["location"] == "/-/login?next=%2F"
            form = browser.get(refused.headers["location"], headers=HTML)
            token = re.search(r'name="csrftoken" value="([^"]+)"', form.text)
            assert token is not None, form.text
            data = {"username": "alice", "password": PASSWORD, "csrftoken": token[1], "next": "/"}
            signed_in = browser.post("/-/login", data=data, headers=HTML)
            assert signed_in.status_code == 302 and signed_in.headers["location"] == "/"
            assert COOKIE in browser.cookies
            for _ in range(4):  # whichever worker answers
                page = browser.get("/", headers=HTML)
                assert page.status_code == 200 and "<h1>Hello, alice</h1>" in page.text
        with httpx.Client(base_url=url, timeout=10) as stranger:
            assert "Anyone may read this" in stranger.get("/about", headers=HTML).text
            assert stranger.get("/", headers=JSON).status_code == 401
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            status = process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(15)
            pytest.fail(f"doorman protect did not stop:\n{log.read_text(errors='replace')}")
    text = log.read_text(errors="replace")
    assert status in (0, -signal.SIGTERM), text
    assert "Traceback" not in text and "Application startup complete." in text, text
    assert PASSWORD not in text and token[1] not in text, "no secrets in the log"
