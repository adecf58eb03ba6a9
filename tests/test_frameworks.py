"""doorman under real frameworks and a real server: Starlette, FastAPI, websockets, uvicorn."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.datastructures import Secret
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware as StarletteSessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

import doorman
from doorman import CookieStore, MemoryStore, Session, SessionMiddleware, get_session
from doorman._types import Receive, Scope, Send
from doorman.stores import SessionStore
from doorman.stores.sql import SQLStore

from .conftest import SECRET
from .helpers import COOKIE, TestClient, client, only_set_cookie, parse_set_cookie, vary

# -- Starlette drop-in ------------------------------------------------------------


def starlette_app(middleware: type, how: str, prefix: str = "", **options: Any) -> Starlette:
    """The same small app, with either session middleware, added either way."""

    async def set_(request: Request) -> JSONResponse:
        request.session.update(request.query_params)
        return JSONResponse(dict(request.session))

    async def get(request: Request) -> JSONResponse:
        return JSONResponse(dict(request.session))

    async def pop(request: Request) -> JSONResponse:
        request.session.pop(request.query_params["key"], None)
        return JSONResponse(dict(request.session))

    async def clear(request: Request) -> JSONResponse:
        request.session.clear()
        return JSONResponse(dict(request.session))

    async def untouched(request: Request) -> JSONResponse:
        return JSONResponse({})

    routes = [
        Route(prefix + "/set", set_),
        Route(prefix + "/get", get),
        Route(prefix + "/pop", pop),
        Route(prefix + "/clear", clear),
        Route(prefix + "/untouched", untouched),
    ]
    if how == "Middleware":
        return Starlette(routes=routes, middleware=[Middleware(middleware, **options)])
    app = Starlette(routes=routes)
    app.add_middleware(middleware, **options)
    return app


STEPS = [
    "/get",
    "/set?user=alice",
    "/get",
    "/untouched",
    "/set?theme=dark",
    "/pop?key=user",
    "/get",
    "/clear",
    "/get",
    "/clear",
    "/set?user=bob",
    "/get",
]

CONFIGURATIONS = [
    pytest.param({}, "", "http://testserver", id="defaults"),
    pytest.param(
        {
            "session_cookie": "sid",
            "max_age": 3600,
            "path": "/app",
            "same_site": "strict",
            "https_only": True,
            "domain": "example.com",
        },
        "/app",
        "https://www.example.com",
        id="all-options",
    ),
    pytest.param({"max_age": None, "same_site": "none"}, "", "https://testserver", id="no-max-age"),
]


def normalised(attributes: dict[str, str]) -> set[tuple[str, str]]:
    return {(name.lower(), value.lower()) for name, value in attributes.items()}


async def run_steps(app: Starlette, prefix: str, base_url: str) -> list[dict[str, Any]]:
    seen = []
    async with client(app, base_url=base_url) as http:
        for step in STEPS:
            response = await http.get(prefix + step)
            cookies = [parse_set_cookie(h) for h in response.headers.get_list("set-cookie")]
            seen.append(
                {
                    "step": step,
                    "status": response.status_code,
                    "body": response.json(),
                    "vary": vary(response),
                    "cookie names": [name for name, _, _ in cookies],
                    "attributes": [normalised(attributes) for _, _, attributes in cookies],
                    "jar": sorted(http.cookies.keys()),
                }
            )
    return seen


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["Middleware", "add_middleware"])
@pytest.mark.parametrize(("options", "prefix", "base_url"), CONFIGURATIONS)
async def test_starlette_drop_in(
    how: str, options: dict[str, Any], prefix: str, base_url: str
) -> None:
    theirs = starlette_app(StarletteSessionMiddleware, how, prefix, secret_key=SECRET, **options)
    ours = starlette_app(SessionMiddleware, how, prefix, secret_key=SECRET, **options)
    expected = await run_steps(theirs, prefix, base_url)
    actual = await run_steps(ours, prefix, base_url)
    for mine, starlettes in zip(actual, expected, strict=True):
        step = mine["step"]
        assert mine["status"] == starlettes["status"] == 200, step
        assert mine["body"] == starlettes["body"], step
        assert mine["vary"] == starlettes["vary"], step
        assert mine["cookie names"] == starlettes["cookie names"], step
        assert mine["jar"] == starlettes["jar"], step
        for our_attributes, their_attributes in zip(
            mine["attributes"], starlettes["attributes"], strict=True
        ):
            # A deletion: Starlette sends only an expiry in 1970; doorman adds Max-Age=0.
            extra = our_attributes - their_attributes - {("max-age", "0")}
            if base_url.startswith("https"):
                extra.discard(("secure", ""))  # doorman adds Secure under https
            assert extra == set(), step
            assert their_attributes - our_attributes == set(), step
    # The scenario exercised what it is meant to: writes, a read, a clear.
    assert expected[2]["body"] == {"user": "alice"}
    assert expected[8]["body"] == {}
    assert expected[-1]["body"] == {"user": "bob"}
    assert expected[1]["cookie names"] == [options.get("session_cookie", "session")]


@pytest.mark.anyio
async def test_starlette_secret_wrapper_is_accepted() -> None:
    app = starlette_app(SessionMiddleware, "Middleware", secret_key=Secret(SECRET))
    async with client(app) as http:
        response = await http.get("/set?user=alice")
        assert only_set_cookie(response)[0] == "session"
        assert (await http.get("/get")).json() == {"user": "alice"}


# Starlette's own cookies, carried over: tests/test_starlette_migration.py.


# -- FastAPI --------------------------------------------------------------------------


def session_of(request: Request) -> Session:
    return get_session(request)


@pytest.mark.anyio
async def test_fastapi_request_session() -> None:
    app = FastAPI()
    app.add_middleware(SessionMiddleware, secret=SECRET, store=MemoryStore())

    @app.post("/count")
    async def count(request: Request) -> dict[str, int]:
        request.session["n"] = request.session.get("n", 0) + 1
        return {"n": request.session["n"]}

    @app.get("/whoami")
    async def whoami(session: Session = Depends(session_of)) -> dict[str, Any]:  # noqa: B008
        return {"n": session.get("n")}

    async with client(app) as http:
        assert (await http.post("/count")).json() == {"n": 1}
        assert (await http.post("/count")).json() == {"n": 2}
        response = await http.get("/whoami")
        assert response.json() == {"n": 2}
        assert response.headers.get_list("set-cookie") == []
        assert only_set_cookie(await http.post("/count"))[0] == COOKIE
    async with client(app) as fresh:
        assert (await fresh.get("/whoami")).json() == {"n": None}


# -- websockets -----------------------------------------------------------------------


def websocket_app(store: SessionStore) -> Starlette:
    async def login(request: Request) -> JSONResponse:
        request.session["user"] = "alice"
        return JSONResponse({})

    async def get(request: Request) -> JSONResponse:
        return JSONResponse(dict(request.session))

    async def chat(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"user": websocket.session.get("user")})
        websocket.session["last_seen"] = "ws"
        await websocket.close()

    routes = [Route("/login", login), Route("/get", get), WebSocketRoute("/ws", chat)]
    return Starlette(
        routes=routes, middleware=[Middleware(SessionMiddleware, secret=SECRET, store=store)]
    )


@pytest.mark.parametrize("store", [CookieStore, MemoryStore])
def test_websocket_reads_the_session_of_an_earlier_request(store: type[SessionStore]) -> None:
    with TestClient(websocket_app(store())) as http:
        with http.websocket_connect("/ws") as websocket:
            assert websocket.receive_json() == {"user": None}
        http.get("/login")
        with http.websocket_connect("/ws") as websocket:
            assert websocket.receive_json() == {"user": "alice"}


def test_websocket_changes_after_the_handshake_are_saved_in_a_server_store() -> None:
    with TestClient(websocket_app(MemoryStore())) as http:
        http.get("/login")
        with http.websocket_connect("/ws") as websocket:
            assert websocket.receive_json() == {"user": "alice"}
        assert http.get("/get").json() == {"user": "alice", "last_seen": "ws"}


# -- a real server --------------------------------------------------------------------


def counter_app(store: SessionStore) -> SessionMiddleware:
    """Counts requests per session; handles lifespan itself (passed through by doorman)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await store.close()  # in the server's own event loop
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        session = get_session(scope)
        session["n"] = session.get("n", 0) + 1
        body = str(session["n"]).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return SessionMiddleware(app, secret=SECRET, store=store)


@contextlib.contextmanager
def running(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port, in a thread; yield its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", http="h11", ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive(), "uvicorn stopped while starting"
            assert time.monotonic() < deadline, "uvicorn did not start within 10 s"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
    assert not thread.is_alive(), "uvicorn did not stop within 10 s"


@pytest.mark.e2e
@pytest.mark.parametrize("kind", ["cookie", "sqlite"])
def test_real_uvicorn_server(kind: str, tmp_path: Path) -> None:
    store = CookieStore() if kind == "cookie" else SQLStore(str(tmp_path / "sessions.db"))
    with running(counter_app(store)) as url:
        with httpx.Client(base_url=url, timeout=5) as http:
            first = http.get("/")
            assert first.text == "1"
            name, _, attributes = only_set_cookie(first)
            assert name == COOKIE
            assert {"httponly", "samesite", "path", "max-age"} <= attributes.keys()
            assert http.get("/").text == "2"
            assert http.get("/").text == "3"
        with httpx.Client(base_url=url, timeout=5) as stranger:
            assert stranger.get("/").text == "1"


def test_public_api_exports() -> None:
    for name in doorman.__all__:
        assert getattr(doorman, name) is not None
