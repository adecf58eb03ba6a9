"""Request bodies are capped while they stream in: 413, and memory stays flat.

An anonymous ``POST /-/login`` with a 400 MB JSON body once took the server
from 104 MB to 1.3 GB before it answered 403: the whole body was read before
the CSRF check. Now every route of the sign-in server (the plugins' too) reads
at most ``max_body_size`` bytes (64 KiB by default).
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse

from doorman import PasswordHasher, hookimpl
from doorman._types import Receive, Scope, Send
from doorman.config import assemble, load_settings
from doorman.core import Doorman
from doorman.server.app import create_app

from .conftest import SECRET
from .helpers import client, migrated_sqlite
from .test_server import PASSWORD, Server, browse, csrf_token, running

pytestmark = pytest.mark.anyio

LIMIT = 64 * 1024
JSON = {"content-type": "application/json"}


class Chunks:
    """A request body of ``count`` chunks, sent without a Content-Length; counts those read."""

    def __init__(
        self, count: int, size: int = 16 * 1024, *, first: bytes = b'{"username": "'
    ) -> None:
        self.count, self.size, self.first, self.read = count, size, first, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for number in range(self.count):
            self.read += 1
            yield self.first if number == 0 else b"a" * self.size


async def test_a_declared_length_over_the_limit_gets_413_before_anything_is_read(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as server, browse(server) as browser:
        form = {"username": "a" * LIMIT, "password": PASSWORD}
        page = await browser.post("/-/login", data=form, headers={"accept": "text/html"})
        assert page.status_code == 413
        assert page.headers["connection"] == "close", "no reading the rest of it"
        assert "text/html" in page.headers["content-type"]
        api = await browser.post("/-/login", json=form)
        assert api.status_code == 413
        assert "at most 65536 bytes" in api.json()["detail"]


async def test_a_streamed_body_is_cut_off_at_the_limit(tmp_path: Path) -> None:
    async with running(tmp_path, allow_registration=True) as server, browse(server) as browser:
        for path in ("/-/login", "/-/logout", "/-/register", "/-/setup"):
            body = Chunks(1000)
            answer = await browser.post(path, content=body, headers=JSON)
            assert answer.status_code == 413, (path, answer.status_code)
            assert body.read <= LIMIT // body.size + 2, "it stopped reading at the limit"
        form = Chunks(1000, first=b"username=")
        answer = await browser.post(
            "/-/login",
            content=form,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert answer.status_code == 413 and form.read <= LIMIT // form.size + 2


async def test_a_body_within_the_limit_is_read_as_before(tmp_path: Path) -> None:
    async with running(tmp_path) as server, browse(server) as browser:
        await server.doorman.create_user("alice", PASSWORD)
        token = await csrf_token(browser)
        padding = "x" * (LIMIT - 1000)  # the whole form stays just under the limit
        form = {"username": "alice", "password": PASSWORD, "csrftoken": token, "pad": padding}
        answer = await browser.post("/-/login", data=form)
        assert answer.status_code == 302


async def test_the_limit_is_a_setting(tmp_path: Path) -> None:
    async with running(tmp_path, max_body_size="1MB") as server, browse(server) as browser:
        answer = await browser.post("/-/login", content=Chunks(30), headers=JSON)
        assert answer.status_code == 403, "300 KB is under 1 MB: read, then refused for CSRF"
        assert (
            await browser.post("/-/login", content=Chunks(100), headers=JSON)
        ).status_code == 413
    assert load_settings(environ={}, overrides={"max_body_size": "64KB"}).max_body_size == LIMIT
    assert load_settings(environ={"DOORMAN_MAX_BODY_SIZE": "2mb"}).max_body_size == 2 * 1024**2
    # Bad values: tests/test_config.py (BAD).


class EchoLength:
    """A plugin route that reads the whole body with Starlette, as a plugin would."""

    @hookimpl
    def register_routes(self, doorman: Any) -> list[tuple[str, Any]]:
        return [("/-/test/echo", Echo)]


class Echo(HTTPEndpoint):
    async def post(self, request: Request) -> JSONResponse:
        return JSONResponse({"length": len(await request.body())})


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, *, protected: Any = None) -> AsyncIterator[tuple[Any, Doorman]]:
    """The sign-in server with the ``EchoLength`` plugin (and ``protected`` behind it)."""
    settings = load_settings(
        environ={}, overrides={"db": migrated_sqlite(tmp_path / "d.db"), "secret": SECRET}
    )
    doorman, store = assemble(settings, [SECRET])
    doorman.hasher = doorman.users.hasher = PasswordHasher(time_cost=1, memory_cost=1024)
    doorman.plugins.register(EchoLength())
    await doorman.startup()
    try:
        yield create_app(settings, doorman=doorman, store=store, protected=protected), doorman
    finally:
        await store.close()
        await doorman.close()
        await doorman.engine.dispose()


async def test_plugin_routes_get_the_same_limit(tmp_path: Path) -> None:
    async with serving(tmp_path) as (app, _), client(app) as web:
        small = await web.post("/-/test/echo", content=b"x" * 1000)
        assert small.json() == {"length": 1000}
        body = Chunks(1000)
        assert (await web.post("/-/test/echo", content=body)).status_code == 413
        assert body.read <= LIMIT // body.size + 2


async def test_the_protected_app_reads_its_own_bodies(tmp_path: Path) -> None:
    """``doorman protect`` caps doorman's routes, not the app's: an upload is the app's business."""

    async def upload(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        size, more = 0, True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(size).encode()})

    async with serving(tmp_path, protected=upload) as (app, doorman), client(app) as web:
        alice = await doorman.create_user("alice", PASSWORD)
        _, token = await doorman.tokens.create(alice)
        bearer = {"authorization": f"Bearer {token}"}
        body = Chunks(100)
        answer = await web.post("/upload", content=body, headers=bearer)
        assert (answer.status_code, answer.text) == (200, str(len(body.first) + 99 * body.size))
        assert (await web.post("/-/test/echo", content=Chunks(100))).status_code == 413


# -- a real server: memory stays flat under four 400 MB uploads at once -----------------------

UPLOAD_MB = 400
CHUNK = 1024 * 1024
#: Far above what four capped requests cost, far below one 400 MB body read whole.
GROWTH_BOUND_KB = 64 * 1024


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _upload(port: int, statuses: list[str], *, chunked: bool) -> None:
    """POST a 400 MB JSON body to /-/login; stop once the server answers or hangs up."""
    framing = (
        b"transfer-encoding: chunked" if chunked else b"content-length: %d" % (UPLOAD_MB * CHUNK)
    )
    head = b"POST /-/login HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
    chunk = b"a" * CHUNK
    framed = b"%x\r\n%s\r\n" % (CHUNK, chunk) if chunked else chunk
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with contextlib.suppress(OSError):  # the server hangs up after its 413
            sock.sendall(head + framing + b"\r\n\r\n")
            for _ in range(UPLOAD_MB):
                if select.select([sock], [], [], 0)[0]:
                    break  # it answered: stop sending, as a client reading the answer would
                sock.sendall(framed)
        with contextlib.suppress(OSError):
            answer = sock.recv(4096)
    statuses.append(answer.split(b"\r\n", 1)[0].decode("latin-1"))


@pytest.mark.e2e
def test_memory_stays_flat_under_four_400_mb_uploads_at_once(tmp_path: Path) -> None:
    from .servers import running as serving_real
    from .servers import start_server

    server = start_server(tmp_path / "serve")
    with serving_real(server):
        pid, port = server.process.pid, int(server.url.rsplit(":", 1)[1])
        httpx.post(server.url + "/-/login", json={}, timeout=10)  # the JSON path, loaded once
        before = _status_kb(pid, "VmRSS")
        statuses: list[str] = []
        uploads = [
            threading.Thread(target=_upload, args=(port, statuses), kwargs={"chunked": n < 2})
            for n in range(4)
        ]
        for upload in uploads:
            upload.start()
        for upload in uploads:
            upload.join(timeout=120)
        assert not any(upload.is_alive() for upload in uploads), "an upload did not finish"
        growth = _status_kb(pid, "VmHWM") - before
    assert [s.split(" ")[1] for s in statuses] == ["413"] * 4, statuses
    assert growth < GROWTH_BOUND_KB, f"the server grew by {growth // 1024} MB"


# -- no body gives a 500 -------------------------------------------------------------------

CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-16",
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=bogus",
    "multipart/form-data",
    "multipart/form-data; boundary=x",
    "text/plain",
    "",
]
deep = st.builds(
    lambda opener, depth: opener * depth,
    st.sampled_from([b"[", b'{"a":', b'{"username":[']),
    st.integers(900, 20000),
)
bodies = st.binary(max_size=300) | deep | st.text(max_size=300).map(str.encode)


@pytest.fixture
async def open_server(tmp_path: Path) -> AsyncIterator[Server]:
    """A sign-in server with registration open, for every example of a test (as in
    tests/test_attack_inputs.py): each request is a new visitor, refused before any change."""
    async with running(tmp_path, allow_registration=True) as server:
        yield server


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=bodies,
    content_type=st.sampled_from(CONTENT_TYPES),
    path=st.sampled_from(["/-/login", "/-/logout", "/-/register"]),
)
async def test_no_body_gives_a_500(
    open_server: Server, body: bytes, content_type: str, path: str
) -> None:
    """JSON nested deeper than ``json`` parses (RecursionError) once gave a 500."""
    async with browse(open_server) as browser:
        answer = await browser.post(path, content=body, headers={"content-type": content_type})
    assert answer.status_code < 500, (path, content_type, body[:40])


# -- a client that leaves mid-body ---------------------------------------------------------

LEAVING = {
    "a form": b"application/x-www-form-urlencoded",
    "JSON": b"application/json",
    "multipart": b"multipart/form-data; boundary=b",
}


def _leave_mid_body(port: int, content_type: bytes) -> None:
    """Announce 1,000 bytes, send ten, hang up: what a dropped connection looks like."""
    head = b"POST /-/login HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 1000\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + b"content-type: " + content_type + b"\r\n\r\n" + b"a" * 10)


def _access_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if '"POST /-/login HTTP/1.1"' in line]


@pytest.mark.e2e
def test_a_client_leaving_mid_body_is_no_server_error(tmp_path: Path) -> None:
    """A JSON body cut short once gave a 500 and a traceback (Starlette's ClientDisconnect):
    anyone could fill the error log, Sentry and the 5xx rate by hanging up. Now it is
    refused like any body that does not parse, as a form's already was."""
    from .servers import running as serving_real
    from .servers import start_server

    server = start_server(tmp_path / "serve")
    with serving_real(server):
        port = int(server.url.rsplit(":", 1)[1])
        for content_type in LEAVING.values():
            _leave_mid_body(port, content_type)
        for _ in range(100):  # the server sees each hang-up in its own time: 10 s at most
            if len(_access_lines(server.log())) >= len(LEAVING):
                break
            time.sleep(0.1)
        log = server.log()
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log
    assert [line.split('" ')[1].split()[0] for line in _access_lines(log)] == ["403"] * 3, log
