"""doorman behind real proxies on loopback: nginx ``auth_request`` and Caddy ``forward_auth``.

Each proxy runs the committed example (examples/nginx/doorman.conf,
examples/caddy/Caddyfile) with only its ports, site addresses and file paths
replaced, in front of doorman and a tiny app, both on real uvicorn servers. The
client talks to 127.0.0.1 but names app.example.com and auth.example.com, so
Host headers, redirects and the shared cookie (Domain=example.com) are real.

A proxy that is not installed skips its test, or fails it when
DOORMAN_REQUIRE_SERVICES=1 (as in CI, where .ci/run installs nginx and caddy).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import uvicorn

from doorman import PasswordHasher
from doorman._types import Receive, Scope, Send
from doorman.config import Settings, assemble, load_settings
from doorman.server.app import create_app

from .conftest import SECRET, _missing
from .helpers import COOKIE, free_port, listening
from .servers import in_own_loop

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PASSWORD = "correct horse battery staple"
HTML = {"accept": "text/html,application/xhtml+xml"}
IDENTITY = ("X-Doorman-User", "X-Doorman-Groups", "X-Doorman-Admin", "X-Doorman-Auth-Methods")
#: What a client might send to pass for someone else, dash and underscore spellings.
FORGED = {
    "X-Doorman-User": "root",
    "X-Doorman-Groups": "admins",
    "X-Doorman-Admin": "true",
    "X-Doorman-Auth-Methods": "pwd,otp",
    "X_Doorman_User": "root",
}
#: Quick hashes: the server uses the same parameters, so sign-in does not re-hash.
FAST_HASHER = {"time_cost": 1, "memory_cost": 1024}


# -- the pieces: free ports, uvicorn in a thread, a proxy in a subprocess ------------


@contextlib.contextmanager
def uvicorn_on_loopback(app: Any, port: int = 0, **options: Any) -> Iterator[int]:
    """Serve ``app`` with uvicorn on loopback, in a thread; yield the port (free unless given)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    options = {"log_level": "warning", "http": "h11", "ws": "none", **options}
    config = uvicorn.Config(app, **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive(), "uvicorn stopped while starting"
            assert time.monotonic() < deadline, "uvicorn did not start within 10 s"
            time.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
    assert not thread.is_alive(), "uvicorn did not stop within 10 s"


@contextlib.contextmanager
def proxy_process(command: list[str], port: int, log: Path, **options: Any) -> Iterator[None]:
    """Run a proxy in the foreground until it listens on ``port``; stop it afterwards."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True, **options
        )
    try:
        deadline = time.monotonic() + 10
        while not listening(port):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{command[0]} did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.05)
        assert process.poll() is None, f"{command[0]} stopped:\n{log.read_text(errors='replace')}"
        yield
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # its own session: the proxy and its workers
            process.wait(5)


def binary(name: str) -> str:
    """The path of a program (nginx lives in /usr/sbin, not on every user's PATH)."""
    found = shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if found is None:
        _missing(name, FileNotFoundError(f"no {name!r} on PATH; apt-get install {name}"))
    assert found is not None
    return found


def derive(example: Path, replacements: dict[str, str]) -> str:
    """The committed example with only ``replacements`` made; each must occur in it."""
    text = example.read_text()
    derived = text
    for old, new in replacements.items():
        assert old in text, f"{example.name} no longer contains {old!r}"
        derived = derived.replace(old, new)
    undone = derived
    for old, new in replacements.items():
        undone = undone.replace(new, old)
    assert undone == text, "the test config must differ from the example only in replacements"
    return derived


# -- doorman and the app -------------------------------------------------------------


def doorman_settings(tmp_path: Path, public_url: str, *, secure: bool) -> Settings:
    return load_settings(
        environ={},
        overrides={
            "db": str(tmp_path / "doorman.db"),
            "secret": SECRET,
            "public_url": public_url,
            "cookie_domain": "example.com",
            "allowed_origins": [public_url.replace("//auth.", "//app.")],  # the app, its port
            "cookie_secure": secure,
            "forwarded_allow_ips": "127.0.0.1",
            # alice may view (by id, so she has no groups: an empty X-Doorman-Groups); bob may not
            "permissions": {"view": {"allow": {"id": "alice", "groups": ["staff"]}}},
        },
    )


async def add_users(settings: Settings) -> None:
    doorman, store = assemble(settings, [SECRET])
    doorman.hasher = doorman.users.hasher = PasswordHasher(**FAST_HASHER)
    try:
        await doorman.startup()
        await doorman.create_user("alice", PASSWORD)
        await doorman.create_user("bob", PASSWORD)
    finally:
        await store.close()
        await doorman.close()
        await doorman.engine.dispose()


@contextlib.contextmanager
def doorman_on_loopback(settings: Settings) -> Iterator[int]:
    """``doorman serve`` in miniature: the same app and uvicorn's proxy-header settings."""
    in_own_loop(add_users(settings))  # the caller's thread may run a loop (Playwright's)
    doorman, store = assemble(settings, [SECRET])
    doorman.hasher = doorman.users.hasher = PasswordHasher(**FAST_HASHER)
    app = create_app(settings, doorman=doorman, store=store)
    with uvicorn_on_loopback(
        app, lifespan="on", proxy_headers=True, forwarded_allow_ips=settings.forwarded_allow_ips
    ) as port:
        yield port


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The protected app: answers with the headers it was given."""
    assert scope["type"] == "http"
    headers = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
    body = {"path": scope["path"], "query": scope["query_string"].decode(), "headers": headers}
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


def seen_by_app(response: httpx.Response) -> dict[str, list[str]]:
    """The doorman headers the app received, by lower-case name (dash or underscore)."""
    assert response.status_code == 200, response.text
    found: dict[str, list[str]] = {}
    for name, value in response.json()["headers"]:
        if name.lower().replace("_", "-").startswith("x-doorman-"):
            found.setdefault(name.lower(), []).append(value)
    return found


# -- the client: real host names, every connection to 127.0.0.1 ----------------------


class Loopback(httpx.HTTPTransport):
    """Connects to 127.0.0.1 whatever the URL's host; the Host header keeps the name.

    The client above it still sees app.example.com and auth.example.com, so its
    cookie jar applies Domain=example.com and Secure as a browser would.
    """

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        local = httpx.Request(
            request.method,
            request.url.copy_with(host="127.0.0.1"),
            headers=request.headers,
            stream=request.stream,
            extensions=request.extensions,
        )
        return super().handle_request(local)


def browser() -> httpx.Client:
    return httpx.Client(transport=Loopback(verify=False), timeout=5)


def sign_in(client: httpx.Client, auth: str, username: str) -> None:
    """doorman's JSON sign-in, with the session's CSRF token in its header."""
    token = client.get(f"{auth}/-/whoami?csrf=1").json()["csrftoken"]
    answer = client.post(
        f"{auth}/-/login",
        json={"username": username, "password": PASSWORD},
        headers={"x-csrftoken": token},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["actor"]["username"] == username


def check_forward_auth(app: str, auth: str, *, secure: bool) -> None:
    """What every proxy recipe must do, seen from a browser and an API client."""
    wanted = f"{app}/reports?x=1&y=%C3%A9"
    with browser() as client:
        # Signed out, a browser ends on doorman's login page with a signed way back.
        page = client.get(wanted, headers=HTML, follow_redirects=True)
        assert page.status_code == 200, page.text
        assert [(r.status_code, str(r.url)) for r in page.history] == [(302, wanted)]
        login = urlsplit(str(page.url))
        assert f"{login.scheme}://{login.netloc}{login.path}" == f"{auth}/-/login"
        query = parse_qs(login.query)
        assert query["next"] == [wanted]
        assert query["next_sig"][0]
        assert 'name="next_sig"' in page.text

        # Signed out, an API client (no text/html) gets 401, forged identity or not.
        assert client.get(wanted).status_code == 401
        assert client.get(wanted, headers=FORGED).status_code == 401
        assert client.request("PATCH", wanted, content=b"data").status_code == 401

        # Signed in through doorman, the signed `next` leads back, and the app learns who.
        sign_in(client, auth, "alice")
        cookie = next(c for c in client.cookies.jar if c.name == COOKIE)
        assert (cookie.domain.lstrip("."), cookie.secure) == ("example.com", secure)
        back = client.get(str(page.url), headers=HTML, follow_redirects=True)
        assert str(back.url) == wanted
        assert back.json()["query"] == "x=1&y=%C3%A9"
        seen = seen_by_app(back)
        assert seen.pop("x-doorman-groups", [""]) == [""]  # no groups: empty, or not sent
        alice = {
            "x-doorman-user": ["alice"],
            "x-doorman-admin": ["false"],
            "x-doorman-auth-methods": ["pwd"],
        }
        assert seen == alice

        # A client-sent identity never reaches the app: doorman's replaces it.
        forged = seen_by_app(client.get(wanted, headers=FORGED))
        assert forged.pop("x-doorman-groups", [""]) == [""]
        assert forged == alice

        # The admin part asks for a second factor: a password alone is refused, forged
        # methods or not, for browsers too (a 403, never a redirect loop).
        admin = f"{app}/admin/users"
        assert client.get(admin).status_code == 403
        assert client.get(admin, headers=FORGED).status_code == 403
        assert client.get(admin, headers=HTML).status_code == 403

        # Any method reaches the app; the check itself is always a body-less GET.
        assert client.request("PATCH", wanted, content=b"data").status_code == 200

        # The sign-in server itself, through the same proxy.
        assert client.get(f"{auth}/-/health").json()["status"] == "ok"

        # Signed out on doorman, signed out on the app at once.
        token = client.get(f"{auth}/-/whoami?csrf=1").json()["csrftoken"]
        assert client.post(f"{auth}/-/logout", json={}, headers={"x-csrftoken": token}).is_success
        assert client.get(wanted).status_code == 401

    with browser() as client:
        # Signed in but not allowed to view: 403 from the proxy, for browsers too.
        sign_in(client, auth, "bob")
        assert client.get(wanted).status_code == 403
        assert client.get(wanted, headers=HTML).status_code == 403


# -- nginx ---------------------------------------------------------------------------


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate and key for example.com, valid one day."""
    openssl = binary("openssl")
    cert, key = directory / "cert.pem", directory / "key.pem"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    subject = ["-subj", "/CN=example.com", "-days", "1", "-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        [openssl, "req", "-x509", *ec, *subject], check=True, capture_output=True, timeout=10
    )
    return cert, key


@contextlib.contextmanager
def nginx_example(
    directory: Path, port: int, *, doorman_port: int, app_port: int
) -> Iterator[None]:
    """The committed nginx example, run by nginx on https://127.0.0.1:``port`` until exit.

    Only its ports and certificate paths change; both host names answer on ``port``.
    """
    nginx = binary("nginx")
    cert, key = self_signed_certificate(directory)
    site = derive(
        EXAMPLES / "nginx" / "doorman.conf",
        {
            "listen 443 ssl;": f"listen 127.0.0.1:{port} ssl;",
            "127.0.0.1:8000": f"127.0.0.1:{doorman_port}",
            "127.0.0.1:3000": f"127.0.0.1:{app_port}",
            "/etc/ssl/example.com/fullchain.pem": str(cert),
            "/etc/ssl/example.com/privkey.pem": str(key),
        },
    )
    (directory / "doorman.conf").write_text(site)
    # The test's own nginx.conf around it: what /etc/nginx/nginx.conf provides.
    (directory / "nginx.conf").write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + "worker_processes 1;\npid nginx.pid;\nevents { worker_connections 64; }\n"
        "http {\n    access_log off;\n    client_body_temp_path tmp;\n"
        "    proxy_temp_path tmp;\n    include doorman.conf;\n}\n"
    )
    command = [nginx, "-p", str(directory), "-c", str(directory / "nginx.conf"), "-e", "stderr"]
    command += ["-g", "daemon off; error_log stderr;"]
    with proxy_process(command, port, directory / "nginx.log"):
        yield


def test_nginx_auth_request(tmp_path: Path) -> None:
    binary("nginx")  # skip before starting anything when there is none
    port = free_port()
    app, auth = f"https://app.example.com:{port}", f"https://auth.example.com:{port}"
    settings = doorman_settings(tmp_path, auth, secure=True)
    with (
        doorman_on_loopback(settings) as doorman_port,
        uvicorn_on_loopback(echo_app, lifespan="off") as app_port,
        nginx_example(tmp_path, port, doorman_port=doorman_port, app_port=app_port),
    ):
        check_forward_auth(app, auth, secure=True)


# -- Caddy ---------------------------------------------------------------------------


def test_caddy_forward_auth(tmp_path: Path) -> None:
    caddy = binary("caddy")
    port = free_port()
    app, auth = f"http://app.example.com:{port}", f"http://auth.example.com:{port}"
    settings = doorman_settings(tmp_path, auth, secure=False)
    with (
        doorman_on_loopback(settings) as doorman_port,
        uvicorn_on_loopback(echo_app, lifespan="off") as app_port,
    ):
        site = derive(
            EXAMPLES / "caddy" / "Caddyfile",
            {
                "auth.example.com {": f"{auth} {{",
                "app.example.com {": f"{app} {{",
                "127.0.0.1:8000": f"127.0.0.1:{doorman_port}",
                "127.0.0.1:3000": f"127.0.0.1:{app_port}",
            },
        )
        # Plain http on loopback instead of automatic HTTPS, and no admin endpoint.
        options = "{\n\tadmin off\n\tdefault_bind 127.0.0.1\n}\n\n"
        (tmp_path / "Caddyfile").write_text(options + site)
        home = {
            "HOME": str(tmp_path),
            "XDG_CONFIG_HOME": str(tmp_path),
            "XDG_DATA_HOME": str(tmp_path),
        }
        command = [caddy, "run", "--config", str(tmp_path / "Caddyfile"), "--adapter", "caddyfile"]
        with proxy_process(command, port, tmp_path / "caddy.log", env={**os.environ, **home}):
            check_forward_auth(app, auth, secure=False)


# -- what all three examples must copy, and Traefik's (not packaged in Debian) -------


def test_the_examples_copy_every_identity_header_doorman_sends(tmp_path: Path) -> None:
    async def answer() -> httpx.Response:
        settings = doorman_settings(tmp_path, "https://auth.example.com", secure=False)
        await add_users(settings)
        doorman, store = assemble(settings, [SECRET])
        doorman.hasher = doorman.users.hasher = PasswordHasher(**FAST_HASHER)
        app = create_app(settings, doorman=doorman, store=store)
        try:
            transport = httpx.ASGITransport(app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://auth.example.com"
            ) as client:
                token = (await client.get("/-/whoami?csrf=1")).json()["csrftoken"]
                credentials = {"username": "alice", "password": PASSWORD}
                await client.post("/-/login", json=credentials, headers={"x-csrftoken": token})
                return await client.get("/-/auth")
        finally:
            await store.close()
            await doorman.close()
            await doorman.engine.dispose()

    sent = [name for name in asyncio.run(answer()).headers if name.startswith("x-doorman-")]
    assert sorted(sent) == sorted(name.lower() for name in IDENTITY)
    nginx = (EXAMPLES / "nginx" / "doorman.conf").read_text()
    caddy = (EXAMPLES / "caddy" / "Caddyfile").read_text()
    for name in IDENTITY:
        variable = name.lower().replace("-", "_")
        assert f"$upstream_http_{variable};" in nginx
        assert f"proxy_set_header {name} $" in nginx
        assert f" {name}" in caddy.partition("copy_headers")[2].partition("\n")[0]


def test_the_traefik_example_strips_then_copies_the_identity() -> None:
    """Traefik is not packaged in Debian, so its example is checked here, not run."""
    static = (EXAMPLES / "traefik" / "traefik.yml").read_text()
    dynamic = (EXAMPLES / "traefik" / "dynamic.yml").read_text()
    assert "filename: /etc/traefik/dynamic.yml" in static
    assert "address: http://127.0.0.1:8000/-/auth\n" in dynamic
    assert "middlewares: [doorman-strip, doorman-auth]" in dynamic
    for name in IDENTITY:
        assert f"          - {name}\n" in dynamic  # authResponseHeaders
        assert f'          {name}: ""\n' in dynamic  # removed from the client's request
        assert f'          {name.replace("-", "_")}: ""\n' in dynamic
