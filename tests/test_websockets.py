"""Cross-site WebSocket hijacking: a page of another origin never opens a websocket as the user.

``WebSocketOriginMiddleware`` in process first (what it answers, what it logs),
then real uvicorn servers on loopback driven by the ``websockets`` client,
each handshake with a valid session cookie: the sign-in server, and the
Starlette and FastAPI examples of docs/fastapi.md. ``doorman protect`` is in
test_protect_server.py, the gate in test_gate.py, Chromium in
test_browser_websockets.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from doorman import Doorman, SessionMiddleware, WebSocketOriginMiddleware, hookimpl
from doorman._types import Message, Receive, Scope, Send
from doorman.config import assemble, load_settings
from doorman.events import WebSocketRefusedEvent
from doorman.server.app import create_app
from doorman.stores import SQLStore
from doorman.testing import session_cookie_for

from .helpers import COOKIE
from .servers import PASSWORD, SECRET, in_own_loop
from .test_deploy import uvicorn_on_loopback

ROOT = Path(__file__).resolve().parent.parent
ALLOWED = "https://app.example.test"
#: Origins a page can have that may not open a websocket with the user's cookie.
FOREIGN = ["https://evil.example", "null", "https://app.example.test.evil.example"]


def handshake(url: str, *, origin: str | None = None, cookie: str | None = None) -> str | int:
    """The first message of a websocket to ``url``, or the HTTP status refusing the handshake."""
    headers = {"cookie": f"{COOKIE}={cookie}"} if cookie else {}
    try:
        with connect(
            url,
            origin=origin,  # type: ignore[arg-type]
            additional_headers=headers,
            proxy=None,
            open_timeout=5,
            close_timeout=2,
        ) as socket:
            message = socket.recv(timeout=5)
    except InvalidStatus as refused:
        return refused.response.status_code
    return message if isinstance(message, str) else message.decode()


# -- the middleware, in process ----------------------------------------------------------


class Recorder:
    """An app that accepts every websocket, and notes each scope it is given."""

    def __init__(self) -> None:
        self.seen: list[Scope] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.seen.append(scope)
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})


async def open_socket(
    app: Any, headers: list[tuple[bytes, bytes]], host: bytes = b"app.example.test", **scope: Any
) -> list[Message]:
    full = {
        "type": "websocket",
        "scheme": "ws",
        "path": "/live",
        "headers": [(b"host", host), *headers],
        "client": ("203.0.113.9", 50000),
        **scope,
    }
    incoming = [{"type": "websocket.connect"}]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(full, receive, send)
    return sent


@pytest.mark.anyio
async def test_a_foreign_origin_gets_403_and_the_app_never_sees_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    inner = Recorder()
    app = WebSocketOriginMiddleware(inner, allowed_origins=["https://admin.example.test"])
    cookie = (b"cookie", b"doorman_session=the-secret-cookie-value")
    extension = {"extensions": {"websocket.http.response": {}}}
    with caplog.at_level(logging.WARNING, logger="doorman.security"):
        # its own host with another scheme or port is another origin; so is an empty one
        for origin in [*FOREIGN, "https://app.example.test", "http://app.example.test:8080", ""]:
            sent = await open_socket(app, [cookie, (b"origin", origin.encode())], **extension)
            assert [m["type"] for m in sent] == [
                "websocket.http.response.start",
                "websocket.http.response.body",
            ], origin
            assert sent[0]["status"] == 403
    assert inner.seen == []
    events = [record.event for record in caplog.records]  # type: ignore[attr-defined]
    assert all(isinstance(event, WebSocketRefusedEvent) for event in events)
    assert [event.origin for event in events][:3] == FOREIGN
    assert events[0].path == "/live" and events[0].client == "203.0.113.9"
    assert "the-secret-cookie-value" not in caplog.text
    assert "refused a websocket to '/live' from origin 'https://evil.example'" in caplog.text


@pytest.mark.anyio
async def test_without_the_extension_the_handshake_is_closed_before_accept() -> None:
    inner = Recorder()
    app = WebSocketOriginMiddleware(inner)
    sent = await open_socket(app, [(b"origin", b"https://evil.example")])
    assert sent == [{"type": "websocket.close", "code": 1008}]
    two = [(b"origin", b"https://app.example.test"), (b"origin", b"https://evil.example")]
    assert await open_socket(app, two) == [{"type": "websocket.close", "code": 1008}]
    assert inner.seen == []


@pytest.mark.anyio
async def test_the_own_origin_allowed_ones_and_programs_pass() -> None:
    inner = Recorder()
    app = WebSocketOriginMiddleware(inner, allowed_origins=["https://*.example.org"])
    for headers in (
        [(b"origin", b"http://app.example.test")],  # its own: ws:// and the Host header
        [(b"origin", b"https://admin.example.org")],
        [],  # no Origin: a program, judged by its credentials further in
    ):
        sent = await open_socket(app, headers)
        assert sent[0] == {"type": "websocket.accept"}, headers
    own_tls = [(b"origin", b"https://app.example.test")]
    assert (await open_socket(app, own_tls, scheme="wss"))[0] == {"type": "websocket.accept"}
    assert len(inner.seen) == 4
    plain_http = await open_socket(app, [(b"origin", b"https://evil.example")], type="http")
    assert plain_http[0] == {"type": "websocket.accept"}, "http requests pass untouched"


def test_a_bad_allowed_origin_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="is not an origin"):
        WebSocketOriginMiddleware(Recorder(), allowed_origins=["app.example.test"])


# -- the sign-in server under uvicorn ------------------------------------------------------


class LiveSocket:
    """A plugin that answers every websocket that gets past doorman's middleware."""

    def __init__(self) -> None:
        self.reached: list[str] = []

    @hookimpl
    def asgi_wrapper(self, doorman: Any) -> Any:
        def wrap(app: Any) -> Any:
            async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
                if scope["type"] != "websocket":
                    await app(scope, receive, send)
                    return
                self.reached.append(dict(scope["headers"]).get(b"origin", b"").decode())
                await receive()
                await send({"type": "websocket.accept"})
                await send({"type": "websocket.send", "text": "reached"})
                await send({"type": "websocket.close", "code": 1000})

            return wrapped

        return wrap


def test_the_sign_in_server_refuses_foreign_origins(tmp_path: Path) -> None:
    overrides = {
        "db": str(tmp_path / "doorman.db"),
        "secret": SECRET,
        "public_url": "https://auth.example.test",
        "allowed_origins": [ALLOWED],
    }
    settings = load_settings(environ={}, overrides=overrides)
    doorman, store = assemble(settings, [SECRET])
    plugin = LiveSocket()
    doorman.plugins.register(plugin)
    cookie = cookie_for_alice(settings.db)
    app = create_app(settings, doorman=doorman, store=store)
    with uvicorn_on_loopback(app, lifespan="on", ws="websockets-sansio") as port:
        url = f"ws://127.0.0.1:{port}/-/live"
        for origin in FOREIGN:
            assert handshake(url, origin=origin, cookie=cookie) == 403, origin
        assert plugin.reached == []
        allowed = [f"http://127.0.0.1:{port}", "https://auth.example.test", ALLOWED, None]
        for origin in allowed:
            assert handshake(url, origin=origin, cookie=cookie) == "reached", origin
    assert plugin.reached == [f"http://127.0.0.1:{port}", "https://auth.example.test", ALLOWED, ""]


def cookie_for_alice(db: str) -> str:
    """A session cookie for a new user alice, made with doorman objects of its own."""

    async def make() -> str:
        doorman = Doorman(db, secret=SECRET)
        store = SQLStore(db)
        try:
            await doorman.startup()
            user = await doorman.create_user("alice", PASSWORD)
            middleware = SessionMiddleware(Recorder(), secret=SECRET, store=store)
            _, value = await session_cookie_for(None, user, doorman=doorman, middleware=middleware)
        finally:
            await store.close()
            await doorman.close()
        return value

    result: str = in_own_loop(make())
    return result


# -- the library middleware: the examples of docs/fastapi.md -------------------------------


def docs_example(kind: str) -> str:
    page = (ROOT / "docs" / "fastapi.md").read_text()
    section = page.split("## WebSockets", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return next(block for block in blocks if f"from {kind}" in block.split("\n\n")[1])


@contextlib.contextmanager
def example_app(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Any, str]]:
    db = str(tmp_path / "accounts.db")
    cookie = cookie_for_alice(db)
    monkeypatch.setenv("DOORMAN_DB", db)
    monkeypatch.setenv("DOORMAN_SECRET", SECRET)
    module = types.ModuleType(f"docs_{kind}_websockets")
    exec(compile(docs_example(kind), f"docs/fastapi.md ({kind})", "exec"), module.__dict__)
    [store] = [m.kwargs["store"] for m in module.app.user_middleware if "store" in m.kwargs]
    yield closing(module.app, store, module.doorman), cookie


def closing(app: Any, *owned: Any) -> Any:
    """``app``, which closes ``owned`` as it shuts down: in the server's own event loop."""

    async def closing_app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return

        async def send_and_close(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                for thing in owned:
                    await thing.close()
            await send(message)

        await app(scope, receive, send_and_close)

    return closing_app


@pytest.mark.parametrize("kind", ["starlette", "fastapi"])
def test_the_documented_middleware_refuses_foreign_origins(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (
        example_app(kind, tmp_path, monkeypatch) as (app, cookie),
        uvicorn_on_loopback(app, lifespan="on", ws="websockets-sansio") as port,
    ):
        url = f"ws://127.0.0.1:{port}/live"
        for origin in FOREIGN:
            assert handshake(url, origin=origin, cookie=cookie) == 403, origin
        for origin in (f"http://127.0.0.1:{port}", "https://admin.example.com"):
            assert handshake(url, origin=origin, cookie=cookie) == "Hello, alice", origin
        # A program: no Origin, judged by its credentials.
        assert handshake(url, cookie=cookie) == "Hello, alice"
        assert handshake(url) == 403, "no credentials, no socket"


#: Hosts a handshake may name, and the origins that are then its own.
OWN = {
    b"app.example.test": {b"http://app.example.test", b"http://app.example.test:80"},
    b"app.example.test:80": {b"http://app.example.test", b"http://app.example.test:80"},
    b"[::1]:8000": {b"http://[::1]:8000"},
    b"evil example": set(),
    b"": set(),
}
ADMIN = {b"https://admin.example.test", b"https://admin.example.test:443"}
ORIGIN_PIECES = [*ADMIN, *set().union(*OWN.values()), b"null", b"", b"https://evil.example"]


@settings(max_examples=200, deadline=None)
@given(
    origins=st.lists(st.binary(max_size=60) | st.sampled_from(ORIGIN_PIECES), max_size=2),
    host=st.sampled_from(sorted(OWN)),
)
def test_any_origin_header_gets_an_answer_and_only_allowed_ones_get_in(
    origins: list[bytes], host: bytes
) -> None:
    inner = Recorder()
    app = WebSocketOriginMiddleware(inner, allowed_origins=["https://admin.example.test"])
    sent = asyncio.run(open_socket(app, [(b"origin", o) for o in origins], host=host))
    allowed = ADMIN | OWN[host]
    let_in = not origins or (len(origins) == 1 and origins[0].lower() in allowed)
    assert (sent[0] == {"type": "websocket.accept"}) is let_in, (origins, host, sent)
    assert len(inner.seen) == let_in
