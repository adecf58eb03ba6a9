"""ExistingCookiesGate in front of an app, against a real ``doorman serve`` on loopback.

The sign-in server is ``python -m doorman serve`` in a subprocess (users made
with ``doorman users create``), with ``public_url`` http://auth.example.com,
``cookie_domain`` example.com and ``allowed_origins`` http://app.example.com.
The gated app runs in-process; the test client routes app.example.com to it
and auth.example.com to the real server on 127.0.0.1, so the session cookie
(Domain=example.com) and the redirects are what a browser would see. Upstream
calls are counted with an event hook on the gate's httpx client. Nonsense
answers come from a tiny loopback server the test controls. Time is a clock
the test moves, never a sleep.
"""

from __future__ import annotations

import asyncio
import html
import inspect
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from doorman import ConfigError, TimestampSigner
from doorman._types import ASGIApp, Message, Receive, Scope, Send
from doorman.gate import ExistingCookiesGate
from doorman.server.redirects import NextSigner
from doorman.signing import b64encode

from .helpers import parse_set_cookie
from .servers import sign_in as sign_in_for_cookie
from .test_browser import PASSWORD, ROOT, SECRET, Server, free_port, stop, wait_until_healthy
from .test_deploy import uvicorn_on_loopback
from .test_protect_server import AMBIGUOUS_TARGETS, raw_get
from .test_websockets import FOREIGN, handshake

pytestmark = pytest.mark.e2e

APP = "http://app.example.com"
HTML = {"accept": "text/html,application/xhtml+xml"}
GATE = "doorman_gate"
OTHER_SECRET = "some-other-secret-" + "o" * 30


# -- the real sign-in server -----------------------------------------------------------


def server_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOORMAN_")}
    env.update(
        DOORMAN_SECRET=SECRET,
        DOORMAN_PUBLIC_URL="http://auth.example.com",
        DOORMAN_COOKIE_DOMAIN="example.com",
        DOORMAN_ALLOWED_ORIGINS=APP,  # a sign-in may return to the gated app
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    return env


def start_signin_server(directory: Path, *usernames: str) -> Server:
    """``doorman users create`` for each name, then ``doorman serve`` on a free port."""
    database = str(directory / "doorman.db")
    create = [sys.executable, "-m", "doorman", "users", "create", "--password-stdin"]
    for username in usernames:
        subprocess.run(
            [*create, username, "--db", database],
            input=f"{PASSWORD}\n".encode(),
            env=server_env(),
            cwd=directory,
            check=True,
            capture_output=True,
            timeout=60,
        )
    port = free_port()
    command = [sys.executable, "-m", "doorman", "serve", "--db", database]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    with (directory / "stdout.txt").open("wb") as out, (directory / "stderr.txt").open("wb") as err:
        process = subprocess.Popen(command, cwd=directory, env=server_env(), stdout=out, stderr=err)
    server = Server(f"http://127.0.0.1:{port}", directory, process)
    wait_until_healthy(server)
    return server


def stop_signin_server(server: Server) -> None:
    server.process.terminate()
    problem = stop(server)
    assert not problem, problem


@pytest.fixture(scope="module")
def signin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_signin_server(tmp_path_factory.mktemp("signin"), "alice", "bob")
    try:
        yield server
    finally:
        stop_signin_server(server)


def auth_of(server: Server) -> str:
    """The server's public name, on its loopback port."""
    return "http://auth.example.com:" + server.url.rpartition(":")[2]


# -- the browser: app.example.com in-process, the rest on loopback ---------------------


class Sites(httpx.AsyncBaseTransport):
    """Sends app.example.com to the gated ASGI app and every other host to 127.0.0.1."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = httpx.ASGITransport(app)
        self.network = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "app.example.com":
            return await self.app.handle_async_request(request)
        local = httpx.Request(
            request.method,
            request.url.copy_with(host="127.0.0.1"),
            headers=request.headers,
            stream=request.stream,
            extensions=request.extensions,
        )
        return await self.network.handle_async_request(local)

    async def aclose(self) -> None:
        await self.network.aclose()


def browser(app: ASGIApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=Sites(app), timeout=10)


async def sign_in(client: httpx.AsyncClient, auth: str, username: str) -> None:
    token = (await client.get(f"{auth}/-/whoami?csrf=1")).json()["csrftoken"]
    answer = await client.post(
        f"{auth}/-/login",
        json={"username": username, "password": PASSWORD},
        headers={"x-csrftoken": token},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["actor"]["username"] == username


async def sign_out(client: httpx.AsyncClient, auth: str) -> None:
    token = (await client.get(f"{auth}/-/whoami?csrf=1")).json()["csrftoken"]
    answer = await client.post(f"{auth}/-/logout", json={}, headers={"x-csrftoken": token})
    assert answer.status_code == 200, answer.text


def cookies_of(client: httpx.AsyncClient) -> dict[str, str]:
    return {cookie.name: cookie.value for cookie in client.cookies.jar}


def gate_cookie(response: httpx.Response) -> tuple[str, dict[str, str]] | None:
    """The value and attributes of the gate's Set-Cookie, if it sent one."""
    for header in response.headers.get_list("set-cookie"):
        name, value, attributes = parse_set_cookie(header)
        if name == GATE:
            return value, attributes
    return None


def actor_seen(response: httpx.Response) -> dict[str, Any] | None:
    assert response.status_code == 200, (response.status_code, response.text)
    actor: dict[str, Any] | None = response.json()["actor"]
    return actor


# -- the gated app, and the gate ------------------------------------------------------


async def inner_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Tells what it was given: the actor, Starlette's user and auth, path and headers."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].removeprefix("lifespan.")
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    if scope["type"] == "websocket":
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps(scope["actor"])})
        await send({"type": "websocket.close", "code": 1000})
        return
    user = scope["user"]
    body = {
        "actor": scope["actor"],
        "user": [user.is_authenticated, user.display_name],
        "scopes": scope["auth"].scopes,
        "path": scope["path"],
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
    }
    content = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"vary", b"Accept-Language")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": content})


@dataclass
class Clock:
    now: float = field(default_factory=time.time)

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    """The real server, an upstream client that counts its calls, and a clock."""

    server: Server
    upstream: httpx.AsyncClient
    calls: list[httpx.Request]
    clock: Clock

    @property
    def auth(self) -> str:
        return auth_of(self.server)

    def gate(self, **options: Any) -> ExistingCookiesGate:
        app = options.pop("app", inner_app)
        settings: dict[str, Any] = {
            "api_url": f"{self.server.url}/-/whoami",
            "auth_redirect_url": f"{self.auth}/-/login",
            "original_cookies": ["doorman_session"],
            "secret": SECRET,
            "ttl": 60,
            "http_client": self.upstream,
            "clock": self.clock,
            **options,
        }
        return ExistingCookiesGate(app, **settings)


def counting_client(calls: list[httpx.Request]) -> httpx.AsyncClient:
    async def count(request: httpx.Request) -> None:
        calls.append(request)

    return httpx.AsyncClient(event_hooks={"request": [count]})


@pytest.fixture
async def world(signin_server: Server) -> AsyncIterator[World]:
    calls: list[httpx.Request] = []
    async with counting_client(calls) as upstream:
        yield World(signin_server, upstream, calls, Clock())


async def call(app: ASGIApp, scope: dict[str, Any]) -> list[Message]:
    """Run one request straight through the ASGI interface; return what was sent."""
    full: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"app.example.com")],
        "client": ("127.0.0.1", 50000),
        **scope,
    }
    incoming: list[Message] = [
        {"type": "websocket.connect"} if full["type"] == "websocket" else {"type": "http.request"}
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(full, receive, send)
    return sent


# -- a signed-in browser ---------------------------------------------------------------


@pytest.mark.anyio
async def test_a_signed_in_browser_costs_one_upstream_call_per_ttl(world: World) -> None:
    gate = world.gate()
    async with browser(gate) as client:
        await sign_in(client, world.auth, "alice")
        first = await client.get(f"{APP}/reports", headers=HTML)
        actor = actor_seen(first)
        assert actor is not None and actor["username"] == "alice" and actor["id"]
        assert first.json()["user"] == [True, "alice"]
        assert first.json()["scopes"] == ["authenticated"]
        assert "cookie" in first.headers["vary"].lower()
        found = gate_cookie(first)
        assert found is not None
        assert found[1] == {"max-age": "60", "path": "/", "httponly": "", "samesite": "Lax"}
        # Only the listed cookie went upstream, not the gate's own (nor any other).
        assert len(world.calls) == 1
        assert world.calls[0].headers["cookie"] == (
            f"doorman_session={cookies_of(client)['doorman_session']}"
        )

        for _ in range(5):
            again = await client.get(f"{APP}/reports", headers=HTML)
            assert actor_seen(again) == actor
            assert gate_cookie(again) is None
        assert len(world.calls) == 1

        world.clock.now += 61  # the verdict expires: one more call, then cached again
        later = await client.get(f"{APP}/other")
        assert actor_seen(later) == actor
        assert gate_cookie(later) is not None
        for _ in range(3):
            assert actor_seen(await client.get(f"{APP}/other")) == actor
        assert len(world.calls) == 2

    async with browser(gate) as other:  # another browser pays for its own verdict
        await sign_in(other, world.auth, "bob")
        seen = actor_seen(await other.get(f"{APP}/reports"))
        assert seen is not None and seen["username"] == "bob"
        assert len(world.calls) == 3


@pytest.mark.anyio
async def test_client_sent_identity_never_reaches_the_app(world: World) -> None:
    gate = world.gate(require_auth=False)
    forged = {"x-doorman-user": "root", "X_Doorman_Admin": "true", "x-doorman-groups": "admins"}
    async with browser(gate) as client:
        anonymous = await client.get(f"{APP}/", headers=forged)
        assert actor_seen(anonymous) is None
        await sign_in(client, world.auth, "alice")
        signed_in = await client.get(f"{APP}/", headers=forged)
        actor = actor_seen(signed_in)
        assert actor is not None and actor["username"] == "alice" and actor["admin"] is False
        for response in (anonymous, signed_in):
            names = [name.lower().replace("_", "-") for name, _ in response.json()["headers"]]
            assert not [n for n in names if n.startswith("x-doorman-")], names


# -- signed out: browsers to the login page and back, API clients 401 ----------------


def hidden_fields(page: str) -> dict[str, str]:
    found = re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page)
    return {name: html.unescape(value) for name, value in found}


@pytest.mark.anyio
async def test_an_anonymous_browser_signs_in_at_the_server_and_comes_back(world: World) -> None:
    gate = world.gate()
    wanted = f"{APP}/reports/q?x=1&y=%C3%A9"
    async with browser(gate) as client:
        redirect = await client.get(wanted, headers=HTML)
        assert redirect.status_code == 302
        assert redirect.headers["cache-control"] == "no-store"
        location = urlsplit(redirect.headers["location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == f"{world.auth}/-/login"
        query = parse_qs(location.query)
        assert query["next"] == [wanted]
        assert NextSigner(SECRET).verify(wanted, query["next_sig"][0])
        assert (await client.head(wanted, headers=HTML)).status_code == 302
        assert world.calls == []  # no cookie to ask about: no upstream call

        # The real login page accepts the signed `next`, and the form carries it.
        page = await client.get(redirect.headers["location"])
        assert page.status_code == 200
        fields = hidden_fields(page.text)
        assert (fields["next"], fields["next_sig"]) == (wanted, query["next_sig"][0])
        credentials = {"username": "alice", "password": PASSWORD}
        answer = await client.post(
            f"{world.auth}/-/login", data={**fields, **credentials}, headers=HTML
        )
        assert answer.status_code == 302, answer.text
        assert answer.headers["location"] == wanted

        back = await client.get(answer.headers["location"], headers=HTML)
        actor = actor_seen(back)
        assert actor is not None and actor["username"] == "alice"
        assert back.json()["path"] == "/reports/q"
        assert len(world.calls) == 1


@pytest.mark.anyio
async def test_the_server_refuses_a_next_for_a_foreign_host_or_with_a_bad_signature(
    world: World,
) -> None:
    gate = world.gate()
    async with browser(gate) as client:
        foreign = await client.get(f"{APP}/x", headers={**HTML, "host": "app.elsewhere.test"})
        location = foreign.headers["location"]
        assert parse_qs(urlsplit(location).query)["next"] == ["http://app.elsewhere.test/x"]
        assert "next" not in hidden_fields((await client.get(location)).text)

        wanted = f"{APP}/x"
        forged = httpx.URL(f"{world.auth}/-/login", params={"next": wanted, "next_sig": "AAAA"})
        assert "next" not in hidden_fields((await client.get(forged)).text)


@pytest.mark.anyio
async def test_forwarded_headers_count_only_from_trusted_proxies(world: World) -> None:
    forwarded = {**HTML, "x-forwarded-proto": "https", "x-forwarded-host": "public.example.com"}

    async def next_of(gate: ExistingCookiesGate, headers: dict[str, str]) -> str | None:
        async with browser(gate) as client:
            response = await client.get(f"{APP}/a/b?c=d", headers=headers)
        assert response.status_code == 302
        query = parse_qs(urlsplit(response.headers["location"]).query)
        if "next" not in query:
            return None
        assert NextSigner(SECRET).verify(query["next"][0], query["next_sig"][0])
        return query["next"][0]

    assert await next_of(world.gate(), forwarded) == f"{APP}/a/b?c=d"
    assert await next_of(world.gate(trusted_proxies=["10.0.0.1"]), forwarded) == f"{APP}/a/b?c=d"
    trusting = world.gate(trusted_proxies=["127.0.0.0/8"])
    assert await next_of(trusting, forwarded) == "https://public.example.com/a/b?c=d"
    # A Host that is no host name: the login page, without a way back.
    assert await next_of(world.gate(), {**HTML, "host": "bad host/../x"}) is None


@pytest.mark.anyio
async def test_the_gate_cookie_is_secure_on_https_only(world: World) -> None:
    async with browser(world.gate()) as client:
        await sign_in(client, world.auth, "alice")
        session = f"doorman_session={cookies_of(client)['doorman_session']}"
    cases = [
        ("http", [], {}, False),
        ("https", [], {}, True),
        ("http", [], {"x-forwarded-proto": "https"}, False),  # from a proxy nobody trusts
        ("http", ["127.0.0.1"], {"x-forwarded-proto": "https"}, True),
        ("https", ["127.0.0.1"], {"x-forwarded-proto": "http"}, False),
    ]
    for scheme, trusted, headers, secure in cases:
        async with browser(world.gate(trusted_proxies=trusted)) as client:
            url = f"{scheme}://app.example.com/"
            found = gate_cookie(await client.get(url, headers={"cookie": session, **headers}))
        assert found is not None and ("secure" in found[1]) is secure, (scheme, trusted, headers)


@pytest.mark.anyio
async def test_api_clients_get_401(world: World) -> None:
    gate = world.gate()
    async with browser(gate) as client:
        for method, headers in [("GET", {}), ("POST", HTML), ("GET", {"accept": "*/*"})]:
            answer = await client.request(method, f"{APP}/api/things", headers=headers)
            assert answer.status_code == 401
            assert answer.json() == {"error": "Sign in first."}
        assert world.calls == []

        # An unknown session: the server says nobody, and nothing is cached.
        unknown = {"cookie": "doorman_session=not-a-session"}
        assert (await client.get(f"{APP}/api", headers=unknown)).status_code == 401
        redirected = await client.get(f"{APP}/page", headers={**HTML, **unknown})
        assert redirected.status_code == 302
        assert gate_cookie(redirected) is None
        assert len(world.calls) == 2

        await sign_in(client, world.auth, "alice")
        answer = await client.get(f"{APP}/api/things", headers={"accept": "application/json"})
        assert actor_seen(answer) is not None


# -- the verdict cookie: bound, signed, short-lived -----------------------------------


@pytest.mark.anyio
async def test_tampered_forged_and_expired_gate_cookies_are_not_believed(world: World) -> None:
    gate = world.gate()
    async with browser(gate) as client:
        await sign_in(client, world.auth, "alice")
        actor = actor_seen(await client.get(f"{APP}/"))
        session = cookies_of(client)["doorman_session"]
        value = cookies_of(client)[GATE]
    assert actor is not None and len(world.calls) == 1

    async def visit(gate_value: str, *, with_session: bool = True) -> httpx.Response:
        cookie = f"{GATE}={gate_value}" + (f"; doorman_session={session}" if with_session else "")
        async with browser(gate) as fresh:
            return await fresh.get(f"{APP}/", headers={**HTML, "cookie": cookie})

    assert actor_seen(await visit(value)) == actor  # untouched: believed, no call
    assert len(world.calls) == 1

    tampered = ("B" if value[0] == "A" else "A") + value[1:]
    assert actor_seen(await visit(tampered)) == actor  # not believed: the server was asked
    assert len(world.calls) == 2

    root = {"id": 1, "username": "root", "admin": True}
    signer = TimestampSigner(OTHER_SECRET, salt="doorman.gate")
    stamp = world.clock()
    forged = signer.sign(b64encode(json.dumps({"actor": root, "bind": "x"}).encode()), now=stamp)
    assert actor_seen(await visit(forged)) == actor
    assert len(world.calls) == 3
    turned_away = await visit(forged, with_session=False)  # no session: nothing to ask about
    assert turned_away.status_code == 302
    deleted = gate_cookie(turned_away)  # the useless gate cookie is dropped
    assert deleted is not None and deleted[0] == "" and deleted[1]["max-age"] == "0"
    assert len(world.calls) == 3

    for junk in ["", "x", "a.b.c", "A" * 5000, value + value, value + "." + value]:
        assert actor_seen(await visit(junk)) == actor
    assert len(world.calls) == 9

    world.clock.now += 61
    assert actor_seen(await visit(value)) == actor  # expired: asked again
    assert len(world.calls) == 10


@pytest.mark.anyio
async def test_a_new_session_at_the_server_is_asked_about_at_once(world: World) -> None:
    gate = world.gate()
    async with browser(gate) as client:
        await sign_in(client, world.auth, "alice")
        alice = actor_seen(await client.get(f"{APP}/"))
        assert alice is not None and alice["username"] == "alice"
        await sign_in(client, world.auth, "bob")  # same browser, a new session cookie
        bob = actor_seen(await client.get(f"{APP}/"))
        assert bob is not None and bob["username"] == "bob"
        assert len(world.calls) == 2


@pytest.mark.anyio
async def test_sign_out_at_the_server_ends_access_within_ttl(world: World) -> None:
    gate = world.gate()
    async with browser(gate) as client:
        await sign_in(client, world.auth, "alice")
        assert actor_seen(await client.get(f"{APP}/")) is not None
        copied = "; ".join(f"{name}={value}" for name, value in cookies_of(client).items())
        await sign_out(client, world.auth)
        # This browser lost its session cookie: the gate's verdict no longer applies.
        after = await client.get(f"{APP}/", headers=HTML)
        assert after.status_code == 302
        found = gate_cookie(after)
        assert found is not None and found[0] == "" and found[1]["max-age"] == "0"
    assert len(world.calls) == 1

    async with browser(gate) as replay:
        # A copy of the old cookies is believed until the verdict expires: the ttl trade-off.
        assert actor_seen(await replay.get(f"{APP}/", headers={"cookie": copied})) is not None
        assert len(world.calls) == 1
        world.clock.now += 61
        assert (await replay.get(f"{APP}/", headers={"cookie": copied})).status_code == 401
        assert len(world.calls) == 2
        answer = await replay.get(f"{APP}/", headers={**HTML, "cookie": copied})
        assert answer.status_code == 302


# -- what passes without asking --------------------------------------------------------


@pytest.mark.anyio
async def test_public_paths_pass_without_upstream_calls(world: World) -> None:
    gate = world.gate(public_paths=["/static/", "/favicon.ico"])
    async with browser(gate) as client:
        for path in ["/static/app.css", "/static/img/a.png", "/favicon.ico"]:
            assert actor_seen(await client.get(f"{APP}{path}", headers=HTML)) is None
        for path in ["/static", "/favicon.ico/x", "/staticx/a", "/"]:
            assert (await client.get(f"{APP}{path}", headers=HTML)).status_code == 302, path
        await sign_in(client, world.auth, "alice")
        # Signed in, but no verdict cached yet: a public path does not ask.
        assert actor_seen(await client.get(f"{APP}/static/app.css")) is None
        assert world.calls == []
        assert actor_seen(await client.get(f"{APP}/")) is not None
        cached = actor_seen(await client.get(f"{APP}/static/app.css"))
        assert cached is not None and cached["username"] == "alice"
        assert len(world.calls) == 1

    # Dot segments never count as public (httpx would normalise them away).
    for path in ["/static/../admin", "/static/./x/../../admin"]:
        sent = await call(gate, {"path": path, "raw_path": path.encode(), "headers": []})
        assert sent[0]["status"] == 401, path


def test_a_public_path_an_app_may_read_otherwise_is_not_public(signin_server: Server) -> None:
    """Under a real uvicorn: ``..\\``, ``..;`` and encoded forms of them need sign-in."""
    gate = ExistingCookiesGate(
        inner_app,
        api_url=f"{signin_server.url}/-/whoami",
        auth_redirect_url=f"{auth_of(signin_server)}/-/login",
        original_cookies=["doorman_session"],
        secret=SECRET,
        public_paths=["/static/"],
    )
    with uvicorn_on_loopback(gate, lifespan="on") as port:
        url = f"http://127.0.0.1:{port}"
        for target in AMBIGUOUS_TARGETS:
            status, body = raw_get(url, target)
            assert (status, body) == (401, {"error": "Sign in first."}), target
        status, body = raw_get(url, "/static/app.css")
        assert status == 200 and body["actor"] is None


@pytest.mark.anyio
async def test_without_require_auth_anonymous_requests_pass(world: World) -> None:
    gate = world.gate(require_auth=False)
    async with browser(gate) as client:
        anonymous = await client.get(f"{APP}/", headers=HTML)
        assert actor_seen(anonymous) is None
        assert anonymous.json()["user"] == [False, ""]
        assert anonymous.json()["scopes"] == []
        assert world.calls == []

        client.cookies.set("doorman_session", "gone", domain="app.example.com")
        for _ in range(3):  # a stale cookie: the verdict "nobody" is cached too
            assert actor_seen(await client.get(f"{APP}/")) is None
        assert len(world.calls) == 1
        client.cookies.clear()

        await sign_in(client, world.auth, "alice")
        signed_in = actor_seen(await client.get(f"{APP}/"))
        assert signed_in is not None and signed_in["username"] == "alice"


# -- websockets and lifespan -----------------------------------------------------------


@pytest.mark.anyio
async def test_websockets_need_a_signed_in_actor(world: World) -> None:
    gate = world.gate()
    async with browser(gate) as client:
        await sign_in(client, world.auth, "alice")
        cookie = f"doorman_session={cookies_of(client)['doorman_session']}".encode()
    socket = {"type": "websocket", "scheme": "ws", "path": "/ws", "raw_path": b"/ws"}
    accepted = await call(gate, {**socket, "headers": [(b"cookie", cookie)]})
    assert [m["type"] for m in accepted] == [
        "websocket.accept",
        "websocket.send",
        "websocket.close",
    ]
    assert json.loads(accepted[1]["text"])["username"] == "alice"

    refused = await call(gate, {**socket, "headers": [(b"accept", b"text/html")]})
    assert refused == [{"type": "websocket.close", "code": 1008}]

    down = world.gate(api_url=f"http://127.0.0.1:{free_port()}/-/whoami")
    assert await call(down, {**socket, "headers": [(b"cookie", cookie)]}) == [
        {"type": "websocket.close", "code": 1013}
    ]


def test_websockets_from_pages_of_other_origins_are_refused(signin_server: Server) -> None:
    """Under a real uvicorn, with alice's valid session cookie in every handshake."""
    cookie = sign_in_for_cookie(signin_server.url, "alice")
    gate = ExistingCookiesGate(
        inner_app,
        api_url=f"{signin_server.url}/-/whoami",
        auth_redirect_url=f"{auth_of(signin_server)}/-/login",
        original_cookies=["doorman_session"],
        secret=SECRET,
        allowed_origins=["https://app.example.com"],
    )
    with uvicorn_on_loopback(gate, lifespan="on", ws="websockets-sansio") as port:
        url = f"ws://127.0.0.1:{port}/ws"
        for origin in [*FOREIGN, f"http://127.0.0.1:{free_port()}"]:
            assert handshake(url, origin=origin, cookie=cookie) == 403, origin
        for origin in (f"http://127.0.0.1:{port}", "https://app.example.com", None):
            answer = handshake(url, origin=origin, cookie=cookie)
            assert isinstance(answer, str), (origin, answer)
            assert json.loads(answer)["username"] == "alice"
        assert handshake(url) == 403, "a program without credentials"


@pytest.mark.anyio
async def test_lifespan_passes_through(world: World) -> None:
    gate = world.gate()
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    await gate({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]
    assert not world.upstream.is_closed  # a client the gate was given is its owner's to close


# -- failing closed ----------------------------------------------------------------------


def gate_log(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "doorman.gate" and r.levelno >= logging.ERROR]


@pytest.mark.anyio
async def test_an_unreachable_upstream_gives_503(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    gate = world.gate(api_url=f"http://127.0.0.1:{free_port()}/-/whoami")
    cookie = {"cookie": "doorman_session=sekrit-session-value"}
    async with browser(gate) as client:
        for headers in [{**HTML, **cookie}, cookie]:
            answer = await client.get(f"{APP}/", headers=headers)
            assert answer.status_code == 503
            assert "error" in answer.json()
            assert gate_cookie(answer) is None
        # Without a cookie there is nothing to ask: the browser goes to sign in.
        assert (await client.get(f"{APP}/", headers=HTML)).status_code == 302
    records = gate_log(caplog)
    assert len(records) == 2
    assert "answering 503" in records[0].getMessage()
    assert "sekrit" not in caplog.text and SECRET not in caplog.text


@pytest.mark.anyio
async def test_a_stopped_server_gives_503_once_the_verdict_expires(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = start_signin_server(tmp_path, "carol")
    calls: list[httpx.Request] = []
    async with counting_client(calls) as upstream:
        world = World(server, upstream, calls, Clock())
        gate = world.gate()
        try:
            async with browser(gate) as client:
                await sign_in(client, world.auth, "carol")
                assert actor_seen(await client.get(f"{APP}/")) is not None
                session = cookies_of(client)["doorman_session"]
                cookie = "; ".join(f"{n}={v}" for n, v in cookies_of(client).items())
        finally:
            stop_signin_server(server)
        async with browser(gate) as client:
            # Within ttl the verdict holds without the server: the documented trade-off.
            assert actor_seen(await client.get(f"{APP}/", headers={"cookie": cookie})) is not None
            world.clock.now += 61  # then the server must be asked, and cannot be
            for headers in [HTML, {}]:
                answer = await client.get(f"{APP}/", headers={**headers, "cookie": cookie})
                assert answer.status_code == 503
                assert gate_cookie(answer) is None
    assert len(calls) == 3
    assert len(gate_log(caplog)) == 2
    assert session not in caplog.text


class TinyUpstream:
    """An HTTP/1.1 server on 127.0.0.1 that answers whatever bytes the test sets."""

    def __init__(self) -> None:
        self.answer = ok({"actor": None})
        self.keep_alive = False
        self.heads: list[bytes] = []
        self.connections = 0
        self.disconnected = asyncio.Event()
        self.release = asyncio.Event()  # set at the end: frees handlers told to hang
        self.hang = False
        self.port = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/-/whoami"

    async def __aenter__(self) -> TinyUpstream:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    self.disconnected.set()
                    return
                self.heads.append(head)
                if self.hang:
                    await self.release.wait()
                    return
                writer.write(self.answer if self.keep_alive else close(self.answer))
                await writer.drain()
                if not self.keep_alive:
                    return
        finally:
            writer.close()


def ok(body: Any, extra: bytes = b"") -> bytes:
    return answer(200, json.dumps(body).encode(), extra=extra)


def answer(
    status: int, body: bytes, content_type: bytes = b"application/json", *, extra: bytes = b""
) -> bytes:
    head = f"HTTP/1.1 {status} X\r\ncontent-length: {len(body)}\r\n".encode()
    return head + b"content-type: " + content_type + b"\r\n" + extra + b"\r\n" + body


def close(raw: bytes) -> bytes:
    """Say the connection ends after this answer, when it looks like one."""
    if raw.startswith(b"HTTP/1.1") and b"\r\n" in raw:
        first, _, rest = raw.partition(b"\r\n")
        return first + b"\r\nconnection: close\r\n" + rest
    return raw


NONSENSE = {
    "server error": answer(500, b'{"actor": {"id": 1}}'),
    "unauthorized": answer(401, b'{"actor": {"id": 1}}'),
    "redirect": answer(302, b"", extra=b"location: http://127.0.0.1:9/\r\n"),
    "html": answer(200, b"<html>Sign in</html>", b"text/html"),
    "no actor key": ok({"user": {"id": 1}}),
    "actor a string": ok({"actor": "alice"}),
    "actor without id": ok({"actor": {"username": "alice"}}),
    "id true": ok({"actor": {"id": True}}),
    "id empty": ok({"actor": {"id": ""}}),
    "id a list": ok({"actor": {"id": [1]}}),
    "a list": ok([{"actor": {"id": 1}}]),
    "too large": ok({"actor": {"id": 1, "padding": "x" * 100_000}}),
    "deeply nested": answer(200, b"[" * 50_000),
    "bad utf-8": answer(200, b'{"actor": "\xff\xfe"}'),
    "not http": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    "no answer": b"",
    "truncated": b'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"actor"',
}


@pytest.mark.anyio
@pytest.mark.parametrize("nonsense", NONSENSE.values(), ids=NONSENSE.keys())
async def test_an_upstream_answering_nonsense_gives_503_and_is_not_cached(
    world: World, nonsense: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async with TinyUpstream() as tiny:
        tiny.answer = nonsense
        gate = world.gate(api_url=tiny.url)
        cookie = {"cookie": "doorman_session=sekrit-session-value"}
        async with browser(gate) as client:
            for headers in [{**HTML, **cookie}, cookie]:
                refused = await client.get(f"{APP}/", headers=headers)
                assert refused.status_code == 503
                assert gate_cookie(refused) is None
            assert len(tiny.heads) == 2
            records = gate_log(caplog)
            assert len(records) == 2 and "answering 503" in records[0].getMessage()
            assert "sekrit" not in caplog.text and SECRET not in caplog.text

            tiny.answer = ok({"actor": {"id": 7, "username": "carol"}})
            recovered = actor_seen(await client.get(f"{APP}/", headers=cookie))
            assert recovered == {"id": 7, "username": "carol"}
            assert len(tiny.heads) == 3


@pytest.mark.anyio
async def test_an_upstream_that_does_not_answer_in_time_gives_503(world: World) -> None:
    async with TinyUpstream() as tiny:
        tiny.hang = True
        gate = world.gate(api_url=tiny.url, timeout=0.2)
        async with browser(gate) as client:
            answer = await client.get(f"{APP}/", headers={"cookie": "doorman_session=x"})
            assert answer.status_code == 503


@pytest.mark.anyio
async def test_only_the_listed_cookies_go_upstream_on_a_pooled_client() -> None:
    async with TinyUpstream() as tiny:
        tiny.keep_alive = True
        # The upstream tries to plant a cookie; the gate's client must not keep it.
        tiny.answer = ok(
            {"actor": {"id": 7, "username": "carol"}},
            extra=b"set-cookie: doorman_session=planted; Path=/\r\n",
        )
        gate = ExistingCookiesGate(
            inner_app,
            api_url=tiny.url,
            auth_redirect_url="http://auth.example.com/-/login",
            original_cookies=["doorman_session", "sessionid"],
            secret=SECRET,
        )
        sent = "theme=dark; doorman_session=one; csrftoken=abc; sessionid=two; doorman_gate=junk"
        private = {
            "authorization": "Bearer dmn_secret",
            "x-api-key": "k",
            "x-forwarded-for": "1.2.3.4",
        }
        async with browser(gate) as client:
            answer = await client.get(f"{APP}/", headers={"cookie": sent, **private})
            assert actor_seen(answer) == {"id": 7, "username": "carol"}
            answer = await client.get(f"{APP}/", headers={"cookie": "doorman_session=three"})
            assert actor_seen(answer) == {"id": 7, "username": "carol"}

        seen = [parse_head(head) for head in tiny.heads]
        assert [headers["cookie"] for headers in seen] == [
            "doorman_session=one; sessionid=two",
            "doorman_session=three",
        ]
        for headers in seen:
            assert set(headers) <= {
                "host",
                "accept",
                "accept-encoding",
                "connection",
                "user-agent",
                "cookie",
            }
        assert tiny.connections == 1  # both calls on one pooled connection

        # Lifespan shutdown closes the gate's own client, and so its connections.
        incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

        async def receive() -> Message:
            return incoming.pop(0)

        async def send(message: Message) -> None:
            pass

        await gate({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
        await asyncio.wait_for(tiny.disconnected.wait(), 10)


def parse_head(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    pairs = [line.partition(":") for line in lines if line]
    return {name.strip().lower(): value.strip() for name, _, value in pairs}


# -- input the gate must survive, and settings it must refuse --------------------------


@pytest.mark.anyio
async def test_hostile_input_never_gives_a_500(world: World) -> None:
    gate = world.gate()
    headers = [
        [(b"cookie", b"doorman_gate=\xff\xfe; doorman_session=caf\xe9")],
        [(b"cookie", b"doorman_gate=" + b"A" * 10_000)],
        [(b"cookie", b";;;=;doorman_session;=x;doorman_gate")],
        [(b"cookie", b"doorman_session=a\x01b"), (b"accept", b"text/html")],
        [(b"cookie", b"doorman_session=" + b"s" * 5000), (b"host", b"\xff\x00")],
        [(b"host", b""), (b"accept", b"text/html"), (b"x-forwarded-host", b"\r\nevil")],
    ]
    for extra in headers:
        sent = await call(gate, {"headers": extra, "raw_path": b"/\xff%zz", "path": "/\xff"})
        assert sent[0]["status"] in (302, 401), extra


@pytest.mark.parametrize(
    "options",
    [
        {"api_url": "/-/whoami"},
        {"api_url": "ftp://auth.example.com/-/whoami"},
        {"auth_redirect_url": "auth.example.com/-/login"},
        {"original_cookies": []},
        {"original_cookies": "doorman_session"},
        {"public_paths": "/static/"},
        {"trusted_proxies": "127.0.0.1"},
        {"original_cookies": ["doorman_gate"]},
        {"original_cookies": ["bad name"]},
        {"cookie_name": "bad;name"},
        {"secret": "short"},
        {"secret": []},
        {"ttl": 0},
        {"ttl": float("nan")},
        {"timeout": -1},
        {"public_paths": ["static/"]},
        {"trusted_proxies": ["not-an-address"]},
        {"allowed_origins": "https://app.example.com"},
        {"allowed_origins": ["app.example.com"]},
        {"allowed_origins": ["https://app.example.com/path"]},
    ],
)
def test_bad_settings_fail_at_construction(options: dict[str, Any]) -> None:
    settings: dict[str, Any] = {
        "api_url": "https://auth.example.com/-/whoami",
        "auth_redirect_url": "https://auth.example.com/-/login",
        "original_cookies": ["doorman_session"],
        "secret": SECRET,
        **options,
    }
    with pytest.raises(ConfigError):
        ExistingCookiesGate(inner_app, **settings)


def test_the_gate_needs_no_starlette() -> None:
    code = (
        "import sys, doorman\n"
        "doorman.ExistingCookiesGate\n"
        "assert not [m for m in sys.modules if m.startswith('starlette')], 'starlette imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=ROOT)


# -- the documentation's example, against the real server ----------------------------


def test_every_option_is_documented() -> None:
    table = (ROOT / "docs" / "gate.md").read_text()
    options = [p for p in inspect.signature(ExistingCookiesGate).parameters if p != "app"]
    missing = [option for option in options if f"| `{option}` |" not in table]
    assert not missing, f"options without a row in docs/gate.md: {missing}"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.anyio
async def test_the_docs_example_runs(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    source = next(
        block
        for block in python_blocks((ROOT / "docs" / "gate.md").read_text())
        if "ExistingCookiesGate(" in block
    )
    replacements = {
        "https://auth.example.com/-/whoami": f"{world.server.url}/-/whoami",
        "https://auth.example.com/-/login": f"{world.auth}/-/login",
    }
    for old, new in replacements.items():
        assert old in source, f"docs/gate.md no longer contains {old!r}"
        source = source.replace(old, new)
    monkeypatch.setenv("DOORMAN_SECRET", SECRET)
    namespace: dict[str, Any] = {}
    exec(compile(source, "docs/gate.md", "exec"), namespace)  # our own docs
    app: ExistingCookiesGate = namespace["app"]
    try:
        async with browser(app) as client:
            assert (await client.get(f"{APP}/health")).text == "ok"
            redirect = await client.get(f"{APP}/", headers=HTML)
            assert redirect.status_code == 302
            assert redirect.headers["location"].startswith(f"{world.auth}/-/login?next=")
            await sign_in(client, world.auth, "alice")
            hello = await client.get(f"{APP}/", headers=HTML)
            assert hello.status_code == 200
            assert hello.text == "Hello, alice"
    finally:
        await app.aclose()
