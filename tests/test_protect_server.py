"""``doorman protect`` as an attacker meets it: a real server on loopback, hostile requests.

One ``python -m doorman protect`` in a subprocess serves a small app that
answers with what it was given (path, actor, headers), and on a websocket
with the actor's name. The requests are what a client can send: forged
identity headers, paths that an app may read as another path, websockets
opened from pages of other origins.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .helpers import free_port
from .servers import REQUEST_S, Server, add_users, running, sign_in, start_server, with_cookie
from .test_websockets import FOREIGN, handshake

pytestmark = pytest.mark.e2e

#: The app behind doorman: echoes http requests; greets a websocket with the actor.
ECHO_APP = """\
import json


async def app(scope, receive, send):
    if scope["type"] == "websocket":
        await receive()
        actor = scope["actor"]
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": actor["username"] if actor else "nobody"})
        await send({"type": "websocket.close", "code": 1000})
        return
    if scope["type"] != "http":
        return
    actor = scope["actor"]
    body = {
        "path": scope["path"],
        "actor": actor and actor["username"],
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
    }
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})
"""
JSON = {"accept": "application/json"}


@pytest.fixture(scope="module")
def protect(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("protect")
    (directory / "echo_app.py").write_text(ECHO_APP)
    db = str(directory / "doorman.db")
    add_users(db, "alice")
    command = ("protect", "echo_app:app", "--app-dir", str(directory))
    server = start_server(
        directory,
        command=command,
        db=db,
        public_paths="/static/",
        allowed_origins="https://app.example.test",
    )
    with running(server):
        yield server


@pytest.fixture(scope="module")
def alice(protect: Server) -> str:
    """alice's session cookie."""
    return sign_in(protect.url, "alice")


def seen(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def identity_seen(answer: httpx.Response) -> list[tuple[str, str]]:
    """The ``X-Doorman-*`` headers the app received, in any spelling."""
    return [
        (name, value)
        for name, value in seen(answer)["headers"]
        if name.lower().replace("_", "-").startswith("x-doorman-")
    ]


# -- issue 12, item 5: identity headers come from doorman alone ---------------------------

FORGED = [
    ("X-Doorman-User", "admin"),
    ("x-doorman-admin", "true"),
    ("x_doorman_user", "admin"),
    ("X_DOORMAN_GROUPS", "staff"),
    ("X-Doorman-Anything", "1"),
    ("X-Doorman-Auth-Methods", "pwd,otp"),
]


def test_client_sent_identity_headers_never_reach_the_app(protect: Server, alice: str) -> None:
    anonymous = httpx.get(
        f"{protect.url}/static/app.css", headers=[*FORGED, *JSON.items()], timeout=REQUEST_S
    )
    assert seen(anonymous)["actor"] is None
    assert identity_seen(anonymous) == [], "an anonymous request carries no identity"
    signed_in = httpx.get(
        f"{protect.url}/notes",
        headers=[*FORGED, *with_cookie(alice, **JSON).items()],
        timeout=REQUEST_S,
    )
    assert seen(signed_in)["actor"] == "alice"
    assert sorted(identity_seen(signed_in)) == [
        ("x-doorman-admin", "false"),
        ("x-doorman-auth-methods", "pwd"),
        ("x-doorman-groups", ""),
        ("x-doorman-user", "alice"),
    ]


# -- issue 12, item 16: public paths mean what the app will read ---------------------------


def raw_get(url: str, target: str, cookie: str | None = None) -> tuple[int, Any]:
    """GET ``target`` exactly as written (httpx would tidy dots and backslashes away)."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=REQUEST_S)
    try:
        connection.request("GET", target, headers=with_cookie(cookie, **JSON))
        answer = connection.getresponse()
        body = answer.read()
    finally:
        connection.close()
    return answer.status, json.loads(body) if body.startswith(b"{") else body


#: Paths under the public /static/ that an app may read as /secret: never public.
AMBIGUOUS_TARGETS = [
    "/static/..\\secret",
    "/static/..;/secret",
    "/static/;/../secret",
    "/static/%2e%2e/secret",
    "/static/%2E%2E;/secret",
    "/static/..%5csecret",
    "/static/..%5Csecret",
    "/static/..%3b/secret",
    "/static/%252e%252e/secret",
    "/static/%25252e%25252e%25252fsecret",
    "/static%2f..%2fsecret",
    "/static/x%00/../secret",
    "/static/.%2e/secret",
    "/static/%EF%BC%8E%EF%BC%8E/secret",  # fullwidth dots: ".." once NFKC-folded
    "/static/..%EF%BC%8Fsecret",  # a fullwidth solidus
    "/static/..%20/secret",  # Windows drops trailing spaces and dots
    "/static/.../secret",
    "/static/%c0%ae%c0%ae/secret",  # overlong UTF-8 for "..", as lenient decoders read it
    # An app that builds a URL from the decoded path (a proxy) reads "/static/.." and goes "/":
    "/static/..%3f",
    "/static/..%3Fa=1",
    "/static/..%23",
    "/static/x/..%3f/secret",
]


@pytest.mark.parametrize("target", AMBIGUOUS_TARGETS)
def test_a_public_path_an_app_may_read_otherwise_needs_sign_in(
    protect: Server, target: str
) -> None:
    status, body = raw_get(protect.url, target)
    assert status == 401, (target, status, body)
    assert body == {"error": "Sign in to continue."}


def test_plain_public_paths_still_pass(protect: Server) -> None:
    plain = ("/static/app.css", "/static", "/static/a%20b.css", "/static/x?a=1;b=2")
    for target in (*plain, "/static/caf%C3%A9.css", "/static/v1.2/app..min.js"):
        status, body = raw_get(protect.url, target)
        assert status == 200 and body["actor"] is None, target


# -- issue 17: a page of another origin never opens a websocket as the user ----------------


def test_websockets_from_pages_of_other_origins_are_refused(protect: Server, alice: str) -> None:
    url = protect.url.replace("http://", "ws://") + "/live"
    same_site = f"http://127.0.0.1:{free_port()}"  # another port: the same site, another origin
    for origin in [*FOREIGN, same_site]:
        assert handshake(url, origin=origin, cookie=alice) == 403, origin
    for origin in (protect.url, "https://app.example.test"):
        assert handshake(url, origin=origin, cookie=alice) == "alice", origin
    # Without Origin: a program, not a page, judged by its credentials alone.
    assert handshake(url, cookie=alice) == "alice"
    assert handshake(url) == 403
    log = protect.log()
    assert "refused a websocket to '/live' from origin 'https://evil.example'" in log
    assert alice not in log, "no cookie in the log"
